"""The per-subject view of an embedded run, folded in a process of its own.

Folding view facts (:mod:`lineage.view`) into pairs and writing them to SQLite costs
a run about a fifth of its time on a typical day and more in a breach storm, all of
it on the thread that judges. :class:`RunView` takes the facts of a run: a small run
folds them itself at the end, as before; once a run has made :data:`DETACH_AFTER`
facts, or at its start when its file is decoded ahead (:meth:`RunView.detach`), a
child process running this module is started (forked from the run when it can:
:class:`~lineage.child.Child`) and folds them on another core while the run goes on
judging.

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

import sys
from multiprocessing.connection import Connection
from pathlib import Path

import orjson

from lineage.child import Child, connections, error_answer, error_of
from lineage.errors import RunError
from lineage.garbage import collect_garbage_seldom, cycles_left_alone
from lineage.view import SubjectView, ViewFact, decode_facts, encode_facts, process_name

__all__ = ["DETACH_AFTER", "RunView"]

#: Facts a run holds before it hands the view to a child process: below it, starting
#: an interpreter (about 50 ms) would cost more than folding in the run.
DETACH_AFTER = 20_000
#: Facts sent to the child in one message.
_BATCH = 4_096
#: Changes (pairs, provision records, consents) the child holds before it writes them
#: while it waits for the run. Each write rewrites every page of the file its rows fall
#: in, and rows of many subjects fall in most pages: in a breach storm, writing at every
#: wait made 44 writes of 4,000 pairs each, about a fifth of the child's time in
#: SQLite's reads and writes of pages.
WRITE_AFTER = 16_384


class RunView:
    """The per-subject view of one embedded run, at ``path``."""

    def __init__(self, path: Path, *, detach_after: int | None = None) -> None:
        self.path = path
        self._detach_after = DETACH_AFTER if detach_after is None else detach_after
        self._facts: list[ViewFact] = []
        self._child: Child | None = None
        self._done: tuple[int, float] | None = None  # what end() made, without a child

    def fold(self, facts: list[ViewFact]) -> None:
        """Take view facts, in the order judging emitted them."""
        self._facts.extend(facts)
        if len(self._facts) >= (_BATCH if self._child is not None else self._detach_after):
            self._ship()

    def detach(self) -> None:
        """Start the child now, not after :data:`DETACH_AFTER` facts: a run that knows
        it is long (its file is decoded ahead) starts it before it runs a thread, so
        that the child is forked from it (:class:`~lineage.child.Child`)."""
        if self._child is None:
            self._child = self._start()

    def finish(self, newest: float, retention_days: int, meta: dict[str, str]) -> tuple[int, float]:
        """Fold what is left, purge the provision records past retention, write the view
        and close it. Returns (records purged, the newest event time the view has seen).
        """
        self.end(newest, retention_days, meta)
        return self.result()

    def end(self, newest: float, retention_days: int, meta: dict[str, str]) -> None:
        """:meth:`finish`'s first half: a child is told to finish and the run goes on
        (writing the graph exports) while it does; :meth:`result` awaits it. Without a
        child, the view is finished here."""
        if self._child is None:
            view = SubjectView(self.path)
            try:
                view.fold(self._facts)
                self._facts = []
                self._done = _finish(view, newest, retention_days, meta)
            finally:
                view.close()
            return
        try:
            self._ship()
            child = self._child
            assert child is not None
            child.send(b"E" + orjson.dumps([_finite(newest), retention_days, meta]))
            child.finish_sending()
        except BaseException:
            self.close()
            raise

    def result(self) -> tuple[int, float]:
        """What :meth:`end` made: (records purged, the newest event time seen)."""
        if self._child is None:
            assert self._done is not None, "result() before end()"
            return self._done
        try:
            answer = self._child.recv()
        finally:
            self.close()
        error = error_of(answer)
        if error is not None:
            raise RunError(error)
        done = orjson.loads(answer)
        return done["purged"], _from_finite(done["newest"])

    def close(self) -> None:
        """Stop the child, if one runs (a run that fails stops it unfinished)."""
        child, self._child = self._child, None
        if child is not None:
            child.close()

    def _start(self) -> Child:
        return Child(
            "lineage.view_process", [str(self.path), str(WRITE_AFTER)], process_name(self.path),
            fork=True, yields=True,
        )  # fmt: skip

    def _ship(self) -> None:
        if self._child is None:
            self._child = self._start()
        facts, self._facts = self._facts, []
        try:
            for start in range(0, len(facts), _BATCH):
                self._child.send(b"F" + encode_facts(facts[start : start + _BATCH]))
        except RunError:
            self.close()
            raise


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


def _serve(reader: Connection, writer: Connection, path: Path, write_after: int) -> int:
    """The child: fold the facts the run sends, write them when it waits for the run
    and holds ``write_after`` changes, then finish as it asks."""
    try:
        view = SubjectView(path)
        try:
            while True:
                message = reader.recv_bytes()
                if message[:1] == b"F":
                    view.fold(decode_facts(memoryview(message)[1:]))
                    view.fold_now()
                    if not reader.poll(0) and view.unwritten() >= write_after:
                        view.flush(rows_wanted=False)
                    continue
                newest, days, meta = orjson.loads(message[1:])
                purged, seen = _finish(view, _from_finite(newest), days, meta)
                writer.send_bytes(orjson.dumps({"purged": purged, "newest": _finite(seen)}))
                return 0
        finally:
            view.close()
    except EOFError:  # the run stopped without finishing: nothing to write
        return 1
    except Exception as exc:  # the run reports it, without its values
        writer.send_bytes(error_answer(exc, process_name(path)))
        return 1


def main(argv: list[str]) -> int:
    collect_garbage_seldom()
    reader, writer, (path, write_after) = connections(argv)
    # Folding makes no cyclic garbage (tests/test_garbage.py), and the process lives
    # one run: the collector only walked the pairs held, five times in a breach storm,
    # 0.26 s of the process's 3.5 s.
    with cycles_left_alone():
        return _serve(reader, writer, Path(path), int(write_after))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
