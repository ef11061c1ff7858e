"""Alert latency of one worker under a steady load: from an event's send to its alert's arrival.

    .venv/bin/python bench/latency.py [--broker HOST:PORT] [--rate 5000] [--seconds 60]

Without --broker (or KAFKA_BOOTSTRAP_SERVERS) it starts scripts/kafka-local. On a fresh
deployment (events and alerts topics created with ``--partitions`` partitions, a new
app id and state directory), one ``lineage worker --policy
bench/policies/sakura-retail.yaml`` starts and is warmed up with a few hundred events
of its own. Then, in this one process and event loop:

- a producer sends a typical day of the Sakura Retail policy (bench/traffic.py, breach
  share 0.05) at a steady ``--rate`` events/s for ``--seconds``: every 5 ms it sends
  the events that are due by the clock, and records each event's send time by event id;
- a consumer of the alerts topic records each alert's arrival time.

latency = arrival - send, on the same clock (``time.perf_counter``) in the same process.
Which alerts should come is known beforehand: the same events are judged here by the
engine alone, after the warm-up (alert ids are deterministic from rule and event id,
and every alert is checked off against them). After the last send it waits up to
``--grace`` seconds for the alerts still expected.

Prints the events sent, the achieved send rate, the alerts expected and arrived, the
alerts that never arrived within the grace period, p50, p99 and max latency in ms, the
same per 10-second window, and the target: p99 < 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
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

from lineage.engine import Engine
from lineage.policy import load_policy

TICK = 0.005  # the producer sends what is due every 5 ms
WARM_UP = 500  # events the worker judges before the measured run (ids "warm-...")
WINDOW = 10.0  # seconds of each line of the table over time


def expected_alerts(
    warm: list[tuple[bytes | None, bytes]], records: list[tuple[bytes | None, bytes]]
) -> dict[str, str]:
    """alert_id -> event_id of the open alerts the engine raises on ``records``, judged in
    order by one engine after the warm-up (what the worker's per-partition engines raise
    too: a subject's events and consents share a partition). The warm-up is judged
    first because it shares subjects with the run: a consent in it changes which rule
    a later event breaks."""
    engine = Engine(load_policy(POLICY))
    expected: dict[str, str] = {}
    for offset, (_, value) in enumerate(warm + records):
        outcome = engine.process(value, offset=offset, origin="expected")
        for alert in outcome.alerts:
            if alert.get("status", "open") == "open" and offset >= len(warm):
                expected.setdefault(alert["alert_id"], alert["event_id"])
    return expected


def event_id(value: bytes) -> str | None:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return data.get("event_id") if isinstance(data, dict) else None


class Run:
    """The producer and the alerts consumer of the measured run, and what they saw."""

    def __init__(self, bootstrap: str, prefix: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.events = prefix + "events"
        self.alerts = prefix + "alerts"
        self.partitions = partitions
        self.sent_at: dict[str, float] = {}  # event id -> first send (perf_counter)
        self.arrived: dict[str, tuple[float, str]] = {}  # alert id -> (arrival, event id)
        self.first_send = self.last_send = 0.0
        self.sent = 0

    async def consume(self, stop: asyncio.Event, positioned: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,  # the broker answers at once when records arrive anyway
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.alerts, p) for p in range(self.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            for tp in tps:
                await consumer.position(tp)  # resolve the offsets before the producer starts
            positioned.set()
            while not stop.is_set():
                fetched = await consumer.getmany(timeout_ms=50)
                now = time.perf_counter()
                for records in fetched.values():
                    for record in records:
                        alert = orjson.loads(record.value)
                        if alert.get("status", "open") == "open":
                            self.arrived.setdefault(alert["alert_id"], (now, alert["event_id"]))
        finally:
            await consumer.stop()

    async def produce(
        self, records: list[tuple[bytes | None, bytes]], ids: list[str | None], rate: float
    ) -> None:
        # linger 0: a record leaves as soon as the client's sender task runs.
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks=1, linger_ms=0)
        await producer.start()
        try:
            n, i = len(records), 0
            started = time.perf_counter()
            self.first_send = started
            while i < n:
                due = min(n, int((time.perf_counter() - started) * rate) + 1)
                while i < due:
                    key, value = records[i]
                    sent_at = time.perf_counter()
                    await producer.send(self.events, value, key=key)  # queued, not awaited
                    eid = ids[i]
                    if eid is not None:
                        self.sent_at.setdefault(eid, sent_at)  # a retry keeps the first
                    i += 1
                self.last_send = time.perf_counter()
                await asyncio.sleep(TICK)
            self.sent = i
            await producer.flush()
        finally:
            await producer.stop()

    async def run(
        self,
        records: list[tuple[bytes | None, bytes]],
        ids: list[str | None],
        rate: float,
        expected: dict[str, str],
        grace: float,
    ) -> float:
        """Send at ``rate``; then wait up to ``grace`` s for the expected alerts. Returns
        how long after the last send the last expected alert arrived (or the grace)."""
        stop, positioned = asyncio.Event(), asyncio.Event()
        consumer = asyncio.create_task(self.consume(stop, positioned))
        await positioned.wait()
        await self.produce(records, ids, rate)
        deadline = time.perf_counter() + grace
        while time.perf_counter() < deadline and not expected.keys() <= self.arrived.keys():
            await asyncio.sleep(0.05)
        waited = time.perf_counter() - self.last_send
        stop.set()
        await consumer
        return waited


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    broker_arguments(parser)
    parser.add_argument("--rate", type=int, default=5_000, help="events/s")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--grace", type=float, default=10.0, help="s to wait after the last send")
    args = parser.parse_args()
    header(
        "bench/latency.py: alert latency of one lineage worker at a steady rate",
        "latency.py",
        {
            "broker": args.broker,
            "rate": args.rate,
            "seconds": args.seconds,
            "partitions": args.partitions,
            "grace": args.grace,
        },
    )
    policy = load_policy(POLICY)
    total = args.rate * args.seconds
    records = list(keyed(generate(policy, total, 0.05, seed=29)))
    ids = [event_id(value) for _, value in records]
    warm = list(keyed(generate(policy, WARM_UP, 0.05, seed=30), event_prefix="warm-"))
    expected = expected_alerts(warm, records)
    print(
        f"drew {len(records):,} events of a typical day (breach share 0.05); judged here "
        f"(after the warm-up), they raise {len(expected):,} alerts"
    )
    tag = new_tag()
    prefix = f"bl{tag}."
    with tempfile.TemporaryDirectory(prefix="lineage-latency-") as tmp_name:
        tmp = Path(tmp_name)
        with broker(args.broker, tmp) as bootstrap:
            try:
                count = create_topic(bootstrap, prefix + "events", args.partitions)
                create_topic(bootstrap, prefix + "alerts", args.partitions)
                print(f"fresh deployment {prefix}*: events and alerts topics, {count} partitions")
                worker = Worker(bootstrap, prefix, tmp, partitions=count)
                try:
                    ready = worker.wait_ready()
                    produce_records(bootstrap, prefix + "events", warm)
                    worker.wait_done(len(warm))
                    print(
                        f"worker Ready {ready:.1f} s after its start; warmed up with "
                        f"{len(warm):,} events"
                    )
                    run = Run(bootstrap, prefix, count)
                    cpu = worker.cpu_seconds()
                    waited = asyncio.run(run.run(records, ids, args.rate, expected, args.grace))
                    cpu = worker.cpu_seconds() - cpu
                    judged = worker.done() - len(warm)
                finally:
                    stopped = worker.stop()
            finally:
                if not args.keep_topics:
                    delete_topics(bootstrap, tag)

    sending = max(run.last_send - run.first_send, 1e-9)
    print()
    print(
        f"sent:     {run.sent:,} events in {sending:.1f} s: {run.sent / sending:,.0f} events/s "
        f"(asked {args.rate:,}/s)"
    )
    print(
        f"worker:   judged {judged:,} of them; used {cpu:.1f} CPU s "
        f"({cpu / (sending + waited):.0%} of one CPU over the run)"
    )
    if stopped:
        print(stopped)
    latencies = sorted(
        (arrival - run.sent_at[eid]) * 1000
        for aid, (arrival, eid) in run.arrived.items()
        if aid in expected and eid in run.sent_at
    )
    missing = len(expected.keys() - run.arrived.keys())
    unexpected = sum(
        1
        for aid, (_, eid) in run.arrived.items()
        if aid not in expected and not eid.startswith("warm-")
    )
    print(
        f"alerts:   {len(latencies):,} of {len(expected):,} expected arrived "
        f"({'all' if not missing else 'stopped waiting'} {waited:.1f} s after the last send); "
        f"{missing:,} never arrived within the {args.grace:.0f} s grace period; "
        f"{unexpected:,} arrived that were not expected"
    )
    if not latencies:
        print("no alert arrived: no latency to report")
        return 1
    p50, p99, worst = percentile(latencies, 0.5), percentile(latencies, 0.99), latencies[-1]
    print(f"latency:  p50 {p50:,.1f} ms   p99 {p99:,.1f} ms   max {worst:,.1f} ms")

    # The same per window of send time: a worker that keeps up shows flat figures, one
    # that falls behind shows them grow.
    print()
    print(f"by send time   alerts   p50 ms   p99 ms   max ms  (windows of {WINDOW:.0f} s)")
    windows: dict[int, list[float]] = {}
    for aid, (arrival, eid) in run.arrived.items():
        if aid in expected and eid in run.sent_at:
            sent_at = run.sent_at[eid]
            windows.setdefault(int((sent_at - run.first_send) // WINDOW), []).append(
                (arrival - sent_at) * 1000
            )
    for w, values in sorted(windows.items()):
        values.sort()
        print(
            f"{w * WINDOW:>5.0f}-{(w + 1) * WINDOW:<4.0f} s {len(values):>8,} "
            f"{percentile(values, 0.5):>8,.0f} {percentile(values, 0.99):>8,.0f} "
            f"{values[-1]:>8,.0f}"
        )
    print()
    print(f"target: p99 < 200 ms: {p99:,.1f} ms ({'met' if p99 < 200 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
