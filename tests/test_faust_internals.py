"""What streams.faust_internals relies on in faust-streaming 0.15.3 and aiokafka 0.14.

No broker: each test builds faust's own objects and checks the private behaviour the
worker leans on, so an upgrade that changes one fails here, not in production.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import faust
import pytest
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import ConsumerRecord
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from faust.types.tuples import FutureMessage, PendingMessage

from streams.faust_internals import (
    LineageApp,
    LineageConsumer,
    RecoveryWatch,
    TrackingProducer,
    ack_offsets,
    quiet_runner,
    recovery_stalls,
)
from streams.intake import Chunk, Intake

TOPIC = "t.events"


@dataclass
class Record:
    offset: int


@dataclass(eq=False)
class Batch:
    """What aiokafka's accumulator waits on of a batch sent: its future."""

    future: asyncio.Future[Any]


@pytest.fixture
def app() -> Iterator[LineageApp]:
    app = LineageApp("internals-test", broker="kafka://127.0.0.1:9", store="memory://")
    app.intake = Intake({TOPIC})
    yield app


def records(*offsets: int) -> list[Record]:
    return [Record(o) for o in offsets]


def test_the_pinned_versions_are_the_ones_installed() -> None:
    from importlib.metadata import version

    assert version("faust-streaming") == "0.15.3"
    assert version("aiokafka").startswith("0.14.")
    assert version("rocksdict") == "0.3.29"  # the RocksDB store's driver


def test_the_app_builds_our_consumer_fed_by_the_intake(app: LineageApp) -> None:
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


def test_offsets_below_the_committed_one_are_not_acked_again(app: LineageApp) -> None:
    consumer = app.consumer
    tp = TP(TOPIC, 3)
    consumer._committed_offset[tp] = 10
    assert ack_offsets(consumer, tp, [8, 9, 10, 11]) == 2
    assert consumer._new_offset(tp) == 12


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


def test_a_revocation_forgets_a_partitions_bookkeeping(app: LineageApp) -> None:
    consumer = app.consumer
    tp = TP(TOPIC, 0)
    consumer._fresh(tp, records(0, 1))
    ack_offsets(consumer, tp, [0, 1])
    asyncio.run(consumer.on_partitions_revoked({tp}))
    assert consumer._read_offset[tp] is None
    assert not consumer._acked[tp] and not consumer._acked_index[tp]
    assert consumer._committed_offset[tp] is None


def test_the_consumer_thread_sets_the_fetch_wait(app: LineageApp) -> None:
    from streams.faust_internals import _ConsumerThread

    app.fetch_wait_ms = 100
    thread = app.consumer._new_consumer_thread()
    assert isinstance(thread, _ConsumerThread)

    async def build() -> Any:  # aiokafka's consumer is made inside a running loop
        return thread._create_worker_consumer(app.transport)

    assert asyncio.run(build())._fetch_max_wait_ms == 100


def test_getmany_queues_our_topics_whole_and_leaves_the_rest_to_faust(app: LineageApp) -> None:
    consumer = app.consumer
    events, changelog = TP(TOPIC, 0), TP("changelog", 0)

    def record(tp: TP, offset: int) -> ConsumerRecord[bytes, bytes]:
        return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())

    async def wait_next_records(timeout: float) -> Any:
        return {
            events: [record(events, 0), record(events, 1)],
            changelog: [record(changelog, 5)],
        }, None

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]
    consumer.highwater = lambda tp: 10  # type: ignore[method-assign]
    consumer.flow_active = True

    async def scenario() -> tuple[list[Any], list[Chunk]]:
        passed = [item async for item in consumer.getmany(1.0)]
        assert app.intake is not None
        return passed, await app.intake.take(10, timeout=0.1)

    passed, chunks = asyncio.run(scenario())
    assert [(tp, message.offset) for tp, message in passed] == [(changelog, 5)]
    assert [(c.tp, [r.offset for r in c.records]) for c in chunks] == [(events, [0, 1])]
    assert chunks[0].generation == app.consumer_generation_id


class FakeRecovery:
    """The attributes recovery_stalls reads of faust's Recovery service."""

    def __init__(self, started: float) -> None:
        self.in_recovery = True
        self._recovery_started_at = started
        self._active_events_received_at: dict[TP, float] = {}
        self.active_tps = {TP("c", 0), TP("c", 1), TP("c", 2)}
        self.active_offsets = {TP("c", 0): -1, TP("c", 1): 4, TP("c", 2): 9}
        self.active_highwaters = {TP("c", 0): 7, TP("c", 1): 9, TP("c", 2): 9}


def test_faust_recovery_has_the_attributes_the_watch_reads(app: LineageApp) -> None:
    recovery = app.tables.recovery  # type: ignore[attr-defined]
    for name in vars(FakeRecovery(0.0)):
        assert hasattr(recovery, name), name


def test_recovery_watch_reads_again_only_partitions_that_stalled() -> None:
    class App:
        class tables:  # stands in for app.tables
            recovery = FakeRecovery(started=100.0)

    recovery = App.tables.recovery
    recovery._active_events_received_at[TP("c", 1)] = 115.0
    watch = RecoveryWatch(stall_seconds=20)

    def stalled(now: float) -> dict[TP, int]:
        return watch.stalled(recovery_stalls(App, 20, now), now)  # type: ignore[arg-type]

    assert stalled(110.0) == {}  # too early
    # Partition 0 never received anything: from its start; 1 heard lately; 2 is done.
    assert stalled(121.0) == {TP("c", 0): 0}
    assert stalled(130.0) == {}  # just read again: give it time
    assert stalled(136.0) == {TP("c", 1): 5}
    assert stalled(142.0) == {TP("c", 0): 0}  # still nothing: again
    recovery.in_recovery = False
    assert stalled(500.0) == {}


def test_the_runner_has_no_spinner_and_takes_our_task_dump(app: LineageApp) -> None:
    dumped: list[bool] = []
    runner = quiet_runner(app, "info", lambda: dumped.append(True))
    assert isinstance(runner, faust.Worker)
    assert runner.spinner is None
    runner._on_sigusr1()
    assert dumped == [True]


def test_the_runner_opens_no_debugger_on_sigusr2(
    app: LineageApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # mode's handler runs pdb.set_trace() in the event loop: the worker would stop
    # judging and heartbeating until someone typed "continue" at its terminal.
    import pdb

    def debugger(*args: object, **kwargs: object) -> None:
        raise AssertionError("pdb.set_trace() called")

    monkeypatch.setattr(pdb, "set_trace", debugger)
    runner = quiet_runner(app, "info", lambda: None)
    with caplog.at_level(logging.WARNING, logger="lineage.worker"):
        runner._on_sigusr2()
    assert [r.getMessage() for r in caplog.records] == [
        "SIGUSR2 ignored: a worker opens no debugger (kill -USR1 logs where its tasks wait)"
    ]
    with pytest.raises(AssertionError, match="pdb"):
        faust.Worker(app, loglevel="info")._on_sigusr2()  # what it replaces


def test_a_graceful_stop_runs_the_hooks_first(app: LineageApp) -> None:
    ran: list[str] = []

    async def hook() -> None:
        ran.append("hook")

    app.before_stop.append(hook)

    async def scenario() -> None:
        await app.on_stop()

    asyncio.run(scenario())
    assert ran == ["hook"]


def test_the_last_commit_on_a_stop_is_given_up_when_it_does_not_finish(
    app: LineageApp, caplog: pytest.LogCaptureFixture
) -> None:
    """aiokafka retries a commit while no group coordinator answers, for ever: the
    stop's commit (faust's ``commit_and_end_transactions``) must not wait for it."""
    consumer = cast(LineageConsumer, app.consumer)
    consumer.stop_commit_timeout = 0.05
    calls: list[bool] = []

    async def commit(*args: Any, **kwargs: Any) -> bool:
        calls.append(True)
        await asyncio.Future()  # a coordinator that never answers
        return True

    consumer.commit = commit  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(consumer.commit_and_end_transactions(), 5))
    assert calls == [True]
    assert "the last commit did not finish in 0 s" in caplog.text


def test_a_last_commit_that_finishes_is_awaited_and_its_error_raised(app: LineageApp) -> None:
    consumer = cast(LineageConsumer, app.consumer)
    consumer.stop_commit_timeout = 5.0

    async def commit(*args: Any, **kwargs: Any) -> bool:
        await asyncio.sleep(0.01)
        raise RuntimeError("refused")

    consumer.commit = commit  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="refused"):
        asyncio.run(consumer.commit_and_end_transactions())


def test_a_producers_stop_gives_up_what_kafka_does_not_take(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiokafka's stop waits until every batch is delivered or expires (the worker's
    ``output_timeout``, five minutes by default); ours gives it ``stop_timeout``, then
    cancels aiokafka's sender, and the stop goes on to close the client."""

    async def scenario() -> None:
        producer = TrackingProducer(bootstrap_servers="127.0.0.1:9", stop_timeout=0.05)
        undelivered = asyncio.get_running_loop().create_future()
        # A batch handed to the sender that Kafka never acknowledges, and the sender's
        # routine, which would resend it until it expires.
        producer._message_accumulator._pending_batches.add(Batch(undelivered))
        producer._sender._sender_task = asyncio.ensure_future(asyncio.Future())
        await asyncio.wait_for(producer.stop(), 5)
        assert producer._sender.sender_task.cancelled()
        assert not undelivered.done()  # given up, not delivered

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    assert "Kafka did not take the last outputs in 0 s" in caplog.text


def test_a_fetch_reads_the_partitions_active_when_it_was_asked_for(app: LineageApp) -> None:
    """The fetch must not see the active set change under it (the table-recovery hang)."""
    from streams.faust_internals import _ConsumerThread

    seen: list[Any] = []

    class Fetcher:
        _closed = False

        class _subscriptions:  # stands in for aiokafka's SubscriptionState
            @staticmethod
            def fetch_context() -> Any:
                import contextlib

                return contextlib.nullcontext()

        async def fetched_records(self, partitions: Any, timeout: Any, max_records: Any) -> Any:
            seen.append(partitions)
            active.clear()  # a rebalance pauses everything while aiokafka waits
            return {}

    class AioConsumer:
        _closed = False
        _fetcher = Fetcher()

    thread = app.consumer._new_consumer_thread()
    assert isinstance(thread, _ConsumerThread)
    app.consumer.flow_active = True
    active = {TP(TOPIC, 0), TP("changelog", 0)}
    asyncio.run(thread._fetch_records(AioConsumer(), active, timeout=1.0))
    # aiokafka got a copy: emptying faust's set did not empty what it filters by (an
    # empty set means every partition to aiokafka).
    assert seen == [{TP(TOPIC, 0), TP("changelog", 0)}] and seen[0] is not active
    seen.clear()
    asyncio.run(thread._fetch_records(AioConsumer(), set(), timeout=1.0))
    assert seen == []  # nothing active: nothing fetched, not everything


def test_a_rebalance_during_the_stop_leaves_the_consumer_to_the_threads_own_stop(
    app: LineageApp,
) -> None:
    """faust closes the consumer when a rebalance reaches an app that stops; it must
    neither mark it closed (the thread's stop would then skip the LeaveGroup) nor run
    its client's or coordinator's coroutines on the app's loop (``docs/upstream.md``,
    section 20). The Kafka side: ``test_a_worker_stopped_in_a_rebalance_leaves_its_group``."""
    closed: list[str] = []

    class Part:
        def __init__(self, name: str) -> None:
            self.name = name

        async def close(self) -> None:
            closed.append(self.name)

    class AioConsumer:
        _closed = False
        _client = Part("client")
        _coordinator = Part("coordinator")

    thread = app.consumer._thread
    aio = AioConsumer()
    thread._consumer = aio
    try:
        app._on_rebalance_when_stopped()  # what faust calls with the app stopping
    finally:
        thread._consumer = None
    assert aio._closed is False
    assert closed == []


class PositionedConsumer:
    """The parts of aiokafka's consumer move_back uses."""

    def __init__(self, positions: dict[TP, int]) -> None:
        self.positions = positions
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return set(self.positions)

    async def position(self, tp: TP) -> int:
        return self.positions[tp]

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.positions[tp] = offset


def test_records_not_delivered_are_given_back_but_never_skipped(app: LineageApp) -> None:
    from streams.faust_internals import _ConsumerThread

    thread = app.consumer._new_consumer_thread()
    assert isinstance(thread, _ConsumerThread)
    ahead, behind, gone = TP("changelog", 0), TP("changelog", 1), TP("changelog", 2)
    aio = PositionedConsumer({ahead: 14, behind: 0})
    thread._ensure_consumer = lambda: aio  # type: ignore[method-assign]
    moved = asyncio.run(thread.move_back({ahead: 0, behind: 5, gone: 3}))
    # Taken to 14 and not delivered: back to 0. Already put back before the record by
    # someone else (recovery's seek): left alone, never moved forward. Revoked: left.
    assert moved == {ahead: 0} and aio.seeks == [(ahead, 0)]


def test_getmany_gives_back_what_it_fetched_while_the_flow_was_off(app: LineageApp) -> None:
    consumer = app.consumer
    changelog = TP("changelog", 3)
    given: list[dict[TP, int]] = []

    async def wait_next_records(timeout: float) -> Any:
        rec = ConsumerRecord(changelog.topic, 3, 0, 0, 0, b"k", b"v", None, 1, 1, ())
        return {changelog: [rec]}, set()

    async def give_back(offsets: dict[TP, int]) -> dict[TP, int]:
        given.append(offsets)
        return offsets

    async def perform_seek() -> None:
        pass

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]
    consumer.give_back = give_back  # type: ignore[method-assign]
    consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    consumer.flow_active = False

    async def scenario() -> list[Any]:
        return [item async for item in consumer.getmany(1.0)]

    assert asyncio.run(scenario()) == []
    assert given == [{changelog: 0}]


class SlowChannel:
    """A topic whose records take ``delay`` seconds to reach aiokafka's accumulator (a
    busy event loop, a metadata refresh), recorded in ``handed``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.handed: list[FutureMessage] = []

    async def publish_message(self, fut: FutureMessage, wait: bool = False) -> None:
        await asyncio.sleep(self.delay)
        self.handed.append(fut)


class FakeAIOKafka:
    """aiokafka's producer as far as flush goes: every record handed over is sent; the
    broker acknowledges it, or refuses the ones named in ``refuse``."""

    def __init__(self, channel: SlowChannel, refuse: int = 0) -> None:
        self.channel = channel
        self.refuse = refuse

    async def flush(self) -> None:
        for fut in self.channel.handed:
            if fut.done():
                continue
            if self.refuse:
                self.refuse -= 1  # faust completes the record's future with the error
                fut.get_loop().call_soon(fut.set_exception, KafkaTimeoutError())
                continue
            fut.get_loop().call_soon(fut.set_result, None)


def pending(channel: SlowChannel) -> FutureMessage:
    return FutureMessage(
        PendingMessage(channel, b"k", b"v", None, None, None, None, None, None)  # type: ignore[arg-type]
    )


def test_fausts_producer_flush_gives_up_on_a_slow_buffer() -> None:
    # Pins the upstream bug that keeps the tables' records off faust's producer path
    # (ChangelogWriter; docs/upstream.md, section 8): faust's flush before a commit
    # returns with records still in its buffer.
    async def scenario() -> int:
        buffer = ProducerBuffer()
        buffer.app = faust.App("flush-test", broker="kafka://127.0.0.1:9")
        await buffer.start()
        channel = SlowChannel(delay=0.3)
        for _ in range(3):
            buffer.put(pending(channel))
        await buffer.flush()
        left = buffer.size
        while buffer.size:  # let it drain before stopping it
            await asyncio.sleep(0.1)
        await buffer.stop()
        return left

    assert asyncio.run(scenario()) > 0


# -- aiokafka's producer forgets the metadata of topics it did not track (upstream 10) ---------


async def _flush_after_a_new_topic(bootstrap: str, producer_type: type[Any]) -> tuple[bool, bool]:
    """(flushed within 5 s, the first topic still in the producer's metadata).

    A batch lingers for topic ``known`` (in the metadata fetched at start); meanwhile a
    topic created after the start gets its first record.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    tag = uuid.uuid4().hex[:8]
    known, new = f"track-known-{tag}", f"track-new-{tag}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(known, 1, 1)])
        producer = producer_type(
            bootstrap_servers=bootstrap, linger_ms=2000, request_timeout_ms=8000
        )
        deadline = asyncio.get_running_loop().time() + 30
        await producer.start()
        while known not in producer.client.cluster.topics():
            assert asyncio.get_running_loop().time() < deadline, f"{known} never listed"
            await producer.client.force_metadata_update()
        try:
            await producer.send(known, b"lingers")
            await admin.create_topics([NewTopic(new, 1, 1)])
            await producer.send(new, b"first record of a new topic")
            try:
                await asyncio.wait_for(producer.flush(), 5)
                flushed = True
            except TimeoutError:
                flushed = False
            still_known = known in producer.client.cluster.topics()
        finally:
            await producer.stop()  # a batch without a leader fails when it expires (8 s)
        await admin.delete_topics([known, new])
    finally:
        await admin.close()
    return flushed, still_known


@pytest.mark.kafka
def test_aiokafka_forgets_an_untracked_topic_and_its_batch_waits(kafka_bootstrap: str) -> None:
    # The library's behaviour our TrackingProducer works around: when it is fixed
    # upstream, this fails, and the workaround can go.
    from aiokafka import AIOKafkaProducer

    flushed, still_known = asyncio.run(_flush_after_a_new_topic(kafka_bootstrap, AIOKafkaProducer))
    assert (flushed, still_known) == (False, False)


@pytest.mark.kafka
def test_the_tracking_producer_keeps_every_topic_it_sent_to(kafka_bootstrap: str) -> None:
    flushed, still_known = asyncio.run(_flush_after_a_new_topic(kafka_bootstrap, TrackingProducer))
    assert (flushed, still_known) == (True, True)


def test_reconnect_backoff_spaces_the_attempts_to_a_broker_that_is_away() -> None:
    """Each failed attempt to a node doubles the wait before the next (jittered by a fifth,
    capped); a connection that succeeds resets it, and each node has its own."""
    from streams.faust_internals import reconnect_backoff

    now = [0.0]
    attempts: list[tuple[str, float]] = []
    up = {"b"}

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    class Client:
        async def _get_conn(self, node_id: str, **kwargs: object) -> object:
            attempts.append((node_id, now[0]))
            return object() if node_id in up else None

    client = reconnect_backoff(Client(), base=0.1, cap=0.4, clock=lambda: now[0], sleep=sleep)

    async def main() -> None:
        for _ in range(6):
            assert await client._get_conn("a") is None
        assert await client._get_conn("b") is not None  # another node: no wait
        up.add("a")
        assert await client._get_conn("a") is not None
        assert await client._get_conn("a") is not None  # reset: at once

    asyncio.run(main())
    times = [at for node, at in attempts if node == "a"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, want in zip(gaps, [0.1, 0.2, 0.4, 0.4, 0.4, 0.4], strict=False):
        assert 0.8 * want <= gap <= 1.2 * want, (gaps, want)
    assert gaps[-1] == 0.0
    assert [at for node, at in attempts if node == "b"] == [times[5]]


def test_reconnect_backoff_lets_callers_waiting_together_make_one_attempt_per_wait() -> None:
    """Callers of one node that wait at the same time take turns: the attempts stay one
    per backoff, however many callers there are (the fetcher, the coordinator, the
    sender and the metadata refresh of one client all ask for the same broker)."""
    from streams.faust_internals import reconnect_backoff

    now = [0.0]
    attempts: list[float] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    class Client:
        async def _get_conn(self, node_id: str, **kwargs: object) -> object:
            attempts.append(now[0])
            await asyncio.sleep(0)  # a refused connection still takes a turn of the loop
            return None

    client = reconnect_backoff(Client(), base=0.1, cap=0.4, clock=lambda: now[0], sleep=sleep)

    async def caller() -> None:
        for _ in range(3):
            assert await client._get_conn("a") is None

    async def main() -> None:
        await asyncio.gather(*(caller() for _ in range(10)))

    asyncio.run(main())
    assert len(attempts) == 30
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert min(gaps) >= 0.8 * 0.1, gaps  # never two attempts without a wait between


# -- the seek to the committed offsets, and records fetched while it runs --------------------------


class PartitionLog:
    """aiokafka's consumer as the seek to the commits and a fetch see it: one record at each
    offset below ``ends[tp]``, a position per partition, and the group's commits.

    Its ``seek_to_committed`` is aiokafka's: one partition after another, in ``order``,
    each after a round trip to the group coordinator; the round trip of ``slow`` waits
    until ``answered`` is set, as a busy coordinator would.
    """

    def __init__(
        self, ends: dict[TP, int], committed: dict[TP, int], order: list[TP], slow: TP
    ) -> None:
        self.ends = ends
        self.committed = committed
        self.order = order
        self.slow = slow
        self.positions = dict(committed)
        self.checked: list[TP] = []
        self.answered = asyncio.Event()

    def assignment(self) -> set[TP]:
        return set(self.ends)

    async def position(self, tp: TP) -> int:
        return self.positions[tp]

    def seek(self, tp: TP, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_committed(self) -> dict[TP, int]:
        found = {}
        for tp in self.order:
            if tp == self.slow:
                await self.answered.wait()
            found[tp] = self.committed[tp]
            self.seek(tp, self.committed[tp])
            self.checked.append(tp)
        return found

    def fetch(self, size: int) -> dict[TP, list[ConsumerRecord[bytes, bytes]]]:
        fetched = {}
        for tp, end in self.ends.items():
            start = self.positions[tp]
            offsets = range(start, min(start + size, end))
            if offsets:
                fetched[tp] = [
                    ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"k", b"v", None, 1, 1, ())
                    for o in offsets
                ]
                self.positions[tp] = offsets[-1] + 1
        return fetched


def _consumer_on(app: LineageApp, log: PartitionLog, size: int) -> LineageConsumer:
    """The app's consumer, its thread and fetches working on ``log``, its flow active."""
    from streams.faust_internals import _ConsumerThread

    consumer = app.consumer
    thread = consumer._new_consumer_thread()
    assert isinstance(thread, _ConsumerThread)

    async def call_thread(fun: Any, *args: Any, **kwargs: Any) -> Any:
        return await fun(*args, **kwargs)

    thread._ensure_consumer = lambda: log  # type: ignore[method-assign]
    thread.call_thread = call_thread  # type: ignore[method-assign]
    consumer._thread = thread

    async def wait_next_records(timeout: float) -> Any:
        await asyncio.sleep(0)
        return log.fetch(size), None

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]
    consumer.highwater = lambda tp: log.ends[tp]  # type: ignore[method-assign]
    consumer.flow_active = True
    return consumer


def test_records_fetched_while_seeking_to_the_commits_do_not_hold_the_commit_back(
    app: LineageApp,
) -> None:
    """faust seeks the partitions to their commits one after another and sets every read
    offset only at the end; table recovery does it with the flow on, so a fetch can land
    in between. No record delivered then may be left behind its partition's read offset:
    the next fetch would look like a skip, its offsets would count done twice, and the
    commit would creep one offset per commit (issue 17)."""
    events, other = TP(TOPIC, 0), TP(TOPIC, 1)
    log = PartitionLog(
        ends={events: 300, other: 0},
        committed={events: 100, other: 0},
        order=[events, other],  # the events partition is checked first, then a slow one
        slow=other,
    )
    consumer = _consumer_on(app, log, size=50)
    assert app.intake is not None
    intake = app.intake

    async def drain() -> list[Chunk]:
        async for _ in consumer.getmany(1.0):
            pass
        return await intake.take(10_000, timeout=0.01)

    async def scenario() -> tuple[list[int], int | None]:
        seek = asyncio.create_task(consumer.perform_seek())
        while events not in log.checked:  # the events partition is at its commit now
            await asyncio.sleep(0)
        chunks = await drain()  # a fetch lands before the slow partition is checked
        log.answered.set()
        await seek
        while log.positions[events] < log.ends[events]:
            chunks += await drain()
        delivered = [r.offset for c in chunks for r in c.records]
        for chunk in chunks:  # judged, flushed and acked, as the checkpoint does
            ack_offsets(consumer, chunk.tp, [r.offset for r in chunk.records])
        return delivered, consumer._new_offset(events)

    delivered, new_offset = asyncio.run(scenario())
    assert set(delivered) == set(range(100, 300))  # every record judged, none skipped
    assert new_offset == 300  # and all of them committed at the next commit


def test_fausts_commit_creeps_when_an_offset_is_both_acked_and_a_gap() -> None:
    # Pins the upstream behaviour that turned a wrong gap into a stall (docs/upstream.md):
    # _new_offset adds the gap's offsets to the acked ones without looking whether they
    # are there already, and a repeated offset ends the run of consecutive offsets.
    app = faust.App("creep-test", broker="kafka://127.0.0.1:9")
    consumer = app.consumer
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = 100
    for offset in range(100, 200):
        consumer._acked[tp].append(offset)
        consumer._acked_index[tp].add(offset)
    consumer._gap[tp].addi(101, 150)
    commits = []
    for _ in range(3):
        offset = consumer._new_offset(tp)
        assert offset is not None
        commits.append(offset)
        consumer._committed_offset[tp] = offset
    assert commits == [102, 103, 104]  # all of 100..199 is done; one offset per commit


def memory_table(app_id: str, name: str) -> Any:
    """A table as the worker makes it, on faust's memory store, of an app never started."""
    from streams.tables import PartitionedTable

    app = faust.App(app_id, broker="kafka://127.0.0.1:1", store="memory://")
    return app.tables.add(
        PartitionedTable(
            app,
            name=name,
            partitions=4,
            schema=faust.Schema(
                key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"
            ),
        )
    )


def test_the_changelog_writer_keys_and_places_records_as_faust_does() -> None:
    """faust's Table keys a changelog record with its key serializer (JSON) and puts it
    in the partition the table names; the writer must write the same bytes there, or
    recovery would read two keys for one."""
    import orjson

    from streams.faust_internals import ChangelogWriter, _json_key

    table = memory_table("t-writer", "t.subjects")
    for key in ("3|u-1", '0|"quoted"\u3042'):
        assert _json_key(key) == table.changelog_topic.prepare_key(key, "json")[0]
    sent: list[tuple[str, bytes, bytes | None, int]] = []
    writer = ChangelogWriter(lambda *record: sent.append(record))  # type: ignore[arg-type]
    writer.set(table, "3|u-1", b"v")
    writer.delete(table, "3|u-1")
    topic = table.changelog_topic.get_topic_name()
    assert sent == [
        (topic, orjson.dumps("3|u-1"), b"v", 3),
        (topic, orjson.dumps("3|u-1"), None, 3),
    ]
    assert "3|u-1" not in table.data


def test_a_memory_table_is_read_from_its_stores_dict_and_sees_the_writers_records() -> None:
    from streams.faust_internals import ChangelogWriter
    from streams.store import reader

    table = memory_table("t-reader", "t.seen")
    read = reader(table)
    assert read == table.data.data.get  # no KeyError for a key the table lacks
    ChangelogWriter(lambda *record: None).set(table, "1|e", b"v")  # type: ignore[arg-type]
    assert read("1|e") == b"v" == table.get("1|e") and read("1|f") is None
    assert reader({"k": 1})("k") == 1  # any other mapping: its own get


# -- the RocksDB store (upstream 13) -----------------------------------------------------------


def rocks_app(datadir: Any) -> LineageApp:
    return LineageApp(
        "rocks-test", broker="kafka://127.0.0.1:9", store="rocksdb://", datadir=str(datadir)
    )


def rocks_table(app: LineageApp, name: str = "state", **options: Any) -> Any:
    from streams.tables import PartitionedTable

    table = PartitionedTable(
        app,
        name=name,
        partitions=4,
        schema=faust.Schema(
            key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"
        ),
        options={"driver": "rocksdict", **options},
    )
    return app.tables.add(table)


@dataclass
class ChangelogMessage:
    partition: int
    offset: int
    key: bytes
    value: bytes | None


@dataclass
class ChangelogEvent:
    message: ChangelogMessage


def test_fausts_rocksdb_store_writes_to_disk_before_kafka_has_the_record(tmp_path: Any) -> None:
    # Pins the upstream behaviour PartitionStore replaces (docs/upstream.md, section 13):
    # a write needs a current event, and reaches RocksDB at once, while the changelog
    # offset is recorded only when Kafka acknowledges the record. Killed in between, the
    # disk keeps what the changelog never got; recovery reads from the offset recorded.
    from faust.stores.rocksdb import Store
    from faust.streams import _current_event

    app = rocks_app(tmp_path)
    table = app.tables.add(
        faust.Table(app, name="plain", partitions=4, options={"driver": "rocksdict"})
    )
    store = table.data
    assert type(store) is Store and store.use_rocksdict
    with pytest.raises(AssertionError):
        store["k"] = "outside any event"
    event = ChangelogEvent(ChangelogMessage(partition=2, offset=40, key=b"k", value=b"v"))
    token = _current_event.set(lambda: event)  # type: ignore[arg-type,return-value]
    try:
        store["k"] = "v"
    finally:
        _current_event.reset(token)
    assert store._db_for_partition(2).get(b'"k"') == b'"v"'  # on disk already
    assert store.persisted_offset(TP(table.changelog_topic_name, 2)) is None


def test_the_partition_store_files_each_key_under_its_partition_and_waits_for_kafka(
    tmp_path: Any,
) -> None:
    from streams.faust_internals import PartitionStore

    app = rocks_app(tmp_path)
    table = rocks_table(app)
    store = table.data
    assert isinstance(store, PartitionStore) and store.use_rocksdict
    changelog = table.changelog_topic_name
    store["1|a"] = b'"one"'
    store["3|b"] = b"3"
    store["3|c"] = b'"gone soon"'
    del store["3|c"]
    # Readable at once, on no disk yet.
    assert store["1|a"] == "one" and "3|b" in store and "3|c" not in store
    assert table.get("1|a") == "one" and table.get("2|a") is None
    assert store._db_for_partition(1).get(b'"1|a"') is None
    # Kafka acknowledges the records (faust's callback); partition 2 had nothing staged.
    store.set_persisted_offset(TP(changelog, 1), 4)
    store.set_persisted_offset(TP(changelog, 3), 9)
    store.set_persisted_offset(TP(changelog, 3), 7)
    store.set_persisted_offset(TP(changelog, 2), 5)
    assert store.write_acknowledged() == 3
    assert store._db_for_partition(1).get(b'"1|a"') == b'"one"'
    assert store._db_for_partition(3).get(b'"3|b"') == b"3"
    assert store._db_for_partition(1).get(b'"3|b"') is None  # each key in its own partition
    assert store._db_for_partition(3).get(b'"3|c"') is None
    assert [store.persisted_offset(TP(changelog, p)) for p in range(4)] == [None, 4, None, 9]
    assert sorted(store.partition_items(3)) == [("3|b", 3)]
    assert store.partition_items(0) == []


def test_a_revoked_partition_drops_what_kafka_did_not_acknowledge(tmp_path: Any) -> None:
    from streams.store import partition_items

    app = rocks_app(tmp_path)
    table = rocks_table(app)
    store = table.data
    changelog = table.changelog_topic_name
    store["0|kept"] = b"1"
    store.set_persisted_offset(TP(changelog, 0), 0)
    store.write_acknowledged()
    store["0|kept"] = b"2"
    store["0|new"] = b"[]"
    assert sorted(partition_items(table, 0)) == [("0|kept", 2), ("0|new", [])]
    store.revoke_partitions(table, {TP(changelog, 0)})
    store.set_persisted_offset(TP(changelog, 0), 1)  # acknowledged after the revocation
    assert store.write_acknowledged() == 0
    # The database keeps the state and offset it had: its next owner reads on from there.
    assert sorted(partition_items(table, 0)) == [("0|kept", 1)]
    assert store.persisted_offset(TP(changelog, 0)) == 0


def test_recovery_writes_each_batch_with_its_offset_and_a_restart_reads_it_back(
    tmp_path: Any,
) -> None:
    app = rocks_app(tmp_path)
    table = rocks_table(app)
    changelog = table.changelog_topic_name
    batch = [
        ChangelogEvent(ChangelogMessage(2, 10, b'"2|x"', b"1")),
        ChangelogEvent(ChangelogMessage(2, 11, b'"2|y"', b'{"y": 1}')),
        ChangelogEvent(ChangelogMessage(2, 12, b'"2|x"', None)),
        ChangelogEvent(ChangelogMessage(0, 3, b'"0|z"', b"3")),
    ]
    table.data.apply_changelog_batch(batch, to_key=None, to_value=None)
    table.data["2|w"] = b'"staged, never acknowledged"'
    del app, table  # a crash: the staged write is lost, the recovered state is on disk
    import gc

    gc.collect()
    again = rocks_table(rocks_app(tmp_path))
    store = again.data
    assert store.persisted_offset(TP(changelog, 2)) == 12
    assert store.persisted_offset(TP(changelog, 0)) == 3
    assert sorted(store.partition_items(2)) == [("2|y", {"y": 1})]
    assert again.get("0|z") == 3


def test_the_changelog_writer_puts_a_write_on_disk_once_kafka_acknowledged_it(
    tmp_path: Any,
) -> None:
    from streams.faust_internals import ChangelogWriter

    app = rocks_app(tmp_path)
    table = rocks_table(app)
    store = table.data
    sent: list[tuple[str, bytes, bytes | None, int]] = []
    writer = ChangelogWriter(lambda *record: sent.append(record))
    writer.set(table, "1|a", b"1")
    writer.delete(table, "2|gone")
    assert [(key, value, partition) for _, key, value, partition in sent] == [
        (b'"1|a"', b"1", 1),
        (b'"2|gone"', None, 2),
    ]
    assert table.get("1|a") == 1  # readable at once, from memory
    assert store._db_for_partition(1).get(b'"1|a"') is None
    topic = sent[0][0]
    writer.acknowledged(topic, 1, 41)  # the sender's on_acked: Kafka has them
    writer.acknowledged(topic, 2, 7)
    writer.written()  # the sender's flush succeeded: every record was acknowledged
    assert store._db_for_partition(1).get(b'"1|a"') == b"1"
    assert store.persisted_offset(TP(topic, 1)) == 41
    assert store.persisted_offset(TP(topic, 2)) == 7


def test_every_database_shares_one_memory_budget(tmp_path: Any) -> None:
    from streams.faust_internals import _SHARED_MEMORY, SharedMemoryOptions

    budget = 32 * 1024 * 1024 + 1  # this test's own budget
    app = rocks_app(tmp_path)
    tables = []
    for name in ("one", "two"):
        table = rocks_table(app, name, memory=budget)
        tables.append(table)
        assert isinstance(table.data.rocksdb_options, SharedMemoryOptions)
    for table in tables:
        for partition in range(4):
            table.data[f"{partition}|k"] = b"1" * 1000
            table.data.set_persisted_offset(TP(table.changelog_topic_name, partition), 0)
        table.data.write_acknowledged()
    cache, buffers = _SHARED_MEMORY[budget]
    # Eight databases, one cache: the write buffers they hold are charged to it.
    assert buffers.get_buffer_size() == budget // 4
    assert 0 < buffers.get_usage() <= cache.get_usage() <= budget
