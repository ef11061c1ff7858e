"""A module of ours run in a child process, spoken to in messages over two pipes.

The per-subject view is folded and written on another core than judging's, by a child
process: an embedded run's (:mod:`lineage.view_process`) and a worker's
(:mod:`streams.views`); a long embedded run's events are decoded ahead of it by another
(:mod:`lineage.decode_process`). :class:`Child` is their common part: it starts
``python -m <module> <read fd> <write fd> <args...>``, hands each message to a thread of
its own that writes it to the child, so that the caller goes on while the child works
(and waits only when :data:`QUEUED` messages are behind), and reads the child's answers
when the caller asks for one. A child that stops, or cannot be written to, surfaces as
the :class:`~lineage.errors.RunError` it sent, if any, else one naming it and its exit
code.

A caller that has imported the module, and runs no other thread, may instead have the
child forked from itself (``fork=True``): the child calls the module's ``main`` with the
same arguments, and starts in a few milliseconds, where a new interpreter takes a third
of a second to import the event models again. ``lineage run`` forks its two children
that way; a worker, whose event loop and Kafka clients run threads, starts them anew.

A child that only works for its caller may yield the cores to it (``yields=True``): it
runs :data:`YIELDING` steps of ``nice`` below the caller. ``lineage run`` judges in one
process, and the run takes as long as that process: on two cores, at one priority with
its two busy children, it shared its core with them (a breach storm's run had 14.9 CPU
seconds in 17.0); yielding, they take what it leaves (docs/benchmarks.md).

In the child, :func:`connections` opens its two ends from its command line.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import queue
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NoReturn

import orjson

from lineage.errors import RunError

__all__ = ["QUEUED", "YIELDING", "Child", "connections"]

#: Messages waiting for the writer thread: past them, :meth:`Child.send` waits.
QUEUED = 16
#: How many steps of ``nice`` a child that yields runs below its caller. From 4 on,
#: the scheduler's weights of two such children together are below the caller's, which
#: then keeps a whole core of two while both are busy; at 5 each weighs a third of the
#: caller (335 against 1,024), and keeps that share against the machine's other work.
YIELDING = 5


class Child:
    """A child process running ``module``, named ``name`` in errors ("the subjects' view
    process for ...")."""

    def __init__(
        self,
        module: str,
        args: list[str],
        name: str,
        *,
        pass_fds: tuple[int, ...] = (),
        fork: bool = False,
        yields: bool = False,
    ) -> None:
        self.name = name
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUED)
        self._broken = False  # the writer could not write to the child
        child_reads, to_child = os.pipe()
        from_child, child_writes = os.pipe()
        argv = [str(child_reads), str(child_writes), *args]
        try:
            self.process: subprocess.Popen[bytes] | Forked
            if fork and threading.active_count() == 1:
                self.process = Forked(module, argv, (child_reads, child_writes, *pass_fds))
            else:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", module, *argv],
                    pass_fds=(child_reads, child_writes, *pass_fds),
                    stdin=subprocess.DEVNULL,
                    # A group of its own: Ctrl-C or a SIGTERM to the caller's group (a
                    # supervisor stopping it) is the caller's to answer, and the child
                    # ends when the caller closes its pipe, however the caller ends.
                    process_group=0,
                )
        except OSError as exc:
            for fd in (to_child, child_reads, child_writes, from_child):
                os.close(fd)
            raise RunError(f"cannot start {name}: {exc.strerror}") from exc
        os.close(child_reads)
        os.close(child_writes)
        if yields:
            _yield_to_caller(self.process.pid)
        self._to: Connection | None = Connection(to_child, readable=False)
        self._from: Connection | None = Connection(from_child, writable=False)
        # Started by the first message: until then the caller runs no thread of ours,
        # and may fork another child.
        self._writer: threading.Thread | None = None

    def send(self, message: bytes) -> None:
        """Queue ``message`` for the child, in order."""
        if self._broken:
            raise self.died()
        if self._writer is None:
            if self._to is None:  # closed
                raise self.died()
            self._writer = threading.Thread(
                target=self._write_all, args=(self._to,), name="lineage-child-writer", daemon=True
            )
            self._writer.start()
        self._queue.put(message)

    def recv(self) -> bytes:
        """The child's next answer (blocks until it comes). An answer ``{"error": ...}``
        (orjson) is for the caller to read: see :func:`error_of`."""
        if self._broken or self._from is None:
            raise self.died()
        try:
            return self._from.recv_bytes()
        except (EOFError, OSError):
            raise self.died() from None

    def next_answer(self) -> bytes | None:
        """The child's next answer, or None once its end of the pipe is closed: for a
        thread that reads every answer as it comes. Unlike :meth:`recv` it leaves the
        child alone at the end (its owner stops it, and may close the pipe meanwhile)."""
        conn = self._from
        if conn is None:
            return None
        try:
            return conn.recv_bytes()
        except (EOFError, OSError, TypeError, ValueError):  # ended, or closed by the owner
            return None

    def ready(self) -> bool:
        """Whether an answer (or the child's end) waits to be read."""
        if self._broken or self._from is None:
            raise self.died()
        try:
            return self._from.poll(0)
        except OSError:
            raise self.died() from None

    def finish_sending(self) -> None:
        """Let the writer write what is queued, and end: the child reads its end."""
        self._stop_writer()
        if self._broken:
            raise self.died()

    def close(self) -> None:
        """Stop the child (killed if it still runs) and close both pipes."""
        process = self.process
        if process.poll() is None:
            process.kill()  # a write the writer is blocked in fails, and it stops
        self._stop_writer()
        for conn in (self._to, self._from):
            if conn is not None:
                conn.close()
        self._to = self._from = None
        process.wait()

    def wait(self) -> int:
        """Close our end of the pipe to the child and wait for it to end."""
        self.finish_sending()
        if self._to is not None:
            self._to.close()
            self._to = None
        return self.process.wait()

    def died(self) -> RunError:
        """What became of a child that stopped answering: its own error, when it sent
        one, else one naming it and its exit code. The child is stopped."""
        error = None
        if self._from is not None:
            with contextlib.suppress(EOFError, OSError, orjson.JSONDecodeError):
                if self._from.poll(0):
                    error = error_of(self._from.recv_bytes())
        self.close()
        if error is not None:
            return RunError(error)
        return self.ended()

    def ended(self) -> RunError:
        """The error that names this child and its exit code, once it has ended: waits
        for the process."""
        return RunError(f"{self.name} stopped (exit code {self.process.wait()})")

    def _stop_writer(self) -> None:
        """Let the writer thread write what is queued, and wait for it to end."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join()

    def _write_all(self, conn: Connection) -> None:
        """The writer thread: writes the queued messages to the child, so that the caller
        never waits while the child works (the write releases the GIL)."""
        messages = self._queue
        while (message := messages.get()) is not None:
            try:
                conn.send_bytes(message)
            except OSError:
                self._broken = True
                while messages.get() is not None:  # let the caller queue on; it sees _broken
                    pass
                return


class Forked:
    """A child forked from the caller to run ``main(argv)`` of ``module``: as much of
    :class:`subprocess.Popen` as :class:`Child` and its tests use. The child keeps the
    descriptors ``keep`` (and the standard ones, its input on ``/dev/null``), sits in a
    process group of its own, as a started child does, and ends with ``main``'s code
    (1, with the traceback on standard error, when ``main`` raised) without running
    what the caller registered to run at its exit."""

    def __init__(self, module: str, argv: list[str], keep: tuple[int, ...]) -> None:
        main: Callable[[list[str]], int] = importlib.import_module(module).main
        # What the caller's buffers hold is the caller's to write, once.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _forked(main, argv, keep)
        # Its group set from both sides, as shells do: whichever runs first, the child
        # is out of the caller's group once this returns.
        with contextlib.suppress(OSError):  # ended already
            os.setpgid(pid, pid)
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _forked(main: Callable[[list[str]], int], argv: list[str], keep: tuple[int, ...]) -> NoReturn:
    """The forked child: ``main(argv)``, then its end."""
    code = 1
    try:
        os.setpgid(0, 0)
        nothing = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nothing, 0)
        os.close(nothing)
        low = 3  # every descriptor but the standard ones and ``keep``: the caller's files
        for fd in sorted({fd for fd in keep if fd >= 3}):  # and other children's pipes
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, os.sysconf("SC_OPEN_MAX"))
        # Its own output streams, on its standard descriptors, as a started child has
        # (the caller's may have been objects writing elsewhere).
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's own
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
        # The caller's objects stay as they are: the collector never walks them here.
        gc.freeze()
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _yield_to_caller(pid: int) -> None:
    """Run child ``pid`` :data:`YIELDING` steps of ``nice`` below this process. Set from
    here, as the child starts, for a forked and a started child alike: the threads it
    may start later take its priority."""
    nice = min(os.getpriority(os.PRIO_PROCESS, 0) + YIELDING, 19)
    # A child that ended already, or a system that refuses: it runs as it is.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, nice)


def error_of(answer: bytes) -> str | None:
    """The error a child answered with (``{"error": "..."}``), or None."""
    if answer[:10] != b'{"error":"':
        return None
    error = orjson.loads(answer).get("error")
    return error if isinstance(error, str) else None


def error_answer(exc: BaseException, name: str) -> bytes:
    """The answer of child ``name`` that failed with ``exc``: a
    :class:`~lineage.errors.RunError`'s own message (ours: a path and SQLite's reason),
    else the exception's type and where it was raised, never its message, so that no
    value the child held (a subject) reaches a log."""
    if isinstance(exc, RunError):
        return orjson.dumps({"error": str(exc)})
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        where = f" at {Path(last.filename).name}:{last.lineno} ({last.name})"
    return orjson.dumps({"error": f"{name} failed: {type(exc).__name__}{where}"})


def connections(argv: list[str]) -> tuple[Connection, Connection, list[str]]:
    """In the child: (what the parent sends, where answers go, the other arguments)."""
    read_fd, write_fd, *rest = argv
    return Connection(int(read_fd), writable=False), Connection(int(write_fd), readable=False), rest
