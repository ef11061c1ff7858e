"""What a worker writes to Kafka per event, and what its state holds, day after day over
the same subjects.

    .venv/bin/python bench/state_growth.py [--events 20000] [--subjects 5000] [--days 30]

The worker's own state machinery with no Kafka: one partition's tables
(:class:`streams.tables.PartitionState`) on in-memory mappings that count every
record written to them (what their changelog topics receive), the engine judging
into them, and the partition's per-subject view (:class:`lineage.view.SubjectView`),
whose rows go to the compacted ``subject-view`` topic. State and view are flushed
every ``--flush-events`` events, as the worker flushes them.

Each day is ``--events`` events of a typical day (bench/traffic.py, breach share 0.05)
over the same ``--subjects`` subjects. After each day it prints the bytes written per
event (keys and values) to the tables' changelogs and to the view's topic, and the
size of the judging state (the JSON of each table's values, before Python's own
overhead) and of the view. The judging state must not grow with a subject's history,
and what is written per event must stay flat from day 1 to the last.

Event ids are renamed per day (``d1-...``), since bench/traffic.py numbers every draw
from ``e-0``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import orjson
from traffic import DAY, generate

from lineage.engine import Engine
from lineage.policy import load_policy
from lineage.redact import Redactor
from lineage.view import SubjectView
from streams.tables import PartitionState

POLICY = Path(__file__).parent / "policies" / "sakura-retail.yaml"
TABLES = ("seen", "subjects", "edges", "incidents")


class CountingTable(MutableMapping[str, Any]):
    """A table on a dict that counts the bytes of every record written (its changelog)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.written = 0

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.written += len(key) + len(value)
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        self.written += len(key)
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="per day")
    parser.add_argument("--subjects", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--flush-events", type=int, default=10_000)
    parser.add_argument("--dedup-window", type=int, default=500_000)
    parser.add_argument("--breakdown", action="store_true", help="bytes per event by table")
    args = parser.parse_args()
    policy = load_policy(POLICY)
    tables = {name: CountingTable() for name in TABLES}
    state = PartitionState(tables, 0, dedup_window=args.dedup_window)
    engine = Engine(policy, state.as_state(), redactor=Redactor(b"k" * 32))
    folder = Path(tempfile.mkdtemp(prefix="state-growth-"))
    view = SubjectView(folder / "view.sqlite", max_cached=50_000)
    print(
        f"bench/state_growth.py: {args.events:,} events a day over {args.subjects:,} subjects, "
        f"{args.days} days, policy {POLICY.name}, a flush every {args.flush_events:,} "
        f"events, dedup window {args.dedup_window:,}"
    )
    print(
        "day   changelog B/event   view B/event   judging state MB "
        "(seen / subjects with consents / edges+incidents)   view rows"
    )
    offset = 0
    first: tuple[float, float] | None = None
    for day in range(1, args.days + 1):
        before = sum(t.written for t in tables.values())
        by_table = {name: table.written for name, table in tables.items()}
        view_bytes = 0
        lines = generate(
            policy,
            args.events,
            0.05,
            subjects=args.subjects,
            seed=40 + day,
            day=DAY + dt.timedelta(days=day - 1),
        )
        for n, line in enumerate(lines, start=1):
            outcome = engine.process(
                line.replace(b'"e-', f'"d{day}-'.encode()), offset=offset, origin=f"d{day}"
            )
            view.fold(outcome.view)
            offset += 1
            if n % args.flush_events == 0:
                state.flush()
                view.observe(engine.stats.newest)
                view.retain(policy.policy.records_retention_days)
                view_bytes += sum(len(k) + len(v or b"") for k, v in view.flush())
        state.flush()
        view_bytes += sum(len(k) + len(v or b"") for k, v in view.flush())
        changelog = (sum(t.written for t in tables.values()) - before) / args.events
        parts = ", ".join(
            f"{name} {(table.written - by_table[name]) / args.events:.1f}"
            for name, table in tables.items()
        )
        per_view = view_bytes / args.events
        if first is None:
            first = (changelog, per_view)
        sizes = {
            name: sum(len(k) + len(orjson.dumps(v) if not isinstance(v, bytes) else v)
                      for k, v in tables[name].data.items()) / 1e6
            for name in TABLES
        }  # fmt: skip
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20
        rows = view._db.execute(
            "SELECT (SELECT count(*) FROM pairs) + (SELECT count(*) FROM consents) "
            "+ (SELECT count(*) FROM records)"
        ).fetchone()[0]
        print(
            f"{day:3d}   {changelog:17.1f}   {per_view:12.1f}   {sizes['seen']:6.2f} / "
            f"{sizes['subjects']:6.2f} / {sizes['edges'] + sizes['incidents']:6.2f}"
            f"{'':>35}{rows:,}   RSS {rss:.0f} MiB"
        )
        if args.breakdown:
            print(f"      changelog B/event by table: {parts}")
    assert first is not None
    print(
        f"day {args.days} against day 1, bytes written per event: changelog "
        f"{changelog / first[0]:.2f}x, view {per_view / first[1]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
