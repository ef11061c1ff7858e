"""A broker outage mid-stream: the worker rides it out and loses nothing.

This test stops and starts a broker, so it runs one of its own with
``scripts/kafka-local`` (Java and Maven), never the session's broker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineage.demo import generate_day
from tests.broker import KAFKA_LOCAL
from tests.kafka_helpers import Deployment, Worker
from tests.test_kafka_pipeline import alert_facts, embedded, final_incidents, read_alerts

pytestmark = pytest.mark.kafka


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
            pytest.fail("the outage test needs Java and Maven for scripts/kafka-local")
        pytest.skip("the outage test needs Java and Maven for a broker of its own")
    folder = tmp_path / "kafka"
    bootstrap = kafka_local("start", "--dir", str(folder))
    try:
        yield bootstrap, folder
    finally:
        kafka_local("stop", "--dir", str(folder))


def test_a_broker_outage_loses_nothing(own_broker: tuple[str, Path], tmp_path: Path) -> None:
    bootstrap, folder = own_broker
    day = list(generate_day(events=1500, seed=5))
    reference = embedded(day, tmp_path / "embedded")
    deployment = Deployment(bootstrap, tmp_path)
    worker = Worker(deployment, "a")
    half = len(day) // 2
    try:
        worker.start().wait_ready()
        deployment.produce(day[:half])
        deployment.read("alerts", lambda ms: len(ms) > 0, timeout=60)
        kafka_local("stop", "--dir", str(folder))
        time.sleep(12)  # longer than a commit interval and a metadata refresh
        assert worker.process is not None and worker.process.poll() is None
        assert kafka_local("start", "--dir", str(folder)) == bootstrap  # same port again
        deployment.produce(day[half:])
        alerts = read_alerts(deployment, len(reference["alerts"]))
        assert alert_facts(alerts) == alert_facts(reference["alerts"])
        assert final_incidents(deployment, reference["incidents"]) == reference["incidents"]
        assert worker.process.poll() is None  # rode it out, no restart
    finally:
        worker.stop()
