"""End to end on a real Apache Kafka: the worker agrees with the embedded run, exactly.

Each test is its own deployment on the session broker (uuid topic prefix and app id)
and runs real `lineage worker` processes. The reference is `run_embedded` on the same
lines with the same redaction key. Faults (crashes, rebalances, floods of bad input,
restarts) are in tests/test_faults.py; broker outages in tests/test_kafka_outage.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from lineage.demo import generate_day
from schemas import EventRejected
from streams.emitter import Emitter
from tests.kafka_helpers import Deployment, Reference, Worker, graph_facts

pytestmark = pytest.mark.kafka


def test_emitter_events_give_the_embedded_alerts_and_graph(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    day = list(generate_day(events=1500, seed=5))
    reference = Reference(day, tmp_path / "embedded")
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

        ids = deployment.alert_ids(reference.alert_ids, 180, alive=[worker])
        assert ids == reference.alert_ids, worker.tail()

        dead = deployment.read(
            "dead-letter", lambda ms: len(ms) >= len(reference.dead), 60, alive=[worker]
        )
        assert len(dead) == len(reference.dead) == len(malformed)
        for message in dead:
            headers = dict(message.headers)
            assert headers["lineage-reason"]
            envelope = orjson.loads(headers["lineage-dead-letter"])
            assert envelope["kind"] == headers["lineage-kind"].decode()
            if not envelope["redacted"]:
                assert message.value in malformed  # the original bytes, untouched

        incidents = deployment.final_incidents(reference.incidents, 120, alive=[worker])
        assert incidents == reference.incidents

        # The worker's web server: health, Prometheus metrics and the same global graph.
        health = worker.health()
        assert health["status"] == "ok" and health["policy_version"]
        assert worker.metric("lineage_alerts_total") >= len(reference.alerts)
        metrics = worker.get("/metrics")
        assert "lineage_consumer_lag{" in metrics and "lineage_dead_letters_total" in metrics
        assert worker.metric("lineage_outputs_total") > 0
        served = json.loads(worker.get("/graph?format=json"))
        assert graph_facts(served) == graph_facts(reference.graph)
        page = worker.get("/graph?format=html")
        assert page.lstrip().lower().startswith("<!doctype html")
    finally:
        worker.stop()
    # With no worker running, the graph comes back from Kafka alone.
    assert graph_facts(deployment.exported_graph()) == graph_facts(reference.graph)
