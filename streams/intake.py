"""The worker's way in: records of its topics in whole fetches, not one faust event each.

faust hands every message to an agent's stream one at a time, through two tasks
per message, an Event, the stream's processors and an ack: that costs more than
judging the event. The worker's consumer (:mod:`streams.faust_internals`) instead
puts the records of ``lineage.events`` and ``lineage.incident-partials`` into this
queue as they come out of each fetch, each chunk tagged with the consumer
generation it was fetched in; the evaluate loop takes them from here and hands
them to the :class:`~streams.checkpoint.Checkpoint`.

A chunk of an older generation was fetched before a rebalance: it is dropped
unjudged and read again from the new assignment's committed offsets.

A chunk that waits here (the evaluate loop is judging or flushing) is handed to the
worker's decoding process (:mod:`streams.ahead`) as it comes in.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any, NamedTuple, Protocol

__all__ = ["Ahead", "Chunk", "Intake", "TopicPartition"]


class TopicPartition(NamedTuple):
    """A topic's partition (faust's ``TP`` has the same two fields and is a tuple too)."""

    topic: str
    partition: int


@dataclass(slots=True)
class Chunk:
    """Records of one partition from one fetch, in offset order.

    ``records`` are the client's records: each has ``offset``, ``key`` and ``value``.
    """

    tp: Any  # a TopicPartition or faust's TP
    records: list[Any]
    generation: int

    @property
    def topic(self) -> str:
        return str(self.tp.topic)

    @property
    def partition(self) -> int:
        return int(self.tp.partition)


class _Chunks(asyncio.Queue[Chunk]):
    """asyncio's queue, whose waiting chunks can be read in order. It keeps them where
    its subclasses do (LifoQueue, PriorityQueue): in ``_queue``, made by ``_init``."""

    def _init(self, maxsize: int) -> None:
        self._queue: deque[Chunk] = deque()

    @property
    def waiting(self) -> deque[Chunk]:
        return self._queue


class Ahead(Protocol):
    """What decodes chunks ahead of judging (:class:`streams.ahead.Lookahead`)."""

    def send(self, chunks: Iterable[Chunk]) -> None: ...

    def clear(self) -> None: ...


class Intake:
    """A bounded queue of fetched chunks of the worker's own topics.

    A chunk holds up to two batches' records (what a fetch brings,
    :mod:`streams.kafka_config`); ``max_chunks`` bounds the records waiting here with it.

    ``ahead`` is given the chunks waiting here to be taken, in order, whenever one
    comes (but one a waiting :meth:`take` gets as it comes) and after each take, and
    is told when the queue is cleared."""

    def __init__(
        self, topics: Collection[str], max_chunks: int = 32, ahead: Ahead | None = None
    ) -> None:
        self.topics = frozenset(topics)
        self.ahead = ahead
        self._queue = _Chunks(maxsize=max_chunks)
        self._taking = False  # a take waits for the next chunk

    async def put(self, chunk: Chunk) -> None:
        await self._queue.put(chunk)
        if self.ahead is not None:
            # The first chunk a waiting take gets is judged as soon as it comes.
            self.ahead.send(islice(self._queue.waiting, 1 if self._taking else 0, None))

    async def take(self, max_records: int, timeout: float | None = None) -> list[Chunk]:
        """Wait for one chunk (at most ``timeout`` seconds: then []), then take what else
        is queued, up to about ``max_records``."""
        if not self._queue.empty():
            # Taken at once: wait_for with no time left cancels the get before it runs,
            # and would return [] from a full queue.
            first = self._queue.get_nowait()
        elif timeout is not None and timeout <= 0:
            return []
        else:
            self._taking = True
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                return []
            finally:
                self._taking = False
        chunks = [first]
        n = len(first.records)
        while n < max_records and not self._queue.empty():
            chunk = self._queue.get_nowait()
            chunks.append(chunk)
            n += len(chunk.records)
        if self.ahead is not None and not self._queue.empty():
            self.ahead.send(self._queue.waiting)  # while these are judged
        return chunks

    def empty(self) -> bool:
        return self._queue.empty()

    def clear(self) -> int:
        """Drop every queued chunk (after a revocation they are stale); return how many."""
        dropped = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            dropped += 1
        if self.ahead is not None:
            self.ahead.clear()
        return dropped
