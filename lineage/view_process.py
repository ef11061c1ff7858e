"""The per-subject view of an embedded run, folded in a process of its own.

Folding view facts (:mod:`lineage.view`) into pairs and writing them to SQLite costs
a run about a fifth of its time on a typical day and more in a breach storm, all of
it on the thread that judges. :class:`RunView` takes the facts of a run: a small run
folds them itself at the end, as before; once a run has made :data:`DETACH_AFTER`
facts, a child process (``python -m lineage.view_process``) is started and folds
them on another core while the run goes on judging.

The facts cross a pipe in batches as JSON arrays (orjson: about a quarter of a
microsecond a fact), written by a thread of the run so that judging goes on while the
child writes its file, in the order judging emitted them, and the child folds them
into the same :class:`~lineage.view.SubjectView` the run would have kept itself: the
file it writes is the same. At the end the run sends what retention and the file's
metadata need and waits for the child to write, close and answer (records purged,
newest event time). An error of the child (a full disk) reaches the run as the
:class:`~lineage.errors.RunError` it would have raised itself.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from lineage.errors import RunError
from lineage.view import Consent, Flow, Retracted, SubjectView, ViewFact

__all__ = ["DETACH_AFTER", "RunView"]

#: Facts a run holds before it hands the view to a child process: below it, starting
#: an interpreter (about 50 ms) would cost more than folding in the run.
DETACH_AFTER = 20_000
#: Facts sent to the child in one message.
_BATCH = 4_096
#: Batches waiting for the sender thread (about 300 KiB each): the run goes on judging
#: while the child writes its file, and waits only when the child falls this far behind.
_QUEUED = 16
#: A fact's kind by its length on the wire (each is a tuple of its fields).
_KINDS: dict[int, Any] = {len(Flow._fields): Flow, len(Consent._fields): Consent}
_KINDS[len(Retracted._fields)] = Retracted
assert len(_KINDS) == 3, "view facts must differ in length to be told apart on the wire"


class RunView:
    """The per-subject view of one embedded run, at ``path``."""

    def __init__(self, path: Path, *, detach_after: int | None = None) -> None:
        self.path = path
        self._detach_after = DETACH_AFTER if detach_after is None else detach_after
        self._facts: list[ViewFact] = []
        self._child: subprocess.Popen[bytes] | None = None
        self._to_child: Connection | None = None
        self._from_child: Connection | None = None
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED)
        self._sender: threading.Thread | None = None
        self._broken = False  # the sender could not write to the child

    def fold(self, facts: list[ViewFact]) -> None:
        """Take view facts, in the order judging emitted them."""
        self._facts.extend(facts)
        if len(self._facts) >= (_BATCH if self._child is not None else self._detach_after):
            self._ship()

    def finish(self, newest: float, retention_days: int, meta: dict[str, str]) -> tuple[int, float]:
        """Fold what is left, purge the provision records past retention, write the view
        and close it. Returns (records purged, the newest event time the view has seen).
        """
        if self._child is None:
            view = SubjectView(self.path)
            try:
                view.fold(self._facts)
                self._facts = []
                return _finish(view, newest, retention_days, meta)
            finally:
                view.close()
        self._ship()
        assert self._to_child is not None and self._from_child is not None
        self._send(b"E" + orjson.dumps([_finite(newest), retention_days, meta]))
        self._stop_sender()
        if self._broken:
            raise self._died()
        try:
            answer = orjson.loads(self._from_child.recv_bytes())
        except (EOFError, OSError):
            raise self._died() from None
        self.close()
        if "error" in answer:
            raise RunError(answer["error"])
        return answer["purged"], _from_finite(answer["newest"])

    def close(self) -> None:
        """Stop the child, if one runs (a run that fails stops it unfinished)."""
        child, self._child = self._child, None
        if child is not None and child.poll() is None:
            child.kill()  # a write the sender is blocked in fails, and it stops
        self._stop_sender()
        for conn in (self._to_child, self._from_child):
            if conn is not None:
                conn.close()
        self._to_child = self._from_child = None
        if child is not None:
            child.wait()

    def _ship(self) -> None:
        if self._child is None:
            self._start()
        facts, self._facts = self._facts, []
        for start in range(0, len(facts), _BATCH):
            self._send(b"F" + orjson.dumps(facts[start : start + _BATCH], default=tuple))

    def _start(self) -> None:
        child_reads, to_child = os.pipe()
        from_child, child_writes = os.pipe()
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "lineage.view_process", str(child_reads),
                 str(child_writes), str(self.path)],
                pass_fds=(child_reads, child_writes),
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except OSError as exc:
            for fd in (to_child, child_reads, child_writes, from_child):
                os.close(fd)
            raise RunError(f"cannot start the subjects' view process: {exc.strerror}") from exc
        os.close(child_reads)
        os.close(child_writes)
        self._to_child = Connection(to_child, readable=False)
        self._from_child = Connection(from_child, writable=False)
        self._sender = threading.Thread(
            target=self._send_all, args=(self._to_child,), name="lineage-view-sender", daemon=True
        )
        self._sender.start()

    def _send(self, message: bytes) -> None:
        if self._broken:
            raise self._died()
        self._queue.put(message)

    def _send_all(self, conn: Connection) -> None:
        """The sender thread: writes the queued batches to the child, so that judging never
        waits while the child writes its file (the write releases the GIL)."""
        messages = self._queue
        while (message := messages.get()) is not None:
            try:
                conn.send_bytes(message)
            except OSError:
                self._broken = True
                while messages.get() is not None:  # let the run queue on; it sees _broken
                    pass
                return

    def _stop_sender(self) -> None:
        """Let the sender write what is queued, and end."""
        sender, self._sender = self._sender, None
        if sender is not None:
            self._queue.put(None)
            sender.join()

    def _died(self) -> RunError:
        """What became of a child that stopped answering: its own error, when it sent one."""
        error = None
        if self._from_child is not None and self._from_child.poll(0):
            with contextlib.suppress(EOFError, OSError, orjson.JSONDecodeError):
                error = orjson.loads(self._from_child.recv_bytes()).get("error")
        child = self._child
        self.close()
        if error is not None:
            return RunError(error)
        code = child.returncode if child is not None else None
        return RunError(f"the subjects' view process for {self.path} stopped (exit code {code})")


def _finite(value: float) -> float | None:
    """``value`` as JSON can carry it: None for -inf (nothing seen yet)."""
    return None if value == float("-inf") else value


def _from_finite(value: float | None) -> float:
    """What :func:`_finite` made of a value, back."""
    return float("-inf") if value is None else value


def _finish(
    view: SubjectView, newest: float, retention_days: int, meta: dict[str, str]
) -> tuple[int, float]:
    view.observe(newest)
    purged = view.retain(retention_days)
    for key, value in meta.items():
        view.set_meta(key, value)
    view.flush(rows_wanted=False)
    return purged, view.newest


def _serve(reader: Connection, writer: Connection, path: Path) -> int:
    """The child: fold the facts the run sends, then finish as it asks."""
    try:
        view = SubjectView(path)
        try:
            while True:
                message = reader.recv_bytes()
                if message[:1] == b"F":
                    view.fold([_KINDS[len(row)](*row) for row in orjson.loads(message[1:])])
                    if reader.poll(0):
                        view.fold_now()
                    else:  # ahead of the run: write now what the end would have to
                        view.flush(rows_wanted=False)
                    continue
                newest, days, meta = orjson.loads(message[1:])
                purged, seen = _finish(view, _from_finite(newest), days, meta)
                writer.send_bytes(orjson.dumps({"purged": purged, "newest": _finite(seen)}))
                return 0
        finally:
            view.close()
    except RunError as exc:
        writer.send_bytes(orjson.dumps({"error": str(exc)}))
        return 1
    except EOFError:  # the run stopped without finishing: nothing to write
        return 1


def main(argv: list[str]) -> int:
    # Ctrl-C reaches the whole process group: the run answers it and stops this child.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    read_fd, write_fd, path = argv
    reader = Connection(int(read_fd), writable=False)
    writer = Connection(int(write_fd), readable=False)
    return _serve(reader, writer, Path(path))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
