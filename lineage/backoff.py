"""How every Kafka client of the product waits between attempts to reach a broker.

A capped, jittered exponential backoff: the first wait, doubling with each failure
in a row, at most the cap, each wait within a fifth either way so that a fleet does
not knock in step; a success resets it. kafka-python's clients take it as settings
(:data:`RECONNECT_BACKOFF_MS`, :data:`RECONNECT_BACKOFF_MAX_MS`), the worker's
aiokafka clients from ``streams.faust_internals.reconnect_backoff``, and the
Emitter's retries of its spills from :class:`Backoff`.
"""

from __future__ import annotations

import random

__all__ = ["RECONNECT_BACKOFF_MAX_MS", "RECONNECT_BACKOFF_MS", "Backoff"]

#: The first wait after a failed attempt to reach a broker, and the longest.
RECONNECT_BACKOFF_MS = 100
RECONNECT_BACKOFF_MAX_MS = 2_000


class Backoff:
    """A capped, jittered exponential wait: ``base``, doubling with each failure in a row,
    at most ``cap``, each wait within a fifth either way; :meth:`reset` after a success."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self._failures = 0

    def next(self) -> float:
        """The wait before the next attempt (counts one more failure)."""
        wait = min(self.cap, self.base * float(2**self._failures))
        self._failures += 1
        return wait * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._failures = 0
