"""TLS and SASL SCRAM-SHA-512: worker, Emitter and export on a broker that takes nothing else.

The broker is ``scripts/kafka-local start --secure`` (Java, Maven, openssl): TLS with a
CA of its own and SCRAM users. Wrong credentials and an untrusted certificate fail at
once, each with a sentence that says so and no secret in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lineage.demo import generate_day
from lineage.emitter import Emitter
from tests.broker import KAFKA_LOCAL
from tests.kafka_helpers import Deployment, Reference, Worker, graph_facts, wait_until

pytestmark = pytest.mark.kafka


class Secure:
    """A secure broker and what a client needs to reach it."""

    def __init__(self, bootstrap: str, tls: Path) -> None:
        self.bootstrap = bootstrap
        self.ca = tls / "ca.pem"
        self.password_file = tls / "lineage.password"
        self.password = self.password_file.read_text().strip()

    def client(self, **override: Any) -> dict[str, Any]:
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "lineage",
            "sasl_plain_password": self.password,
            "ssl_cafile": str(self.ca),
            **override,
        }

    def env(self, **override: str) -> dict[str, str]:
        return {
            "LINEAGE_SECURITY_PROTOCOL": "SASL_SSL",
            "LINEAGE_SASL_MECHANISM": "SCRAM-SHA-512",
            "LINEAGE_SASL_USERNAME": "lineage",
            "LINEAGE_SASL_PASSWORD_FILE": str(self.password_file),
            "LINEAGE_SSL_CAFILE": str(self.ca),
            **override,
        }


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    for tool in ("java", "mvn", "openssl"):
        if shutil.which(tool) is None:
            if os.environ.get("CI") or os.environ.get("LINEAGE_REQUIRE_BROKER"):
                pytest.fail(f"the TLS and SASL tests need {tool} for scripts/kafka-local")
            pytest.skip(f"the TLS and SASL tests need {tool}")
    folder = tmp_path_factory.mktemp("kafka-secure")
    started = subprocess.run(
        [str(KAFKA_LOCAL), "start", "--secure", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    try:
        yield Secure(started.stdout.strip().splitlines()[-1], folder / "tls")
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop", "--dir", str(folder)], check=False, timeout=60)


def test_the_pipeline_runs_through_tls_and_scram(secure: Secure, tmp_path: Path) -> None:
    day = list(generate_day(events=1500, seed=5, malformed=0))
    reference = Reference(day, tmp_path / "embedded")
    deployment = Deployment(secure.bootstrap, tmp_path, client=secure.client(), env=secure.env())
    worker = Worker(deployment, "a")
    try:
        worker.start().wait_ready()
        with Emitter(
            secure.bootstrap,
            topic=deployment.topic("events"),
            spill_path=tmp_path / "spill.jsonl",
            producer_config=secure.client(),
        ) as emitter:
            for line in day:
                emitter.emit(line)
        assert emitter.last_error is None and emitter.stats.spilled == 0
        ids = deployment.alert_ids(reference.alert_ids, 180, alive=[worker])
        assert ids == reference.alert_ids
        assert secure.password not in worker.text()
    finally:
        worker.stop()
    assert graph_facts(deployment.exported_graph()) == graph_facts(reference.graph)


def run_cli(deployment: Deployment, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lineage.cli", *args],
        env=deployment.env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ({"LINEAGE_SASL_PASSWORD_FILE": "", "LINEAGE_SASL_PASSWORD": "not-the-password"},
         "refused the credentials of user 'lineage'"),
        ({"LINEAGE_SSL_CAFILE": ""}, "is not trusted"),
        ({"LINEAGE_SASL_MECHANISM": "SCRAM-SHA-256"}, "does not offer SASL SCRAM-SHA-256"),
    ],
    ids=["wrong-password", "untrusted-certificate", "wrong-mechanism"],
)  # fmt: skip
def test_a_refusal_fails_at_once_and_says_why(
    secure: Secure, tmp_path: Path, setting: dict[str, str], says: str
) -> None:
    deployment = Deployment(secure.bootstrap, tmp_path, client=secure.client(), env=secure.env())
    for command in (["worker"], ["export", "--format", "json", "--out", "-"]):
        started = time.monotonic()
        done = run_cli(deployment, *command, **setting)
        assert done.returncode == 1, done.stderr
        assert time.monotonic() - started < 30  # at once, not after the clients' retries
        (line,) = done.stderr.strip().splitlines()
        assert says in line and line.startswith("lineage: error: ")
        assert secure.password not in done.stderr and "not-the-password" not in done.stderr


def test_the_emitter_says_why_kafka_refused_it(secure: Secure, tmp_path: Path) -> None:
    emitter = Emitter(
        secure.bootstrap,
        topic="refused",
        spill_path=tmp_path / "spill.jsonl",
        producer_config=secure.client(sasl_plain_password="wrong", bootstrap_timeout_ms=5000),
        retry_seconds=0.2,
    )
    try:
        emitter.emit(next(iter(generate_day(events=1, malformed=0))))
        # On a busy machine a first try may time out before the broker's answer; the
        # next ones say why.
        wait_until(
            lambda: "refused the credentials of user 'lineage'" in (emitter.last_error or ""),
            60,
            "the Emitter to say the credentials were refused",
        )
    finally:
        emitter.close(timeout=5)
    assert emitter.stats.spilled == 1  # kept on disk for when the credentials are fixed
