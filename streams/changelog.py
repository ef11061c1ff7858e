"""Read the workers' tables back from their changelogs in Kafka, with no worker running.

Each worker keeps its partitions' state in faust tables, whose changelogs are
compacted Kafka topics. Reading one from the beginning to its end offsets gives
every key's latest value. The ``edges`` table read so and merged (sum counts, min
first seen, max last seen) gives the same graph the embedded run draws.
"""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from lineage.graph import merge_partials
from lineage.state import EdgeAggregate, EdgeKey
from streams.kafka_config import KafkaConfig
from streams.settings import Settings
from streams.tables import edge_records
from streams.topics import KafkaUnavailable, changelog_topic

__all__ = ["partitions_of", "read_edges", "read_table"]


async def partitions_of(settings: Settings, topic: str, *, timeout: float = 30.0) -> list[int]:
    """The partitions of a topic, from the cluster's metadata ([] when there is no such topic)."""
    admin = AIOKafkaAdminClient(
        request_timeout_ms=int(timeout * 1000), **KafkaConfig(settings).aiokafka()
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        described = await asyncio.wait_for(admin.describe_topics([topic]), timeout)
    except (KafkaError, TimeoutError, OSError) as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.bootstrap}: {exc.__class__.__name__}"
        ) from exc
    finally:
        await admin.close()
    return sorted(
        p["partition"]
        for found in described
        if found["topic"] == topic and found["error_code"] == 0
        for p in found["partitions"]
    )


async def read_table(settings: Settings, name: str, *, timeout: float = 30.0) -> dict[str, bytes]:
    """The latest value of every key of a table's changelog (tombstones removed)."""
    topic = changelog_topic(settings, name)
    partitions = await partitions_of(settings, topic, timeout=timeout)
    if not partitions:
        raise KafkaUnavailable(
            f"no topic {topic!r} on {settings.bootstrap}: has a worker with app id "
            f"{settings.app_id!r} and prefix {settings.topic_prefix!r} ever run?"
        )
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=int(timeout * 1000),
        **KafkaConfig(settings).aiokafka(),
    )
    try:
        await asyncio.wait_for(consumer.start(), timeout)
    except (KafkaError, TimeoutError, OSError) as exc:
        await consumer.stop()
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.bootstrap}: {exc.__class__.__name__}"
        ) from exc
    latest: dict[str, bytes] = {}
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while remaining:
            if loop.time() > deadline:
                raise KafkaUnavailable(f"timed out reading {topic} from {settings.bootstrap}")
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
