"""The process that runs the worker: faust's Worker, made fit for production.

- No terminal spinner: it turns the root logger to DEBUG so that it can spin on
  every record, and then every debug call of aiokafka and faust builds a record
  (about a tenth of a busy worker's time).
- ``kill -USR1 <pid>`` logs where each task of the worker waits (file, line and
  function of every await), never the frames' variables: those can hold the raw
  events the monitor watches.
- ``kill -QUIT <pid>`` writes every thread's stack to stderr (file, line and
  function, as ``faulthandler`` does; no variables) and the worker goes on. It
  answers when the event loop cannot: a loop blocked in a call that never returns
  runs no task dump, and a stop that hangs shows where.
- While a broker is away the Kafka clients log an error on every retry, about a
  hundred lines a second. :class:`RepeatFilter` lets each kind of message of a
  library through once per 30 seconds, with a count of those it held back.
- At ``--loglevel debug`` aiokafka, faust and apprise print the records they send
  and fetch (changelog values: subjects, consent references) and the URLs they
  post to, with their tokens: :class:`lineage.logguard.LogGuard` rewrites or drops
  those records. Both filters go on the root logger's handlers as soon as faust has
  configured logging (faust's ``on_setup_root_logger`` hook), before any partition
  is recovered.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
from typing import Any

import faust

from lineage.logguard import install_log_guard
from streams.faust_internals import quiet_runner

__all__ = [
    "RepeatFilter",
    "awaiting",
    "install_repeat_filter",
    "install_stack_dump",
    "lineage_runner",
]

log = logging.getLogger("lineage.worker")

#: Loggers whose repeated warnings and errors are held back (our own never are).
LIBRARIES = ("aiokafka", "kafka", "faust", "mode", "apprise")


def awaiting(coro: Any) -> list[str]:
    """``file:line function`` of each coroutine a task's coroutine awaits, outermost first."""
    lines = []
    while coro is not None:
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "ag_frame", None)
            or getattr(coro, "gi_frame", None)
        )
        if frame is not None:
            code = frame.f_code
            lines.append(f"{code.co_filename}:{frame.f_lineno} {code.co_name}")
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "ag_await", None)
            or getattr(coro, "gi_yieldfrom", None)
        )
    return lines


class RepeatFilter(logging.Filter):
    """Lets each kind of library warning or error through once per ``every`` seconds.

    A kind is the logger and the message's format string (not its arguments, which
    hold hosts, node ids and error texts that vary from one retry to the next). The
    record let through after a quiet spell says how many it held back.
    """

    def __init__(self, every: float = 30.0, libraries: tuple[str, ...] = LIBRARIES) -> None:
        super().__init__()
        self.every = every
        self.libraries = libraries
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.libraries):
            return True
        kind = (record.name, str(record.msg))
        now = record.created
        if now - self._last.get(kind, float("-inf")) < self.every:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        held = self._held.pop(kind, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self.every:g} s)"
        self._last[kind] = now
        return True


def install_repeat_filter(every: float = 30.0) -> RepeatFilter:
    """Put one :class:`RepeatFilter` on every handler of the root logger.

    Records of library loggers reach the root's handlers without passing the root
    logger's own filters, so the filter sits on the handlers. Call it once logging
    is configured (faust's Worker configures it when it starts).
    """
    shared = RepeatFilter(every)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(shared)
    return shared


def install_stack_dump() -> None:
    """SIGQUIT: every thread's stack to stderr, from the signal handler itself (so even
    while the main thread is blocked), and nothing else: the process goes on."""
    faulthandler.register(signal.SIGQUIT, all_threads=True, chain=False)


def lineage_runner(app: faust.App, loglevel: str) -> faust.Worker:
    """faust's Worker without the spinner, with a task dump that shows no data, and with
    the log filters on the handlers faust configures."""

    def dump_tasks() -> None:
        tasks = asyncio.all_tasks(runner.loop)
        log.warning("%d tasks (kill -USR1):", len(tasks))
        for task in sorted(tasks, key=lambda t: t.get_name()):
            where = "\n    ".join(awaiting(task.get_coro())) or "-"
            log.warning("task %s waits at:\n    %s", task.get_name(), where)

    runner = quiet_runner(app, loglevel, dump_tasks)
    install_stack_dump()
    configured = runner.on_setup_root_logger

    def on_setup_root_logger(logger: logging.Logger, level: int) -> None:
        configured(logger, level)
        install_log_guard()
        install_repeat_filter()

    # faust's public hook, called once mode has put the root logger's handlers in place.
    runner.on_setup_root_logger = on_setup_root_logger  # type: ignore[method-assign]
    return runner
