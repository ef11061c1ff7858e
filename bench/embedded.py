"""Embedded throughput: `lineage run`'s core on a generated file, against a bare json.loads loop.

    .venv/bin/python bench/embedded.py [--events 200000] [--rounds 3]

Generates a day of the demo fleet's traffic (lawful and breaching flows, consents,
a few malformed lines) into a temporary JSONL file, then, in the same process and
alternating so both see the same machine state:

- bare:   read the file line by line and ``json.loads`` each line;
- engine: read the same file and judge every line with :func:`lineage.run.run_embedded`
          (decode, validate, redact, dedup, rules, edges, incidents, writing
          alerts/incidents/dead letters), without the one-off graph exports.

Prints events/s of each (best of ``--rounds``) and their ratio. Targets (issue 2):
at least 100,000 events/s and at least 0.3 of the bare loop.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from lineage.demo import DEFAULT_DAY, generate_day
from lineage.policy import load_policy
from lineage.run import run_embedded


def bare(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    n = 0
    with path.open("rb") as lines:
        for line in lines:
            with contextlib.suppress(ValueError):
                json.loads(line)
            n += 1
    return time.perf_counter() - started, n


def engine(path: Path, out: Path) -> tuple[float, int]:
    policy = load_policy()
    started = time.perf_counter()
    with path.open("rb") as lines:
        summary = run_embedded(policy, lines, out, source_name=path.name, exports=False)
    return time.perf_counter() - started, summary.stats.messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lineage-bench-") as tmp:
        path = Path(tmp) / "events.jsonl"
        started = time.perf_counter()
        with path.open("wb") as f:
            for line in generate_day(day=DEFAULT_DAY, events=args.events, seed=11):
                f.write(line + b"\n")
        size = path.stat().st_size
        print(
            f"generated {args.events:,} events ({size / 1e6:.1f} MB) in "
            f"{time.perf_counter() - started:.1f}s; python {platform.python_version()}, "
            f"{platform.machine()}"
        )
        best_bare = best_engine = float("inf")
        lines = judged = 0
        for round_ in range(1, args.rounds + 1):
            gc.collect()
            seconds, lines = bare(path)
            best_bare = min(best_bare, seconds)
            gc.collect()
            seconds_e, judged = engine(path, Path(tmp) / f"out-{round_}")
            best_engine = min(best_engine, seconds_e)
            print(
                f"round {round_}: bare json.loads {lines / seconds:,.0f}/s, "
                f"engine {judged / seconds_e:,.0f}/s"
            )
        bare_rate, engine_rate = lines / best_bare, judged / best_engine
        print(f"bare json.loads loop: {bare_rate:,.0f} events/s")
        print(f"embedded engine:      {engine_rate:,.0f} events/s")
        print(f"ratio engine/bare:    {engine_rate / bare_rate:.2f}")
        print("targets: >= 100,000 events/s and >= 0.30 of the bare loop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
