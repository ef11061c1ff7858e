"""Throughput of one worker on a real broker, against a bare aiokafka consumer, on two days.

    .venv/bin/python bench/streaming.py [--broker HOST:PORT] [--events 200000] [--partitions 4]
                                        [--processes 1,auto]

Without --broker (or KAFKA_BOOTSTRAP_SERVERS) it starts scripts/kafka-local. For each
mix of the Sakura Retail policy (bench/policies/sakura-retail.yaml), drawn by
bench/traffic.py — a typical day (breach share 0.05) and a breach storm (0.9) — it
creates a fresh events topic with ``--partitions`` partitions *before* producing,
produces the day keyed by subject, and then, on that topic:

- bare:   an aiokafka consumer that only reads every message and ``json.loads`` it
          (fetching as much per partition as the worker does);
- worker: one ``lineage worker --policy bench/policies/sakura-retail.yaml`` on a fresh
          app id, state directory and events topic, for each of ``--processes``
          (``LINEAGE_PROCESSES``: 1, one judging process; auto, one a core of this
          machine). Once it is Ready and its processes hold every partition, the same
          day is produced to its topic, and it is timed off its own /metrics (events +
          dead letters + duplicates, of all its processes) from its first judged event
          to its last. Started on a backlog instead, the processes of a worker would
          join the group one after the other (this project's broker starts groups
          without ``group.initial.rebalance.delay.ms``) and the first would judge, then
          give partitions back, within the few seconds timed.

Prints events/s, the ratio worker/bare for each mix, and the targets (issues 3 and 18):
at least 50,000 events/s per worker and at least 0.25 of the bare consumer, on the
typical day; 0.10 in the storm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
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
    bootstrap: str,
    tmp: Path,
    tag: str,
    mix: str,
    share: float,
    events: int,
    partitions: int,
    processes: list[int],
) -> dict[str, float]:
    """One day on a fresh topic: produce it, time the bare consumer, then one worker of
    each count of ``processes``, one after the other."""
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

    results = {"bare": bare_rate}
    for count_of in processes:
        results[f"steady-{count_of}"] = run_worker(
            bootstrap, tmp, prefix, mix, count, records, count_of, bare_rate, bare_cpu_rate
        )
    return results


def run_worker(
    bootstrap: str,
    tmp: Path,
    prefix: str,
    mix: str,
    partitions: int,
    records: list[tuple[bytes | None, bytes]],
    processes: int,
    bare_rate: float,
    bare_cpu_rate: float,
) -> float:
    """One worker of ``processes`` processes, Ready and holding every partition of a
    fresh events topic, then the day produced there; its steady rate."""
    label = "lineage worker" if processes == 1 else f"lineage worker, {processes} processes"
    prefix = f"{prefix}p{processes}."
    create_topic(bootstrap, prefix + "events", partitions)
    name = f"worker-{mix}-{processes}"
    worker = Worker(bootstrap, prefix, tmp, partitions=partitions, name=name, processes=processes)
    stopped = ""
    try:
        worker.wait_ready()
        settled = worker.wait_settled()
        n, _ = produce_records(bootstrap, prefix + "events", records)
        progress = worker.wait_done(n)
        alerts = worker.alerts()
        spent = worker.spent()
    finally:
        stopped = worker.stop()
    steady = progress.rate
    print(
        f"  {label}, first to last judged: {steady:>8,.0f} events/s "
        f"({progress.last_n - progress.first_n:,} in {progress.seconds:.1f} s; "
        f"{progress.cpu_rate:,.0f} per CPU second)"
    )
    print(
        f"      ratio worker/bare {steady / bare_rate:.2f} "
        f"(per CPU second {progress.cpu_rate / bare_cpu_rate:.2f}); "
        f"every partition held {settled - worker.started:.1f} s after its start"
    )
    if progress.last_n - progress.first_n < n // 2:
        print("  (too few events to time the worker's steady rate: use more --events)")
    print(f"  alerts raised: {alerts:,} ({alerts / n:.2f} per message)")
    print(
        f"  the worker's time: judging {spent['judging']:.1f} s; flushes took "
        f"{spent['flush_loop']:.1f} s of the judging loop (starting them, waiting for "
        f"one to end), and ran {spent['flushing']:.1f} s beside it (of which handing "
        f"to Kafka and awaiting its acknowledgements {spent['kafka']:.1f} s, awaiting "
        f"the view process {spent['view']:.1f} s)"
    )
    if stopped:
        print(f"  {stopped}")
    print()
    return steady


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    broker_arguments(parser)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--processes",
        default="1,auto",
        help="the workers timed, by LINEAGE_PROCESSES, comma-separated (auto: one a core)",
    )
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    processes = list(
        dict.fromkeys(cores if p.strip() == "auto" else int(p) for p in args.processes.split(","))
    )
    header(
        "bench/streaming.py: one lineage worker against a bare aiokafka consumer",
        "streaming.py",
        {
            "broker": args.broker,
            "events": args.events,
            "partitions": args.partitions,
            "processes": args.processes,
        },
    )
    tag = new_tag()
    with tempfile.TemporaryDirectory(prefix="lineage-kbench-") as tmp_name:
        tmp = Path(tmp_name)
        with broker(args.broker, tmp) as bootstrap:
            try:
                results = {
                    mix: run_mix(
                        bootstrap, tmp, tag, mix, share, args.events, args.partitions, processes
                    )
                    for mix, share in MIXES.items()
                }
            finally:
                if not args.keep_topics:
                    deleted = delete_topics(bootstrap, tag)
                    print(f"deleted this run's {deleted} topics")
    print()
    for count_of in processes:
        label = "one judging process" if count_of == 1 else f"{count_of} judging processes"
        typical, storm = results["typical"], results["storm"]
        steady = typical[f"steady-{count_of}"]
        ratio, storm_ratio = steady / typical["bare"], storm[f"steady-{count_of}"] / storm["bare"]
        print(f"targets, one worker ({label}), first to last judged:")
        met = "met" if steady >= 50_000 else "NOT met"
        print(f"  typical day >= 50,000 events/s:      {steady:,.0f} ({met})")
        met = "met" if ratio >= 0.25 else "NOT met"
        print(f"  typical day >= 0.25 of the bare read: {ratio:.2f} ({met})")
        met = "met" if storm_ratio >= 0.10 else "NOT met"
        print(f"  storm >= 0.10 of the bare read:       {storm_ratio:.2f} ({met})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
