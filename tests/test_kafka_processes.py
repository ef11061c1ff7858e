"""``lineage worker --processes 2`` on a real Apache Kafka: one worker, two judging
processes in its consumer group (streams/processes.py).

The outputs are the embedded run's, as of any worker; the worker's port answers for
all of its processes, each process serves its own web pages and answers for every
subject; the worker stops as a whole, whichever of its processes ends and however.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from lineage.demo import generate_day
from streams.settings import process_port
from tests.kafka_helpers import (
    Deployment,
    Reference,
    Worker,
    embedded_answer,
    graph_facts,
    wait_until,
    without_time,
)

pytestmark = pytest.mark.kafka

#: The series whose sum over a worker's processes counts every message produced.
_DONE = ("lineage_events_total{", "lineage_dead_letters_total ", "lineage_duplicates_total ")
#: The same series on the worker's port, where each has its process's label.
_DONE_LABELLED = tuple(name.rstrip(" {") + "{" for name in _DONE)


def _gone(pid: int) -> bool:
    """The process has ended (reaped, or a zombie: its parent has not waited yet)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _pid_of(worker: Worker, index: int) -> int:
    """The pid of the worker's process ``index`` (the one serving its port)."""
    port = f"LINEAGE_WEB_PORT={process_port(worker.web_port, index)}".encode()
    for pid in worker.children():
        if port in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            return pid
    raise AssertionError(f"no process of the worker serves port {port!r}")


def _probe(worker: Worker) -> tuple[int, dict[str, Any]]:
    """The worker's /health as a probe sees it: its status and what it says."""
    try:
        return 200, worker.health()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(json.loads(refused.read()))


def _started(deployment: Deployment) -> Worker:
    """A worker of two processes, each Ready and holding partitions of its own."""
    worker = Worker(deployment, "p", processes=2).start()
    worker.wait_ready()
    wait_until(
        lambda: all(worker.health(process=i)["partitions"] for i in range(2)),
        60,
        "both processes to hold partitions",
        alive=[worker],
    )
    assert len(worker.children()) == 2, worker.tail()
    return worker


def test_a_worker_of_two_processes_gives_the_embedded_outputs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    day = list(generate_day(events=1500, seed=8))
    reference = Reference(day, tmp_path / "embedded")
    deployment = Deployment(kafka_bootstrap, tmp_path)
    worker = _started(deployment)
    try:
        held = [worker.health(process=i)["partitions"] for i in range(2)]
        assert sorted(held[0] + held[1]) == [0, 1, 2, 3]  # split, none held twice
        processes = worker.children()
        deployment.produce(day)
        statuses = deployment.alert_statuses(reference.statuses, 180, alive=[worker])
        assert statuses == reference.statuses
        incidents = deployment.final_incidents(reference.incidents, 120, alive=[worker])
        assert incidents == reference.incidents
        # Each process dealt with its own partitions' messages (judged, dead letters,
        # duplicates), and says so on its own port.
        done = [
            sum(
                float(line.rsplit(" ", 1)[1])
                for line in worker.get("/metrics", process=i).splitlines()
                if line.startswith(_DONE)
            )
            for i in range(2)
        ]
        assert all(done) and sum(done) == len(day), done
        # The worker's own port: one probe and one scrape for both processes.
        health = worker.health()
        assert health["status"] == "ok" and health["partitions"] == [0, 1, 2, 3], health
        assert [p["partitions"] for p in health["processes"]] == held
        scraped = worker.get("/metrics").splitlines()
        for i in range(2):
            label = f'process="{i}"'
            mine = [line for line in scraped if line.startswith(_DONE_LABELLED) and label in line]
            assert sum(float(line.rsplit(" ", 1)[1]) for line in mine) == done[i], mine
            assert f"lineage_process_up{{{label}}} 1.0" in scraped
        subjects = sorted({r["subject"] for r in reference.records if r["subject"]})[:4]
        for i in (None, 0, 1):  # the worker's port, then each process's
            served = json.loads(worker.get("/graph?format=json", process=i))
            assert graph_facts(served) == graph_facts(reference.graph)
            for subject in subjects:  # its own, or forwarded to the other process
                path = f"/subjects/{urllib.parse.quote(subject, safe='')}"
                got = json.loads(worker.get(path, process=i))
                assert without_time(got) == embedded_answer(reference, subject), (i, subject)
        # A process that hangs fails the worker's probe and shows down on its scrape,
        # while the other answers on; running again, it answers again.
        hung = _pid_of(worker, 1)
        os.kill(hung, signal.SIGSTOP)
        try:
            status, said = _probe(worker)
            up = worker.get("/metrics?name[]=lineage_process_up")
        finally:
            os.kill(hung, signal.SIGCONT)
        assert status == 503 and said["status"] == "unavailable", said
        assert said["processes"][0]["status"] == "ok"
        assert said["processes"][1]["reason"] == "no answer within 0.8 s", said
        assert 'lineage_process_up{process="1"} 0.0' in up and 'process="0"} 1.0' in up, up
        wait_until(lambda: _probe(worker)[0] == 200, 30, "the process to answer again")
    finally:
        code = worker.stop()
    assert code == 0, worker.tail()  # SIGTERM: each process's last flush succeeded
    assert all(_gone(pid) for pid in processes)
    for pid in processes:  # each stopped as faust stops, not killed
        assert f"[{pid}] [INFO] [^Worker]: Closing event loop" in worker.text(), worker.tail()


def test_a_worker_stops_whole_when_one_of_its_processes_dies(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    deployment = Deployment(kafka_bootstrap, tmp_path)
    worker = _started(deployment)
    try:
        killed, other = worker.children()
        os.kill(killed, signal.SIGKILL)
        assert worker.process is not None
        code = worker.process.wait(60)
    finally:
        worker.stop()
    assert code == 128 + signal.SIGKILL, worker.tail()  # said as a shell says it
    assert _gone(other)
    assert f"(pid {killed}) exited with code 137: stopping the other 1" in worker.text()


def test_the_processes_stop_when_the_worker_that_started_them_is_killed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    deployment = Deployment(kafka_bootstrap, tmp_path)
    worker = _started(deployment)
    processes = worker.children()
    worker.kill()  # SIGKILL to the worker's own process: it can pass nothing on
    try:
        wait_until(lambda: all(_gone(pid) for pid in processes), 60, "its processes to stop")
    finally:
        for pid in processes:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
    for pid in processes:
        assert f"[{pid}] [WARNING] the worker's supervising process is gone" in worker.text()
        assert f"[{pid}] [INFO] [^Worker]: Closing event loop" in worker.text(), worker.tail()
