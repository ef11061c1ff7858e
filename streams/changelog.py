"""Rebuild the global lineage graph from what the workers keep in Kafka, with no worker running.

Each worker keeps its partitions' edge partials in the ``edges`` table, whose
changelog is a compacted Kafka topic. Reading that topic from the beginning to
its end offsets gives every partition's latest partial; merging them (sum counts,
min first seen, max last seen) gives the same graph the embedded run draws.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from lineage.errors import LineageError
from lineage.graph import merge_partials
from lineage.state import EdgeAggregate, EdgeKey
from streams.settings import Settings
from streams.tables import edge_records

__all__ = ["KafkaGraphError", "changelog_topic", "read_edges", "table_name"]


class KafkaGraphError(LineageError):
    """The graph could not be read from Kafka (unreachable broker, no such topic)."""


def table_name(settings: Settings, name: str) -> str:
    """The name of one of the worker's tables (prefixed, so deployments do not collide)."""
    return f"{settings.topic_prefix}{name}"


def changelog_topic(settings: Settings, name: str) -> str:
    """faust's changelog topic of a table: ``<app id>-<table name>-changelog``."""
    return f"{settings.app_id}-{table_name(settings, name)}-changelog"


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL"):
        config["sasl_mechanism"] = settings.sasl_mechanism
        config["sasl_plain_username"] = settings.sasl_username
        config["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    context = settings.ssl_context()
    if context is not None:
        config["ssl_context"] = context
    return config


async def read_table(settings: Settings, name: str, *, timeout: float = 30.0) -> dict[str, bytes]:
    """The latest value of every key of a table's changelog (tombstones removed)."""
    topic = changelog_topic(settings, name)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=int(timeout * 1000),
        **aiokafka_security(settings),
    )
    try:
        await asyncio.wait_for(consumer.start(), timeout)
    except (KafkaError, TimeoutError, OSError) as exc:
        await consumer.stop()
        raise KafkaGraphError(
            f"cannot reach Kafka at {settings.bootstrap}: {exc.__class__.__name__}"
        ) from exc
    latest: dict[str, bytes] = {}
    try:
        # aiokafka's public partitions_for_topic knows only subscribed topics' metadata.
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise KafkaGraphError(
                f"no topic {topic!r} on {settings.bootstrap}: has a worker with app id "
                f"{settings.app_id!r} and prefix {settings.topic_prefix!r} ever run?"
            )
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while remaining:
            if loop.time() > deadline:
                raise KafkaGraphError(f"timed out reading {topic} from {settings.bootstrap}")
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for records in batches.values():
                for record in records:
                    key = orjson.loads(record.key) if record.key is not None else None
                    if not isinstance(key, str):
                        continue
                    if record.value is None:
                        latest.pop(key, None)
                    else:
                        latest[key] = record.value
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return latest


async def read_edges(settings: Settings, *, timeout: float = 30.0) -> dict[EdgeKey, EdgeAggregate]:
    """Every partition's edge partials from Kafka, merged into one aggregate per edge."""
    latest = await read_table(settings, "edges", timeout=timeout)
    return merge_partials(edge_records(sorted(latest.items())))
