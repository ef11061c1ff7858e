"""Replay throughput: ``lineage replay`` (two policies, one pass) beside ``lineage run`` under
each policy, on the same file, in the same run.

    .venv/bin/python bench/replay.py [--events 200000] [--rounds 3] [--breach-share 0.05]

A day of ``bench/policies/sakura-retail.yaml`` drawn by ``bench/traffic.py``, and a revised
copy of that policy (a lapsed agreement renewed, a third party moved abroad, an ad
provider's conditions withdrawn), so that the replay has differences to write. For each
round, alternating so that all see the same machine state:

- run (baseline):  ``lineage run --policy sakura-retail.yaml --source day.jsonl --out DIR``
- run (candidate): the same under the revised policy
- replay:          ``lineage replay --baseline sakura-retail.yaml --policy revised.yaml
                   --source day.jsonl --out DIR``

Each figure is the whole process as a user runs it (start-up, decoding, judging, every
output written), the best of ``--rounds``. Prints events/s of each and how the replay's
time compares with judging the file once per policy (the two runs together). The target
(issue 19): a replay takes no longer than the two runs it stands for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "bench" / "policies" / "sakura-retail.yaml"


def revise(text: str) -> str:
    """The policy with three changes a privacy officer might try."""
    changes = (
        ("        expires_on: 2026-05-31\n", "        expires_on: 2028-05-31\n"),
        (
            "    name: Example Survey Partner Inc.\n    kind: third_party\n    country: JP",
            "    name: Example Survey Partner Inc.\n    kind: third_party\n    country: US",
        ),
        (
            "    conditions: {since: 2025-04-01, use_limited_to: [advertising], "
            "binds_onward: true}\n    onward: [ad-marketplace]\n",
            "    onward: [ad-marketplace]\n",
        ),
    )
    for old, new in changes:
        if old not in text:
            raise SystemExit(f"bench/replay.py: the policy no longer has {old.strip()!r}")
        text = text.replace(old, new)
    return text


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--breach-share", type=float, default=0.05)
    args = parser.parse_args()
    python = sys.executable
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpus, "
        f"load average {load}; {args.events:,} events, {args.breach_share:.0%} drawn from "
        f"breaching shapes, best of {args.rounds}"
    )
    print(f"  {' '.join(sys.argv)}")
    with tempfile.TemporaryDirectory(prefix="lineage-bench-replay-") as tmp_name:
        tmp = Path(tmp_name)
        day = tmp / "day.jsonl"
        revised = tmp / "revised.yaml"
        revised.write_text(revise(POLICY.read_text()))
        subprocess.run(
            [python, "bench/traffic.py", "--policy", str(POLICY), "--events", str(args.events),
             "--breach-share", str(args.breach_share), "--out", str(day)],
            cwd=ROOT, check=True,
        )  # fmt: skip
        lineage = [python, "-m", "lineage.cli"]
        commands = {
            "run (baseline)": [*lineage, "run", "--policy", str(POLICY), "--source", str(day)],
            "run (candidate)": [*lineage, "run", "--policy", str(revised), "--source", str(day)],
            "replay": [*lineage, "replay", "--baseline", str(POLICY), "--policy", str(revised),
                       "--source", str(day)],
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in commands}
        summary = "{}"
        for round_ in range(args.rounds):
            for name, command in commands.items():
                out = tmp / f"out-{round_}"
                times[name].append(timed([*command, "--out", str(out)]))
                if name == "replay" and round_ == 0:
                    summary = (out / "replay.json").read_text()
                shutil.rmtree(out)
        best = {name: min(seconds) for name, seconds in times.items()}
        for name, seconds in best.items():
            print(
                f"  {name:<16} {args.events / seconds:>10,.0f} events/s  (best {seconds:.2f}s, "
                f"worst {max(times[name]):.2f}s)"
            )
        both = best["run (baseline)"] + best["run (candidate)"]
        print(
            f"replay / (run baseline + run candidate): {best['replay'] / both:.2f} "
            f"(target <= 1.00); replay / one run: "
            f"{best['replay'] / best['run (baseline)']:.2f}"
        )
        found = json.loads(summary)
        print(
            f"the replay found: {found['added']['alerts']:,} alerts added, "
            f"{found['removed']['alerts']:,} removed, {found['flows_changed']} flows changed"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
