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
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["Chunk", "Intake", "TopicPartition"]


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


class Intake:
    """A bounded queue of fetched chunks of the worker's own topics."""

    def __init__(self, topics: Collection[str], max_chunks: int = 64) -> None:
        self.topics = frozenset(topics)
        self._queue: asyncio.Queue[Chunk] = asyncio.Queue(maxsize=max_chunks)

    async def put(self, chunk: Chunk) -> None:
        await self._queue.put(chunk)

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
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                return []
        chunks = [first]
        n = len(first.records)
        while n < max_records and not self._queue.empty():
            chunk = self._queue.get_nowait()
            chunks.append(chunk)
            n += len(chunk.records)
        return chunks

    def empty(self) -> bool:
        return self._queue.empty()

    def clear(self) -> int:
        """Drop every queued chunk (after a revocation they are stale); return how many."""
        dropped = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            dropped += 1
        return dropped
