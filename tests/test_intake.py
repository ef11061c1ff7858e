"""The events intake's bookkeeping against faust's own consumer (no broker needed).

streams.intake leans on faust's private offset bookkeeping (``_acked``, ``_gap``,
``_read_offset``, ``_new_offset``); these tests pin that contract, so an upgrade of
faust that changes it fails here, not in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from faust.types import TP

from streams.intake import (
    Chunk,
    Intake,
    LineageApp,
    LineageConsumer,
    RecoveryWatch,
    ack_offsets,
    current_chunks,
)

TOPIC = "t.events"


@dataclass
class Record:
    offset: int


@pytest.fixture
def app() -> Iterator[LineageApp]:
    app = LineageApp("intake-test", broker="kafka://127.0.0.1:9", store="memory://")
    app.intake = Intake(TOPIC)
    yield app


def records(*offsets: int) -> list[Record]:
    return [Record(o) for o in offsets]


def test_the_app_builds_our_consumer(app: LineageApp) -> None:
    consumer = app.consumer
    assert isinstance(consumer, LineageConsumer)
    assert consumer.intake is app.intake


def test_acked_offsets_are_committed_only_up_to_the_first_unjudged_one(app: LineageApp) -> None:
    consumer = app.consumer
    tp = TP(TOPIC, 0)
    assert ack_offsets(consumer, tp, [0, 1, 2, 4]) == 4
    assert consumer._new_offset(tp) == 3  # 3 not judged yet: commit stops before it
    assert ack_offsets(consumer, tp, [3, 3]) == 1  # an offset counts once
    assert consumer._new_offset(tp) == 5


def test_offsets_without_records_do_not_hold_the_commit_back(app: LineageApp) -> None:
    consumer = app.consumer
    tp = TP(TOPIC, 1)
    fresh = consumer._fresh(tp, records(0, 1, 4))  # 2 and 3 hold no record (say, compaction)
    assert [r.offset for r in fresh] == [0, 1, 4]
    ack_offsets(consumer, tp, [0, 1, 4])
    assert consumer._new_offset(tp) == 5


def test_records_read_before_are_not_taken_again(app: LineageApp) -> None:
    consumer = app.consumer
    tp = TP(TOPIC, 2)
    consumer._fresh(tp, records(10, 11, 12))
    again = consumer._fresh(tp, records(8, 9, 12, 13))
    # faust's own rule: offsets below the last read one are dropped.
    assert [r.offset for r in again] == [12, 13]


def test_chunks_of_an_older_generation_are_dropped(app: LineageApp) -> None:
    app.flow_control.resume()
    tp = TP(TOPIC, 0)
    app.consumer_generation_id = 7
    stale = Chunk(tp, records(0, 1), generation=6)  # fetched before a rebalance
    current = Chunk(tp, records(2, 3, 4), generation=7)
    live, dropped = current_chunks(app, [stale, current])
    assert live == [current] and dropped == 2


def test_nothing_is_current_while_faust_has_stopped_the_flow(app: LineageApp) -> None:
    app.flow_control.suspend()
    chunk = Chunk(TP(TOPIC, 0), records(0), app.consumer_generation_id)
    assert current_chunks(app, [chunk]) == ([], 1)


def test_the_intake_hands_over_what_is_queued_and_clears_on_revocation() -> None:
    async def scenario() -> None:
        intake = Intake(TOPIC, max_chunks=8)
        tp = TP(TOPIC, 0)
        for start in (0, 3, 6):
            await intake.put(Chunk(tp, records(start, start + 1, start + 2), 0))
        first = await intake.take(max_records=5)
        assert [len(c.records) for c in first] == [3, 3]  # stops once it has enough
        assert intake.clear() == 1
        getter = asyncio.ensure_future(intake.take(max_records=5))
        await asyncio.sleep(0.01)
        assert not getter.done()  # waits for the next fetch
        await intake.put(Chunk(tp, records(9), 0))
        assert [c.records[0].offset for c in await getter] == [9]

    asyncio.run(scenario())


class FakeRecovery:
    """What RecoveryWatch reads of faust's Recovery service."""

    def __init__(self, started: float) -> None:
        self.in_recovery = True
        self._recovery_started_at = started
        self._active_events_received_at: dict[TP, float] = {}
        self.active_tps = {TP("c", 0), TP("c", 1), TP("c", 2)}
        self.active_offsets = {TP("c", 0): -1, TP("c", 1): 4, TP("c", 2): 9}
        self.active_highwaters = {TP("c", 0): 7, TP("c", 1): 9, TP("c", 2): 9}


def test_recovery_watch_reads_again_only_partitions_that_stalled() -> None:
    recovery = FakeRecovery(started=100.0)
    recovery._active_events_received_at[TP("c", 1)] = 115.0
    watch = RecoveryWatch(stall_seconds=20)
    assert watch.stalled(recovery, 110.0) == {}  # too early
    # Partition 0 never received anything: from its start; 1 heard lately; 2 is done.
    assert watch.stalled(recovery, 121.0) == {TP("c", 0): 0}
    assert watch.stalled(recovery, 130.0) == {}  # just read again: give it time
    assert watch.stalled(recovery, 136.0) == {TP("c", 1): 5}
    assert watch.stalled(recovery, 142.0) == {TP("c", 0): 0}  # still nothing: again
    recovery.in_recovery = False
    assert watch.stalled(recovery, 500.0) == {}
