"""The per-subject view on Kafka: one SQLite file per events partition a worker holds.

The engine emits view facts as it judges (:mod:`lineage.view`); the worker folds them
into the view of their partition, and at each flush of the commit protocol sends the
rows the view changed, each pair of subject and recipient once, to the compacted
``subject-view`` topic (partitioned like the events topic), before it acks the events'
offsets. Whoever holds a partition next rebuilds its view from that topic
(:meth:`PartitionViews.open`), before it judges anything of the partition. So the view
is never rewritten per event, its topic holds one record per pair, consent and
provision record (and none past retention; a pair's record longer than
:data:`streams.store.RECORD_BYTES` in pieces), and ``GET /subjects/{subject}`` is an
indexed read of one file.

The files live in a folder of the worker's own under ``<state dir>/views``, locked
while the worker lives: workers that share a state folder (replicas on one volume)
never touch each other's files, and the folder of a worker gone, cleanly or not, is
removed by the next worker that starts there. A partition's file is rebuilt from the
topic each time the partition is assigned (the topic is the view's truth), and
removed when the partition is revoked.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from lineage.view import Row, SubjectView
from streams.store import RECORD_BYTES

__all__ = ["PartitionViews", "ReadRows"]

log = logging.getLogger("lineage.worker")

#: ``read(partition)``: every row of the view topic's partition, in topic order.
ReadRows = Callable[[int], Awaitable[list[Row]]]

#: Pairs a partition's view keeps decoded in memory between flushes.
_CACHED_PAIRS = 10_000


_LOCK = ".lock"


def _unowned(folder: Path) -> bool:
    """Whether a worker's views folder outlived its worker: its lock is free."""
    try:
        fd = os.open(folder / _LOCK, os.O_RDWR)
    except OSError:
        return False  # no lock yet: a worker is creating it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the lock taken, if any
    return True


def claim(root: Path) -> tuple[Path, int]:
    """A new folder of this process's own under ``root`` and the descriptor that holds
    its lock (released when the process ends, however it ends); folders left by
    workers gone are removed first."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in root.iterdir():
        if folder.is_dir() and _unowned(folder):
            shutil.rmtree(folder, ignore_errors=True)
    own = Path(tempfile.mkdtemp(dir=root, prefix="worker-"))
    fd = os.open(own / _LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return own, fd


class PartitionViews:
    """The views of the events partitions this worker holds, in a folder of its own
    under ``root``."""

    def __init__(self, root: Path, read: ReadRows) -> None:
        self.directory, self._lock = claim(root)
        self._read = read
        self._views: dict[int, SubjectView] = {}

    def _path(self, partition: int) -> Path:
        return self.directory / f"partition-{partition}.sqlite"

    async def open(self, partition: int) -> SubjectView:
        """The view of ``partition``, rebuilt from its topic when it is not held yet."""
        view = self._views.get(partition)
        if view is not None:
            return view
        path = self._path(partition)
        path.unlink(missing_ok=True)
        rows = await self._read(partition)
        view = SubjectView(path, max_cached=_CACHED_PAIRS, max_row_bytes=RECORD_BYTES)
        view.load(rows)
        self._views[partition] = view
        log.info("the subjects' view of partition %d: %d rows read", partition, len(rows))
        return view

    def get(self, partition: int) -> SubjectView | None:
        return self._views.get(partition)

    def held(self) -> dict[int, SubjectView]:
        return self._views

    def drop(self, partition: int) -> None:
        """Forget a partition's view (revoked: its next owner rebuilds it)."""
        view = self._views.pop(partition, None)
        if view is not None:
            view.close()
            self._path(partition).unlink(missing_ok=True)

    def drop_all(self) -> None:
        for partition in list(self._views):
            self.drop(partition)

    def close(self) -> None:
        """Drop every view and remove the folder (the worker stops)."""
        self.drop_all()
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self._lock)
