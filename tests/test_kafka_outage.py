"""Broker outages mid-stream: the worker rides them out, the Emitter never blocks, nothing is lost.

These tests stop and start a broker, so each runs one of its own with
``scripts/kafka-local`` (Java and Maven), never the session's broker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from lineage.demo import generate_day
from lineage.emitter import Emitter
from lineage.schemas import EventRejected, decode_event
from tests.broker import KAFKA_LOCAL
from tests.kafka_helpers import (
    Deployment,
    Reference,
    Worker,
    graph_facts,
    wait_until,
)

pytestmark = pytest.mark.kafka

#: What Emitter.emit may take at most, whatever Kafka does (README: "Emitting events").
EMIT_BOUND_SECONDS = 0.25


def kafka_local(*args: str) -> str:
    done = subprocess.run(
        [str(KAFKA_LOCAL), *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    if shutil.which("java") is None or shutil.which("mvn") is None:
        if os.environ.get("CI") or os.environ.get("LINEAGE_REQUIRE_BROKER"):
            pytest.fail("the outage tests need Java and Maven for scripts/kafka-local")
        pytest.skip("the outage tests need Java and Maven for a broker of their own")
    folder = tmp_path / "kafka"
    bootstrap = kafka_local("start", "--dir", str(folder))
    try:
        yield bootstrap, folder
    finally:
        kafka_local("stop", "--dir", str(folder))


def hold(seconds: float, check: Worker | None = None) -> None:
    """Let ``seconds`` pass while checking, twice a second, that the worker is still up."""
    until = time.monotonic() + seconds
    wait_until(
        lambda: time.monotonic() >= until,
        seconds + 5,
        f"{seconds:.0f} s of outage",
        every=0.5,
        alive=[check] if check is not None else [],
    )


def test_a_broker_outage_loses_nothing_and_floods_no_log(
    own_broker: tuple[str, Path], tmp_path: Path
) -> None:
    bootstrap, folder = own_broker
    day = list(generate_day(events=3000, seed=5))
    reference = Reference(day, tmp_path / "embedded")
    deployment = Deployment(bootstrap, tmp_path)
    worker = Worker(deployment, "a")
    half = len(day) // 2
    try:
        worker.start().wait_ready()
        deployment.produce(day[:half])
        deployment.read("alerts", lambda ms: len(ms) > 0, 60, alive=[worker])
        kafka_local("stop", "--dir", str(folder))
        lines_before = len(worker.text().splitlines())
        hold(20, worker)  # longer than a commit interval and a metadata refresh
        during = worker.text().splitlines()[lines_before:]
        assert kafka_local("start", "--dir", str(folder)) == bootstrap  # same port again
        deployment.produce(day[half:])
        ids = deployment.alert_ids(reference.alert_ids, 240, alive=[worker])
        assert ids == reference.alert_ids
        incidents = deployment.final_incidents(reference.incidents, 120, alive=[worker])
        assert incidents == reference.incidents
        worker.assert_running()  # rode it out, no restart
        # The clients' retries are held back: each kind of error once per 30 s.
        loud = [line for line in during if "[ERROR]" in line or "[WARNING]" in line]
        assert len(loud) <= 40, "\n".join(loud[:60])
    finally:
        worker.stop()
    assert graph_facts(deployment.exported_graph()) == graph_facts(reference.graph)


def test_a_worker_backs_off_while_its_broker_is_away(
    own_broker: tuple[str, Path], tmp_path: Path
) -> None:
    """Every client of the worker waits longer and longer between attempts to reach a
    broker that is away (capped at 2 s): about 700 connects a second and a whole core
    before, where a few clients now try about once each every two seconds.

    The broker stops as the first events arrive, while the worker rebuilds the views of
    the partitions it takes from the subject-view topic: the clients that read it back
    back off too (30 connects a second when they did not)."""
    if shutil.which("strace") is None:
        if os.environ.get("LINEAGE_REQUIRE_TOOLS") == "1":
            pytest.fail("strace is needed to count the worker's connection attempts")
        pytest.skip("strace is needed to count the worker's connection attempts")
    bootstrap, folder = own_broker
    port = bootstrap.rsplit(":", 1)[1]
    deployment = Deployment(bootstrap, tmp_path)
    worker = Worker(deployment, "a")
    try:
        worker.start().wait_ready()
        deployment.produce(list(generate_day(events=500, seed=2)))
        kafka_local("stop", "--dir", str(folder))
        hold(5, worker)  # past the first few, quick, attempts
        assert worker.process is not None
        traced = subprocess.run(
            ["timeout", "--signal=INT", "10", "strace", "-f", "-qq", "-e", "trace=connect",
             "-p", str(worker.process.pid)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        attempts = traced.stderr.count(f"sin_port=htons({port})")
        assert attempts <= 50, f"{attempts} attempts to reach the broker in 10 s"
        worker.assert_running()
    finally:
        worker.stop()


#: What a graceful stop may take with the broker away: the last flush (15 s), the last
#: commit (5 s), aiokafka's stop of the consumer (a few seconds), the producers' stop
#: (3 s), and faust's own end (2 s). docs/operations.md, "Stopping".
STOP_BOUND_SECONDS = 40


def test_a_worker_told_to_stop_while_its_broker_is_away_stops(
    own_broker: tuple[str, Path], tmp_path: Path
) -> None:
    """aiokafka retries a commit for as long as the group coordinator cannot be reached,
    and faust commits once more as it stops: a worker told to stop while a commit
    failed waited for it forever, and so did a process of a worker whose supervisor
    was gone. Its stop now gives up the commit and the outputs Kafka did not take, and
    ends.

    No commit runs before the stop (an interval of ten minutes): the stop's own commit
    then has offsets to commit, those a flush acked before the broker went away (an
    alert is sent as its event is judged, before the flush that acks the event's offset
    ends: the first alert out does not say that any offset is acked)."""
    bootstrap, folder = own_broker
    deployment = Deployment(bootstrap, tmp_path)
    worker = Worker(deployment, "a", LINEAGE_COMMIT_INTERVAL="600")
    try:
        worker.start().wait_ready()
        deployment.produce(list(generate_day(events=2000, seed=3)))
        wait_until(
            lambda: worker.metric("lineage_flush_seconds_count") > 0,
            60,
            "a flush to end, its offsets acked",
            alive=[worker],
        )
        kafka_local("stop", "--dir", str(folder))
        # The consumer knows its group coordinator is gone: the commit finds none.
        wait_until(
            lambda: "Marking the coordinator dead" in worker.text(),
            60,
            "the coordinator to be marked dead",
            alive=[worker],
        )
        assert worker.process is not None
        started = time.monotonic()
        os.killpg(worker.process.pid, signal.SIGTERM)
        try:
            worker.process.wait(STOP_BOUND_SECONDS)
        except subprocess.TimeoutExpired:
            os.kill(worker.process.pid, signal.SIGUSR1)  # its tasks, into the log
            wait_until(lambda: "kill -USR1" in worker.text(), 5, "the task dump")
            raise AssertionError(
                f"the worker still stopping after {STOP_BOUND_SECONDS} s:\n{worker.tail()}"
            ) from None
        took = time.monotonic() - started
        assert "the last commit did not finish in 5 s" in worker.text(), worker.tail()
        assert "Closing event loop" in worker.text(), worker.tail()
        print(f"stopped in {took:.1f} s")
    finally:
        worker.stop()


def test_the_emitter_never_blocks_while_the_broker_is_down_and_loses_nothing(
    own_broker: tuple[str, Path], tmp_path: Path
) -> None:
    bootstrap, folder = own_broker
    day = list(generate_day(events=30_000, seed=9))
    deployment = Deployment(bootstrap, tmp_path)
    worker = Worker(deployment, "a")
    slowest = 0.0
    sent = 0

    def emit_for(seconds: float, emitter: Emitter) -> None:
        nonlocal slowest, sent
        until = time.monotonic() + seconds
        while time.monotonic() < until and sent < len(day):
            started = time.monotonic()
            # The day's few malformed lines are refused at once and never sent.
            with contextlib.suppress(EventRejected):
                emitter.emit(day[sent])
            slowest = max(slowest, time.monotonic() - started)
            sent += 1
            if sent % 50 == 0:
                # Paces the load (about 500 events a second, as a busy service sends
                # them); nothing is waited for here.
                time.sleep(0.1)

    try:
        worker.start().wait_ready()
        emitter = Emitter(
            bootstrap, topic=deployment.topic("events"), spill_path=tmp_path / "spill.jsonl"
        )
        try:
            emit_for(5, emitter)
            kafka_local("stop", "--dir", str(folder))
            outage_started = time.monotonic()
            emit_for(30, emitter)
            assert time.monotonic() - outage_started >= 30
            assert kafka_local("start", "--dir", str(folder)) == bootstrap
            emit_for(5, emitter)
        finally:
            emitter.close(timeout=120)
        assert slowest < EMIT_BOUND_SECONDS, f"an emit took {slowest:.3f} s"
        assert emitter.stats.spilled > 0  # the outage was real: events waited on disk
        # Every event reached the topic. One whose acknowledgement was lost as the broker
        # went down is sent again (at least once): the monitor counts each event id once.
        emitted = [line for line in day[:sent] if _valid(line)]
        wanted = Counter(orjson.loads(line)["event_id"] for line in emitted)
        on_topic: Counter[str] = Counter()

        def complete(messages: list[Any]) -> bool:
            on_topic.clear()
            on_topic.update(orjson.loads(m.value)["event_id"] for m in messages)
            return all(on_topic[k] >= n for k, n in wanted.items())

        deployment.read("events", complete, 120, alive=[worker])
        doubled = sum(n - wanted[k] for k, n in on_topic.items() if n > wanted[k])
        assert doubled <= emitter.stats.failed_sends
        reference = Reference(emitted, tmp_path / "embedded")
        ids = deployment.alert_ids(reference.alert_ids, 240, alive=[worker])
        assert ids == reference.alert_ids
        incidents = deployment.final_incidents(reference.incidents, 120, alive=[worker])
        assert incidents == reference.incidents
    finally:
        worker.stop()
    assert graph_facts(deployment.exported_graph()) == graph_facts(reference.graph)


def _valid(line: bytes) -> bool:
    try:
        decode_event(line)
    except EventRejected:
        return False
    return True
