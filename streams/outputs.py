"""The worker's outputs to Kafka: batched per partition, every message's fate known.

Alerts, incidents, incident partials and dead letters are not sent one awaited
message at a time: :meth:`Sender.add` queues a message and returns at once,
:meth:`Sender.send` hands whole batches (aiokafka's public ``create_batch`` /
``send_batch``) to the producer, and :meth:`Sender.flush` waits until Kafka has
acknowledged every message added so far. The commit protocol
(:class:`~streams.checkpoint.Checkpoint`) acks an event's offset only after that.

No single message can stop the worker:

- a message larger than ``max_bytes`` is refused when added (the caller makes a
  smaller one: a dead letter keeps the start of what it carries), counted and
  logged without its contents;
- a batch the broker refuses as too large is split, and a lone message it still
  refuses is dropped, counted and logged, never retried forever;
- a batch Kafka did not take within the producer's request timeout (a broker
  away for longer than ``output_timeout``) makes :meth:`flush` raise
  :class:`OutputsLost`: nothing was acked, and the worker reads those events
  again from their committed offsets.

A message added as ``required`` (a record of a table's changelog) is never dropped:
refused when added, or by the broker, it makes :meth:`flush` raise
:class:`OutputsLost` instead, for state Kafka does not have must not be committed past.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.partitioner import DefaultPartitioner

from lineage.errors import LineageError

__all__ = ["Message", "OutputsLost", "Sender"]

log = logging.getLogger("lineage.worker")

Headers = Sequence[tuple[str, bytes]]

#: Record overhead beyond key, value and headers (varints, attributes, timestamps).
_RECORD_OVERHEAD = 64


class OutputsLost(LineageError):
    """Kafka did not acknowledge outputs in time; the events behind them must be judged
    again. ``refused``: how many of them were ``required`` messages refused as too large
    (refused again if judged again); ``required``: how many ``required`` messages were
    not acknowledged, refused or lost."""

    def __init__(self, message: str, refused: int = 0, required: int = 0) -> None:
        super().__init__(message)
        self.refused = refused
        self.required = required


@dataclass(slots=True)
class Message:
    """One output: where it goes and what it says."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    partition: int | None = None  # None: the partition of its key
    required: bool = False  # never dropped: refused, it fails the flush

    @property
    def size(self) -> int:
        key = len(self.key) if self.key is not None else 0
        value = len(self.value) if self.value is not None else 0
        headers = sum(len(k) + len(v) for k, v in self.headers) if self.headers else 0
        return key + value + headers + _RECORD_OVERHEAD


class Sender:
    """Batches outputs per partition on one aiokafka producer (see the module docstring).

    ``producer`` is an AIOKafkaProducer, or a callable that makes one (aiokafka makes its
    clients inside a running loop), started and stopped by the Sender.
    ``on_refused(topic, reason)`` is told of every message dropped.
    """

    def __init__(
        self,
        producer: Any,
        *,
        max_bytes: int,
        on_refused: Callable[[str, str], None] | None = None,
        on_sent: Callable[[str, int], None] | None = None,
        on_acked: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self._make = producer if callable(producer) else None
        self._producer: Any = None if callable(producer) else producer
        self.max_bytes = max_bytes
        self._on_refused = on_refused
        self._on_sent = on_sent
        #: ``on_acked(topic, partition, offset)``: the offset of the last message of a
        #: batch Kafka acknowledged.
        self.on_acked = on_acked
        self._queued: list[Message] = []
        self._unsent: list[Message] = []  # required messages refused when added
        self._in_flight: list[tuple[asyncio.Future[Any], list[Message]]] = []
        self._partitions: dict[str, list[int]] = {}
        self._partition_of: dict[tuple[str, bytes], int] = {}
        self._partitioner = DefaultPartitioner()
        self._started = False

    async def start(self) -> None:
        if not self._started:
            if self._producer is None and self._make is not None:
                self._producer = self._make()
            await self._producer.start()
            self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()

    @property
    def pending(self) -> int:
        """Messages added and not yet known to be acknowledged."""
        return len(self._queued) + sum(len(m) for _, m in self._in_flight)

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = (),
        partition: int | None = None,
        required: bool = False,
    ) -> bool:
        """Queue one message (``value`` None: a tombstone of a compacted topic) for the
        partition of its key, or ``partition``; False (and counted as refused) when it is
        over ``max_bytes``. A ``required`` message refused so fails the next flush."""
        message = Message(topic, key, value, headers, partition, required)
        if message.size > self.max_bytes:
            self._refuse(message, f"over {self.max_bytes} bytes")
            if required:
                self._unsent.append(message)
            return False
        self._queued.append(message)
        return True

    async def send(self) -> None:
        """Hand every queued message to the producer in batches; do not wait for Kafka."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        keyed = {m.topic for m in queued if m.partition is None} - self._partitions.keys()
        for topic in keyed:
            await self._learn(topic)
        groups: dict[tuple[str, int], list[Message]] = {}
        partition_of = self._partition
        for message in queued:
            groups.setdefault((message.topic, partition_of(message)), []).append(message)
        for (topic, partition), messages in groups.items():
            handed = await self._submit(topic, partition, messages)
            # Looked up after the await: a flush may have taken the list meanwhile.
            self._in_flight.extend(handed)

    async def flush(self) -> None:
        """Send what is queued and wait until Kafka acknowledged every message added
        before this call.

        What is added while it waits is left to the next flush: a worker judges on, and
        adds, while a flush awaits Kafka (:class:`streams.checkpoint.Checkpoint`).
        Raises :class:`OutputsLost` when a batch could not be delivered in time.
        """
        lost: list[Message] = []
        refused: list[Message] = []  # required, and refused as too large
        await self.send()
        in_flight, self._in_flight = self._in_flight, []
        while in_flight:
            results = await asyncio.gather(*(f for f, _ in in_flight), return_exceptions=True)
            singles: list[Message] = []
            for (_, messages), result in zip(in_flight, results, strict=True):
                if not isinstance(result, BaseException):
                    if self._on_sent is not None:
                        self._on_sent(messages[0].topic, len(messages))
                    offset = getattr(result, "offset", None)
                    log.debug(
                        "Kafka took %d messages for %s [%s] at offset %s",
                        len(messages),
                        messages[0].topic,
                        getattr(result, "partition", "?"),
                        offset,
                    )
                    if self.on_acked is not None and offset is not None and offset >= 0:
                        # A batch's metadata names the offset of its first message.
                        self.on_acked(result.topic, result.partition, offset + len(messages) - 1)
                    continue
                if isinstance(result, MessageSizeTooLargeError | RecordListTooLargeError):
                    if len(messages) == 1:
                        reason = f"refused by the broker ({type(result).__name__})"
                        self._refuse(messages[0], reason)
                        if messages[0].required:
                            refused.extend(messages)
                    else:
                        singles.extend(messages)  # again one by one: only the culprit fails
                else:
                    log.error(
                        "Kafka did not take %d messages for %s: %s",
                        len(messages),
                        messages[0].topic,
                        type(result).__name__,
                    )
                    lost.extend(messages)
            in_flight = []
            for message in singles:
                in_flight += await self._submit(message.topic, self._partition(message), [message])
        refused.extend(self._unsent)
        self._unsent = []
        if lost or refused:
            raise OutputsLost(
                f"{len(lost) + len(refused)} outputs were not acknowledged by Kafka; their "
                "events will be judged again",
                refused=len(refused),
                required=len(refused) + sum(m.required for m in lost),
            )

    def discard(self) -> int:
        """Forget what is queued and what was handed over and not yet awaited (their
        events are read again). Returns how many messages were queued."""
        n = len(self._queued)
        self._queued = []
        self._unsent = []
        for future, _ in self._in_flight:
            future.add_done_callback(_retrieved)  # no one awaits its fate now
        self._in_flight = []
        return n

    # -- inside ----------------------------------------------------------------------------------

    async def _learn(self, topic: str) -> None:
        """Ask Kafka once for the partitions of ``topic`` (the partitioner's input)."""
        self._partitions[topic] = sorted(await self._producer.partitions_for(topic))

    def _partition(self, message: Message) -> int:
        """The partition of a message: its own, or its key's among the partitions
        :meth:`_learn` found (no await per message)."""
        if message.partition is not None:
            return message.partition
        partitions = self._partitions[message.topic]
        key = message.key
        if key is None:
            return int(self._partitioner(None, partitions, partitions))
        cache_key = (message.topic, key)
        found = self._partition_of.get(cache_key)
        if found is None:
            found = int(self._partitioner(key, partitions, partitions))
            if len(self._partition_of) >= 100_000:
                self._partition_of.clear()
            self._partition_of[cache_key] = found
        return found

    async def _submit(
        self, topic: str, partition: int, messages: list[Message]
    ) -> list[tuple[asyncio.Future[Any], list[Message]]]:
        """Hand ``messages`` to the producer in batches; (future, messages) of each."""
        producer = self._producer
        batch = producer.create_batch()
        in_batch: list[Message] = []
        handed: list[tuple[asyncio.Future[Any], list[Message]]] = []
        for message in messages:
            if (
                batch.append(
                    timestamp=None,
                    key=message.key,
                    value=message.value,
                    headers=list(message.headers),
                )
                is None
            ):
                handed.append(await self._send_batch(batch, topic, partition, in_batch))
                batch, in_batch = producer.create_batch(), []
                batch.append(
                    timestamp=None,
                    key=message.key,
                    value=message.value,
                    headers=list(message.headers),
                )
            in_batch.append(message)
        if in_batch:
            handed.append(await self._send_batch(batch, topic, partition, in_batch))
        return handed

    async def _send_batch(
        self, batch: Any, topic: str, partition: int, messages: list[Message]
    ) -> tuple[asyncio.Future[Any], list[Message]]:
        batch.close()
        try:
            future = await self._producer.send_batch(batch, topic, partition=partition)
        except KafkaError as exc:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        return future, messages

    def _refuse(self, message: Message, reason: str) -> None:
        fate = "is not written" if message.required else "was dropped"
        log.error("an output for %s %s: %s (%d bytes)", message.topic, fate, reason, message.size)
        if self._on_refused is not None:
            self._on_refused(message.topic, reason)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark the fate of a batch no one awaits as seen (asyncio logs one never seen)."""
    if not future.cancelled():
        future.exception()
