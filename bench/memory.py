"""Does a worker's memory stay flat when the same subjects keep coming? Two million events.

    .venv/bin/python bench/memory.py [--broker HOST:PORT] [--events 1000000] [--subjects 100000]
        [--stores memory,rocksdb] [--restart]

Without --broker (or KAFKA_BOOTSTRAP_SERVERS) it starts scripts/kafka-local. For each
table store of ``--stores`` (``memory``: the default ``memory://``; ``rocksdb``:
``LINEAGE_STORE=rocksdb://``), in turn on the same broker, one ``lineage worker --policy
bench/policies/sakura-retail.yaml`` on a fresh deployment (events topic created with
``--partitions`` partitions), then two phases, done alike:

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

``--phases N`` runs N phases alike (phase k on day k, seed 40 + k): once the dedup
window is full, the RSS of one phase against the one before shows whether memory
stays flat as a worker runs on.

Each store's worker gets the same draws. ``--restart`` then stops it (SIGTERM)
and starts a worker on the same state folder: the seconds until faust says Ready
(its tables recovered: from the changelogs on ``memory://``, from disk on
``rocksdb://``), then the seconds until it has judged a probe of ``--probe`` more
events (which first rebuilds each partition's per-subject view from its topic), and
its RSS after them.

Prints each phase's RSS and the size of the state folder, their ratio (target: the
second RSS within 10% of the first; with more phases, each against the one before
too), the worker's judging rate in each phase (from its first judged event of the
phase to its last; the producer runs meanwhile, so the rate is the slower of the two:
the producer's own time is printed beside it), and, with two stores, a table of both
side by side.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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

#: Phase k draws with seed FIRST_SEED - 1 + k.
FIRST_SEED = 41
MIB = 1024


#: The stores --stores names, and the LINEAGE_STORE of each.
STORES = {"memory": "memory://", "rocksdb": "rocksdb://"}


def draw(args: argparse.Namespace, phase: int, seed: int, events: int) -> list[Any]:
    """The keyed records of one phase (the same for every store)."""
    started = time.perf_counter()
    policy = load_policy(POLICY)
    on = DAY if phase == 1 or args.same_day else DAY + dt.timedelta(days=phase - 1)
    day = generate(policy, events, 0.05, subjects=args.subjects, seed=seed, day=on)
    records = list(keyed(day, event_prefix=f"p{phase}-"))
    print(
        f"drew phase {phase}: {len(records):,} events of {on} over {args.subjects:,} subjects "
        f"(seed {seed}) in {time.perf_counter() - started:.0f} s"
    )
    return records


def folder_mib(path: Path) -> float:
    """Bytes of every file under ``path``, in MiB (0 when it does not exist)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1024 / 1024


def run_phase(
    worker: Worker,
    bootstrap: str,
    topic: str,
    args: argparse.Namespace,
    phase: int,
    records: list[Any],
    done: int,
    state: Path,
) -> dict[str, float]:
    """Produce while the worker judges, wait for it, settle, read the RSS."""
    print(f"phase {phase}:")
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
    disk = folder_mib(state)
    print(
        f"  RSS {args.settle:.0f} s after the last: {rss / MIB:,.1f} MiB "
        f"(peak so far {peak / MIB:,.1f} MiB); state folder {disk:,.1f} MiB"
    )
    for pid, name, kb in worker.each_kb():
        print(f"    process {pid}: {kb / MIB:,.1f} MiB ({name})")
    return {"rss": rss, "peak": peak, "rate": progress.rate, "disk": disk}


def run_store(
    store: str, bootstrap: str, tmp: Path, args: argparse.Namespace, draws: list[list[Any]]
) -> dict[str, float]:
    """One store's run: a fresh deployment, the two phases, and the restart if asked."""
    print()
    print(f"== store {STORES[store]} ==")
    tag = new_tag()
    prefix = f"bm{tag}."
    topic = prefix + "events"
    settings = {"LINEAGE_STORE": STORES[store]}
    if args.dedup_window:
        settings["LINEAGE_DEDUP_WINDOW"] = str(args.dedup_window)
    if args.cached_subjects:
        settings["LINEAGE_CACHED_SUBJECTS"] = str(args.cached_subjects)
    result: dict[str, float] = {}
    try:
        count = create_topic(bootstrap, topic, args.partitions)
        print(f"fresh deployment {prefix}*: topic {topic}, {count} partitions")
        worker = Worker(bootstrap, prefix, tmp, partitions=count, settings=settings)
        state = tmp / "state-worker"
        try:
            ready = worker.wait_ready()
            rss = worker.status_kb() / MIB
            print(f"worker Ready {ready:.1f} s after its start: RSS {rss:,.1f} MiB")
            done = 0
            for phase, records in enumerate(draws, start=1):
                got = run_phase(worker, bootstrap, topic, args, phase, records, done, state)
                result.update({f"{k}{phase}": v for k, v in got.items()})
                done += len(records)
        finally:
            stopped = worker.stop()
        if stopped:
            print(stopped)
        if args.restart:
            result.update(restart(bootstrap, prefix, tmp, count, settings, args, done, topic))
    finally:
        if not args.keep_topics:
            delete_topics(bootstrap, tag)
        shutil.rmtree(tmp / "state-worker", ignore_errors=True)
    return result


def restart(
    bootstrap: str,
    prefix: str,
    tmp: Path,
    count: int,
    settings: dict[str, str],
    args: argparse.Namespace,
    done: int,
    topic: str,
) -> dict[str, float]:
    """A worker started on the stopped one's state folder: Ready, then a probe judged."""
    print("restart on the same state folder:")
    worker = Worker(bootstrap, prefix, tmp, partitions=count, settings=settings)
    try:
        ready = worker.wait_ready(timeout=1800)
        print(f"  Ready {ready:.1f} s after its start: RSS {worker.status_kb() / MIB:,.1f} MiB")
        probe = args.phases + 1  # a phase of its own: ids and seed no phase drew
        records = draw(args, probe, FIRST_SEED - 1 + probe, args.probe)
        started = time.perf_counter()
        with ThreadPoolExecutor(1) as pool:
            sending = pool.submit(produce_records, bootstrap, topic, records)
            worker.wait_done(len(records), timeout=1800)
            sending.result()
        probe = time.perf_counter() - started
        time.sleep(args.settle)
        rss = worker.status_kb("VmRSS")
        print(
            f"  judged a probe of {len(records):,} events {probe:.1f} s after it was Ready: "
            f"RSS {rss / MIB:,.1f} MiB"
        )
    finally:
        stopped = worker.stop()
    if stopped:
        print(stopped)
    return {"ready": ready, "probe": probe, "rss3": rss}


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
    parser.add_argument(
        "--stores",
        default="memory",
        help="table stores to run, in turn, comma-separated: memory, rocksdb (default: memory)",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="after phase 2, restart the worker on its state folder and judge a probe",
    )
    parser.add_argument("--probe", type=int, default=4_000, help="events judged after a restart")
    parser.add_argument(
        "--phases",
        type=int,
        default=2,
        help="phases of --events each, a day apart (default 2; at least 2)",
    )
    parser.add_argument(
        "--cached-subjects",
        type=int,
        help="the worker's LINEAGE_CACHED_SUBJECTS (decoded subjects kept per partition); "
        "default: the worker's own default",
    )
    args = parser.parse_args()
    if args.phases < 2:
        parser.error(f"--phases: {args.phases}: at least 2")
    stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    unknown = [name for name in stores if name not in STORES]
    if unknown or not stores:
        parser.error(f"--stores: {', '.join(unknown) or 'none'}: choose from memory, rocksdb")
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
            "stores": args.stores,
            "restart": args.restart,
            "probe": args.probe,
            "phases": args.phases,
            "cached-subjects": args.cached_subjects,
        },
    )
    fields = Settings.model_fields
    window = args.dedup_window or fields["dedup_window"].default
    cached = args.cached_subjects or fields["cached_subjects"].default
    print(
        f"worker settings: dedup window {window:,} offsets per partition"
        f"{'' if args.dedup_window else ' (default)'}, "
        f"{cached:,} cached subjects per partition"
        f"{'' if args.cached_subjects else ' (default)'}"
    )
    draws = [
        draw(args, phase, FIRST_SEED - 1 + phase, args.events)
        for phase in range(1, args.phases + 1)
    ]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="lineage-memory-") as tmp_name:
        tmp = Path(tmp_name)
        with broker(args.broker, tmp) as bootstrap:
            for store in stores:
                results[store] = run_store(store, bootstrap, tmp, args, draws)

    print()
    for store, got in results.items():
        ratio = got["rss2"] / got["rss1"]
        print(
            f"{STORES[store]}: RSS after phase 1: {got['rss1'] / MIB:,.1f} MiB; after phase 2: "
            f"{got['rss2'] / MIB:,.1f} MiB; ratio {ratio:.2f} "
            f"(target within 10%: {'met' if abs(ratio - 1) <= 0.10 else 'NOT met'}); "
            f"judging rate {got['rate1']:,.0f} / {got['rate2']:,.0f} events/s"
        )
        if args.phases > 2:
            steps = ", ".join(
                f"{got[f'rss{k}'] / MIB:,.1f} ({got[f'rss{k}'] / got[f'rss{k - 1}']:.2f})"
                for k in range(2, args.phases + 1)
            )
            print(
                f"  RSS after each phase, MiB (against the phase before): "
                f"{got['rss1'] / MIB:,.1f}, {steps}"
            )
    if len(results) > 1:
        print()
        names = list(results)
        print("| figure | " + " | ".join(STORES[n] for n in names) + " |")
        print("|---|" + "---|" * len(names))
        rows = [
            ("RSS after phase 1 (MiB)", "rss1", MIB),
            ("RSS after phase 2 (MiB)", "rss2", MIB),
            ("peak RSS (MiB)", "peak2", MIB),
            ("state folder after phase 2 (MiB)", "disk2", 1),
            ("judging rate, phase 1 (events/s)", "rate1", 1),
            ("judging rate, phase 2 (events/s)", "rate2", 1),
        ]
        if args.restart:
            rows += [
                ("restart: seconds to Ready", "ready", 1),
                ("restart: seconds to judge the probe", "probe", 1),
                ("restart: RSS after the probe (MiB)", "rss3", MIB),
            ]
        for label, key, unit in rows:
            cells = []
            for name in names:
                value = results[name][key] / unit
                cells.append(f"{value:,.1f}" if value < 100 else f"{value:,.0f}")
            print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
