"""The process that runs the worker: faust's Worker, made fit for production.

- faust's terminal spinner sets the root logger to DEBUG so that it can spin on every
  record; then every debug call of aiokafka and faust builds a record (about a tenth
  of a busy worker's time). The log lines are the same without it.
- ``kill -USR1 <pid>`` logs where each task of the worker waits (file, line and
  function of every await, for a stuck worker). mode's own handler prints each
  frame's local variables too, and those can hold the raw events the monitor
  watches: they must not reach the log.
- While a broker is away, aiokafka's "Unable connect to node" errors are let through
  once per 30 seconds, with a count of the ones held back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

__all__ = ["RepeatFilter", "awaiting", "lineage_runner"]

log = logging.getLogger("lineage.worker")


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
    """Lets one record of a kind through per ``every`` seconds, and says how many it held.

    aiokafka logs "Unable connect to node" at ERROR on every retry while a broker is
    away: about a hundred lines a second that bury everything else.
    """

    def __init__(self, prefix: str, every: float = 30.0) -> None:
        super().__init__()
        self.prefix = prefix
        self.every = every
        self._last = float("-inf")
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        now = record.created
        if now - self._last < self.every:
            self._held += 1
            return False
        if self._held:
            held = f" (and {self._held} more like it in the last {self.every:g} s)"
            record.msg = f"{record.msg}{held}"
        self._last, self._held = now, 0
        return True


def lineage_runner(app: faust.App, loglevel: str) -> faust.Worker:
    """faust's Worker without the spinner, and with a task dump that shows no data.

    The Worker is configured, not subclassed: a subclass of faust's Worker stopped
    consuming events altogether (seen in the Kafka tests, cause not found).
    """
    runner = faust.Worker(app, loglevel=loglevel)
    runner.spinner = None
    logging.getLogger("aiokafka").addFilter(RepeatFilter("Unable connect to node"))

    def dump_tasks() -> None:
        tasks = asyncio.all_tasks(runner.loop)
        log.warning("%d tasks (kill -USR1):", len(tasks))
        for task in sorted(tasks, key=lambda t: t.get_name()):
            where = "\n    ".join(awaiting(task.get_coro())) or "-"
            log.warning("task %s waits at:\n    %s", task.get_name(), where)

    # mode binds its SIGUSR1 handler when the loop starts: replace it on the instance.
    runner._on_sigusr1 = dump_tasks  # type: ignore[method-assign]
    return runner
