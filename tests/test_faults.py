"""Faults on a real Apache Kafka: after each, the workers agree exactly with the embedded run.

"Agree" is four things, each compared whole: the set of alert ids, the last status of
each (open, or retracted by a late consent), every incident's last published count,
and every node and edge (with every attribute) of the graph ``lineage export`` reads
back from Kafka with no worker running. The reference is ``run_embedded`` on the same
lines with the same redaction key.

The crash, the join and leave, and the restart also run on the RocksDB store
(``LINEAGE_STORE=rocksdb://``), where state survives on disk: a worker restarts on the
state folder of the one before it, and comes back to partitions that moved on while it
was away. There, subjects are also answered from the worker's tables, and after the
last clean stop every database of the partitions it held must hold exactly its
changelog partition, up to its last offset.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from lineage.demo import generate_day
from tests.kafka_helpers import (
    Deployment,
    Reference,
    Worker,
    assert_disk_holds_the_changelog,
    assert_subjects_agree,
    event_key,
    graph_facts,
    wait_until,
)

pytestmark = pytest.mark.kafka


def assert_agrees(
    deployment: Deployment,
    reference: Reference,
    workers: list[Worker],
    timeout: float = 240,
) -> None:
    alive = [w for w in workers if w.process is not None and w.process.poll() is None]
    ids = deployment.alert_ids(reference.alert_ids, timeout, alive)
    assert ids == reference.alert_ids, f"{len(ids - reference.alert_ids)} alerts not expected"
    # Late consents retract on Kafka what they retract embedded, and a replay after a
    # crash leaves each alert on the same last word.
    assert deployment.alert_statuses(reference.statuses, timeout, alive) == reference.statuses
    assert deployment.final_incidents(reference.incidents, timeout, alive) == reference.incidents


def assert_graph_agrees(deployment: Deployment, reference: Reference) -> None:
    assert graph_facts(deployment.exported_graph()) == graph_facts(reference.graph)


STORES = pytest.mark.parametrize("store", ["memory://", "rocksdb://"], ids=["memory", "rocksdb"])


def judged_across_a_restart(
    deployment: Deployment,
    store: str,
    first: tuple[list[bytes], Reference],
    then: tuple[list[bytes], Reference],
    stopped: Callable[[Worker], None] | None = None,
) -> tuple[Worker, float]:
    """A worker judges ``first`` (its lines, and the embedded run of them), stops cleanly
    (then ``stopped`` is called with it), and a second one judges ``then`` (its lines,
    and the embedded run of all): on RocksDB on the first one's state folder, where the
    tables are on disk. Returns the second worker and the seconds its start took."""
    one = Worker(deployment, "a").start()
    two = Worker(deployment, "b", state="a" if store == "rocksdb://" else None)
    try:
        one.wait_ready()
        deployment.produce(first[0])
        assert_agrees(deployment, first[1], [one])
        one.stop_cleanly()
        if stopped is not None:
            stopped(one)
        started = time.monotonic()
        two.start().wait_ready(timeout=180)  # its tables recovered
        recovered_in = time.monotonic() - started
        deployment.produce(then[0])
        assert_agrees(deployment, then[1], [two])
        assert_subjects_agree(then[1], two)
        two.stop_cleanly()
    finally:
        one.stop()
        two.stop()
    return two, recovered_in


@STORES
def test_three_sigkills_while_100000_events_stream_in(
    kafka_bootstrap: str, tmp_path: Path, store: str
) -> None:
    day = list(generate_day(events=100_000, seed=11))
    reference = Reference(day, tmp_path / "embedded")
    deployment = Deployment(kafka_bootstrap, tmp_path, env={"LINEAGE_STORE": store})
    # On RocksDB each new worker starts on the state folder of the one killed before it:
    # what a crashed worker wrote to disk must agree with what Kafka has.
    state = "w0" if store == "rocksdb://" else None
    workers: list[Worker] = []
    worker = Worker(deployment, "w0").start()
    workers.append(worker)
    try:
        worker.wait_ready()
        producer = deployment.produce_in_background(day, rate=5_000)
        for kill in range(1, 4):
            # Killed mid-stream, once it has judged 5,000 events of its own.
            wait_until(
                lambda w=worker: w.metric("lineage_events_total") >= 5_000,  # type: ignore[misc]
                120,
                f"worker {worker.name} to judge events",
                alive=[worker],
            )
            worker.kill()
            worker = Worker(deployment, f"w{kill}", state=state).start()
            workers.append(worker)
            worker.wait_ready()
        producer.join(300)
        assert not producer.is_alive()
        assert_agrees(deployment, reference, [worker])
        assert_subjects_agree(reference, worker)
        worker.stop_cleanly()
    finally:
        for w in workers:
            w.stop()
    assert_graph_agrees(deployment, reference)
    if store == "rocksdb://":
        assert_disk_holds_the_changelog(deployment, worker.state_dir, range(4))


def assert_commits_reach(
    deployment: Deployment, ends: dict[int, int], timeout: float, worker: Worker
) -> None:
    """Every events partition's committed offset reaches ``ends`` within ``timeout``."""
    behind: dict[int, int] = {}

    def reached() -> bool:
        committed = deployment.committed("events")
        behind.clear()
        behind.update({p: max(end - committed.get(p, 0), 0) for p, end in ends.items()})
        return not any(behind.values())

    try:
        wait_until(reached, timeout, "the commits", every=2, alive=[worker])
    except AssertionError as exc:
        if "exited" in str(exc):
            raise
        raise AssertionError(
            f"{timeout:.0f} s after {worker.name} was ready, the commit of each events "
            f"partition was still this many offsets behind: {behind}"
        ) from None


def test_every_commit_reaches_the_end_after_takeovers_mid_stream(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Issue 17: events at 700/s, the worker SIGKILLed and restarted at once, four times.
    Each new worker takes over a backlog, and its table recovery ends with a seek to the
    commits while that backlog is fetched. The outputs came out complete, but a
    partition's commit could then advance one offset per commit, thousands behind for
    good: a lag alert that never clears, and a backlog the next owner judges again.

    After each takeover, everything written before the new worker was ready must be
    committed within a minute, whatever keeps coming; at the end, every commit must
    reach its partition's end."""
    day = list(generate_day(events=90_000, seed=17))
    reference = Reference(day, tmp_path / "embedded")
    # Twelve partitions: the seek looks up the commit of each partition of the events
    # and partials topics and of every changelog, one after another, so it lasts longer,
    # and more of the partitions it seeks early are events partitions.
    deployment = Deployment(kafka_bootstrap, tmp_path, env={"LINEAGE_PARTITIONS": "12"})
    worker = Worker(deployment, "w0").start()
    workers = [worker]
    try:
        worker.wait_ready()
        producer = deployment.produce_in_background(day, rate=700)
        for kill in range(1, 5):
            wait_until(
                lambda w=worker: w.metric("lineage_events_total") >= 3_000,  # type: ignore[misc]
                120,
                f"worker {worker.name} to judge events",
                alive=[worker],
            )
            assert producer.is_alive(), "the stream ended before the kill"
            worker.kill()
            worker = Worker(deployment, f"w{kill}").start()
            workers.append(worker)
            worker.wait_ready()
            assert_commits_reach(deployment, deployment.end_offsets("events"), 60, worker)
        producer.join(180)
        assert not producer.is_alive()
        assert_agrees(deployment, reference, [worker])
        assert_commits_reach(deployment, deployment.end_offsets("events"), 60, worker)
    finally:
        for w in workers:
            w.stop()


@pytest.mark.parametrize(
    ("commit_interval", "store"),
    [
        # Nothing committed before the rebalances: every partition that moves is judged
        # again from its start by its next owner.
        ("600", "memory://"),
        ("2.8", "memory://"),
        # And then the worker that left comes back, on its own state folder: the
        # partitions it gets are on its disk as they were when it lost them, and read
        # on from there in their changelogs.
        ("2.8", "rocksdb://"),
    ],
    ids=["nothing-committed", "committed", "committed-rocksdb-and-back"],
)
def test_a_worker_joins_and_another_leaves_mid_stream(
    kafka_bootstrap: str, tmp_path: Path, commit_interval: str, store: str
) -> None:
    day = list(generate_day(events=9_000, seed=5))
    reference = Reference(day, tmp_path / "embedded")
    deployment = Deployment(kafka_bootstrap, tmp_path, env={"LINEAGE_STORE": store})
    first = Worker(deployment, "a", LINEAGE_COMMIT_INTERVAL=commit_interval)
    second = Worker(deployment, "b", LINEAGE_COMMIT_INTERVAL=commit_interval)
    third = len(day) // 3
    try:
        first.start().wait_ready()
        deployment.produce(day[:third], rate=3_000)
        second.start().wait_ready()  # joins: the group rebalances mid-stream
        wait_until(
            lambda: first.health()["partitions"] and second.health()["partitions"],
            60,
            "both workers to hold partitions",
            alive=[first, second],
        )
        judged = first.metric("lineage_events_total")
        producer = deployment.produce_in_background(day[third : 2 * third], rate=3_000)
        wait_until(
            lambda: first.metric("lineage_events_total") >= judged + 500,
            60,
            "worker a to judge events of the second third",
            alive=[first, second],
        )
        # Leaves mid-stream, with judged events not yet flushed: its last flush must
        # succeed (exit 0), and the other recovers its partitions' state from the changelogs.
        first.stop_cleanly()
        producer.join(120)
        assert not producer.is_alive()
        if store == "rocksdb://":
            wait_until(
                lambda: second.health()["partitions"] == [0, 1, 2, 3],
                60,
                "worker b to hold every partition",
                alive=[second],
            )
            first.start().wait_ready()
            wait_until(
                lambda: first.health()["partitions"] and second.health()["partitions"],
                60,
                "both workers to hold partitions again",
                alive=[first, second],
            )
        deployment.produce(day[2 * third :], rate=3_000)
        workers = [first, second] if store == "rocksdb://" else [second]
        assert_agrees(deployment, reference, workers)
        assert_subjects_agree(reference, second)
        held = {w.name: w.health()["partitions"] for w in workers}
        assert sorted(p for ps in held.values() for p in ps) == [0, 1, 2, 3]
        for w in workers:
            w.stop_cleanly()
    finally:
        first.stop()
        second.stop()
    assert_graph_agrees(deployment, reference)
    if store == "rocksdb://":
        for w in workers:
            assert_disk_holds_the_changelog(deployment, w.state_dir, held[w.name])


def test_a_worker_stopped_in_a_rebalance_leaves_its_group(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A worker's stop that a rebalance reaches halfway still leaves the group, so that
    its partitions move at once, not after the session timeout.

    Worker b is frozen (SIGSTOP) with a SIGTERM pending while worker a leaves: the
    group rebalances without b. Thawed, b starts its stop and learns of the rebalance
    from its first heartbeat: the new assignment reaches it while its tables close
    (RocksDB's take the longest).
    """
    from kafka.admin import KafkaAdminClient

    deployment = Deployment(kafka_bootstrap, tmp_path, env={"LINEAGE_STORE": "rocksdb://"})
    first = Worker(deployment, "a")
    second = Worker(deployment, "b")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        first.start().wait_ready()
        second.start().wait_ready()
        wait_until(
            lambda: first.health()["partitions"] and second.health()["partitions"],
            60,
            "both workers to hold partitions",
            alive=[first, second],
        )
        deployment.produce(list(generate_day(events=2_000, seed=9)), rate=3_000)
        wait_until(
            lambda: (
                first.metric("lineage_events_total") + second.metric("lineage_events_total")
                >= 2_000
            ),
            60,
            "the events judged",
            alive=[first, second],
        )
        assert second.process is not None
        os.kill(second.process.pid, signal.SIGSTOP)
        os.kill(second.process.pid, signal.SIGTERM)  # delivered when it is thawed
        first.stop_cleanly()
        # Frozen past its heartbeat interval (3 s), b heartbeats as soon as it is thawed.
        time.sleep(3.5)
        os.kill(second.process.pid, signal.SIGCONT)
        code = second.stop()  # its stop is under way; one that hangs is killed, stacks logged
        log = second.text()
        stopping = log.index("Worker]: Stopping")
        assert "Setting newly assigned partitions" in log[stopping:], (
            "the rebalance did not reach b's stop: the test did not test it"
        )
        assert code == 0, second.tail()
        group = admin.describe_groups([deployment.app_id])[deployment.app_id]
        # A member that did not leave stays in the group, with every partition, until
        # the session timeout (30 s).
        assert group["members"] == [], group
        assert group["group_state"] == "Empty", group
    finally:
        admin.close()
        first.stop()
        second.stop()


# -- a flood of bad messages -----------------------------------------------------------------------


def bad_messages(rnd: random.Random, n: int) -> list[tuple[bytes | None, bytes | None, str]]:
    """``n`` bad messages of every kind: (key, value, kind)."""
    at = '"occurred_at": "2026-11-20T10:00:00+09:00"'
    rest = '"source": "crm", "action": "use", "categories": ["contact.email"], "purpose": "x"'

    def event(i: int, body: str) -> bytes:
        return ("{" + f'"event_id": "flood-{i}", ' + body + "}").encode()

    kinds: list[tuple[str, Any]] = [
        ("not JSON", lambda i: (b"k", event(i, at + ", ")[:-1])),
        ("invalid UTF-8", lambda i: (b"k", b'{"event_id": "\xff\xfe' + str(i).encode() + b'"}')),
        ("empty", lambda i: (b"k", b"")),
        ("no value", lambda i: (b"k", None)),
        ("null key", lambda i: (None, event(i, f'{at}, "source": "crm"'))),
        ("missing field", lambda i: (b"k", event(i, f'{at}, "source": "crm"'))),
        (
            "wrong type",
            lambda i: (b"k", event(i, f"{at}, {rest.replace('[', '').replace(']', '')}")),
        ),
        ("unknown enum", lambda i: (b"k", event(i, f"{at}, {rest}".replace('"use"', '"sell"')))),
        ("unknown version", lambda i: (b"k", event(i, f'"schema_version": "9", {at}, {rest}'))),
        ("bad timestamp", lambda i: (b"k", event(i, f'"occurred_at": "yesterday", {rest}'))),
        ("deeply nested", lambda i: (b"k", event(i, f'{at}, "attributes": {"[" * 20_000}'))),
        ("not an object", lambda i: (b"k", b"[" + str(i).encode() + b"]")),
    ]
    out = []
    for i in range(n):
        name, make = kinds[i % len(kinds)]
        key, value = make(i)
        out.append((key, value, name))
    # A few over 1 MiB that get in compressed: read whole from Kafka, never judged whole.
    for i in range(8):
        big = event(n + i, f'{at}, "note": "' + "a" * (2 * 1024 * 1024) + '"')
        out.append((b"k", big, "over 1 MiB"))
    rnd.shuffle(out)
    return out


def compose_health_timeout(service: str) -> float:
    """The health check timeout of a service of docker-compose.yml, in seconds."""
    compose = yaml.safe_load((Path(__file__).parents[1] / "docker-compose.yml").read_text())
    timeout = str(compose["services"][service]["healthcheck"]["timeout"])
    assert timeout.endswith("s") and timeout[:-1].isdigit(), timeout
    return float(timeout[:-1])


def test_a_flood_with_one_bad_message_in_ten_stops_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rnd = random.Random(3)
    good = list(generate_day(events=45_000, seed=8, malformed=0))
    bad = bad_messages(rnd, 5_000)
    reference = Reference(good, tmp_path / "embedded")
    # Bad messages at random places among the good ones, good ones in their order.
    slots = sorted(rnd.sample(range(len(good) + len(bad)), len(bad)))
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    good_it, bad_it = iter(good), iter(bad)
    slot_set = set(slots)
    for i in range(len(good) + len(bad)):
        if i in slot_set:
            key, value, _ = next(bad_it)
        else:
            value = next(good_it)
            key = event_key(value)
        keys.append(key)
        values.append(value)
    deployment = Deployment(kafka_bootstrap, tmp_path)
    worker = Worker(deployment, "a").start()
    try:
        worker.wait_ready()
        deployment.produce(
            values, keys=keys, compression_type="gzip", max_request_size=16 * 1024 * 1024
        )
        # The worker never stalls: it answers /health all along, within the timeout of
        # the health check it is deployed with. The stall this guards against (one large
        # message scanned in quadratic time) lasted minutes; a busy worker answers once
        # the batch in hand is judged, which took up to 1.1 s on a 2-core machine shared
        # with a second test suite: a wall-clock bound tighter than the probe's would
        # test the machine, not the worker.
        probe_timeout = compose_health_timeout("worker")
        slowest = 0.0

        def all_dead_letters(messages: list[Any]) -> bool:
            nonlocal slowest
            started = time.monotonic()
            assert worker.health()["status"] == "ok"
            slowest = max(slowest, time.monotonic() - started)
            return len(messages) >= len(bad)

        dead = deployment.read("dead-letter", all_dead_letters, 240, alive=[worker])
        assert len(dead) == len(bad)
        assert slowest < probe_timeout
        for message in dead:
            envelope = orjson.loads(dict(message.headers)["lineage-dead-letter"])
            assert envelope["reason"] and envelope["kind"]
            assert len(message.value or b"") <= 64 * 1024
        envelopes = [orjson.loads(dict(m.headers)["lineage-dead-letter"]) for m in dead]
        assert sum(bool(e.get("truncated")) for e in envelopes) == 8
        assert_agrees(deployment, reference, [worker])
        assert worker.metric("lineage_dead_letters_total") == len(bad)
    finally:
        worker.stop()
    assert_graph_agrees(deployment, reference)


@STORES
def test_a_restarted_worker_recovers_the_state_of_80000_events(
    kafka_bootstrap: str, tmp_path: Path, store: str
) -> None:
    day = list(generate_day(events=82_000, seed=13))  # 10,250 subjects
    before, after = day[:80_000], day[80_000:]
    reference = Reference(day, tmp_path / "embedded")
    first_part = Reference(before, tmp_path / "embedded-before")
    deployment = Deployment(kafka_bootstrap, tmp_path, env={"LINEAGE_STORE": store})

    def stopped(first: Worker) -> None:
        if store == "rocksdb://":
            # Every record of every changelog is on disk: recovery has nothing to read.
            assert_disk_holds_the_changelog(deployment, first.state_dir, range(4))

    # Consents, dedup ids, edges and incident partials of the first 80,000 events
    # decide the judgments and counts of the rest.
    second, recovered_in = judged_across_a_restart(
        deployment, store, (before, first_part), (after, reference), stopped
    )
    print(f"{store}: recovered the state of {len(before)} events in {recovered_in:.1f} s")
    assert_graph_agrees(deployment, reference)
    if store == "rocksdb://":
        assert_disk_holds_the_changelog(deployment, second.state_dir, range(4))


@STORES
def test_a_subject_too_large_for_one_record_is_recovered_from_its_pieces(
    kafka_bootstrap: str, tmp_path: Path, store: str
) -> None:
    """One subject is disclosed to market research 1,500 times in a day without consent:
    its record (the alerts a late consent may still retract) is some 500 KB, over the
    64 KiB this deployment may send in one message, so it goes in pieces. So does the
    row of the subject view for the pair, which names 1,000 distinct (undeclared)
    categories, some 90 KB. A restarted worker reads both back from their pieces, and
    the late consent retracts every alert."""
    day = list(generate_day(events=2_000, seed=21))
    wide = "custom-category-{:05d}.long-enough-to-fill-a-row.of-the-subject-view.in-its-pieces"
    heavy = [
        orjson.dumps(
            {
                "event_id": f"heavy-{n}",
                "occurred_at": f"2026-11-20T{10 + n // 3600:02d}:{n // 60 % 60:02d}:"
                f"{n % 60:02d}+09:00",
                "source": "crm",
                "action": "transfer",
                "recipient": "market-research",
                "categories": [
                    "activity.purchase_history",
                    *[wide.format(n)] * (n < 1_000),
                ],
                "purpose": "statistics",
                "encrypted_in_transit": True,
                "legal_basis": "consent",
                "subject": "u-heavy",
            }
        )
        for n in range(1_500)
    ]
    late = orjson.dumps(
        {
            "type": "consent",
            "event_id": "heavy-consent",
            "occurred_at": "2026-11-20T09:00:00+09:00",
            "subject": "u-heavy",
            "recipient": "market-research",
            "status": "granted",
        }
    )
    before = [*day, *heavy]
    reference = Reference([*before, late], tmp_path / "embedded")
    first_part = Reference(before, tmp_path / "embedded-before")
    assert sum(s == "retracted" for s in reference.statuses.values()) >= 1_500
    deployment = Deployment(
        kafka_bootstrap,
        tmp_path,
        env={"LINEAGE_STORE": store, "LINEAGE_MAX_OUTPUT_BYTES": str(64 * 1024)},
    )
    judged_across_a_restart(deployment, store, (before, first_part), ([late], reference))
    assert_graph_agrees(deployment, reference)


def test_a_changelog_record_kafka_refuses_never_reaches_the_disk(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """RocksDB: a worker whose changelog record Kafka refuses stops; restarted on its state
    folder, it must not find there the state Kafka never got. faust's own store writes
    to disk before Kafka answers: the events judged again then find their state applied,
    write nothing, and their state never reaches the changelog (docs/upstream.md,
    section 13)."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    day = list(generate_day(events=3_000, seed=21))
    # The events judged while Kafka refuses are the day's last: few of their subjects
    # come again, to write their state anew.
    half = len(day) - 300
    reference = Reference(day, tmp_path / "embedded")
    deployment = Deployment(kafka_bootstrap, tmp_path, env={"LINEAGE_STORE": "rocksdb://"})
    subjects = ConfigResource(
        ConfigResourceType.TOPIC, f"{deployment.app_id}-{deployment.prefix}subjects-changelog"
    )
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    worker = Worker(deployment, "a")
    try:
        worker.start().wait_ready()
        produced = deployment.produce(day[:half])
        wait_until(
            lambda: sum(deployment.committed("events").values()) == produced,
            120,
            "the first part to be committed",
            alive=[worker],
        )
        # Every record of the subjects changelog is now too large for Kafka.
        subjects.configs = {"max.message.bytes": "16"}
        admin.alter_configs([subjects])
        deployment.produce(day[half:])
        assert worker.process is not None
        wait_until(lambda: worker.process.poll() is not None, 120, "the worker to stop")  # type: ignore[union-attr]
        assert worker.process.returncode != 0
        assert "did not acknowledge a record of the tables' changelog" in worker.text()
        subjects.configs = {"max.message.bytes": None}
        admin.reset_configs([subjects])
        worker.start().wait_ready()  # on the same state folder
        assert_agrees(deployment, reference, [worker])
        assert_subjects_agree(reference, worker)
        worker.stop_cleanly()
    finally:
        worker.stop()
        admin.close()
    assert_graph_agrees(deployment, reference)
    assert_disk_holds_the_changelog(deployment, worker.state_dir, range(4))
