"""A stand-in for aiokafka's producer, for unit tests of the Sender and the Checkpoint.

It records what it was given and can fail on demand, so the tests can say what the
worker does when Kafka takes everything, refuses a message, or goes away. Tests of
the stream path on Kafka itself use a real broker (tests/kafka_helpers.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError


@dataclass
class RecordMetadata:
    """What aiokafka's batch future gives: the offset of the batch's first record."""

    topic: str
    partition: int
    offset: int


@dataclass
class Sent:
    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class FakeBatch:
    limit: int
    records: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    closed: bool = False

    def append(
        self, *, timestamp: Any, key: bytes | None, value: bytes, headers: Any
    ) -> object | None:
        assert isinstance(headers, list), "aiokafka's batches take headers as a list"
        if self.closed or len(self.records) >= self.limit:
            self.closed = True
            return None
        self.records.append((key, value, list(headers)))
        return object()

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    """create_batch / send_batch / partitions_for, like aiokafka's AIOKafkaProducer.

    ``away``: every batch fails as if the broker were gone. ``max_message``: the
    broker refuses a batch holding a value longer than this, as too large;
    ``too_large``: topics whose every batch it refuses so (a small
    ``max.message.bytes``). ``ack_delay``: seconds before a batch taken is acknowledged.
    """

    def __init__(self, partitions: int = 4, batch_records: int = 100) -> None:
        self.partitions = partitions
        self.batch_records = batch_records
        self.sent: list[Sent] = []
        self.batches = 0
        self.away = False
        self.max_message: int | None = None
        self.failing: set[str] = set()  # topics whose batches fail as if Kafka were away
        self.too_large: set[str] = set()
        self.ack_delay = 0.0
        self.started = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.batch_records)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.batches += 1
        if self.away or topic in self.failing:
            future.set_exception(KafkaTimeoutError())
        elif topic in self.too_large or (
            self.max_message is not None
            and any(len(value or b"") > self.max_message for _, value, _ in batch.records)
        ):
            future.set_exception(MessageSizeTooLargeError())
        else:
            base = sum(1 for s in self.sent if s.topic == topic and s.partition == partition)
            for key, value, headers in batch.records:
                self.sent.append(Sent(topic, partition, key, value, headers))
            metadata = RecordMetadata(topic, partition, base)
            if self.ack_delay:
                asyncio.get_running_loop().call_later(self.ack_delay, future.set_result, metadata)
            else:
                future.set_result(metadata)
        return future

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]
