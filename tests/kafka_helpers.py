"""Running `lineage worker` processes against a real broker, and reading topics back.

Every wait here is a condition with a deadline: a loop that checks something and
fails with what it saw when the time is up, never a bare sleep.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

from lineage.policy import load_policy
from lineage.redact import Redactor
from lineage.run import run_embedded
from scripts.ports import free_port
from streams.settings import process_port

REDACTION_KEY = "test-redaction-key"

#: Prefixes of the topics this test session made on its broker, deleted when the session
#: ends (tests/conftest.py). Left behind, a broker kept for days (scripts/kafka-local, or
#: a team's own) held 16,653 partitions of old runs and ran out of its 512 MiB heap.
MADE: list[str] = []


def made_topic(name: str) -> str:
    """``name``, remembered as a topic of this session to delete at its end."""
    MADE.append(name)
    return name


def delete_made_topics(bootstrap: str) -> list[str]:
    """Delete every topic of the broker whose name starts with a prefix in :data:`MADE`;
    return their names. Topics of a broker the session started itself (with its own
    client settings) are not on this one and are left to it."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError, UnknownTopicOrPartitionError

    if not MADE:
        return []
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60_000)
    try:
        prefixes = tuple(MADE)
        names = sorted(t for t in admin.list_topics() if t.startswith(prefixes))
        for start in range(0, len(names), 100):
            try:
                admin.delete_topics(names[start : start + 100], timeout_ms=60_000)
            except UnknownTopicOrPartitionError:
                pass  # a test deleted some of them itself
            except KafkaError as exc:
                print(f"could not delete this session's topics: {type(exc).__name__}: {exc}")
    finally:
        admin.close()
    MADE.clear()
    return names


def event_key(line: bytes) -> bytes | None:
    """The contract's key of a line: subject, else source (None when it has neither)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    key = data.get("subject") or data.get("source")
    return key.encode() if isinstance(key, str) else None


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    every: float = 0.25,
    alive: Sequence[Worker] = (),
) -> None:
    """Check ``condition`` until it holds; fail with ``what`` when ``timeout`` passes or a
    worker in ``alive`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        for worker in alive:
            worker.assert_running()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        threading.Event().wait(every)


class Reference:
    """The embedded run of the same lines: what the workers must agree with."""

    def __init__(self, lines: list[bytes], out: Path) -> None:
        run_embedded(load_policy(), lines, out, redactor=Redactor(REDACTION_KEY.encode()))
        self.alerts = [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]
        self.dead = [orjson.loads(x) for x in (out / "dead-letter.jsonl").read_bytes().splitlines()]
        # The last count of each incident; one whose every alert a late consent retracted
        # (count 0) is the same as one never published.
        self.incidents: dict[str, int] = {}
        for line in (out / "incidents.jsonl").read_bytes().splitlines():
            incident = orjson.loads(line)
            self.incidents[incident["incident_id"]] = incident["count"]
        self.incidents = {k: n for k, n in self.incidents.items() if n}
        self.graph = json.loads((out / "lineage.json").read_text())
        self.records = [
            orjson.loads(x) for x in (out / "provision-records.jsonl").read_bytes().splitlines()
        ]
        self.out = out

    @property
    def alert_ids(self) -> set[str]:
        return {a["alert_id"] for a in self.alerts}

    @property
    def statuses(self) -> dict[str, str]:
        """The last word on each alert id: open, or retracted by a late consent."""
        return {a["alert_id"]: a["status"] for a in self.alerts}


def graph_facts(graph: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Every node and edge of a node-link graph, with every attribute, sorted."""
    nodes = sorted(json.dumps(n, sort_keys=True) for n in graph["nodes"])
    links = sorted(json.dumps(e, sort_keys=True) for e in graph["links"])
    return nodes, links


class TopicReader:
    """Reads a topic from its beginning, keeping what it has read between calls."""

    def __init__(self, bootstrap: str, topic: str, **client: Any) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **client,
        )
        self.consumer.subscribe([topic])
        self.messages: list[Any] = []

    def poll(self) -> list[Any]:
        for records in self.consumer.poll(timeout_ms=300, max_records=50_000).values():
            self.messages.extend(records)
        return self.messages

    def close(self) -> None:
        self.consumer.close()


class Deployment:
    """One isolated deployment on a broker: its own topic prefix and app id."""

    def __init__(
        self,
        bootstrap: str,
        tmp: Path,
        client: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``client``: kafka-python settings of the test's own clients (TLS, SASL);
        ``env``: the same for workers and commands, as LINEAGE_* variables."""
        tag = uuid.uuid4().hex[:10]
        self.client = client or {}
        self.extra_env = env or {}
        self.bootstrap = bootstrap
        self.prefix = made_topic(f"t{tag}.")
        self.app_id = f"lineage-test-{tag}"
        made_topic(f"{self.app_id}-")  # faust's own topics and the changelogs
        self.tmp = tmp

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_")}
        env.update(
            LINEAGE_BROKER=self.bootstrap,
            LINEAGE_TOPIC_PREFIX=self.prefix,
            LINEAGE_APP_ID=self.app_id,
            LINEAGE_REDACTION_KEY=REDACTION_KEY,
            LINEAGE_PARTITIONS="4",
            LINEAGE_SESSION_TIMEOUT="10",
            LINEAGE_INCIDENT_FLUSH_SECONDS="2",
            LINEAGE_BATCH_SIZE="500",
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def producer(self, **config: Any) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, **self.client, **config)

    def produce(
        self,
        lines: Iterable[bytes | None],
        *,
        keys: Iterable[bytes | None] | None = None,
        rate: float | None = None,
        **config: Any,
    ) -> int:
        """Send lines as a plain producer would: key subject, else source (or ``keys``).

        ``rate`` (messages a second) spreads them out, as a fleet would send them.
        """
        producer = self.producer(**config)
        started = time.monotonic()
        n = 0
        key_list = list(keys) if keys is not None else None
        for i, line in enumerate(lines):
            key = key_list[i] if key_list is not None else (event_key(line) if line else None)
            producer.send(self.topic("events"), key=key, value=line)
            n += 1
            if rate is not None and n % 500 == 0:
                ahead = n / rate - (time.monotonic() - started)
                if ahead > 0:
                    producer.flush(30)
                    threading.Event().wait(ahead)
        producer.flush(60)
        producer.close()
        return n

    def produce_in_background(self, lines: list[bytes], rate: float) -> threading.Thread:
        thread = threading.Thread(target=self.produce, args=(lines,), kwargs={"rate": rate})
        thread.start()
        return thread

    def reader(self, name: str) -> TopicReader:
        return TopicReader(self.bootstrap, self.topic(name), **self.client)

    def read(
        self,
        name: str,
        until: Callable[[list[Any]], bool],
        timeout: float = 120,
        alive: Sequence[Worker] = (),
    ) -> list[Any]:
        """Every message of a topic, read until ``until(messages)`` holds (or fail)."""
        reader = self.reader(name)
        try:
            wait_until(lambda: until(reader.poll()), timeout, f"{name} to be complete", alive=alive)
            return reader.messages
        finally:
            reader.close()

    def committed(self, name: str) -> dict[int, int]:
        """The worker group's committed offset of each partition of a topic (if any)."""
        from kafka import TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.app_id,
            enable_auto_commit=False,
            **self.client,
        )
        try:
            topic = self.topic(name)
            found = {}
            for partition in consumer.partitions_for_topic(topic) or ():
                offset = consumer.committed(TopicPartition(topic, partition))
                if offset is not None:
                    found[partition] = offset
            return found
        finally:
            consumer.close()

    def end_offsets(self, name: str) -> dict[int, int]:
        """The end offset (the next offset to be written) of each partition of a topic."""
        from kafka import TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, **self.client)
        try:
            topic = self.topic(name)
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()

    def export(self, fmt: str, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lineage.cli", "export", "--format", fmt, "--out", str(out)],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def exported_graph(self) -> dict[str, Any]:
        out = self.tmp / f"exported-{uuid.uuid4().hex[:6]}.json"
        result = self.export("json", out)
        assert result.returncode == 0, result.stderr
        return dict(json.loads(out.read_text()))

    # -- what the workers published ------------------------------------------------------------

    def alert_ids(
        self, expected: set[str], timeout: float, alive: Sequence[Worker] = ()
    ) -> set[str]:
        """Alert ids on the alerts topic, read until every expected one has come."""
        seen: set[str] = set()
        done = 0

        def complete(messages: list[Any]) -> bool:
            nonlocal done
            seen.update(orjson.loads(m.value)["alert_id"] for m in messages[done:])
            done = len(messages)
            return expected <= seen

        self.read("alerts", complete, timeout, alive)
        return seen

    def alert_statuses(
        self, expected: dict[str, str], timeout: float, alive: Sequence[Worker] = ()
    ) -> dict[str, str]:
        """The last status of each alert id on the alerts topic (in each partition's
        order), read until it equals ``expected``."""
        got: dict[str, tuple[int, str]] = {}
        done = 0

        def settled(messages: list[Any]) -> bool:
            nonlocal done
            for m in messages[done:]:
                alert = orjson.loads(m.value)
                aid = alert["alert_id"]
                if aid not in got or got[aid][0] < m.offset:
                    got[aid] = (m.offset, alert.get("status", "open"))
            done = len(messages)
            return {k: v for k, (_, v) in got.items()} == expected

        try:
            self.read("alerts", settled, timeout, alive)
        except AssertionError:
            now = {k: v for k, (_, v) in got.items()}
            wrong = {k: (now.get(k), v) for k, v in expected.items() if now.get(k) != v}
            raise AssertionError(f"{len(wrong)} alerts end differently: {wrong}") from None
        return {k: v for k, (_, v) in got.items()}

    def final_incidents(
        self, expected: dict[str, int], timeout: float, alive: Sequence[Worker] = ()
    ) -> dict[str, int]:
        """The last published count of each incident, read until it equals ``expected``."""

        def latest(messages: list[Any]) -> dict[str, int]:
            counts: dict[str, tuple[int, int]] = {}
            for m in messages:  # one incident is one key, so one partition: offsets order it
                incident = orjson.loads(m.value)
                iid = incident["incident_id"]
                if iid not in counts or counts[iid][0] < m.offset:
                    counts[iid] = (m.offset, incident["count"])
            return {iid: count for iid, (_, count) in counts.items() if count}

        got: dict[str, int] = {}

        def settled(messages: list[Any]) -> bool:
            got.clear()
            got.update(latest(messages))
            return got == expected

        try:
            self.read("incidents", settled, timeout, alive)
        except AssertionError:
            wrong = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
            extra = set(got) - set(expected)
            raise AssertionError(
                f"incidents never settled: {len(wrong)} differ (got, want), e.g. "
                f"{dict(list(wrong.items())[:5])}; {len(extra)} unexpected"
            ) from None
        return got


class Worker:
    """A `lineage worker` subprocess. ``state``: the name of its state folder (default: its
    own name), so that a new worker can start on the folder of one that stopped.
    ``processes``: its ``LINEAGE_PROCESSES``; the worker serves ``web_port``, and
    with more than one, process i serves its own pages on ``web_port + 1 + i``."""

    def __init__(
        self,
        deployment: Deployment,
        name: str,
        loglevel: str = "info",
        state: str | None = None,
        processes: int = 1,
        **env: str,
    ) -> None:
        self.deployment = deployment
        self.name = name
        self.loglevel = loglevel
        self.state_dir = deployment.tmp / f"state-{state or name}"
        self.processes = processes
        self.extra_env = env
        self.web_port = free_port(processes + 1 if processes > 1 else 1)
        self.log = deployment.tmp / f"worker-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self) -> Worker:
        env = self.deployment.env(
            LINEAGE_STATE_DIR=str(self.state_dir),
            LINEAGE_WEB_PORT=str(self.web_port),
            LINEAGE_WEB_HOST="127.0.0.1",
            LINEAGE_PROCESSES=str(self.processes),
            **self.extra_env,
        )
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lineage.cli", "worker", "--loglevel", self.loglevel],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def text(self) -> str:
        """This start's log lines."""
        with self.log.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def assert_running(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"worker {self.name} exited with {self.process.returncode}:\n{self.tail()}"
            )

    def wait_ready(self, timeout: float = 90) -> Worker:
        wait_until(
            lambda: self.text().count("Worker]: Ready") >= self.processes,  # each says it
            timeout,
            f"{self.name} ready",
            alive=[self],
        )
        # A topic missing from the group leader's metadata is left out of the assignment
        # (faust logs it and goes on): a changelog left out is a table not recovered.
        assert "Ignoring missing topic" not in self.text(), self.tail()
        return self

    def get(
        self, path: str, timeout: float = 30, token: str | None = None, process: int | None = None
    ) -> str:
        """A page of the worker's port, or of its process ``process``'s own."""
        port = self.web_port if process is None else process_port(self.web_port, process)
        url = f"http://127.0.0.1:{port}{path}"
        request = urllib.request.Request(url)
        if token is None:
            token = self.extra_env.get("LINEAGE_WEB_TOKEN")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return str(response.read().decode())

    def health(self, process: int | None = None) -> dict[str, Any]:
        return dict(json.loads(self.get("/health", process=process)))

    def children(self) -> list[int]:
        """The pids of the processes this one started (a worker of several processes:
        its judging processes)."""
        assert self.process is not None
        pid = self.process.pid
        found: list[int] = []
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            found.extend(int(child) for child in children.read_text().split())
        return found

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on /metrics (0 when absent)."""
        total = 0.0
        for line in self.get("/metrics").splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown, no final commit."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int | None:
        """A graceful stop (SIGTERM); on a failing test, first a task dump into the log.
        A stop that does not end in 30 s is killed, after every thread of every process
        wrote its stack into the log (SIGQUIT). Returns the exit code (None when it
        never started)."""
        if self.process is not None and self.process.poll() is None:
            if sys.exc_info()[0] is not None:
                os.kill(self.process.pid, signal.SIGUSR1)
                wait_until(lambda: "kill -USR1" in self.text(), 5, "the task dump")
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGQUIT)
                time.sleep(1)  # the stacks are written by the signal handler itself
                self.kill()
        return None if self.process is None else self.process.returncode

    def stop_cleanly(self) -> None:
        """A graceful stop that must end with exit code 0 (its last flush succeeded)."""
        code = self.stop()
        assert code == 0, f"worker {self.name} exited with {code} on SIGTERM:\n{self.tail()}"


# -- subjects, and the RocksDB store against its changelog ------------------------------------


def embedded_subjects(reference: Reference) -> list[str]:
    """Every subject the embedded run's view holds, sorted."""
    from lineage.subjects import SUBJECTS_FILE, SubjectStore

    return SubjectStore(reference.out / SUBJECTS_FILE).subjects()


def embedded_answer(reference: Reference, subject: str) -> dict[str, Any]:
    """The embedded run's answer for a subject, without its time."""
    from lineage.subjects import SUBJECTS_FILE, SubjectStore, answer

    found, state, version = SubjectStore(reference.out / SUBJECTS_FILE).get([subject])
    return without_time(answer(found, state, version))


def without_time(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "as_of"}


def assert_subjects_agree(reference: Reference, worker: Worker, sample: int = 200) -> None:
    """A sample of subjects (spread over every partition) is answered by a running worker
    (from its tables, or forwarded) as the embedded run answers it."""
    import urllib.parse

    subjects = embedded_subjects(reference)
    assert subjects
    chosen = random.Random(7).sample(subjects, min(sample, len(subjects)))
    wrong = []
    for subject in chosen:
        got = without_time(json.loads(worker.get(f"/subjects/{urllib.parse.quote(subject)}")))
        if got != embedded_answer(reference, subject):
            wrong.append(subject)
    assert not wrong, f"{len(wrong)} of {len(chosen)} subjects answered differently: {wrong[:5]}"


#: (table, partition) -> (key -> value, the last changelog offset held)
Contents = dict[tuple[str, int], tuple[dict[bytes, bytes], int | None]]


def changelog_contents(deployment: Deployment) -> Contents:
    """Each table's changelog partition read whole: (latest value of each key, tombstones
    dropped; its last offset, None when empty)."""
    import asyncio

    from streams.changelog import read_topic
    from streams.settings import Settings
    from streams.topics import TABLES

    settings = Settings(
        broker=deployment.bootstrap, topic_prefix=deployment.prefix, app_id=deployment.app_id
    )
    found: dict[tuple[str, int], tuple[dict[bytes, bytes], int]] = {}
    for table in TABLES:
        topic = f"{deployment.app_id}-{deployment.prefix}{table}-changelog"
        for partition in range(4):
            found[table, partition] = ({}, -1)
        for record in asyncio.run(read_topic(settings, topic)):
            latest, last = found[table, record.partition]
            if record.value is None:
                latest.pop(record.key, None)
            else:
                latest[record.key] = record.value
            found[table, record.partition] = (latest, max(last, record.offset))
    return {k: (latest, last if last >= 0 else None) for k, (latest, last) in found.items()}


def disk_contents(deployment: Deployment, state_dir: Path, partitions: Iterable[int]) -> Contents:
    """Each table's RocksDB database of each partition in a stopped worker's state folder
    (faust's layout: ``<state>/v1/tables/<table>-<partition>.db``): its keys and values,
    and the changelog offset it says it holds up to."""
    from rocksdict import AccessType, Options, Rdict

    from streams.topics import TABLES

    offset_key = b"__faust\x00offset__"
    found: Contents = {}
    for table in TABLES:
        for partition in partitions:
            path = state_dir / "v1" / "tables" / f"{deployment.prefix}{table}-{partition}.db"
            assert path.is_dir(), f"no database at {path}"
            db = Rdict(
                str(path), options=Options(raw_mode=True), access_type=AccessType.read_only()
            )
            try:
                items = dict(db.items())
            finally:
                db.close()
            offset = items.pop(offset_key, None)
            found[table, partition] = (items, int(offset) if offset is not None else None)
    return found


def assert_disk_holds_the_changelog(
    deployment: Deployment, state_dir: Path, partitions: Iterable[int]
) -> None:
    """After a clean stop, each RocksDB database of the partitions the worker held holds
    exactly its changelog partition, up to the changelog's last offset."""
    held = sorted(partitions)
    assert held
    disk = disk_contents(deployment, state_dir, held)
    changelog = changelog_contents(deployment)
    for (table, partition), (items, offset) in disk.items():
        latest, last = changelog[table, partition]
        assert offset == last, (table, partition, offset, last)
        extra = items.keys() - latest.keys()
        missing = latest.keys() - items.keys()
        differ = [k for k in items.keys() & latest.keys() if items[k] != latest[k]]
        assert not (extra or missing or differ), (
            f"{table}[{partition}] on disk against its changelog: {len(extra)} keys the "
            f"changelog lacks, {len(missing)} missing, {len(differ)} different"
        )
