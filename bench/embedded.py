"""Embedded throughput: the whole ``lineage run`` process, as a user runs it, beside a bare
``json.loads`` loop over the same file.

    .venv/bin/python bench/embedded.py [--events 200000] [--rounds 3] [--against REV]

Two days of another company's policy (``bench/policies/sakura-retail.yaml``), drawn by
``bench/traffic.py``: a typical day (about 5% of access events breach) and a breach
storm (about 90%). For each, alternating so that all see the same machine state:

- bare:   a Python process that reads the file line by line and ``json.loads`` each;
- lineage run: ``lineage run --policy ... --source day.jsonl --out DIR`` (start-up,
  decoding, judging, every output and export written);
- with ``--against REV``: the same command from a git worktree of ``REV`` (an earlier
  engine), to show what changed.

Both trees are byte-compiled first, as an installed product is (:func:`compiled`), and
the other tree's judging core is built with mypyc as its install would build it
(:func:`built`): this tree runs as it was installed. Each tree's line says whether its
core ran compiled.

Each figure is the best of ``--rounds`` runs (wall clock). Prints events/s and the
ratio to the bare loop. Targets (issue 11): at least 0.30 on a typical day, 0.15 in
a breach storm.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "bench" / "policies" / "sakura-retail.yaml"
BARE = """
import json, sys
with open(sys.argv[1], "rb") as lines:
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            pass
"""
MIXES = {"typical": 0.05, "storm": 0.9}


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def compiled(python: str, tree: Path) -> None:
    """Byte-compile the package of ``tree`` (its ``__pycache__``), as pip does when it
    installs the product: each run then times the product, not Python compiling its
    source. Where ``PYTHONDONTWRITEBYTECODE`` is set (this project's machines and its
    Docker image set it) an editable checkout is compiled again by every run, about
    0.2 s of a run here."""
    subprocess.run([python, "-m", "compileall", "-q", str(tree / "lineage")], check=True)


def built(python: str, tree: Path, wheels: Path) -> None:
    """Build the extensions of ``tree``'s judging core (``lineage/compiled.py``, from
    2026-12-04 on) as its install would, and put them beside its sources: a worktree
    has none, and an engine timed interpreted against one compiled would be slower by
    the compiler's gain, not by its code. The wheel is built in a clean environment
    (pip's build isolation), as ``pip install`` builds it."""
    if not (tree / "lineage" / "compiled.py").exists():
        return
    subprocess.run(
        [python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(tree)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.endswith(".so"):
                archive.extract(name, tree)


def how(python: str, tree: Path) -> str:
    """Whether ``tree``'s judging core runs compiled (``lineage.compiled.how``)."""
    probe = "import lineage.compiled as c; print(c.how() if hasattr(c, 'how') else '?')"
    done = subprocess.run(
        [python, "-W", "ignore", "-c", f"import lineage; {probe}"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "interpreted (no lineage.compiled)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", help="a git revision whose lineage run to time too")
    args = parser.parse_args()
    python = sys.executable
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpus; "
        f"{args.events:,} events a day, best of {args.rounds}"
    )
    with tempfile.TemporaryDirectory(prefix="lineage-bench-") as tmp_name:
        tmp = Path(tmp_name)
        other: Path | None = None
        if args.against:
            other = tmp / "against"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(other), args.against],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        try:
            if other is not None:
                built(python, other, tmp / "wheel")
            for tree in (ROOT, other):
                if tree is not None:
                    compiled(python, tree)
                    name = "this tree" if tree == ROOT else f"@{args.against}"
                    print(f"{name}: the judging core runs {how(python, tree)}")
            for mix, share in MIXES.items():
                day = tmp / f"{mix}.jsonl"
                subprocess.run(
                    [python, "bench/traffic.py", "--policy", str(POLICY), "--events",
                     str(args.events), "--breach-share", str(share), "--out", str(day)],
                    cwd=ROOT, check=True,
                )  # fmt: skip
                runs: dict[str, list[float]] = {"bare": [], "lineage run": []}
                if other is not None:
                    runs[f"lineage run @{args.against}"] = []
                for round_ in range(args.rounds):
                    runs["bare"].append(timed([python, "-c", BARE, str(day)], ROOT))
                    out = tmp / f"out-{mix}-{round_}"
                    command = [python, "-m", "lineage.cli", "run", "--policy", str(POLICY),
                               "--source", str(day), "--out", str(out)]  # fmt: skip
                    runs["lineage run"].append(timed(command, ROOT))
                    shutil.rmtree(out)
                    if other is not None:
                        runs[f"lineage run @{args.against}"].append(timed(command, other))
                        shutil.rmtree(out)
                bare = args.events / min(runs["bare"])
                print(f"{mix} day ({share:.0%} of flows drawn from breaching shapes):")
                for name, seconds in runs.items():
                    rate = args.events / min(seconds)
                    print(
                        f"  {name:<28} {rate:>10,.0f} events/s  {rate / bare:5.2f} of bare  "
                        f"(best {min(seconds):.2f}s, worst {max(seconds):.2f}s)"
                    )
        finally:
            if other is not None:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False
                )
    print("targets: lineage run >= 0.30 of bare on the typical day, >= 0.15 in the storm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
