"""docker-compose.yml: valid for Compose, and the same Kafka as the local broker script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) when it is installed, else Debian's `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_config_passes() -> None:
    command = compose_command()
    if command is None:
        if os.environ.get("CI") or os.environ.get("LINEAGE_REQUIRE_BROKER"):
            pytest.fail("neither `docker compose` nor `docker-compose` is installed")
        pytest.skip("no docker compose on this machine")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_compose_runs_the_pinned_kafka_and_a_healthy_worker() -> None:
    spec = yaml.safe_load(COMPOSE.read_text())
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)<", pom)
    assert version is not None
    kafka, worker = spec["services"]["kafka"], spec["services"]["worker"]
    assert kafka["image"] == f"apache/kafka:{version.group(1)}"
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "healthcheck" in kafka and "healthcheck" in worker
    assert worker["build"] == "."
    assert worker["environment"]["LINEAGE_BROKER"] == "kafka:9092"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
