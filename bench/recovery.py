"""How long a worker takes to serve again on the state of a large stream, against a bare read.

    .venv/bin/python bench/recovery.py [--broker HOST:PORT] [--events 1000000] [--subjects 100000]

Without --broker (or KAFKA_BOOTSTRAP_SERVERS) it starts scripts/kafka-local. It
produces ``--events`` demo events over ``--subjects`` data subjects, lets one
worker judge them all and stops it, then measures, in the same run:

- bare:    an aiokafka consumer reading every changelog record of the worker's
           tables once (the floor for rebuilding the state from Kafka);
- restart: a second worker on an empty state directory, from its start to
           "Ready" (its tables recovered from the changelogs) and to its first
           judged event after that.

Prints both times, the changelog records per table, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from kafka import KafkaProducer

from lineage.demo import DEFAULT_DAY, generate_day

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("seen", "subjects", "edges", "incidents", "board")
_JUDGED = re.compile(
    r"^lineage_(events_total\{[^}]*\}|dead_letters_total|duplicates_total) ([0-9.e+]+)$", re.M
)


def produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    import orjson

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024)
    for line in lines:
        try:
            data = orjson.loads(line)
            key = (data.get("subject") or data.get("source") or "").encode() or None
        except (orjson.JSONDecodeError, AttributeError):
            key = None
        producer.send(topic, key=key, value=line)
    producer.flush(300)
    producer.close()


def judged(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0
    return int(sum(float(value) for _, value in _JUDGED.findall(text)))


class Worker:
    def __init__(self, bootstrap: str, prefix: str, app_id: str, tmp: Path, name: str) -> None:
        self.port = 17800 + (os.getpid() + len(name)) % 1000
        self.log = tmp / f"worker-{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_")}
        env.update(
            LINEAGE_BROKER=bootstrap,
            LINEAGE_TOPIC_PREFIX=prefix,
            LINEAGE_APP_ID=app_id,
            LINEAGE_STATE_DIR=str(tmp / f"state-{name}"),
            LINEAGE_WEB_PORT=str(self.port),
            LINEAGE_WEB_HOST="127.0.0.1",
            LINEAGE_REDACTION_KEY="bench",
        )
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lineage.cli", "worker", "--loglevel", "info"],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def wait(self, condition: str, timeout: float = 1800) -> float:
        """Seconds from the start until ``condition`` ('ready' or 'judged:N') holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"worker exited; see {self.log}")
            if condition == "ready":
                if "Worker]: Ready" in self.log.read_text(errors="replace"):
                    return time.perf_counter() - self.started
            elif judged(self.port) >= int(condition.split(":")[1]):
                return time.perf_counter() - self.started
            time.sleep(0.05)  # polls a process from outside: a benchmark, not a test
        raise SystemExit(f"worker not {condition} in {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


async def bare_read(bootstrap: str, app_id: str, prefix: str) -> tuple[float, dict[str, int]]:
    """Read every changelog partition of the worker's tables once, as fast as aiokafka can."""
    topics = [f"{app_id}-{prefix}{name}-changelog" for name in TABLES]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    tps = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        counts = {name: 0 for name in TABLES}
        remaining = {tp for tp in tps if ends[tp] > 0}
        started = time.perf_counter()
        while remaining:
            for tp, records in (await consumer.getmany(*remaining, timeout_ms=1000)).items():
                counts[tp.topic.rsplit(prefix, 1)[1].removesuffix("-changelog")] += len(records)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return time.perf_counter() - started, counts
    finally:
        await consumer.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=100_000)
    args = parser.parse_args()
    started_broker = None
    with tempfile.TemporaryDirectory(prefix="lineage-recovery-") as tmp_name:
        tmp = Path(tmp_name)
        bootstrap = args.broker
        if not bootstrap:
            started_broker = tmp / "kafka"
            out = subprocess.run(
                [str(ROOT / "scripts" / "kafka-local"), "start", "--dir", str(started_broker)],
                check=True,
                capture_output=True,
                text=True,
            )
            bootstrap = out.stdout.strip().splitlines()[-1]
        try:
            tag = uuid.uuid4().hex[:8]
            prefix, app_id = f"rec{tag}.", f"bench-recovery-{tag}"
            lines = list(
                generate_day(day=DEFAULT_DAY, events=args.events, subjects=args.subjects, seed=21)
            )
            produce(bootstrap, prefix + "events", lines)
            print(f"produced {len(lines):,} messages over {args.subjects:,} subjects")
            first = Worker(bootstrap, prefix, app_id, tmp, "first")
            judged_in = first.wait(f"judged:{len(lines)}")
            first.stop()
            print(f"first worker judged them all {judged_in:.1f} s after its start")
            bare_seconds, counts = asyncio.run(bare_read(bootstrap, app_id, prefix))
            records = sum(counts.values())
            print(
                f"bare read of the changelogs: {records:,} records in {bare_seconds:.1f} s "
                f"({', '.join(f'{k} {v:,}' for k, v in counts.items())})"
            )
            second = Worker(bootstrap, prefix, app_id, tmp, "second")
            ready = second.wait("ready")
            second.stop()
            print(f"restarted worker ready (tables recovered) in {ready:.1f} s")
            print(f"ratio restart/bare read: {ready / bare_seconds:.1f}")
        finally:
            if started_broker is not None:
                subprocess.run(
                    [str(ROOT / "scripts" / "kafka-local"), "stop", "--dir", str(started_broker)],
                    check=False,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
