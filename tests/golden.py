"""Digests of everything ``lineage run`` writes, for checking that a faster engine says
exactly what the engine before it said.

Three days are judged: the demo fleet's day under the seed policy, and a typical day
and a breach storm of another company's policy (``bench/policies/sakura-retail.yaml``,
drawn by ``bench/traffic.py``). For each, every output is reduced to a SHA-256 of its
normalised content (the dead letters' ``received_at`` dropped, the subjects' store
read back row by row, the summary's timing dropped) plus its line count, so that a
difference says which output moved.

    .venv/bin/python -m tests.golden --write   # record the current engine's digests

``tests/golden-outputs.json`` holds the digests of the engine they were recorded with
(its commit is in the file). ``tests/test_engine_equality.py`` recomputes and compares.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import orjson

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).with_name("golden-outputs.json")
KEY = b"golden-key-golden-key-golden-key"


def _days() -> dict[str, tuple[Path | None, Iterable[bytes]]]:
    sys.path.insert(0, str(ROOT))
    from bench.traffic import generate
    from lineage.demo import generate_day
    from lineage.policy import load_policy

    sakura = ROOT / "bench" / "policies" / "sakura-retail.yaml"
    policy = load_policy(sakura)
    return {
        "demo-day": (None, generate_day(events=20_000, seed=7)),
        "sakura-typical": (sakura, generate(policy, 20_000, 0.05, subjects=3_000, seed=21)),
        "sakura-storm": (sakura, generate(policy, 20_000, 0.9, subjects=3_000, seed=22)),
    }


def _lines(path: Path, drop: tuple[str, ...] = ()) -> tuple[int, str]:
    digest = hashlib.sha256()
    n = 0
    for line in path.read_bytes().splitlines():
        record = orjson.loads(line)
        for key in drop:
            record.pop(key, None)
        digest.update(orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n")
        n += 1
    return n, digest.hexdigest()


def _subjects(path: Path) -> tuple[int, str]:
    """Every subject's answer (docs/contract.md, per-subject lineage), as the run's
    store gives it: what the store holds inside is its own business."""
    from lineage.subjects import SubjectStore, answer

    store = SubjectStore(path)
    digest = hashlib.sha256()
    n = 0
    for subject in store.subjects():
        found, state, version = store.get([subject])
        data = answer(found, state, version)
        data.pop("as_of")
        digest.update(orjson.dumps(data, option=orjson.OPT_SORT_KEYS) + b"\n")
        n += 1
    return n, digest.hexdigest()


@contextmanager
def decoding_every_line_ahead() -> Iterator[None]:
    """While it lasts, a run of a file, however small, has a child decode ahead
    (lineage.decode_process) and waits for each of its batches: every valid line without
    raw personal data is the child's, on a machine of one core too."""
    from lineage.decode_process import DecodeAhead

    start = DecodeAhead.start.__func__  # type: ignore[attr-defined]
    every_line = functools.partial(start, DecodeAhead, least=0, wait=True)
    with (
        mock.patch.object(DecodeAhead, "start", every_line),
        mock.patch("lineage.decode_process.cores", lambda: 2),
    ):
        yield


def digests(
    name: str, policy_path: Path | None, lines: Iterable[bytes], *, ahead: bool = False
) -> dict[str, Any]:
    """``ahead``: judge the lines from a file, with every valid line that holds no raw
    personal data decoded by the process that decodes ahead (lineage.decode_process)."""
    from lineage.policy import load_policy
    from lineage.redact import Redactor
    from lineage.run import run_embedded

    with tempfile.TemporaryDirectory(prefix=f"golden-{name}-") as tmp:
        out = Path(tmp) / "out"
        if not ahead:
            summary = run_embedded(
                load_policy(policy_path), lines, out, source_name=name, redactor=Redactor(KEY)
            )
        else:
            path = Path(tmp) / "events.jsonl"
            path.write_bytes(b"".join(line + b"\n" for line in lines))
            with path.open("rb") as source, decoding_every_line_ahead():
                summary = run_embedded(
                    load_policy(policy_path), source, out, source_name=name, redactor=Redactor(KEY)
                )
        found: dict[str, Any] = {
            "alerts": _lines(out / "alerts.jsonl"),
            "incidents": _lines(out / "incidents.jsonl"),
            "dead-letters": _lines(out / "dead-letter.jsonl", drop=("received_at",)),
            "records": _lines(out / "provision-records.jsonl"),
            "subjects": _subjects(out / "subjects.sqlite"),
            "graph": (0, hashlib.sha256((out / "lineage.json").read_bytes()).hexdigest()),
        }
        stats = summary.stats
        found["counts"] = [
            stats.messages,
            stats.access_events,
            stats.consent_events,
            stats.duplicates,
            stats.dead_letters,
            stats.alerts,
            stats.retracted,
            stats.records,
        ]
        return found


def compute() -> dict[str, dict[str, Any]]:
    return {name: digests(name, policy, lines) for name, (policy, lines) in _days().items()}


def main() -> int:
    if "--write" not in sys.argv:
        print(json.dumps(compute(), indent=2))
        return 0
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    record = {"recorded_with": commit, "days": compute()}
    GOLDEN.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN} (engine of {commit})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
