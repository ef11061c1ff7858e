"""What a worker tells its operator, on a real Apache Kafka: probes that answer under
load, and a lag gauge that means what an operator means by lag.

- ``/health`` and ``/metrics`` answer within a second while the worker works through
  a backlog (the web server runs apart from the judging loop);
- ``lineage_consumer_lag`` is, per partition the worker holds, the end offset less the
  committed offset (or, before a commit, the next offset to judge): a restarted worker
  with nothing left to judge shows 0 from its first scrape, never the raw high-water
  mark; a partition that moved to another worker loses its series; and once the
  worker is idle the gauges add up to the group's lag as Kafka reports it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.error
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from lineage.demo import generate_day
from tests.kafka_helpers import Deployment, Worker, wait_until

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.kafka


def lag_series(worker: Worker) -> dict[int, float]:
    """Each ``lineage_consumer_lag{partition}`` sample on the worker's /metrics."""
    found = {}
    for line in worker.get("/metrics", timeout=5).splitlines():
        if line.startswith("lineage_consumer_lag{"):
            partition = int(line.split('partition="', 1)[1].split('"', 1)[0])
            found[partition] = float(line.rsplit(" ", 1)[1])
    return found


def group_lag(deployment: Deployment) -> dict[int, int]:
    """End offset less committed offset of each events partition, as Kafka has them."""
    committed = deployment.committed("events")
    consumer = KafkaConsumer(bootstrap_servers=deployment.bootstrap)
    try:
        topic = deployment.topic("events")
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
    return {tp.partition: ends[tp] - committed.get(tp.partition, 0) for tp in tps}


def test_health_and_metrics_answer_within_a_second_through_a_backlog(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # A breach storm of another policy: the costliest events to judge, all waiting.
    from bench.traffic import generate
    from lineage.policy import load_policy

    policy_file = ROOT / "bench" / "policies" / "sakura-retail.yaml"
    day = list(generate(load_policy(policy_file), 60_000, 0.9, subjects=20_000, seed=23))
    deployment = Deployment(kafka_bootstrap, tmp_path)
    worker = Worker(deployment, "a", LINEAGE_BATCH_SIZE="2000", LINEAGE_POLICY=str(policy_file))
    worker.start().wait_ready()
    try:
        deployment.produce(day)  # a backlog: all of it before the worker has judged much
        slowest = {"/health": 0.0, "/metrics": 0.0}
        polls = 0
        judged_during = 0.0
        while True:
            for path in slowest:
                started = time.monotonic()
                body = worker.get(path, timeout=5)
                slowest[path] = max(slowest[path], time.monotonic() - started)
                polls += 1
            judged = worker.metric("lineage_events_total")
            if judged < len(day) * 0.9:
                judged_during = judged
            else:
                break
            worker.assert_running()
            time.sleep(0.05)
        assert "lineage_events_total" in body
        # Only the series asked for, when asked by name (Prometheus' name[] parameter).
        only = worker.get("/metrics?name[]=lineage_events_total&name[]=lineage_duplicates_total")
        series = {line.split("{")[0].split(" ")[0] for line in only.splitlines() if line[:1] != "#"}
        assert series == {"lineage_events_total", "lineage_duplicates_total"}, only
        assert polls >= 20 and judged_during > 0, (polls, judged_during)
        assert slowest["/health"] < 1.0 and slowest["/metrics"] < 1.0, slowest
        print(f"slowest answers through the backlog: {slowest}")
    finally:
        worker.stop()


def test_a_restarted_worker_with_nothing_to_judge_shows_no_lag(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    day = list(generate_day(events=8_000, seed=29))
    deployment = Deployment(kafka_bootstrap, tmp_path)
    first = Worker(deployment, "a", LINEAGE_COMMIT_INTERVAL="0.5")
    first.start().wait_ready()
    try:
        deployment.produce(day)
        wait_until(
            lambda: sum(group_lag(deployment).values()) == 0,
            120,
            "every event judged and committed",
            alive=[first],
        )
        # The judging loop sets the gauges every second.
        wait_until(lambda: sum(lag_series(first).values()) == 0, 10, "the gauges to show 0")
    finally:
        first.stop_cleanly()
    second = Worker(deployment, "b")
    samples: list[dict[int, float]] = []
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            # Not serving yet: nothing to read.
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                samples.append(lag_series(second))
            time.sleep(0.1)

    scraper = threading.Thread(target=scrape)
    second.start()
    scraper.start()
    try:
        second.wait_ready()
        wait_until(lambda: len(lag_series(second)) == 4, 60, "a lag series per partition")
        time.sleep(3)
    finally:
        stop.set()
        scraper.join()
        second.stop()
    shown = [s for s in samples if s]
    assert shown, "no lag series was ever scraped"
    assert all(v == 0 for s in shown for v in s.values()), [s for s in shown if any(s.values())]


def test_the_lag_gauge_follows_the_partitions_and_adds_up_to_the_group_lag(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    day = list(generate_day(events=6_000, seed=31))
    deployment = Deployment(kafka_bootstrap, tmp_path)
    a = Worker(deployment, "a", LINEAGE_COMMIT_INTERVAL="0.5")
    b = Worker(deployment, "b", LINEAGE_COMMIT_INTERVAL="0.5")
    try:
        a.start().wait_ready()
        deployment.produce(day[:3000])
        wait_until(lambda: len(lag_series(a)) == 4, 60, "a's lag of every partition", alive=[a])
        b.start().wait_ready()
        wait_until(
            lambda: a.health()["partitions"] and b.health()["partitions"],
            60,
            "both workers to hold partitions",
            alive=[a, b],
        )
        deployment.produce(day[3000:])
        # Each worker shows exactly the partitions it holds: a moved one is dropped.
        wait_until(
            lambda: (
                set(lag_series(a)) == set(a.health()["partitions"])
                and set(lag_series(b)) == set(b.health()["partitions"])
            ),
            60,
            "each worker's lag series to be its own partitions",
            alive=[a, b],
        )
        assert not set(lag_series(a)) & set(lag_series(b))
        # Idle, the gauges are the group's lag as Kafka reports it (here none).
        wait_until(
            lambda: sum(group_lag(deployment).values()) == 0,
            120,
            "every event judged and committed",
            alive=[a, b],
        )
        wait_until(
            lambda: {**lag_series(a), **lag_series(b)} == group_lag(deployment),
            30,
            "the gauges to equal the group lag",
            alive=[a, b],
        )
    finally:
        a.stop()
        b.stop()
