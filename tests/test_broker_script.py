"""scripts/kafka-local without starting anything: its help and the broker settings it writes."""

from __future__ import annotations

import subprocess

from tests.broker import KAFKA_LOCAL


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KAFKA_LOCAL), *args], capture_output=True, text=True, timeout=30)


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("start", "stop", "status", "fetch"):
        assert command in result.stdout


def test_config_is_a_single_node_kraft_broker_on_loopback() -> None:
    result = run("config", "--port", "29092", "--dir", "/tmp/lineage-config-only")
    assert result.returncode == 0
    props = dict(line.split("=", 1) for line in result.stdout.splitlines() if line and "=" in line)
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"].startswith("PLAINTEXT://127.0.0.1:29092")
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_status_of_a_folder_without_a_broker_is_stopped(tmp_path: object) -> None:
    result = run("status", "--dir", str(tmp_path))
    assert result.returncode == 1 and "stopped" in result.stdout
