"""A worker while its broker is away: how often it tries to reconnect, and its CPU.

    .venv/bin/python bench/outage.py [--seconds 60] [--against REV]

Starts a broker of its own (``scripts/kafka-local``: it is stopped mid-run), a worker
on it, and sends it a few thousand events. Then the broker is stopped for
``--seconds``, over which the worker's CPU is read (``/proc/<pid>/stat``); then for
10 s more every ``connect()`` the worker calls to the broker's port is counted
(strace): each is an attempt of one of its clients to reach the broker again.
Prints both; with
``--against REV`` the same for the worker of an earlier revision (a git worktree of
it), run first, on a broker of its own.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kafka_bench import (
    KAFKA_LOCAL,
    ROOT,
    Worker,
    create_topic,
    header,
    keyed,
    new_tag,
    produce,
)


def kafka_local(*args: str) -> str:
    out = subprocess.run([str(KAFKA_LOCAL), *args], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


#: Seconds the worker's connection attempts are traced, after the CPU is measured.
_TRACED = 10.0


def count_attempts(pid: int, port: int, seconds: float) -> int:
    """The worker's ``connect()`` calls to ``port`` for ``seconds`` (strace on the process
    and its threads): each is an attempt of one of its clients to reach the broker."""
    traced = subprocess.run(
        ["timeout", "--signal=INT", str(seconds), "strace", "-f", "-qq", "-e", "trace=connect",
         "-p", str(pid)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return traced.stderr.count(f"sin_port=htons({port})")


def one(tmp: Path, seconds: float, cwd: Path) -> tuple[float, float]:
    """(reconnect attempts a second, CPU share of a core) of the worker at ``cwd``."""
    folder = tmp / f"kafka-{new_tag()}"
    bootstrap = kafka_local("start", "--dir", str(folder))
    port = int(bootstrap.rsplit(":", 1)[1])
    prefix = f"b{new_tag()}."
    create_topic(bootstrap, f"{prefix}events", 4)
    worker = Worker(bootstrap, prefix, tmp, partitions=4, name=f"w-{new_tag()}", cwd=cwd)
    try:
        worker.wait_ready()
        from lineage.demo import generate_day

        lines = list(generate_day(events=3000, seed=3))
        produce(bootstrap, f"{prefix}events", keyed(lines))
        worker.wait_done(len(lines))
        kafka_local("stop", "--dir", str(folder))
        # The CPU untraced over the outage, then the attempts traced over 10 s more.
        cpu_before = worker.cpu_seconds()
        started = time.monotonic()
        time.sleep(seconds)
        cpu = (worker.cpu_seconds() - cpu_before) / (time.monotonic() - started)
        return count_attempts(worker.process.pid, port, _TRACED) / _TRACED, cpu
    finally:
        worker.process.kill()
        worker.process.wait(10)
        subprocess.run([str(KAFKA_LOCAL), "stop", "--dir", str(folder)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--against", help="a git revision whose worker to measure too")
    args = parser.parse_args()
    header("a worker while its broker is away", "outage.py", vars(args))
    with tempfile.TemporaryDirectory(prefix="lineage-outage-") as name:
        tmp = Path(name)
        runs: list[tuple[str, Path]] = []
        if args.against:
            other = tmp / "against"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(other), args.against],
                cwd=ROOT, check=True, capture_output=True,
            )  # fmt: skip
            runs.append((f"worker @{args.against}", other))
        runs.append(("worker", ROOT))
        try:
            for label, cwd in runs:
                attempts, cpu = one(tmp, args.seconds, cwd)
                print(
                    f"  {label:<22} broker away {args.seconds:.0f} s: "
                    f"{attempts:7.1f} reconnect attempts/s, CPU {cpu:6.1%} of a core"
                )
        finally:
            if args.against:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(tmp / "against")],
                    cwd=ROOT, check=False,
                )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
