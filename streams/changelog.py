"""Read the workers' tables back from their changelogs in Kafka, with no worker running.

Each worker keeps its partitions' state in faust tables, whose changelogs are
compacted Kafka topics. Reading one from the beginning to its end offsets gives
every key's latest value. The ``edges`` table read so and merged (sum counts, min
first seen, max last seen) gives the same graph the embedded run draws.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from lineage.graph import merge_partials
from lineage.records import parse_record
from lineage.state import EdgeAggregate, EdgeKey
from lineage.view import Lineage, Row, SubjectView, rows_of
from streams.faust_internals import reconnect_backoff
from streams.kafka_config import KafkaConfig
from streams.settings import Settings
from streams.tables import edge_records
from streams.topics import KafkaUnavailable, Topics, changelog_topic

__all__ = [
    "murmur2_partition",
    "partitions_of",
    "read_edges",
    "read_records",
    "read_subject",
    "read_table",
    "read_topic",
    "read_view",
]


async def partitions_of(settings: Settings, topic: str, *, timeout: float = 30.0) -> list[int]:
    """The partitions of a topic, from the cluster's metadata ([] when there is no such topic)."""
    admin = AIOKafkaAdminClient(
        request_timeout_ms=int(timeout * 1000), **KafkaConfig(settings).aiokafka()
    )
    reconnect_backoff(admin._client)
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


async def read_topic(
    settings: Settings,
    topic: str,
    *,
    partitions: list[int] | None = None,
    timeout: float = 30.0,
    missing: str | None = None,
) -> list[Any]:
    """Every record of a topic (or of some of its partitions), from its beginning to the
    end offsets it had when asked. ``missing``: the error's words when there is no such
    topic."""
    found = await partitions_of(settings, topic, timeout=timeout)
    if not found:
        raise KafkaUnavailable(missing or f"no topic {topic!r} on {settings.bootstrap}")
    wanted = sorted(p for p in found if partitions is None or p in partitions)
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=int(timeout * 1000),
        **KafkaConfig(settings).aiokafka(),
    )
    reconnect_backoff(consumer._client)
    try:
        await asyncio.wait_for(consumer.start(), timeout)
    except (KafkaError, TimeoutError, OSError) as exc:
        await consumer.stop()
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.bootstrap}: {exc.__class__.__name__}"
        ) from exc
    try:
        return await _read_assigned(consumer, topic, wanted, timeout)
    except KafkaError as exc:
        raise KafkaUnavailable(
            f"cannot read {topic} from {settings.bootstrap}: {exc.__class__.__name__}"
        ) from exc
    except TimeoutError as exc:
        raise KafkaUnavailable(f"timed out reading {topic} from {settings.bootstrap}") from exc
    finally:
        await consumer.stop()


async def _read_assigned(
    consumer: AIOKafkaConsumer, topic: str, partitions: list[int], timeout: float
) -> list[Any]:
    """The records of ``partitions`` of ``topic`` up to the end offsets they had when
    asked; TimeoutError past ``timeout``, aiokafka's errors as they come."""
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    remaining = {tp for tp in tps if ends[tp] > 0}
    out: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while remaining:
        if loop.time() > deadline:
            raise TimeoutError
        batches = await consumer.getmany(*remaining, timeout_ms=500)
        for tp, records in batches.items():
            out.extend(r for r in records if r.offset < ends[tp])
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    return out


async def read_table(
    settings: Settings,
    name: str,
    *,
    partitions: list[int] | None = None,
    timeout: float = 30.0,
) -> dict[str, bytes]:
    """The latest value of every key of a table's changelog (tombstones removed)."""
    topic = changelog_topic(settings, name)
    records = await read_topic(
        settings,
        topic,
        partitions=partitions,
        timeout=timeout,
        missing=f"no topic {topic!r} on {settings.bootstrap}: has a worker with app id "
        f"{settings.app_id!r} and prefix {settings.topic_prefix!r} ever run?",
    )
    latest: dict[str, bytes] = {}
    for record in records:
        key = orjson.loads(record.key) if record.key is not None else None
        if not isinstance(key, str):
            continue
        if record.value is None:
            latest.pop(key, None)
        else:
            latest[key] = record.value
    return latest


async def read_view(settings: Settings, partition: int, *, timeout: float = 30.0) -> list[Row]:
    """Every row of one partition of the ``subject-view`` topic, in order ([] when the
    topic has none yet)."""
    topic = Topics.of(settings).views
    if not await partitions_of(settings, topic, timeout=timeout):
        return []
    records = await read_topic(settings, topic, partitions=[partition], timeout=timeout)
    return list(rows_of((r.key, r.value) for r in records))


async def read_subject(
    settings: Settings, subjects: list[str], *, timeout: float = 30.0
) -> tuple[str, Lineage | None]:
    """A subject's lineage from the ``subject-view`` topic: (the spelling found, its
    lineage).

    ``subjects`` are the spellings to try, in order (as given, then as its redaction
    token). The first is also the events' key, which names the one partition to read;
    when it is not found there, every partition is read.
    """
    topic = Topics.of(settings).events
    count = len(await partitions_of(settings, topic, timeout=timeout)) or settings.partitions
    partition = murmur2_partition(subjects[0].encode(), count)
    for scope in ([partition], [p for p in range(count) if p != partition]):
        for each in scope:
            view = SubjectView()
            try:
                view.load(await read_view(settings, each, timeout=timeout))
                found, lineage = view.find(subjects)
            finally:
                view.close()
            if lineage is not None:
                return found, lineage
    return subjects[0], None


async def read_records(settings: Settings, *, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every provision record on the ``provision-records`` topic, in topic order."""
    topic = Topics.of(settings).records
    records = await read_topic(
        settings,
        topic,
        timeout=timeout,
        missing=f"no topic {topic!r} on {settings.bootstrap}: has a worker with prefix "
        f"{settings.topic_prefix!r} ever run?",
    )
    return [parse_record(r.value, f"{topic}[{r.partition}]@{r.offset}") for r in records if r.value]


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (producers key events by
    subject, so this is where a subject's events and state live)."""
    return int(DefaultPartitioner()(key, list(range(partitions)), list(range(partitions))))


async def read_edges(settings: Settings, *, timeout: float = 30.0) -> dict[EdgeKey, EdgeAggregate]:
    """Every partition's edge partials from Kafka, merged into one aggregate per edge."""
    latest = await read_table(settings, "edges", timeout=timeout)
    return merge_partials(edge_records(sorted(latest.items())))
