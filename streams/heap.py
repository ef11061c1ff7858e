"""Giving the memory a worker has freed back to the system.

glibc's malloc keeps what a process frees for its own reuse and gives back to the
system only the top of its main heap, so a process that frees about as much as it
allocates (records decoded and dropped, batches built and sent, caches emptied and
filled again) keeps the RSS of its peaks. ``malloc_trim(0)`` gives back every whole
free page of every arena (``madvise``): the worker calls it between two turns of its
loop every :data:`TRIM_SECONDS` while it works, and once when a turn finds nothing to
do after turns that did (at most every :data:`IDLE_SECONDS`), so that its RSS follows
what it holds, and what a burst freed goes back when the burst ends. Its view process
(:mod:`streams.views`) trims as it works too, and once the worker has sent it nothing
for :data:`IDLE_SECONDS` (it waits between the worker's batches all the time). On this
project's 2-vCPU machine a call took under 0.1 ms; a page given back costs a page
fault when it is used again.

Measured with ``bench/memory.py`` (1,000,000 events over 100,000 subjects a phase,
the dedup window full after the first): RSS after the first phase and the second
538.6 and 611.1 MiB, against 597.5 and 742.0 MiB without it. Where malloc is not
glibc's (musl, macOS), it does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

__all__ = ["IDLE_SECONDS", "TRIM_SECONDS", "HeapTrim"]

#: The time between two trims while the worker works.
TRIM_SECONDS = 10.0
#: The least time between two trims when work stops (a trickle of events must not
#: make every idle turn trim).
IDLE_SECONDS = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where malloc is another's."""
    try:
        found = getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None
    if found is None:
        return None
    found.argtypes = [ctypes.c_size_t]
    found.restype = ctypes.c_int
    return found  # type: ignore[no-any-return]


class HeapTrim:
    """Calls ``trim(0)`` every ``every`` seconds of work, and when work stops at most
    every ``idle`` seconds (``trim``: glibc's by default)."""

    def __init__(
        self,
        every: float = TRIM_SECONDS,
        trim: Callable[[int], int] | None = None,
        idle: float = IDLE_SECONDS,
    ) -> None:
        self._every = every
        self._idle = idle
        self._trim = trim if trim is not None else _malloc_trim()
        self._last = float("-inf")
        self._worked = True  # since the last trim

    @property
    def available(self) -> bool:
        return self._trim is not None

    def maybe(self, now: float, worked: bool = True) -> None:
        """After a turn of the loop at ``now`` (a monotonic time) that did some work or
        none: trim if the last trim was ``every`` seconds before, or if this turn did
        nothing after turns that did and the last trim was ``idle`` seconds before."""
        self._worked = self._worked or worked
        if self._trim is None:
            return
        since = now - self._last
        if since >= self._every or (not worked and self._worked and since >= self._idle):
            self._trim(0)
            self._last = now
            self._worked = False
