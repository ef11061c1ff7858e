"""The embedded run: a file of events in, alerts, incidents, dead letters and the graph out.

This is the core alone, with no broker: ``lineage run`` and ``lineage demo`` are
thin layers over :func:`run_embedded`. Output files (docs/contract.md):

- ``alerts.jsonl``        one alert per line, the complete audit trail
- ``incidents.jsonl``     incident publications; the last line per incident id is final
- ``dead-letter.jsonl``   bad input with its original text and a reason
- ``provision-records.jsonl`` records of provision to third parties (APPI Art. 29)
- ``subjects.sqlite``     every subject's lineage, for ``lineage subject`` (Art. 11),
  folded in a process of its own in a long run (:mod:`lineage.view_process`)
- ``lineage.*``           the graph exports (GraphML, JSON, DOT, Mermaid, HTML)
- ``summary.json``        the closing counts, for tools

``alerts.jsonl`` holds, besides every alert, the retraction of each alert a consent
that arrived late prevented (the same ``alert_id``, ``status: "retracted"``).

``forward(kind, record)`` is told of every alert (``"alert"``) and incident publication
(``"incident"``) as its line is written: ``lineage run --routes`` hands them to alert
routing (:class:`lineage.notify.Router`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from lineage.decode_process import DecodeAhead
from lineage.engine import Engine, Stats
from lineage.errors import RunError, unwritable
from lineage.garbage import cycles_left_alone
from lineage.incidents import IncidentBoard
from lineage.lines import Line, read_lines
from lineage.policy.model import Policy
from lineage.records import RECORDS_FILE
from lineage.redact import Redactor
from lineage.rules.base import article_key
from lineage.run_exports import write_exports
from lineage.schemas import Severity
from lineage.subjects import SUBJECTS_FILE
from lineage.view import ViewFact
from lineage.view_process import RunView

__all__ = ["Forward", "Line", "RunSummary", "read_lines", "run_embedded"]

#: ``forward(kind, record)``: told of each alert and incident publication written.
Forward = Callable[[Literal["alert", "incident"], dict[str, Any]], object]

ALERTS, INCIDENTS, DEAD_LETTERS, SUMMARY = (
    "alerts.jsonl",
    "incidents.jsonl",
    "dead-letter.jsonl",
    "summary.json",
)


@dataclass(slots=True)
class RunSummary:
    """What a run did: counts, the worst severity raised, and where the outputs are."""

    stats: Stats
    incidents: int
    seconds: float
    outputs: dict[str, Path] = field(default_factory=dict)
    #: Alerts a consent that came late retracted, by article (the stats count them raised).
    retracted_by_article: Counter[str] = field(default_factory=Counter)
    #: Provision records past retention at the end of the run, purged from its outputs.
    purged: int = 0

    def worst(self) -> Severity | None:
        raised = [Severity(s) for s, n in self.stats.by_severity.items() if n]
        return max(raised, key=lambda s: s.rank) if raised else None

    def to_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "messages": s.messages,
            "access_events": s.access_events,
            "consent_events": s.consent_events,
            "duplicates": s.duplicates,
            "conflicting_duplicates": s.conflicts,
            "dead_letters": s.dead_letters,
            "alerts": s.alerts,
            "retracted": s.retracted,
            "provision_records": s.records,
            "provision_records_purged": self.purged,
            "alerts_by_article": dict(
                sorted(s.by_article.items(), key=lambda kv: article_key(kv[0]))
            ),
            "alerts_by_severity": {sev.value: s.by_severity.get(sev.value, 0) for sev in Severity},
            "alerts_by_rule": dict(sorted(s.by_rule.items())),
            "incidents": self.incidents,
            "seconds": round(self.seconds, 3),
            "outputs": {name: str(path) for name, path in sorted(self.outputs.items())},
        }


#: Output lines end in orjson, with no copy of the text to add the newline.
_LINE = orjson.OPT_APPEND_NEWLINE
#: Each output file's buffer: a breach storm writes about 1.2 KB of alerts an event,
#: and Python's default of 8 KiB made a write call every few events.
_BUFFER = 1 << 20
#: View facts the run gathers before it hands them to its view (:class:`RunView`, whose
#: methods run interpreted): one call a batch, not one an event.
_FACTS = 1_024


def run_embedded(
    policy: Policy,
    source: IO[bytes] | Iterable[bytes],
    out_dir: Path,
    *,
    source_name: str = "-",
    redactor: Redactor | None = None,
    on_progress: Callable[[int], None] | None = None,
    exports: bool = True,
    consent_lateness: timedelta = timedelta(hours=24),
    forward: Forward | None = None,
) -> RunSummary:
    """Judge every line of ``source`` and write the outputs into ``out_dir``.

    Blank lines are passed over; every other line is either judged or sent to the
    dead letters, and the run goes on. ``forward`` is told of every alert and incident
    publication written (module docstring).
    """
    started = time.perf_counter()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create output folder {out_dir}: {exc.strerror}") from exc
    engine = Engine(policy, redactor=redactor, consent_lateness=consent_lateness)
    outputs = {name: out_dir / name for name in (ALERTS, INCIDENTS, DEAD_LETTERS, RECORDS_FILE)}
    outputs[SUBJECTS_FILE] = out_dir / SUBJECTS_FILE
    outputs[SUBJECTS_FILE].unlink(missing_ok=True)
    view = RunView(outputs[SUBJECTS_FILE])
    facts: list[ViewFact] = []  # handed to the view a batch at a time
    board = IncidentBoard()
    partials = engine.state.incidents
    retracted: Counter[str] = Counter()
    lines: Iterable[Line] = (
        read_lines(source, on_progress=on_progress)  # type: ignore[arg-type]
        if hasattr(source, "read")
        else (Line(line, len(line)) for line in source)
    )
    ahead = DecodeAhead.start(source, engine.redactor, exports=exports)
    if ahead is not None:  # a long run: its view's process starts now, forked as that one
        view.detach()
    verdicts = ahead.verdicts if ahead is not None else None
    with _stopping(ahead):
        with (
            cycles_left_alone(),
            _writing(out_dir, view),
            outputs[ALERTS].open("wb", buffering=_BUFFER) as alerts,
            outputs[INCIDENTS].open("wb", buffering=_BUFFER) as incidents,
            outputs[DEAD_LETTERS].open("wb", buffering=_BUFFER) as dead,
            outputs[RECORDS_FILE].open("wb", buffering=_BUFFER) as records,
        ):
            for number, line in enumerate(lines, start=1):
                origin = f"{source_name}:{number}"
                if line.digest is not None:
                    outcome = engine.refuse(
                        line.raw, size=line.size, digest=line.digest, origin=origin
                    )
                else:
                    raw = line.raw.rstrip(b"\r\n")
                    if not raw.strip():
                        continue
                    scanned = verdicts.scanned(number, len(raw)) if verdicts is not None else None
                    if scanned is not None:
                        outcome = engine.process_scanned(raw, scanned, offset=number, origin=origin)
                    else:
                        outcome = engine.process(raw, offset=number, origin=origin)
                if outcome.dead_letter is not None:
                    dead.write(orjson.dumps(outcome.dead_letter, option=_LINE))
                    continue
                for alert in outcome.alerts:
                    alerts.write(orjson.dumps(alert, option=_LINE))
                    if alert["status"] == "retracted":
                        retracted[alert["article"]] += 1
                    if forward is not None:
                        forward("alert", alert)
                for record in outcome.records:
                    records.write(orjson.dumps(record, option=_LINE))
                if outcome.view:
                    facts.extend(outcome.view)
                    if len(facts) >= _FACTS:
                        view.fold(facts)
                        facts = []
                for iid in outcome.incidents:
                    publication = board.update(iid, 0, partials[iid], live=True)
                    if publication is not None:
                        incidents.write(orjson.dumps(publication, option=_LINE))
                        if forward is not None:
                            forward("incident", publication)
            for publication in board.flush():
                incidents.write(orjson.dumps(publication, option=_LINE))
                if forward is not None:
                    forward("incident", publication)
            if facts:
                view.fold(facts)
        days = policy.policy.records_retention_days
        # The graph exports are written while the view's process finishes its file: by
        # the process that decoded the file ahead, idle by now (asked first, so that it
        # starts while this one waits for the view to take its last facts), else by this
        # one.
        edges = engine.state.edges
        if exports and ahead is not None:
            ahead.write_exports(policy, edges, source_name, out_dir)
        view.end(engine.stats.newest, days, {"policy_version": policy.version})
        if exports:
            with _writing(out_dir, view):
                written = ahead.exports_written() if ahead is not None else None
                if written is None:  # not asked, or the process stopped before it answered
                    written = write_exports(policy, edges, source_name, out_dir)
                outputs.update(written)
    purged_from_view, newest = view.result()
    with _writing(out_dir, None):
        purged = (
            _purge_records(outputs[RECORDS_FILE], newest - days * 86_400) if purged_from_view else 0
        )
        summary = RunSummary(
            stats=engine.stats,
            incidents=len(board.entries),
            seconds=time.perf_counter() - started,
            outputs=outputs,
            retracted_by_article=retracted,
            purged=purged,
        )
        outputs[SUMMARY] = out_dir / SUMMARY
        outputs[SUMMARY].write_bytes(
            orjson.dumps(summary.to_json(), option=orjson.OPT_INDENT_2) + b"\n"
        )
    return summary


@contextmanager
def _stopping(ahead: DecodeAhead | None) -> Iterator[None]:
    """Stops the process decoding ahead, if there is one, however the run ends."""
    try:
        yield
    finally:
        if ahead is not None:
            ahead.close()


@contextmanager
def _writing(out_dir: Path, view: RunView | None) -> Iterator[None]:
    """Writes the run's outputs: an OSError becomes the run's one-line error naming the
    file, and any error stops the view's process (``view``) unfinished."""
    try:
        yield
    except BaseException as exc:
        if view is not None:
            view.close()
        if isinstance(exc, OSError):
            raise unwritable(out_dir, exc) from exc
        raise


def _purge_records(records_file: Path, cutoff: float) -> int:
    """Purge the provision records past retention from the records file, as the view
    purged them from its store: those provided before ``cutoff`` (POSIX seconds), more
    than ``records_retention_days`` before the newest event time seen (CONTRACT section
    10). Returns how many."""
    kept = records_file.with_name(records_file.name + ".kept")
    purged = 0
    with records_file.open("rb") as lines, kept.open("wb") as out:
        for line in lines:
            provided = datetime.fromisoformat(orjson.loads(line)["provided_at"]).timestamp()
            if provided < cutoff:
                purged += 1
            else:
                out.write(line)
    kept.replace(records_file)
    return purged
