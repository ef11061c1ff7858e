"""What a partition's state is made of, and which parts grow, day after day over the same subjects.

    .venv/bin/python bench/state_growth.py [--events 100000] [--subjects 10000] [--days 4]

One engine (the worker's, on in-memory tables: no Kafka) judges ``--events`` events of
a typical day (bench/traffic.py, breach share 0.05) over ``--subjects`` subjects, then
the same again over the same subjects on each following day, up to ``--days``. After
each day it prints the state as the tables hold it: the bytes of each part's JSON
(what the changelog carries and a ``memory://`` table keeps, before Python's own
overhead), and the counts behind them. The parts:

- ``seen``: the dedup index (bounded by ``LINEAGE_DEDUP_WINDOW`` on a worker; all of
  it here);
- ``recipients``: what each recipient received of each subject (grows with the
  distinct subject-recipient pairs: the flows);
- ``record ids`` and ``consents``: each subject's provision record ids and consent
  decisions (the subject's history, listed by its per-subject answer);
- ``pending``: alerts a late consent may still retract (kept for the consent
  lateness behind the subject's newest event, so bounded);
- ``retractions``, ``edges``, ``incidents``.

Event ids are renamed per day (``d1-...``), since bench/traffic.py numbers every draw
from ``e-0``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import orjson
from traffic import DAY, generate

from lineage.engine import Engine
from lineage.policy import load_policy
from lineage.redact import Redactor

POLICY = Path(__file__).parent / "policies" / "sakura-retail.yaml"


def _size(value: Any) -> int:
    return len(orjson.dumps(value))


def measure(engine: Engine) -> dict[str, int]:
    """Bytes of each part of the state's JSON, and the counts behind them."""
    state = engine.state
    out = {
        "seen": _size({k: list(v) for k, v in state.seen.items()}),
        "recipients": 0,
        "record ids": 0,
        "consents": 0,
        "pending": 0,
        "retractions": 0,
        "edges": _size([e.to_json() for e in state.edges.values()]),
        "incidents": _size([p.to_json() for p in state.incidents.values()]),
        "n subjects": len(state.subjects),
        "n pairs": 0,
        "n record ids": 0,
        "n consents": 0,
        "n pending": 0,
    }
    for subject in state.subjects.values():
        data = subject.to_json()
        for facts in data["r"].values():
            out["record ids"] += _size(facts["rec"])
            out["recipients"] += _size({k: v for k, v in facts.items() if k != "rec"})
            out["n record ids"] += len(facts["rec"])
        out["n pairs"] += len(data["r"])
        out["consents"] += _size(data["d"])
        out["n consents"] += len(data["d"])
        out["pending"] += _size(data["p"])
        out["n pending"] += len(data["p"])
        out["retractions"] += _size(data["x"]) + _size(data["xe"])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="per day")
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=4)
    args = parser.parse_args()
    policy = load_policy(POLICY)
    engine = Engine(policy, redactor=Redactor(b"k" * 32))
    print(
        f"bench/state_growth.py: {args.events:,} events a day over {args.subjects:,} subjects, "
        f"{args.days} days, policy {POLICY.name}"
    )
    offset = 0
    previous: dict[str, int] | None = None
    for day in range(1, args.days + 1):
        lines = generate(
            policy,
            args.events,
            0.05,
            subjects=args.subjects,
            seed=40 + day,
            day=DAY + dt.timedelta(days=day - 1),
        )
        for line in lines:
            engine.process(
                line.replace(b'"e-', f'"d{day}-'.encode()), offset=offset, origin=f"d{day}"
            )
            offset += 1
        now = measure(engine)
        print(
            f"day {day}: {now['n subjects']:,} subjects, {now['n pairs']:,} subject-recipient "
            f"pairs, {now['n record ids']:,} record ids, {now['n consents']:,} consent "
            f"decisions, {now['n pending']:,} pending events"
        )
        for part, size in now.items():
            if part.startswith("n "):
                continue
            grew = f"  ({(size - previous[part]) / 1e6:+.2f} MB)" if previous else ""
            print(f"    {part:12s} {size / 1e6:8.2f} MB{grew}")
        previous = now
    return 0


if __name__ == "__main__":
    sys.exit(main())
