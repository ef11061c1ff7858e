"""The decoding process's verdicts, taken line by line by the run that judges them.

:class:`~lineage.decode_process.DecodeAhead` owns the child and takes its batches;
this module looks up, for each line the run reads, what the child made of it. It is
compiled with the run's loop (:mod:`lineage.compiled`): the loop asks once a line,
and interpreted, that question cost about a tenth of the run's own thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lineage.scanning import Scanned
from lineage.schemas.packed import Packed, unpack_judged

__all__ = ["Batch", "LineVerdict", "LineVerdicts", "as_scanned"]

#: One line's verdict: (line number, the line's length, its content's digest, the packed
#: event).
LineVerdict = tuple[int, int, str, Any]
#: A batch of the child: (the last line it covers, the verdicts of its lines that the
#: child decoded, in line order).
Batch = tuple[int, list[LineVerdict]]


class LineVerdicts:
    """The verdicts in hand, and the next batch from ``more(number)`` (None when none is
    ready, or the child is gone: the run decodes that line itself)."""

    def __init__(self, more: Callable[[int], Batch | None]) -> None:
        self._more = more
        self._verdicts: list[LineVerdict] = []
        self._at = 0  # the next verdict to look at
        self._last = 0  # the last line the verdicts in hand cover
        #: Lines the run took from the child's verdicts.
        self.taken = 0

    def scanned(self, number: int, size: int) -> Scanned | None:
        """What the child made of line ``number`` (``size`` bytes without its line end),
        or None when the run must decode it itself."""
        verdicts, at = self._verdicts, self._at
        while True:
            count = len(verdicts)
            while at < count and verdicts[at][0] < number:
                at += 1
            if at < count:
                line, length, digest, packed = verdicts[at]
                if line != number:
                    self._at = at
                    return None
                self._at = at + 1
                if length != size:
                    return None
                self.taken += 1
                return as_scanned(digest, packed)
            if number <= self._last:
                self._at = at
                return None
            batch = self._more(number)
            if batch is None:
                self._at = at
                return None
            self._last, verdicts = batch
            self._verdicts, at = verdicts, 0


def as_scanned(digest: str, packed: Packed) -> Scanned:
    """A verdict's event as the judging process judges it
    (:meth:`~lineage.engine.Engine.process_scanned`): the child found no raw values to
    mask."""
    return unpack_judged(packed), {}, digest
