"""The events topic between two instants, for ``lineage replay --broker``.

Reads every partition of ``<prefix>events`` as a bystander: the partitions are
assigned, not subscribed (no consumer group is joined, no offset committed, nothing
published), from the offset of ``since`` (the earliest retained when not given) to
that of ``until`` (the end offsets when the read starts, when not given; never past
them, so the read ends however busy the topic is). ``since`` and ``until`` are the
messages' Kafka timestamps; which events are *reported on* is the replay's own
``--report-since``, in event time.

Partitions are read side by side; each partition's records come in offset order, so
a subject's events (keyed by subject, hence in one partition) keep their order.

    with EventsRange(settings, since=week_ago) as source:
        print(source.total)                 # messages to read
        for message in source.messages():   # lineage.replay.Message, origin topic[p]@offset
            ...

``batches()`` gives them in the batches they were fetched in, for
:func:`lineage.replay.decoded_ahead`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from types import TracebackType
from typing import Any

from kafka.errors import KafkaError

from lineage.kafka_client import KafkaConsumer, TopicPartition
from lineage.replay import Message
from streams.kafka_config import KafkaConfig
from streams.settings import Settings
from streams.topics import KafkaUnavailable, Topics

__all__ = ["BATCH", "EventsRange"]

#: The most messages one fetch returns.
BATCH = 5000


def _millis(moment: datetime) -> int:
    return max(int(moment.timestamp() * 1000), 0)


class EventsRange:
    """The messages of the events topic from ``since`` to ``until``, every partition."""

    def __init__(
        self,
        settings: Settings,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.topic = Topics.of(settings).events
        self.since = since
        self.until = until
        self.timeout = timeout
        #: partition -> (first offset to read, offset to stop before)
        self.ranges: dict[int, tuple[int, int]] = {}
        self._consumer: Any = None

    @property
    def total(self) -> int:
        """How many offsets lie in the range (messages to read, at most)."""
        return sum(stop - start for start, stop in self.ranges.values())

    def __enter__(self) -> EventsRange:
        self.open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _unavailable(self, exc: BaseException) -> KafkaUnavailable:
        return KafkaUnavailable(
            f"cannot read {self.topic} from Kafka at {self.settings.bootstrap}: "
            f"{type(exc).__name__}"
        )

    def open(self) -> None:
        """Connect, find the partitions and the offsets of the range."""
        millis = int(self.timeout * 1000)
        try:
            consumer = KafkaConsumer(
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=max(millis, 1000),
                max_partition_fetch_bytes=self.settings.fetch_bytes,
                **KafkaConfig(self.settings).kafka_python(),
            )
        except (KafkaError, OSError) as exc:
            raise self._unavailable(exc) from exc
        self._consumer = consumer
        try:
            found = consumer.partitions_for_topic(self.topic)
            if not found:
                raise KafkaUnavailable(
                    f"no topic {self.topic!r} on {self.settings.bootstrap}: is the topic "
                    "prefix right (--topic-prefix, LINEAGE_TOPIC_PREFIX)?"
                )
            tps = [TopicPartition(self.topic, p) for p in sorted(found)]
            first = consumer.beginning_offsets(tps, timeout_ms=millis)
            end = consumer.end_offsets(tps, timeout_ms=millis)
            start = dict(first)
            stop = dict(end)
            if self.since is not None:
                at = consumer.offsets_for_times(
                    {tp: _millis(self.since) for tp in tps}, timeout_ms=millis
                )
                start = {tp: (at[tp].offset if at.get(tp) else end[tp]) for tp in tps}
            if self.until is not None:
                at = consumer.offsets_for_times(
                    {tp: _millis(self.until) for tp in tps}, timeout_ms=millis
                )
                stop = {tp: min(at[tp].offset, end[tp]) if at.get(tp) else end[tp] for tp in tps}
        except KafkaUnavailable:
            self.close()
            raise
        except (KafkaError, OSError) as exc:
            self.close()
            raise self._unavailable(exc) from exc
        self.ranges = {
            tp.partition: (max(start[tp], first[tp]), max(stop[tp], start[tp])) for tp in tps
        }

    def messages(self) -> Iterator[Message]:
        """Every message of the range, each partition in offset order."""
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[Message]]:
        """Every message of the range, in the batches the consumer fetches them in (at
        most :data:`BATCH` messages), each partition in offset order."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("open() the range first")
        wanted = {
            TopicPartition(self.topic, p): (start, stop)
            for p, (start, stop) in self.ranges.items()
            if stop > start
        }
        if not wanted:
            return
        try:
            consumer.assign(list(wanted))
            for tp, (start, _) in wanted.items():
                consumer.seek(tp, start)
            remaining = dict(wanted)
            deadline = time.monotonic() + self.timeout
            while remaining:
                batches = consumer.poll(timeout_ms=500, max_records=BATCH)
                if batches:
                    deadline = time.monotonic() + self.timeout
                elif time.monotonic() > deadline:
                    raise KafkaUnavailable(
                        f"timed out reading {self.topic} from {self.settings.bootstrap}: "
                        f"nothing came for {self.timeout:.0f} s"
                    )
                batch: list[Message] = []
                for tp, records in batches.items():
                    if tp not in remaining:
                        continue
                    stop = remaining[tp][1]
                    for record in records:
                        if record.offset >= stop:
                            break
                        value = record.value if isinstance(record.value, bytes) else b""
                        origin = f"{tp.topic}[{tp.partition}]@{record.offset}"
                        batch.append(Message(value, origin))
                if batch:
                    yield batch
                for tp in list(remaining):
                    if consumer.position(tp) >= remaining[tp][1]:
                        del remaining[tp]
                        consumer.pause(tp)
        except KafkaError as exc:
            raise self._unavailable(exc) from exc

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None
