"""``lineage replay`` without its command line: messages in, the comparison's files out."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from lineage.decode_process import DecodeAhead
from lineage.errors import RunError
from lineage.lines import Line
from lineage.policy.diff import policy_changes
from lineage.policy.model import Policy
from lineage.redact import Redactor
from lineage.replay.compare import Comparison, Message
from lineage.replay.page import render_page
from lineage.replay.report import (
    ALERTS_FILE,
    DEAD_LETTERS_FILE,
    FLOWS_FILE,
    PAGE_FILE,
    RECORDS_FILE,
    SUMMARY_FILE,
    ReplayReport,
    flow_lines,
    summarize,
    write_lines,
)

__all__ = ["file_messages", "replay"]


def file_messages(
    lines: Iterable[Line], name: str, ahead: DecodeAhead | None = None
) -> Iterable[Message]:
    """The messages of a file's lines (:func:`lineage.lines.read_lines`), blank ones passed
    over, each named ``name:line`` as ``lineage run`` names them; with what ``ahead``, the
    process decoding that file ahead (:meth:`DecodeAhead.start`), made of each line,
    where it made anything."""
    for number, line in enumerate(lines, start=1):
        origin = f"{name}:{number}"
        if line.digest is not None:
            yield Message(line.raw, origin, size=line.size, digest=line.digest)
            continue
        raw = line.raw.rstrip(b"\r\n")
        if raw.strip():
            scanned = ahead.scanned(number, len(raw)) if ahead is not None else None
            yield Message(raw, origin, scanned=scanned)


def replay(
    baseline: Policy,
    candidate: Policy,
    messages: Iterable[Message],
    out_dir: Path,
    *,
    redactor: Redactor | None = None,
    consent_lateness: timedelta = timedelta(hours=24),
    report_since: datetime | None = None,
    names: tuple[str | None, str | None] = (None, None),
    source: str = "-",
) -> ReplayReport:
    """Judge ``messages`` under both policies and write the differences into ``out_dir``.

    ``names`` name the two policy files in the outputs; ``source`` the events' source.
    """
    started = time.perf_counter()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create output folder {out_dir}: {exc.strerror}") from exc
    comparison = Comparison(
        baseline,
        candidate,
        redactor=redactor,
        consent_lateness=consent_lateness,
        report_since=report_since,
    )
    outputs = {
        name: out_dir / name
        for name in (
            ALERTS_FILE,
            RECORDS_FILE,
            FLOWS_FILE,
            SUMMARY_FILE,
            PAGE_FILE,
            DEAD_LETTERS_FILE,
        )
    }
    try:
        with outputs[DEAD_LETTERS_FILE].open("wb") as dead:
            for message in messages:
                record = comparison.add(message)
                if record is not None:
                    dead.write(orjson.dumps(record) + b"\n")
    except OSError as exc:
        raise RunError(f"cannot write to {out_dir}: {exc.strerror}") from exc
    comparison.finish()
    flows = flow_lines(comparison)
    summary = summarize(
        comparison,
        flows,
        policy_changes(baseline, candidate),
        names=names,
        source=source,
        seconds=time.perf_counter() - started,
    )
    report = ReplayReport(summary, comparison.alerts, flows, outputs)
    write_lines(
        outputs[ALERTS_FILE], ({"change": c.change, "alert": c.alert} for c in comparison.alerts)
    )
    write_lines(
        outputs[RECORDS_FILE],
        ({"change": c.change, "record": c.record} for c in comparison.records),
    )
    write_lines(outputs[FLOWS_FILE], flows)
    try:
        outputs[SUMMARY_FILE].write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
        outputs[PAGE_FILE].write_text(render_page(report, baseline, candidate), encoding="utf-8")
    except OSError as exc:
        raise RunError(f"cannot write to {out_dir}: {exc.strerror}") from exc
    return report
