"""The ``lineage`` command line, assembled above the core and the stream processors.

The core (:mod:`lineage`) and the worker (:mod:`streams`) know nothing of the
command line; it imports them, the worker only when a Kafka command runs. Every error
of ours that reaches the top is one line on standard error and an exit code:
0 done; 2 usage, settings or policy errors; 3 ``lineage run --fail-on`` or ``lineage
replay --fail-on-new`` met; 1 anything else that stopped the command (an unreadable
input, an unreachable broker).
"""

from typing import NoReturn

from lineage.cli.core import main
from lineage.garbage import leave_to_exit

# Imported when named: ``lineage run`` starts without them (the Kafka commands' module
# alone took 57 ms, asyncio with it).
main.add_lazy("policy", "lineage.cli.policy:policy")
main.add_lazy("replay", "lineage.cli.replay:replay_command")
main.add_lazy("worker", "lineage.cli.kafka:worker")
main.add_lazy("export", "lineage.cli.kafka:export")


def command() -> NoReturn:
    """The ``lineage`` program: :data:`main` as the whole of a process. Its exit, of
    any code, ends the process, which leaves the objects it holds to that end
    (:func:`~lineage.garbage.leave_to_exit`)."""
    try:
        main()
    except SystemExit:
        leave_to_exit()
        raise
    raise AssertionError("click's main exits")  # pragma: no cover


__all__ = ["command", "main"]
