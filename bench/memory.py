"""Does a worker's memory stay flat when the same subjects keep coming? Two million events.

    .venv/bin/python bench/memory.py [--broker HOST:PORT] [--events 1000000] [--subjects 100000]

Without --broker (or KAFKA_BOOTSTRAP_SERVERS) it starts scripts/kafka-local. One
``lineage worker --policy bench/policies/sakura-retail.yaml`` on a fresh deployment
(events topic created with ``--partitions`` partitions), then two phases, done alike:

1. draw ``--events`` events of a typical day (bench/traffic.py, breach share 0.05) over
   ``--subjects`` subjects, produce them (aiokafka's batch API, in a thread) while the
   worker judges, wait until its /metrics shows them all done, wait ``--settle``
   seconds, and read its RSS (``VmRSS`` of ``/proc/<pid>/status``; ``VmHWM`` is the peak);
2. the same again over the SAME subjects, drawn with another seed, on the next day
   (as time moves on in a real fleet: a subject's alerts that a late consent could
   still retract are kept for the consent lateness, 24 h, behind that subject's newest
   event). ``--same-day`` draws phase 2 on the same day instead: the worst case, where
   every such alert of both phases is still kept. Event ids are renamed ``p1-...``
   and ``p2-...``: bench/traffic.py numbers every draw from ``e-0``, and the worker
   would drop ids it has seen as duplicates.

Prints both RSS figures and their ratio (target: the second within 10% of the first),
and the worker's judging rate in each phase (from its first judged event of the phase
to its last; the producer runs meanwhile, so the rate is the slower of the two: the
producer's own time is printed beside it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
from traffic import DAY, generate

from lineage.policy import load_policy
from streams.settings import Settings

SEEDS = (41, 42)
MIB = 1024


def run_phase(
    worker: Worker,
    bootstrap: str,
    topic: str,
    args: argparse.Namespace,
    phase: int,
    seed: int,
    done: int,
) -> dict[str, float]:
    """Draw, produce while the worker judges, wait for it, settle, read the RSS."""
    print(f"phase {phase}:")
    started = time.perf_counter()
    policy = load_policy(POLICY)
    on = DAY if phase == 1 or args.same_day else DAY + dt.timedelta(days=phase - 1)
    day = generate(policy, args.events, 0.05, subjects=args.subjects, seed=seed, day=on)
    records = list(keyed(day, event_prefix=f"p{phase}-"))
    print(
        f"  drew {len(records):,} events of {on} over {args.subjects:,} subjects (seed {seed}) "
        f"in {time.perf_counter() - started:.0f} s"
    )
    with ThreadPoolExecutor(1) as pool:
        sending = pool.submit(produce_records, bootstrap, topic, records)
        progress = worker.wait_done(done + len(records), since=done, timeout=7200)
        n, seconds = sending.result()
    time.sleep(args.settle)
    rss, peak = worker.status_kb("VmRSS"), worker.status_kb("VmHWM")
    print(f"  produced them in {seconds:.1f} s ({n / seconds:,.0f}/s) while the worker judged")
    print(
        f"  worker judged {progress.last_n - progress.first_n:,} from its first to its last "
        f"in {progress.seconds:.1f} s: {progress.rate:,.0f} events/s "
        f"({progress.cpu_rate:,.0f} per CPU second)"
    )
    print(
        f"  RSS {args.settle:.0f} s after the last: {rss / MIB:,.1f} MiB "
        f"(peak so far {peak / MIB:,.1f} MiB)"
    )
    return {"rss": rss, "rate": progress.rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    broker_arguments(parser)
    parser.add_argument("--events", type=int, default=1_000_000, help="per phase")
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--settle", type=float, default=5.0, help="s before reading the RSS")
    parser.add_argument(
        "--dedup-window",
        type=int,
        help="the worker's LINEAGE_DEDUP_WINDOW (event ids kept per partition); default: "
        "the worker's own default",
    )
    parser.add_argument(
        "--same-day", action="store_true", help="phase 2 on the same day as phase 1 (worst case)"
    )
    args = parser.parse_args()
    header(
        "bench/memory.py: a worker's RSS after one and two rounds over the same subjects",
        "memory.py",
        {
            "broker": args.broker,
            "events": args.events,
            "subjects": args.subjects,
            "partitions": args.partitions,
            "settle": args.settle,
            "dedup-window": args.dedup_window,
            "same-day": args.same_day,
        },
    )
    fields = Settings.model_fields
    window = args.dedup_window or fields["dedup_window"].default
    settings = {"LINEAGE_DEDUP_WINDOW": str(window)} if args.dedup_window else {}
    print(
        f"worker settings: dedup window {window:,} offsets per partition"
        f"{'' if args.dedup_window else ' (default)'}, "
        f"{fields['cached_subjects'].default:,} cached subjects per partition (default), "
        f"store {fields['store'].default} (default)"
    )
    tag = new_tag()
    prefix = f"bm{tag}."
    topic = prefix + "events"
    phases: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="lineage-memory-") as tmp_name:
        tmp = Path(tmp_name)
        with broker(args.broker, tmp) as bootstrap:
            try:
                count = create_topic(bootstrap, topic, args.partitions)
                print(f"fresh deployment {prefix}*: topic {topic}, {count} partitions")
                worker = Worker(bootstrap, prefix, tmp, partitions=count, settings=settings)
                try:
                    ready = worker.wait_ready()
                    print(
                        f"worker Ready {ready:.1f} s after its start: "
                        f"RSS {worker.status_kb() / MIB:,.1f} MiB"
                    )
                    done = 0
                    for phase, seed in enumerate(SEEDS, start=1):
                        result = run_phase(worker, bootstrap, topic, args, phase, seed, done)
                        done += args.events
                        phases.append(result)
                finally:
                    stopped = worker.stop()
            finally:
                if not args.keep_topics:
                    delete_topics(bootstrap, tag)

    if stopped:
        print(stopped)
    first, second = phases
    ratio = second["rss"] / first["rss"]
    print()
    print(
        f"RSS after phase 1: {first['rss'] / MIB:,.1f} MiB; after phase 2: "
        f"{second['rss'] / MIB:,.1f} MiB; ratio {ratio:.2f}"
    )
    print(
        f"judging rate phase 1: {first['rate']:,.0f} events/s; phase 2: "
        f"{second['rate']:,.0f} events/s; ratio {second['rate'] / first['rate']:.2f}"
    )
    print(
        f"target: the second RSS within 10% of the first: {ratio:.2f} "
        f"({'met' if abs(ratio - 1) <= 0.10 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
