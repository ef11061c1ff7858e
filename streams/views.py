"""The per-subject view on Kafka: one SQLite file per events partition a worker holds,
kept by a child process of the worker's own.

The engine emits view facts as it judges (:mod:`lineage.view`); the worker hands them
to its view process (:class:`~lineage.child.Child`, ``python -m streams.views``), which
folds them into the view of their partition on another core while judging goes on. At
each flush of the commit protocol the worker asks it for the rows each view changed,
each pair of subject and recipient once, and sends them to the compacted
``subject-view`` topic (partitioned like the events topic) before it acks the events'
offsets. Whoever holds a partition next rebuilds its view from that topic
(:meth:`PartitionViews.open`), before it judges anything of the partition. So the view
is never rewritten per event, its topic holds one record per pair, consent and
provision record (and none past retention; a pair's record longer than
:data:`streams.store.RECORD_BYTES` in pieces), ``GET /subjects/{subject}`` is an
indexed read of one file, and what judging pays for the view is handing its facts over
(orjson, a quarter of a microsecond a fact) and reading the rows back at a flush.

The process answers in the order it is asked; facts, flushes, reads and drops reach it
in the order the worker made them, so a flush or a read sees every fact judged before
it. It stops with the worker (or when its pipe closes), and an error of it (a full
disk) reaches the worker as the :class:`~lineage.errors.RunError` it raised.

The files live in a folder of the worker's own under ``<state dir>/views``, locked
while the worker lives: workers that share a state folder (replicas on one volume)
never touch each other's files, and the folder of a worker gone, cleanly or not, is
removed by the next worker that starts there. A partition's file is rebuilt from the
topic each time the partition is assigned (the topic is the view's truth), and
removed when the partition is revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pickle
import queue
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from lineage.child import Child, connections, error_answer, error_of
from lineage.errors import RunError
from lineage.garbage import collect_garbage_seldom
from lineage.view import (
    Lineage,
    Row,
    SubjectView,
    ViewFact,
    decode_facts,
    encode_facts,
    process_name,
)
from streams.heap import IDLE_SECONDS, HeapTrim
from streams.store import RECORD_BYTES

__all__ = ["PartitionViews", "ReadRows"]

log = logging.getLogger("lineage.worker")

#: ``read(partition)``: every row of the view topic's partition, in topic order.
ReadRows = Callable[[int], Awaitable[list[Row]]]

#: Pairs a partition's view keeps decoded after a flush: those folded most recently.
_CACHED_PAIRS = 10_000
#: Facts handed to the view process in one message.
_BATCH = 4_096


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
    under ``root``, kept by the worker's view process (started at the first
    :meth:`open`)."""

    def __init__(self, root: Path, read: ReadRows) -> None:
        self.directory, self._lock = claim(root)
        self._read = read
        #: The facts not handed over yet, of each partition held, in the order opened.
        self._facts: dict[int, list[ViewFact]] = {}
        self._opening: dict[int, asyncio.Task[None]] = {}
        self._child: Child | None = None
        #: The answers awaited, in the order asked, and the task that hands them over.
        self._answers: deque[asyncio.Future[bytes]] = deque()
        self._reading: asyncio.Task[None] | None = None
        #: The view process's answers as they come, read by a thread of their own
        #: (:func:`_pump`), and that thread.
        self._inbox: queue.SimpleQueue[bytes | RunError] = queue.SimpleQueue()
        self._pump: threading.Thread | None = None
        self._stop: weakref.finalize[[], PartitionViews] | None = None

    async def open(self, partition: int) -> None:
        """Hold the view of ``partition``, rebuilt from its topic when it is not held."""
        if partition in self._facts:
            return
        opening = self._opening.get(partition)
        if opening is None:
            opening = self._opening[partition] = asyncio.ensure_future(self._rebuild(partition))
            opening.add_done_callback(lambda _: self._opening.pop(partition, None))
        await asyncio.shield(opening)

    async def _rebuild(self, partition: int) -> None:
        rows = await self._read(partition)
        await self._ask(b"O" + pickle.dumps((partition, rows), protocol=pickle.HIGHEST_PROTOCOL))
        self._facts[partition] = []
        log.info("the subjects' view of partition %d: %d rows read", partition, len(rows))

    def folder(self, partition: int) -> Callable[[list[ViewFact]], None]:
        """What takes the view facts of ``partition`` as judging emits them; they go to
        the view process at the next :meth:`ship`."""
        return self._facts[partition].extend

    def held(self) -> list[int]:
        """The partitions whose views are held, in the order they were opened."""
        return list(self._facts)

    def ship(self, partition: int) -> None:
        """Hand the facts of ``partition`` taken so far to the view process. The list
        is emptied in place: a :meth:`folder` taken before goes on filling it."""
        facts = self._facts.get(partition)
        if not facts:
            return
        child = self._started()
        head = b"F" + partition.to_bytes(4, "big")
        for start in range(0, len(facts), _BATCH):
            child.send(head + encode_facts(facts[start : start + _BATCH]))
        facts.clear()

    async def flush(
        self, newest: dict[int, float], retention_days: int
    ) -> list[tuple[int, list[Row]]]:
        """Fold what each held view took, purge its provision records more than
        ``retention_days`` before the newest event time judged (``newest`` of its
        partition, when known), write it, and return the rows each changed:
        (partition, rows), in the order held."""
        return await self.ask_flush(newest, retention_days)

    def ask_flush(
        self, newest: dict[int, float], retention_days: int
    ) -> Coroutine[Any, Any, list[tuple[int, list[Row]]]]:
        """:meth:`flush`, asked now: the rows cover the facts handed over before this
        call, whatever is judged before they are awaited."""
        if not self._facts:
            return _nothing()
        for partition in self._facts:
            self.ship(partition)
        wanted = [(p, newest.get(p, float("-inf"))) for p in self._facts]
        message = pickle.dumps((wanted, retention_days), protocol=pickle.HIGHEST_PROTOCOL)
        return self._answer(self._send(b"S" + message))

    async def find(self, partition: int, spellings: list[str]) -> tuple[str, Lineage | None]:
        """(the spelling found, the subject's lineage or None) in ``partition``'s view."""
        await self.open(partition)
        self.ship(partition)
        found: tuple[str, Lineage | None] = await self._ask(
            b"Q" + pickle.dumps((partition, spellings), protocol=pickle.HIGHEST_PROTOCOL)
        )
        return found

    def drop(self, partition: int) -> None:
        """Forget a partition's view (revoked: its next owner rebuilds it)."""
        if self._facts.pop(partition, None) is not None and self._child is not None:
            self._child.send(b"D" + partition.to_bytes(4, "big"))

    def drop_all(self) -> None:
        for partition in list(self._facts):
            self.drop(partition)

    def close(self) -> None:
        """Drop every view, stop the view process and remove the folder (the worker
        stops)."""
        for opening in list(self._opening.values()):
            opening.cancel()  # a view still being read: nobody waits for it now
        self._facts.clear()
        child, self._child = self._child, None
        if child is not None:
            with contextlib.suppress(RunError):
                child.wait()  # it closes its views as its pipe closes
            if self._pump is not None:
                self._pump.join()  # the process is gone: its pipe has ended
            child.close()
        if self._stop is not None:
            self._stop.detach()
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self._lock)

    def _started(self) -> Child:
        if self._child is None:
            child = Child(
                "streams.views", [str(self.directory)],
                process_name(self.directory),
            )  # fmt: skip
            # A worker's views not closed (a test's checkpoint) stop with it.
            self._stop = weakref.finalize(self, child.close)
            self._child = child
            self._pump = threading.Thread(
                target=_pump, args=(child, self._inbox), name="lineage-views-answers",
                daemon=True,
            )  # fmt: skip
            self._pump.start()
        return self._child

    async def _ask(self, message: bytes) -> Any:
        """Send ``message`` to the view process and await its answer."""
        return await self._answer(self._send(message))

    def _send(self, message: bytes) -> asyncio.Future[bytes]:
        """Send ``message`` to the view process now; the future of its answer. The
        process answers in the order it is asked; :func:`_pump` reads the answers as
        they come, and one task hands them, in that order, to those who await them."""
        child = self._started()
        child.send(message)
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._answers.append(answer)
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read_answers())
        return answer

    async def _read_answers(self) -> None:
        answers = self._answers
        try:
            while answers:
                answer = await asyncio.get_running_loop().run_in_executor(None, self._inbox.get)
                if isinstance(answer, RunError):  # the process ended: so will any ask
                    self._inbox.put(answer)
                    raise answer
                waiting = answers.popleft()
                if not waiting.done():
                    waiting.set_result(answer)
        except Exception as exc:  # the process is gone: every answer awaited fails
            while answers:
                waiting = answers.popleft()
                if not waiting.done():
                    waiting.set_exception(exc)
        finally:
            self._reading = None

    @staticmethod
    async def _answer(answer: Awaitable[bytes]) -> Any:
        found = await answer
        error = error_of(found)
        if error is not None:
            raise RunError(error)
        return pickle.loads(found)


def _pump(child: Child, inbox: queue.SimpleQueue[bytes | RunError]) -> None:
    """Read the view process's answers as they come, until it ends, into ``inbox``.

    Not on the event loop: the loop may wait in :meth:`Child.send` for room to queue
    facts while the process, behind on them, writes the answer to a flush. Were the
    answers read only when the loop asks for the next one, that answer would wait for
    the loop, the process would stop reading the facts, and the loop would wait for
    the process: the worker would hang, its health probe with it.
    """
    while (answer := child.next_answer()) is not None:
        inbox.put(answer)
    # Its end is closed: it ended, or is ending. Those who wait are told how.
    inbox.put(child.ended())


async def _nothing() -> list[tuple[int, list[Row]]]:
    return []


def _path(directory: Path, partition: int) -> Path:
    return directory / f"partition-{partition}.sqlite"


def _serve(
    reader: Connection, writer: Connection, directory: Path, idle: float = IDLE_SECONDS
) -> int:
    """The view process: keep the views of the partitions the worker holds, as it asks.

    It gives back what its work freed (:mod:`streams.heap`) after each
    :data:`~streams.heap.TRIM_SECONDS` of work, and once the worker has asked nothing
    for ``idle`` seconds: a busy worker's batches come milliseconds apart, and trimming
    in each of those gaps cost page faults and system time on the worker's cores."""
    views: dict[int, SubjectView] = {}

    def answer(value: Any) -> None:
        writer.send_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def drop(partition: int) -> None:
        view = views.pop(partition, None)
        if view is not None:
            view.close()
            _path(directory, partition).unlink(missing_ok=True)

    heap = HeapTrim()
    waiting = False  # the worker's next message is known to be there
    try:
        while True:
            if not waiting and not reader.poll(idle):  # work stopped: what it freed goes back
                heap.maybe(time.monotonic(), worked=False)
            try:
                message = reader.recv_bytes()
            except EOFError:  # the worker stopped: its views go with it
                return 0
            waiting = False
            heap.maybe(time.monotonic())
            kind = message[:1]
            if kind == b"F":
                partition = int.from_bytes(message[1:5], "big")
                view = views[partition]
                view.fold(decode_facts(memoryview(message)[5:]))
                waiting = reader.poll(0)
                if waiting:
                    view.fold_now()
                else:  # ahead of the worker: do now what its next flush would wait for
                    view.prepare()
            elif kind == b"S":
                wanted, days = pickle.loads(message[1:])
                flushed = []
                for partition, newest in wanted:
                    view = views[partition]
                    view.observe(newest)
                    view.retain(days)
                    flushed.append((partition, view.flush(write=False)))
                answer(flushed)  # the worker sends the rows on while the files are written
                for partition, _ in wanted:
                    views[partition].write_staged()
            elif kind == b"O":
                partition, rows = pickle.loads(message[1:])
                if partition not in views:
                    path = _path(directory, partition)
                    try:
                        path.unlink(missing_ok=True)
                    except OSError as exc:
                        raise RunError(f"cannot open the subjects' view {path}: {exc}") from exc
                    view = SubjectView(path, max_cached=_CACHED_PAIRS, max_row_bytes=RECORD_BYTES)
                    view.load(rows)
                    views[partition] = view
                answer(len(rows))
            elif kind == b"Q":
                partition, spellings = pickle.loads(message[1:])
                answer(views[partition].find(spellings))
            elif kind == b"D":
                drop(int.from_bytes(message[1:5], "big"))
    except Exception as exc:  # the worker reports it, without its values
        writer.send_bytes(error_answer(exc, process_name(directory)))
        return 1
    finally:
        for partition in list(views):
            drop(partition)


def main(argv: list[str]) -> int:
    collect_garbage_seldom()
    reader, writer, (directory,) = connections(argv)
    return _serve(reader, writer, Path(directory))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
