"""End-to-end throughput of one worker on a real broker, against a bare aiokafka consumer.

    .venv/bin/python bench/streaming.py [--broker HOST:PORT] [--events 200000]

Without --broker (or KAFKA_BOOTSTRAP_SERVERS) it starts scripts/kafka-local. It
produces a day of the demo fleet's traffic to a fresh topic, then, on that topic:

- bare:   an aiokafka consumer that only reads every message and ``json.loads`` it;
- worker: one ``lineage worker`` process (faust), timed from its first judged event
          to its last, read off its own /metrics (events + dead letters + duplicates),
          so start-up and group join are not counted.

Prints events/s of each and their ratio. Targets (issue 3): at least 50,000 events/s
per worker and at least 0.25 of the bare consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
from kafka import KafkaProducer

from lineage.demo import DEFAULT_DAY, generate_day

ROOT = Path(__file__).resolve().parent.parent
_COUNTERS = re.compile(
    r"^lineage_(events_total\{[^}]*\}|dead_letters_total|duplicates_total) ([0-9.e+]+)$", re.M
)


def produce(bootstrap: str, topic: str, lines: list[bytes]) -> float:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        batch_size=256 * 1024,
        acks=1,
        enable_idempotence=False,
    )
    started = time.perf_counter()
    for line in lines:
        try:
            data = json.loads(line)
            key = (data.get("subject") or data.get("source") or "").encode() or None
        except (ValueError, AttributeError):
            key = None
        producer.send(topic, key=key, value=line)
    producer.flush(120)
    producer.close()
    return time.perf_counter() - started


async def bare(bootstrap: str, topic: str, total: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()  # aiokafka has no public call
        partitions = cluster.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started = time.perf_counter()
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for record in records:
                    with contextlib.suppress(ValueError):
                        json.loads(record.value)
                seen += len(records)
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def judged(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0
    return int(sum(float(value) for _, value in _COUNTERS.findall(text)))


def worker_rate(bootstrap: str, prefix: str, total: int, tmp: Path) -> tuple[float, int]:
    port = 16800 + os.getpid() % 1000
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_")}
    env.update(
        LINEAGE_BROKER=bootstrap,
        LINEAGE_TOPIC_PREFIX=prefix,
        LINEAGE_APP_ID=f"bench-{uuid.uuid4().hex[:8]}",
        LINEAGE_STATE_DIR=str(tmp / "state"),
        LINEAGE_WEB_PORT=str(port),
        LINEAGE_WEB_HOST="127.0.0.1",
        LINEAGE_REDACTION_KEY="bench",
    )
    log = (tmp / "worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "lineage.cli", "worker", "--loglevel", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        first_at = first_n = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            n = judged(port)
            now = time.perf_counter()
            if n and first_at is None:
                first_at, first_n = now, n
            if n >= total and first_at is not None and first_n is not None:
                return now - first_at, n - first_n
            if process.poll() is not None:
                raise SystemExit(f"worker exited; see {tmp / 'worker.log'}")
            time.sleep(0.1)
        raise SystemExit("worker did not finish in 15 minutes")
    finally:
        process.terminate()
        process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--broker", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    started_broker = None
    with tempfile.TemporaryDirectory(prefix="lineage-kbench-") as tmp_name:
        tmp = Path(tmp_name)
        bootstrap = args.broker
        if not bootstrap:
            started_broker = tmp / "kafka"
            out = subprocess.run(
                [
                    str(ROOT / "scripts" / "kafka-local"),
                    "start",
                    "--dir",
                    str(started_broker),
                    "--port",
                    "19392",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            bootstrap = out.stdout.strip().splitlines()[-1]
        try:
            prefix = f"bench{uuid.uuid4().hex[:8]}."
            topic = prefix + "events"
            lines = list(generate_day(day=DEFAULT_DAY, events=args.events, seed=13))
            seconds = produce(bootstrap, topic, lines)
            print(f"produced {len(lines):,} messages to {topic} in {seconds:.1f}s")
            bare_seconds = asyncio.run(bare(bootstrap, topic, len(lines)))
            bare_rate = len(lines) / bare_seconds
            print(f"bare aiokafka consumer + json.loads: {bare_rate:,.0f} events/s")
            worker_seconds, worker_n = worker_rate(bootstrap, prefix, len(lines), tmp)
            worker_rate_ = worker_n / worker_seconds
            print(
                f"one lineage worker (faust):          {worker_rate_:,.0f} events/s "
                f"({worker_n:,} events in {worker_seconds:.1f}s)"
            )
            print(f"ratio worker/bare:                   {worker_rate_ / bare_rate:.2f}")
            print("targets: >= 50,000 events/s per worker and >= 0.25 of the bare consumer")
        finally:
            if started_broker is not None:
                subprocess.run(
                    [str(ROOT / "scripts" / "kafka-local"), "stop", "--dir", str(started_broker)],
                    check=False,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
