"""How often CPython's cycle collector runs in the product's processes.

Every process of the product (a run, a worker, and the children that decode ahead or
keep the per-subject view) keeps many long-lived objects: the partitions' state, a
batch's outcomes until its flush, a view's cached pairs. It makes almost no cycles, so
objects are freed as soon as they are dropped and the collector finds next to nothing
(a few thousand objects in a worker's run of 400,000 events). At CPython's default it
still walks the young objects every 700 container allocations, and the older
generations over everything they hold as they grow. A worker holds a batch's outcomes
until its flush: a young generation of 50,000 was walked about once a flush, over
objects about to be freed. What each threshold cost is in docs/benchmarks.md
("The cycle collector").

The middle generation is collected every fifth collection of the young one, so that
it never holds more than a million objects: its collection is the longest pause the
collector makes in a worker, about 0.1 s.

An embedded run's judging loop turns the collector off (:func:`cycles_left_alone`): it
makes no cyclic garbage (``tests/test_garbage.py`` checks, over every kind of line), and
all the collector did there was walk the subjects' state as it grew, each object once
or twice: 0.39 s of the 6.3 s the run's process took in a breach storm. As the loop
ends, what it made goes to the oldest generation unwalked, so that the exports after it
do not set off a collection over all of it. The process that keeps a run's view folds
with the collector off too (:mod:`lineage.view_process`); a worker's, which lives as
long as the worker, does not.

A command that is done leaves what it held to the end of its process
(:func:`leave_to_exit`): an embedded run's state is a few cycles of objects (the
engine's jobs refer to each other) that the collector would walk once more as the
interpreter ends, about a quarter of a second after 200,000 events, only to free
memory the process gives back as it exits.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["YOUNG", "collect_garbage_seldom", "cycles_left_alone", "leave_to_exit"]

#: Net container allocations between two collections of the young generation.
YOUNG = 200_000


def collect_garbage_seldom() -> None:
    """Have this process's collector run every :data:`YOUNG` container allocations,
    not every 700. Cycles, where there are any, are still collected."""
    gc.set_threshold(YOUNG, 5, 100)


@contextmanager
def cycles_left_alone() -> Iterator[None]:
    """The cycle collector off for a loop that makes no cyclic garbage, and back on as
    it was after it. Objects are still freed as they are dropped, by their reference
    counts; only cycles would be kept, and the loop makes none.

    What the loop made and still holds is then moved to the oldest generation unwalked
    (:func:`_age_unwalked`). Left in the young one, it was all walked by the first
    collection after the loop, which found nothing in it: 0.23 s of a typical day's
    run and 0.75 s of a breach storm's, at 200,000 events.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        _age_unwalked()
        if enabled:
            gc.enable()


def _age_unwalked() -> None:
    """Move every object the collector tracks to its oldest generation, without walking
    any, and start the count of young allocations again: :func:`gc.freeze` moves them
    out of reach and sets the count to zero, and :func:`gc.unfreeze` puts them in the
    oldest generation, which a full collection still walks.

    Not done when the process has frozen objects of its own (a server that froze them
    before forking, so that its children's collectors leave their pages shared):
    unfreezing would return those to the collector too.
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def leave_to_exit() -> None:
    """The process is ending (its command has exited, its outputs are closed): what it
    still holds is freed by that end. Moved out of the collector's reach
    (:func:`gc.freeze`), those objects are not walked once more as the interpreter
    ends. Objects freed by their reference counts still are, as before; only cycles
    are left to the operating system."""
    gc.freeze()
