"""What the Kafka benchmarks share: a broker, topics, a fast keyed producer, worker processes.

Used by bench/streaming.py, bench/latency.py and bench/memory.py (run them from the
repository root with the project's virtualenv; this module is not run on its own).

- :func:`broker`: the broker given with ``--broker``, or a fresh ``scripts/kafka-local``
  in a temporary directory, stopped at the end;
- :func:`create_topic`: a topic with an explicit partition count, created *before*
  anything is produced (a topic the producer auto-creates gets the broker's default);
- :func:`keyed` / :func:`produce`: lines keyed by subject (else source), as producers
  of ``<prefix>events`` must key them, sent through aiokafka's batch API: one
  ``send_batch`` per full batch of a partition, not one future per message;
- :class:`Worker`: one ``lineage worker --policy bench/policies/sakura-retail.yaml``
  process with a fresh app id, state directory and web port; its /metrics, its log
  ("Ready") and its RSS from ``/proc/<pid>/status``;
- :func:`header`: the machine and the exact command to reproduce the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from streams.settings import process_port

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "bench" / "policies" / "sakura-retail.yaml"
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"

# The tests, these benchmarks and scripts/kafka-local choose ports the same way.
sys.path.append(str(ROOT))
from scripts.ports import free_port  # noqa: E402

#: Every message a worker has dealt with: judged events of each type, dead letters and
#: dropped duplicates. Their sum reaches the number of messages produced.
_DONE_SERIES = ("lineage_events_total", "lineage_dead_letters_total", "lineage_duplicates_total")
_DONE = re.compile(
    rf"^(?:{'|'.join(map(re.escape, _DONE_SERIES))})(?:\{{[^}}]*\}})? ([0-9.e+]+)$", re.M
)
_ALERTS = re.compile(r"^lineage_alerts_total\{[^}]*\} ([0-9.e+]+)$", re.M)
#: The worker's own account of its time (streams.metrics): judging; flushing, from each
#: flush's start to its acks, and of the flushes, handing messages to Kafka and waiting
#: for its acknowledgements, and awaiting the view process (the worker judges on
#: meanwhile); and what flushes took of the judging loop.
_SPENT = {
    "judging": re.compile(r"^lineage_batch_seconds_sum ([0-9.e+-]+)$", re.M),
    "flushing": re.compile(r"^lineage_flush_seconds_sum ([0-9.e+-]+)$", re.M),
    "flush_loop": re.compile(r"^lineage_flush_loop_seconds_total ([0-9.e+-]+)$", re.M),
    "kafka": re.compile(r"^lineage_kafka_wait_seconds_total\{[^}]*\} ([0-9.e+-]+)$", re.M),
    "view": re.compile(r"^lineage_view_wait_seconds_total ([0-9.e+-]+)$", re.M),
}


# -- the run's header ----------------------------------------------------------------------------


def header(title: str, script: str, options: dict[str, Any]) -> None:
    """Print the machine and the command that reproduces this run (every option spelled
    out, defaults included, so that a later default change does not change the run)."""
    python = os.path.relpath(sys.executable, ROOT)
    argv = [python, f"bench/{script}"]
    for name, value in options.items():
        if value is None or value is False:
            continue
        argv.append(f"--{name}")
        if value is not True:
            argv.append(str(value))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(title)
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()} ({platform.machine()}); "
        f"load average {load} at the start"
    )
    print(f"reproduce: {shlex.join(argv)}")
    print()


# -- the broker and its topics -------------------------------------------------------------------


def broker_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every Kafka benchmark takes: --broker, --partitions, --keep-topics."""
    parser.add_argument("--broker", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--keep-topics", action="store_true", help="do not delete them after")


@contextlib.contextmanager
def broker(bootstrap: str | None, tmp: Path) -> Iterator[str]:
    """The broker at ``bootstrap``, or a fresh ``scripts/kafka-local`` one (stopped after)."""
    if bootstrap:
        yield bootstrap
        return
    directory = tmp / "kafka"
    out = subprocess.run(
        [str(KAFKA_LOCAL), "start", "--dir", str(directory)],
        check=True,
        capture_output=True,
        text=True,
    )
    started = out.stdout.strip().splitlines()[-1]
    print(f"started scripts/kafka-local at {started}")
    try:
        yield started
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop", "--dir", str(directory)], check=False)


def new_tag() -> str:
    """A short random tag: it names this run's topics, app ids and consumer groups."""
    return uuid.uuid4().hex[:8]


def create_topic(bootstrap: str, name: str, partitions: int, timeout: float = 60.0) -> int:
    """Create ``name`` with ``partitions`` partitions; return the count the broker reports."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (described,) = admin.describe_topics([name])
            if not described.get("error_code") and described["partitions"]:
                return len(described["partitions"])
            time.sleep(0.2)
        raise SystemExit(f"topic {name} did not appear in {timeout:.0f} s")
    finally:
        admin.close()


def delete_topics(bootstrap: str, tag: str) -> int:
    """Delete every topic whose name holds this run's tag (the broker may be shared)."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        mine = [t for t in admin.list_topics() if tag in t]
        if mine:
            admin.delete_topics(mine)
        return len(mine)
    finally:
        admin.close()


# -- producing -------------------------------------------------------------------------------------


def keyed(lines: Iterable[bytes], event_prefix: str = "") -> Iterator[tuple[bytes | None, bytes]]:
    """(key, value) for each line: the key is the subject, else the source, as the
    contract asks. ``event_prefix`` renames every event id (``e-7`` becomes
    ``<prefix>e-7``): bench/traffic.py numbers events from ``e-0`` on every draw, and
    a worker drops an id it has seen as a duplicate. Lines that are not JSON objects
    (the day's malformed ones) go unchanged, without a key."""
    for line in lines:
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield None, line
            continue
        if not isinstance(data, dict):
            yield None, line
            continue
        if event_prefix and isinstance(data.get("event_id"), str):
            data["event_id"] = event_prefix + data["event_id"]
            line = orjson.dumps(data)
        key = data.get("subject") or data.get("source")
        yield (key.encode() if isinstance(key, str) and key else None), line


async def _produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, linger_ms=20, max_batch_size=1024 * 1024
    )
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        choose = DefaultPartitioner()  # murmur2 of the key, as Kafka's Java clients do
        batches: dict[int, Any] = {}
        sent: list[asyncio.Future[Any]] = []
        n = 0
        for key, value in records:
            # Keyless lines (malformed ones) go round-robin.
            p = choose(key, partitions, partitions) if key else partitions[n % len(partitions)]
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it
                sent.append(await producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            n += 1
            if len(sent) >= 64:  # keep memory bounded: wait for the oldest batches
                await asyncio.gather(*sent)
                sent.clear()
        for p, batch in batches.items():
            if batch.record_count():
                sent.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*sent)
        return n
    finally:
        await producer.stop()


def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> tuple[int, float]:
    """Send (key, value) records to ``topic``, as fast as the client goes; (count, seconds).

    aiokafka's batch API: about 50,000 messages/s here against a few thousand for
    kafka-python's per-message ``send`` on the same loaded machine. If ``records`` is
    a generator, the seconds include drawing them.
    """
    started = time.perf_counter()
    n = asyncio.run(_produce(bootstrap, topic, records))
    return n, time.perf_counter() - started


# -- a worker process -----------------------------------------------------------------------------


def _family(pid: int) -> list[int]:
    """``pid`` and every process below it (a worker and its view process), from the
    kernel's list of each thread's children: a poll every 50 ms reads a few files,
    not every process on the machine."""
    if not Path(f"/proc/{pid}/task/{pid}/children").exists():
        raise SystemExit("this kernel lists no children in /proc (CONFIG_PROC_CHILDREN)")
    family, todo = [], [pid]
    while todo:
        each = todo.pop()
        family.append(each)
        for children in Path(f"/proc/{each}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # a thread or process gone meanwhile
                todo.extend(int(child) for child in children.read_text().split())
    return family


@dataclass
class Progress:
    """When a worker started and finished judging a stretch of messages (perf_counter),
    and the CPU seconds it had used by then."""

    first_at: float  # the first scrape that showed more than the stretch's start
    first_n: int  # messages done at that scrape
    first_cpu: float
    last_at: float  # the first scrape that showed the stretch's end
    last_n: int
    last_cpu: float

    @property
    def seconds(self) -> float:
        return max(self.last_at - self.first_at, 1e-9)

    @property
    def rate(self) -> float:
        """Messages/s from the first scrape that saw progress to the one that saw the end."""
        return (self.last_n - self.first_n) / self.seconds

    @property
    def cpu_rate(self) -> float:
        """Messages per CPU second of the worker over the same stretch (on a machine
        shared with other work, what the worker would do with a core of its own)."""
        return (self.last_n - self.first_n) / max(self.last_cpu - self.first_cpu, 1e-9)


class Worker:
    """One ``lineage worker`` on a fresh deployment (its own app id and state directory)."""

    def __init__(
        self,
        bootstrap: str,
        prefix: str,
        tmp: Path,
        *,
        partitions: int,
        name: str = "worker",
        settings: dict[str, str] | None = None,
        cwd: Path = ROOT,
        processes: int = 1,
    ) -> None:
        """``settings``: more LINEAGE_* variables for it (the caller's own are not passed);
        ``cwd``: the checkout whose code it runs (a worktree of another revision);
        ``processes``: ``LINEAGE_PROCESSES`` (each serves its /metrics on a port of its
        own, :attr:`ports`; their series are read there, not through the worker's own
        port, whose merging would add to what is timed)."""
        self.processes, self.partitions = processes, partitions
        self.port = free_port(processes + 1 if processes > 1 else 1)
        #: Where each process serves its pages: the worker's port, or for a worker of
        #: several processes the ports after it (streams.processes).
        self.ports = (
            [self.port]
            if processes == 1
            else [process_port(self.port, i) for i in range(processes)]
        )
        self.app_id = f"bench-{prefix.rstrip('.')}-{name}"
        self.log = tmp / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_")}
        env.update(
            LINEAGE_BROKER=bootstrap,
            LINEAGE_TOPIC_PREFIX=prefix,
            LINEAGE_APP_ID=self.app_id,
            LINEAGE_STATE_DIR=str(tmp / f"state-{name}"),
            LINEAGE_PARTITIONS=str(partitions),  # the topics it creates match the events topic
            LINEAGE_WEB_PORT=str(self.port),
            LINEAGE_PROCESSES=str(processes),
            LINEAGE_WEB_HOST="127.0.0.1",
            LINEAGE_REDACTION_KEY="bench",
        )
        env.update(settings or {})
        command = [sys.executable, "-m", "lineage.cli", "worker", "--policy", str(POLICY)]
        self.started = time.perf_counter()
        self.ready_at: float | None = None
        self.process = subprocess.Popen(
            # info: faust says "Ready" at that level; the worker logs nothing per batch.
            [*command, "--loglevel", "info"],
            cwd=cwd,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    # -- what it says --

    def metrics(self, *names: str) -> str:
        """/metrics, or only the series ``names``: the worker's loop serves each poll
        between its batches, and a smaller answer takes less of it."""
        query = "?" + urllib.parse.urlencode([("name[]", n) for n in names]) if names else ""
        texts = []
        for port in self.ports:
            try:
                url = f"http://127.0.0.1:{port}/metrics{query}"
                with urllib.request.urlopen(url, timeout=2) as response:
                    texts.append(response.read().decode())
            except OSError:
                pass
        return "\n".join(texts)

    def done(self) -> int:
        """Messages dealt with: judged events, dead letters and duplicates (from /metrics)."""
        text = self.metrics(*_DONE_SERIES)
        return int(sum(float(v) for v in _DONE.findall(text)))

    def alerts(self) -> int:
        return int(sum(float(v) for v in _ALERTS.findall(self.metrics())))

    def spent(self) -> dict[str, float]:
        """Seconds judging, flushing, and of the flushes with Kafka and awaiting the view
        process, and what flushes took of the judging loop (from /metrics)."""
        text = self.metrics()
        return {part: sum(float(v) for v in found.findall(text)) for part, found in _SPENT.items()}

    def status_kb(self, field: str = "VmRSS") -> int:
        """A ``/proc/<pid>/status`` figure in kB (VmRSS: resident now; VmHWM: its peak),
        summed over the worker and its processes (its view process): what the worker
        holds. A sum of peaks is at most the peak of the sum."""
        total = sum(kb for _, _, kb in self.each_kb(field))
        if not total:
            raise SystemExit(f"no {field} in /proc/{self.process.pid}/status")
        return total

    def each_kb(self, field: str = "VmRSS") -> list[tuple[int, str, int]]:
        """:meth:`status_kb` process by process: (pid, its command's last words, kB)."""
        out = []
        for pid in _family(self.process.pid):
            with contextlib.suppress(OSError):  # a process gone meanwhile
                kb = 0
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(field + ":"):
                        kb = int(line.split()[1])
                words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                name = " ".join(w.decode(errors="replace") for w in words if w)[-60:]
                out.append((pid, name, kb))
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far of the worker and its processes (its view
        process; ``/proc/<pid>/stat``)."""
        ticks = 0
        for pid in _family(self.process.pid):
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()  # after the command: state is field 3
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"the worker exited ({self.process.returncode}); {self.log}:\n{tail}")

    def _note_ready(self) -> None:
        said = self.log.read_text(errors="replace").count("Worker]: Ready")  # each process
        if self.ready_at is None and said >= self.processes:
            self.ready_at = time.perf_counter()

    # -- waiting for it (polls a process from outside: every 50 ms) --

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Seconds from the process start until faust logged "Ready"."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            self._note_ready()
            if self.ready_at is not None:
                return self.ready_at - self.started
            time.sleep(0.05)
        raise SystemExit(f"the worker was not Ready in {timeout:.0f} s; see {self.log}")

    def held(self) -> list[list[int]]:
        """The partitions each process holds (its /health); [] for one that does not
        answer."""
        held = []
        for port in self.ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    held.append(list(orjson.loads(r.read()).get("partitions", [])))
            except OSError:
                held.append([])
        return held

    def wait_settled(self, timeout: float = 120.0) -> float:
        """Wait until every process holds partitions and together they hold all of the
        events topic; when (perf_counter)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            held = self.held()
            together = sorted(p for each in held for p in each)
            if all(held) and together == list(range(self.partitions)):
                return time.perf_counter()
            time.sleep(0.05)
        raise SystemExit(f"the worker's processes held {self.held()} after {timeout:.0f} s")

    def wait_done(self, total: int, *, since: int = 0, timeout: float = 1800.0) -> Progress:
        """Wait until /metrics shows ``total`` messages done; ``since`` is the count at the
        start of the stretch being timed (its first progress past it starts the clock)."""
        first: tuple[float, int, float] | None = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            self._note_ready()
            n = self.done()
            now, cpu = time.perf_counter(), self.cpu_seconds()
            if first is None and n > since:
                first = (now, n, cpu)
            if first is not None and n >= total:
                return Progress(*first, now, n, cpu)
            time.sleep(0.05)
        raise SystemExit(
            f"the worker did {self.done():,} of {total:,} in {timeout:.0f} s; see {self.log}"
        )

    def stop(self) -> str:
        """SIGTERM, as an orchestrator stops it. Returns "" when it stopped cleanly, else a
        line saying how it exited (and its first CRITICAL log line)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.returncode == 0:
            return ""
        critical = [
            line.split("] ", 3)[-1].strip()
            for line in self.log.read_text(errors="replace").splitlines()
            if "[CRITICAL]" in line
        ]
        said = f": {critical[0]}" if critical else ""
        return f"note: the worker's stop on SIGTERM exited {self.process.returncode}{said}"
