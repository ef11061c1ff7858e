"""What each process of ``lineage worker --processes N`` is given, and the setting itself
(streams/processes.py, streams/settings.py). The processes running on Kafka are in
tests/test_kafka_processes.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

import lineage.cores as cores_module
from lineage.cores import cpu_quota
from streams.processes import _signal_all, _wait, child_environment
from streams.settings import Settings


def test_each_process_gets_the_settings_given_and_a_port_and_folder_of_its_own() -> None:
    settings = Settings(processes=3, web_port=7000, state_dir=Path("/var/lib/lineage"))
    given = {"broker": "k1:9092", "topic_prefix": "acme.", "processes": "3", "store": None}
    environ = {"PATH": "/bin", "LINEAGE_BATCH_SIZE": "500"}
    envs = [child_environment(settings, given, i, environ, None) for i in range(3)]
    for i, env in enumerate(envs):
        assert env["PATH"] == "/bin" and env["LINEAGE_BATCH_SIZE"] == "500"
        assert env["LINEAGE_BROKER"] == "k1:9092" and env["LINEAGE_TOPIC_PREFIX"] == "acme."
        assert "LINEAGE_STORE" not in env  # not given: each reads its own default
        assert env["LINEAGE_PROCESSES"] == "1"  # each judges; none starts more
        assert env["LINEAGE_WEB_PORT"] == str(7001 + i)  # 7000 is the worker's own
        assert env["LINEAGE_STATE_DIR"] == f"/var/lib/lineage/process-{i}"
        assert "LINEAGE_REDACTION_KEY" not in env
    assert environ == {"PATH": "/bin", "LINEAGE_BATCH_SIZE": "500"}  # left as it was


def test_without_a_web_server_no_process_has_one() -> None:
    settings = Settings(processes=2, web_port=0)
    assert child_environment(settings, {}, 1, {}, None)["LINEAGE_WEB_PORT"] == "0"


def test_the_processes_share_the_key_made_for_them_over_any_key_file() -> None:
    settings = Settings(processes=2)
    environ = {"LINEAGE_REDACTION_KEY_FILE": "/missing"}
    env = child_environment(settings, {}, 0, environ, "k3y")
    assert env["LINEAGE_REDACTION_KEY"] == "k3y"
    assert "LINEAGE_REDACTION_KEY_FILE" not in env


@pytest.mark.parametrize(("value", "count"), [(1, 1), ("4", 4), (" 2 ", 2)])
def test_processes_is_a_count(value: object, count: int) -> None:
    assert Settings(processes=value).process_count == count


@pytest.mark.parametrize("value", ["0", "-1", "two", "", 1.5])
def test_processes_that_are_no_count_are_refused_by_name_and_value(value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(processes=value)
    assert f"processes is a number, 1 or more, or auto; got {value!r}" in str(refused.value)


def test_the_ports_of_every_process_must_exist() -> None:
    assert Settings(processes=2, web_port=65533).process_count == 2
    assert Settings(processes=1, web_port=65535).process_count == 1  # no process port
    with pytest.raises(ValidationError) as refused:
        Settings(processes=2, web_port=65534)
    assert "web_port 65534 leaves no port for process 1 of 2" in str(refused.value)


def test_the_command_refuses_a_bad_count_before_it_starts_anything() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lineage.cli", "worker", "--processes", "none"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "setting processes: processes is a number, 1 or more, or auto; got 'none'" in (
        done.stderr
    )


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
        ({}, None),
        ({"cpu.max": "garbled\n"}, None),
    ],
    ids=["v2-none", "v2-1.5", "v1-none", "v1-0.5", "no-cgroup", "unreadable"],
)
def test_a_cpu_quota_is_read_from_either_cgroup_version(
    tmp_path: Path, files: dict[str, str], quota: float | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path) == quota


@pytest.mark.parametrize(("quota", "count"), [(None, 8), (1.5, 2), (0.5, 1), (16.0, 8)])
def test_auto_counts_the_cores_within_the_quota(
    monkeypatch: pytest.MonkeyPatch, quota: float | None, count: int
) -> None:
    monkeypatch.setattr(cores_module.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(cores_module, "cpu_quota", lambda: quota)
    cores_module.cores.cache_clear()
    try:
        assert Settings(processes="auto").process_count == count
    finally:
        cores_module.cores.cache_clear()


def _exited(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_processes_that_exit_together_are_each_heard_once() -> None:
    """The first to exit unasked gives the worker's exit code; stopping the other, which
    has exited too, must not reap it behind the wait's back."""
    children = {}
    for index, code in enumerate((3, 5)):
        child = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
        children[child.pid] = (index, child)
    deadline = time.monotonic() + 30
    while not all(_exited(pid) for pid in children):  # both exited, neither reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stopped = []

    def stop_all() -> None:
        stopped.append(True)
        _signal_all(children, signal.SIGTERM)

    code = _wait(children, stop_all, lambda: bool(stopped))
    assert code in (3, 5) and stopped == [True]
    assert sorted(child.returncode for _, child in children.values()) == [3, 5]


def test_a_process_killed_is_said_as_a_shell_says_it() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.kill()
    assert _wait({child.pid: (0, child)}, lambda: None, lambda: False) == 128 + signal.SIGKILL
