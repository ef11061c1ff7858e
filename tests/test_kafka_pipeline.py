"""End to end on a real Apache Kafka: the worker agrees with the embedded run, exactly.

Each test is its own deployment on the session broker (uuid topic prefix and app id)
and runs real `lineage worker` processes. The reference is `run_embedded` on the same
lines with the same redaction key.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from lineage.demo import generate_day
from lineage.policy import load_policy
from lineage.redact import Redactor
from lineage.run import run_embedded
from schemas import EventRejected
from streams.emitter import Emitter
from tests.kafka_helpers import REDACTION_KEY, Deployment, Worker

pytestmark = pytest.mark.kafka


def embedded(lines: list[bytes], out: Path) -> dict[str, Any]:
    """The embedded run's alerts, dead letters, final incidents and graph."""
    run_embedded(load_policy(), lines, out, redactor=Redactor(REDACTION_KEY.encode()))
    alerts = [orjson.loads(line) for line in (out / "alerts.jsonl").read_bytes().splitlines()]
    dead = [orjson.loads(line) for line in (out / "dead-letter.jsonl").read_bytes().splitlines()]
    incidents: dict[str, int] = {}
    for line in (out / "incidents.jsonl").read_bytes().splitlines():
        incident = orjson.loads(line)
        incidents[incident["incident_id"]] = incident["count"]
    return {
        "alerts": alerts,
        "dead": dead,
        "incidents": incidents,
        "graph": json.loads((out / "lineage.json").read_text()),
    }


def alert_facts(alerts: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    return {(a["alert_id"], a["rule"], a["article"], a["event_id"]) for a in alerts}


def graph_facts(graph: dict[str, Any]) -> tuple[Any, Any]:
    nodes = sorted(json.dumps(n, sort_keys=True) for n in graph["nodes"])
    links = sorted(json.dumps(e, sort_keys=True) for e in graph["links"])
    return nodes, links


def read_alerts(deployment: Deployment, expected: int, timeout: float = 180) -> list[Any]:
    def enough(messages: list[Any]) -> bool:
        return len({orjson.loads(m.value)["alert_id"] for m in messages}) >= expected

    messages = deployment.read("alerts", enough, timeout)
    return [orjson.loads(m.value) for m in messages]


def final_incidents(deployment: Deployment, want: dict[str, int]) -> dict[str, int]:
    """The latest published count of each incident, once they reach the wanted counts."""

    def latest(messages: list[Any]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in messages:
            incident = orjson.loads(m.value)
            counts[incident["incident_id"]] = max(
                counts.get(incident["incident_id"], 0), incident["count"]
            )
        return counts

    return latest(deployment.read("incidents", lambda ms: latest(ms) == want, timeout=120))


def http_get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return str(response.read().decode())


def export_graph(deployment: Deployment, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "exported.json"
    result = deployment.export("json", out)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(out.read_text()))


def event_positions(deployment: Deployment, n: int) -> dict[str, tuple[int, int]]:
    """(partition, offset) of each event id's first copy in the events topic."""
    where: dict[str, tuple[int, int]] = {}
    for m in deployment.read("events", lambda ms: len(ms) >= n, timeout=60):
        try:
            event_id = json.loads(m.value).get("event_id")
        except (ValueError, AttributeError):
            continue
        if isinstance(event_id, str):
            here = (m.partition, m.offset)
            where[event_id] = min(where.get(event_id, here), here)
    return where


@pytest.fixture(scope="module")
def day() -> list[bytes]:
    return list(generate_day(events=1500, seed=5))


def test_emitter_events_give_the_embedded_alerts_and_graph(
    kafka_bootstrap: str, tmp_path: Path, day: list[bytes]
) -> None:
    reference = embedded(day, tmp_path / "embedded")
    deployment = Deployment(kafka_bootstrap, tmp_path)
    worker = Worker(deployment, "a").start()
    try:
        worker.wait_ready()
        malformed = []
        with Emitter(
            kafka_bootstrap, topic=deployment.topic("events"), spill_path=tmp_path / "spill.jsonl"
        ) as emitter:
            for line in day:
                try:
                    emitter.emit(line)
                except EventRejected:
                    malformed.append(line)
        deployment.produce(malformed)  # the Emitter refuses them; a careless producer would not

        alerts = read_alerts(deployment, len(reference["alerts"]))
        assert alert_facts(alerts) == alert_facts(reference["alerts"]), worker.tail()

        dead = deployment.read("dead-letter", lambda ms: len(ms) >= len(reference["dead"]), 60)
        assert len(dead) == len(reference["dead"]) == len(malformed)
        for message in dead:
            headers = dict(message.headers)
            assert headers["lineage-reason"]
            envelope = orjson.loads(headers["lineage-dead-letter"])
            assert envelope["kind"] == headers["lineage-kind"].decode()
            if not envelope["redacted"]:
                assert message.value in malformed  # the original bytes, untouched

        assert final_incidents(deployment, reference["incidents"]) == reference["incidents"]

        # The worker's web server: health, Prometheus metrics and the same global graph.
        health = json.loads(http_get(worker.web_port, "/health"))
        assert health["status"] == "ok" and health["policy_version"]
        metrics = http_get(worker.web_port, "/metrics")
        total_alerts = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("lineage_alerts_total{")
        )
        assert total_alerts >= len(reference["alerts"])
        assert "lineage_consumer_lag{" in metrics and "lineage_dead_letters_total" in metrics
        served = json.loads(http_get(worker.web_port, "/graph?format=json"))
        assert graph_facts(served) == graph_facts(reference["graph"])
        assert (
            http_get(worker.web_port, "/graph?format=html")
            .lstrip()
            .lower()
            .startswith("<!doctype html")
        )
    finally:
        worker.stop()
    # With no worker running, the graph comes back from Kafka alone.
    assert graph_facts(export_graph(deployment, tmp_path)) == graph_facts(reference["graph"])


@pytest.mark.parametrize(
    "first_commit_interval",
    [
        # Nothing committed before the rebalance: with faust's take_events, events
        # buffered before it were acked after it, against a committed offset faust had
        # forgotten, and the commit passed messages never judged (alerts lost).
        "600",
        "2.8",
    ],
    ids=["nothing-committed", "committed"],
)
def test_two_workers_share_partitions_and_a_rebalance_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path, day: list[bytes], first_commit_interval: str
) -> None:
    reference = embedded(day, tmp_path / "embedded")
    deployment = Deployment(kafka_bootstrap, tmp_path)
    first = Worker(deployment, "a", LINEAGE_COMMIT_INTERVAL=first_commit_interval)
    second = Worker(deployment, "b")
    half = len(day) // 2
    try:
        first.start().wait_ready()
        deployment.produce(day[:half])
        second.start().wait_ready()  # joining makes the group rebalance mid-stream
        deployment.produce(day[half:])
        alerts = read_alerts(deployment, len(reference["alerts"]))
        assert alert_facts(alerts) == alert_facts(reference["alerts"])
        assert final_incidents(deployment, reference["incidents"]) == reference["incidents"]
        # After the rebalance each worker judges its own share of the partitions.
        held = [
            set(json.loads(http_get(w.web_port, "/health"))["partitions"]) for w in (first, second)
        ]
        assert held[0] and held[1] and not held[0] & held[1]
        assert held[0] | held[1] == {0, 1, 2, 3}
    finally:
        first.stop()
        second.stop()
    assert graph_facts(export_graph(deployment, tmp_path)) == graph_facts(reference["graph"])


def test_a_worker_that_leaves_hands_its_partitions_and_their_state_over(
    kafka_bootstrap: str, tmp_path: Path, day: list[bytes]
) -> None:
    reference = embedded(day, tmp_path / "embedded")
    deployment = Deployment(kafka_bootstrap, tmp_path)
    first, second = Worker(deployment, "a"), Worker(deployment, "b")
    half = len(day) // 2
    try:
        first.start().wait_ready()
        second.start().wait_ready()
        deployment.produce(day[:half])
        # Both judged their share; then one leaves, and the other recovers its
        # partitions' state (consents, edges, incidents, dedup) from the changelogs.
        deployment.read("alerts", lambda ms: len(ms) > 0, timeout=60)
        second.stop()
        deployment.produce(day[half:])
        alerts = read_alerts(deployment, len(reference["alerts"]))
        assert alert_facts(alerts) == alert_facts(reference["alerts"])
        assert final_incidents(deployment, reference["incidents"]) == reference["incidents"]
        assert json.loads(http_get(first.web_port, "/health"))["partitions"] == [0, 1, 2, 3]
    finally:
        first.stop()
        second.stop()
    assert graph_facts(export_graph(deployment, tmp_path)) == graph_facts(reference["graph"])


def test_a_crash_and_redelivery_count_every_event_once(
    kafka_bootstrap: str, tmp_path: Path, day: list[bytes]
) -> None:
    reference = embedded(day, tmp_path / "embedded")
    deployment = Deployment(kafka_bootstrap, tmp_path)
    # The first worker commits no offset on its timer before the crash, so whatever it
    # judged is delivered again (the test reads the group's commits to know exactly).
    worker = Worker(deployment, "a", LINEAGE_COMMIT_INTERVAL="600").start()
    try:
        worker.wait_ready()
        deployment.produce(day)
        read_alerts(deployment, len(reference["alerts"]))
        worker.kill()  # no shutdown, no final commit
        first_round = deployment.read(
            "alerts", lambda ms: len(ms) >= len(reference["alerts"]), timeout=60
        )
        committed = deployment.committed("events")
        worker = Worker(deployment, "a-restarted").start()
        worker.wait_ready()
        # Every alert of an event at or past its partition's commit comes again.
        where = event_positions(deployment, len(day))
        again = {
            a["alert_id"]
            for a in reference["alerts"]
            if where[a["event_id"]][1] >= committed.get(where[a["event_id"]][0], 0)
        }
        assert again, "nothing was left to redeliver: the test proves nothing"
        seen_first = {(m.partition, m.offset) for m in first_round}
        messages = deployment.read(
            "alerts", lambda ms: len(ms) >= len(first_round) + len(again), timeout=180
        )
        alerts = [orjson.loads(m.value) for m in messages]
        ids_by_fact: dict[tuple[str, str], set[str]] = {}
        for alert in alerts:
            ids_by_fact.setdefault((alert["rule"], alert["event_id"]), set()).add(alert["alert_id"])
        assert all(len(ids) == 1 for ids in ids_by_fact.values())  # never under two ids
        assert alert_facts(alerts) == alert_facts(reference["alerts"])  # none lost
        redelivered = [
            orjson.loads(m.value)["alert_id"]
            for m in messages
            if (m.partition, m.offset) not in seen_first
        ]
        assert sorted(redelivered) == sorted(again)  # each judged again exactly once
        assert final_incidents(deployment, reference["incidents"]) == reference["incidents"]
    finally:
        worker.stop()
    assert graph_facts(export_graph(deployment, tmp_path)) == graph_facts(reference["graph"])
