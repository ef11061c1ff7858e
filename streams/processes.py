"""``lineage worker --processes N``: one worker that judges on N processes.

A worker judges on one thread: one core, whatever the machine has (its decoding and
view processes take part of another). With ``LINEAGE_PROCESSES`` above 1 the command
starts that many worker processes in the worker's consumer group instead, and judges
nothing itself. Kafka splits the partitions between them as between workers on
different machines: each process keeps the state of its own partitions (changelog
backed), and a rebalance moves partitions between them with the same guarantees. They
share nothing but the group, and their outputs are those of one worker.

Each process ``i`` (from 0) runs ``lineage worker`` with this worker's settings, but

- ``LINEAGE_PROCESSES=1``;
- its web pages on ``web_port + 1 + i``: each serves ``/health`` and ``/metrics`` of
  its own, ``/graph`` of every partition, and ``/subjects/...`` of any subject
  (forwarded to the process that holds its partition, as between workers). This
  process serves the worker's own ``web_port`` (:mod:`streams.front`): one
  ``/health`` and one ``/metrics`` for all of them, and every other page from one of
  them;
- its state in ``state_dir/process-i`` (a RocksDB store is one process's);
- the redaction key: when none is set, one random key for all of them, so that the
  same value is masked with the same token whichever process judged it.

This process checks the broker and creates the topics once, before it starts them.
It stops them all (SIGTERM, a graceful stop each) when it receives SIGTERM or SIGINT,
and when any one of them exits: the worker then exits as a whole, with that process's
exit code, for its supervisor (systemd, Kubernetes) to start it again. It passes
SIGUSR1 (faust logs its tasks) and SIGQUIT (every thread's stack to stderr) on. Each
process also stops when this one is gone, however it ended (:func:`watch_supervisor`):
a pipe from this process reaches end of file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from streams.front import Front, reachable_host
from streams.settings import Settings, process_port

__all__ = ["child_environment", "run_processes", "watch_supervisor"]

log = logging.getLogger("lineage.worker")

#: Exit code of a worker one of whose processes exited 0 without being asked to stop.
UNASKED_EXIT = 1


def child_environment(
    settings: Settings,
    given: Mapping[str, Any],
    index: int,
    environ: Mapping[str, str],
    redaction_key: str | None,
) -> dict[str, str]:
    """The environment of process ``index``: ``environ``, the settings given on the
    command line (``given``, by field name) as the variables they stand for, and what is
    the process's own (module docstring)."""
    env = dict(environ)
    for name, value in given.items():
        if value is not None:
            env[f"LINEAGE_{name.upper()}"] = str(value)
    env["LINEAGE_PROCESSES"] = "1"
    env["LINEAGE_WEB_PORT"] = str(process_port(settings.web_port, index))
    env["LINEAGE_STATE_DIR"] = str(Path(settings.state_dir) / f"process-{index}")
    if redaction_key is not None:
        env.pop("LINEAGE_REDACTION_KEY_FILE", None)
        env["LINEAGE_REDACTION_KEY"] = redaction_key
    return env


def _exit_code(status: int) -> int:
    """A wait status as a shell says it: the exit code, or 128 + the signal."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def run_processes(
    settings: Settings,
    given: Mapping[str, Any],
    loglevel: str,
    web: Sequence[socket.socket] = (),
) -> int:
    """Run ``settings.process_count`` worker processes until they stop; the exit code
    (module docstring). ``given``: the settings given on the command line, by field name
    (the processes read them from their environment). ``web``: the sockets that listen
    on the worker's web port, served by :class:`~streams.front.Front` meanwhile."""
    count = settings.process_count
    front = None
    if web:
        host = reachable_host(settings.web_host)
        front = Front(web, host, [process_port(settings.web_port, i) for i in range(count)]).start()
    key = None
    if settings.redaction_key is None:
        key = secrets.token_hex(32)
        log.warning(
            "LINEAGE_REDACTION_KEY is not set: this worker's %d processes share a random key; "
            "its redaction tokens will differ from other workers' and after a restart",
            count,
        )
    watched, watching = os.pipe()  # the processes read end of file when this one ends
    children: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}
    stopping = False

    def pass_on(signum: int, frame: FrameType | None = None) -> None:
        _signal_all(children, signum)

    def stop_all(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(children, signal.SIGTERM)

    previous = {s: signal.signal(s, stop_all) for s in (signal.SIGTERM, signal.SIGINT)}
    # faust's dump of its tasks, and the dump of every thread's stack, each process's.
    previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, pass_on)
    previous[signal.SIGQUIT] = signal.signal(signal.SIGQUIT, pass_on)
    try:
        try:
            for index in range(count):
                command = [sys.executable, "-m", "lineage.cli", "worker", "--loglevel", loglevel]
                child = subprocess.Popen(
                    [*command, "--supervised-by", str(watched)],
                    env=child_environment(settings, given, index, os.environ, key),
                    pass_fds=(watched,),
                    stdin=subprocess.DEVNULL,
                    # A group of its own: Ctrl-C reaches this process, which stops each
                    # process once, not every process of the terminal's group at once.
                    process_group=0,
                )
                children[child.pid] = (index, child)
                if stopping:  # a signal came while they were being started
                    stop_all()
        except OSError as exc:
            log.error("cannot start worker process %d: %s", len(children), exc.strerror)
            stop_all()
            for _, child in children.values():
                child.wait()
            return UNASKED_EXIT
        finally:
            os.close(watched)
        if settings.web_port:
            first, last = (
                process_port(settings.web_port, 0),
                process_port(settings.web_port, count - 1),
            )
            ports = f", web port {settings.web_port} (processes {first}-{last})"
        else:
            ports = ""
        pids = ", ".join(map(str, children))
        print(f"lineage worker: {count} processes (pids {pids}){ports}", file=sys.stderr)
        return _wait(children, stop_all, lambda: stopping)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(watching)
        if front is not None:
            front.close()


def _signal_all(children: dict[int, tuple[int, subprocess.Popen[bytes]]], signum: int) -> None:
    """Send ``signum`` to each process not yet reaped. With os.kill, not
    Popen.send_signal: that polls, and would reap a process that :func:`_wait` must see
    exit. Until it is reaped, a process keeps its pid."""
    for _, child in children.values():
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)


def _wait(
    children: dict[int, tuple[int, subprocess.Popen[bytes]]],
    stop_all: Callable[[], None],
    stopping: Callable[[], bool],
) -> int:
    """Reap the processes as they exit; the first to exit unasked stops the others."""
    code = 0
    left = len(children)
    while left:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # none left (reaped elsewhere): nothing more to hear
            break
        if pid not in children:
            continue
        index, child = children[pid]
        child.returncode = _exit_code(status)  # reaped here, not by Popen
        left -= 1
        if not stopping():
            code = child.returncode or UNASKED_EXIT
            log.error(
                "worker process %d (pid %d) exited with code %d: stopping the other %d",
                index,
                pid,
                child.returncode,
                left,
            )
            stop_all()
        elif child.returncode and not code:
            code = child.returncode
    return code


def watch_supervisor(fd: int) -> None:
    """In a process of :func:`run_processes`: stop gracefully (SIGTERM to itself) when
    the pipe ``fd`` from the supervising process reaches end of file, that is when that
    process is gone, even killed."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1):
                pass
        log.warning("the worker's supervising process is gone: stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lineage-supervisor-watch", daemon=True).start()
