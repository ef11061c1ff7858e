"""Throughput of one worker on a real broker, against a bare aiokafka consumer, on two days.

    .venv/bin/python bench/streaming.py [--broker HOST:PORT] [--events 200000] [--partitions 4]

Without --broker (or KAFKA_BOOTSTRAP_SERVERS) it starts scripts/kafka-local. For each
mix of the Sakura Retail policy (bench/policies/sakura-retail.yaml), drawn by
bench/traffic.py — a typical day (breach share 0.05) and a breach storm (0.9) — it
creates a fresh events topic with ``--partitions`` partitions *before* producing,
produces the day keyed by subject, and then, on that topic:

- bare:   an aiokafka consumer that only reads every message and ``json.loads`` it
          (fetching as much per partition as the worker does);
- worker: one ``lineage worker --policy bench/policies/sakura-retail.yaml`` process on a
          fresh app id and state directory, timed twice off its own /metrics (events +
          dead letters + duplicates):
          steady:    from its first judged event to its last;
          end to end: from the process start to its last event, so that start-up
                     (imports, topic checks), the group join and table recovery show.

Prints events/s, the ratio worker/bare for each mix, and the targets (issue 3): at least
50,000 events/s per worker and at least 0.25 of the bare consumer, on the typical day.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka_bench import (
    POLICY,
    Worker,
    broker,
    broker_arguments,
    create_topic,
    delete_topics,
    header,
    keyed,
    new_tag,
)
from kafka_bench import produce as produce_records
from traffic import generate

from lineage.policy import load_policy

MIXES = {"typical": 0.05, "storm": 0.9}
#: What the worker fetches per partition at once (LINEAGE_FETCH_BYTES' default): the
#: bare consumer gets the same, so the ratio compares the work done on each message.
FETCH_BYTES = 8 * 1024 * 1024


async def bare(bootstrap: str, topic: str, partitions: int, total: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) an aiokafka consumer takes to read all
    ``total`` messages and json.loads each."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=FETCH_BYTES,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        started, cpu = time.perf_counter(), time.process_time()
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                for record in records:
                    with contextlib.suppress(ValueError):
                        json.loads(record.value)
                seen += len(records)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await consumer.stop()


def run_mix(
    bootstrap: str, tmp: Path, tag: str, mix: str, share: float, events: int, partitions: int
) -> dict[str, float]:
    """One day on a fresh topic: produce it, time the bare consumer, then one worker."""
    prefix = f"bs{tag}-{mix}."
    topic = prefix + "events"
    count = create_topic(bootstrap, topic, partitions)
    print(f"{mix} day (breach share {share}): topic {topic}, {count} partitions")
    records = list(keyed(generate(load_policy(POLICY), events, share, seed=13)))
    n, seconds = produce_records(bootstrap, topic, records)
    print(f"  produced {n:,} messages keyed by subject in {seconds:.1f} s ({n / seconds:,.0f}/s)")

    bare_seconds, bare_cpu = asyncio.run(bare(bootstrap, topic, count, n))
    bare_rate, bare_cpu_rate = n / bare_seconds, n / bare_cpu
    print(
        f"  bare aiokafka consumer + json.loads:   {bare_rate:>8,.0f} events/s "
        f"({n:,} in {bare_seconds:.1f} s; {bare_cpu_rate:,.0f} per CPU second)"
    )

    worker = Worker(bootstrap, prefix, tmp, partitions=count, name=f"worker-{mix}")
    stopped = ""
    try:
        progress = worker.wait_done(n)
        alerts = worker.alerts()
        spent = worker.spent()
    finally:
        stopped = worker.stop()
    steady = progress.rate
    print(
        f"  lineage worker, first to last judged:  {steady:>8,.0f} events/s "
        f"({progress.last_n - progress.first_n:,} in {progress.seconds:.1f} s; "
        f"{progress.cpu_rate:,.0f} per CPU second)"
    )
    print(
        f"      ratio worker/bare {steady / bare_rate:.2f} "
        f"(per CPU second {progress.cpu_rate / bare_cpu_rate:.2f})"
    )
    end_to_end_seconds = progress.last_at - worker.started
    end_to_end = n / end_to_end_seconds
    ready = f"Ready after {worker.ready_at - worker.started:.1f} s, " if worker.ready_at else ""
    print(
        f"  lineage worker, process start to last: {end_to_end:>8,.0f} events/s "
        f"({n:,} in {end_to_end_seconds:.1f} s; {progress.last_cpu:.1f} CPU s)"
    )
    print(
        f"      {ready}first judged after {progress.first_at - worker.started:.1f} s "
        f"({progress.first_cpu:.1f} CPU s); ratio worker/bare {end_to_end / bare_rate:.2f}"
    )
    if progress.last_n - progress.first_n < n // 2:
        print("  (too few events to time the worker's steady rate: use more --events)")
    print(f"  alerts raised: {alerts:,} ({alerts / n:.2f} per message)")
    print(
        f"  the worker's time: judging {spent['judging']:.1f} s, flushing "
        f"{spent['flushing']:.1f} s (of which handing to Kafka and awaiting its "
        f"acknowledgements {spent['kafka']:.1f} s, awaiting the view process "
        f"{spent['view']:.1f} s)"
    )
    if stopped:
        print(f"  {stopped}")
    print()
    return {"bare": bare_rate, "steady": steady, "end_to_end": end_to_end}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    broker_arguments(parser)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    header(
        "bench/streaming.py: one lineage worker against a bare aiokafka consumer",
        "streaming.py",
        {"broker": args.broker, "events": args.events, "partitions": args.partitions},
    )
    tag = new_tag()
    with tempfile.TemporaryDirectory(prefix="lineage-kbench-") as tmp_name:
        tmp = Path(tmp_name)
        with broker(args.broker, tmp) as bootstrap:
            try:
                results = {
                    mix: run_mix(bootstrap, tmp, tag, mix, share, args.events, args.partitions)
                    for mix, share in MIXES.items()
                }
            finally:
                if not args.keep_topics:
                    deleted = delete_topics(bootstrap, tag)
                    print(f"deleted this run's {deleted} topics")
    typical = results["typical"]
    steady, ratio = typical["steady"], typical["steady"] / typical["bare"]
    print()
    print("targets, typical day, one worker first to last judged:")
    print(f"  >= 50,000 events/s:      {steady:,.0f} ({'met' if steady >= 50_000 else 'NOT met'})")
    print(f"  >= 0.25 of the bare read: {ratio:.2f} ({'met' if ratio >= 0.25 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
