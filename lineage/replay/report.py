"""The outputs of a replay (docs/contract.md): the differences as JSON lines, the counts as
``replay.json`` and the officer's brief as ``replay.html``.

    replay-alerts.jsonl    {"change": "added"|"removed", "alert": {...}}
    replay-records.jsonl   {"change": "added"|"removed"|"lawful-changed", "record": {...}}
    replay-flows.jsonl     one line per flow whose alerts differ
    replay.json            the counts of each side, of the differences, and policy_changes
    replay.html            the same for people, in the look of lineage.html
    dead-letter.jsonl      bad lines, as ``lineage run`` writes them

Every file is in an order that does not depend on the order the events came in (event
time, then event id): a replay read from Kafka's partitions writes what a replay of the
same events from a file writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from lineage.errors import RunError
from lineage.policy.diff import Change
from lineage.replay.compare import NO_RECIPIENT, AlertChange, Comparison, Edge, Side
from lineage.schemas import Severity

__all__ = [
    "ALERTS_FILE",
    "DEAD_LETTERS_FILE",
    "FLOWS_FILE",
    "PAGE_FILE",
    "RECORDS_FILE",
    "SUMMARY_FILE",
    "ReplayReport",
    "flow_lines",
    "summarize",
]

ALERTS_FILE = "replay-alerts.jsonl"
RECORDS_FILE = "replay-records.jsonl"
FLOWS_FILE = "replay-flows.jsonl"
SUMMARY_FILE = "replay.json"
PAGE_FILE = "replay.html"
DEAD_LETTERS_FILE = "dead-letter.jsonl"

#: How many example event ids a flow or a group of alerts shows.
SAMPLES = 5


@dataclass(slots=True)
class ReplayReport:
    """What a replay found: ``summary`` is replay.json; ``outputs`` the files written."""

    summary: dict[str, Any]
    alerts: list[AlertChange]
    flows: list[dict[str, Any]]
    outputs: dict[str, Path] = field(default_factory=dict)

    def new_at_or_above(self, severity: Severity) -> int:
        """Alerts the candidate raises, and the baseline does not, at or above ``severity``."""
        return sum(
            1
            for c in self.alerts
            if c.change == "added" and Severity(c.alert["severity"]).rank >= severity.rank
        )


def _severities(counts: Counter[str]) -> dict[str, int]:
    return {s.value: counts.get(s.value, 0) for s in Severity}


def _side(side: Side, name: str | None) -> dict[str, Any]:
    return {
        "policy_name": side.policy.policy.name,
        "policy_version": side.policy.version,
        "file": name,
        "alerts": sum(side.by_rule.values()),
        "alerts_by_rule": dict(sorted(side.by_rule.items())),
        "alerts_by_severity": _severities(side.by_severity),
        "provision_records": side.records,
    }


def _changed(alerts: Iterable[AlertChange], change: str) -> dict[str, Any]:
    chosen = [c.alert for c in alerts if c.change == change]
    return {
        "alerts": len(chosen),
        "by_rule": dict(sorted(Counter(a["rule"] for a in chosen).items())),
        "by_severity": _severities(Counter(a["severity"] for a in chosen)),
        "by_recipient": dict(
            sorted(Counter(a["recipient"] or NO_RECIPIENT for a in chosen).items())
        ),
    }


def flow_lines(comparison: Comparison) -> list[dict[str, Any]]:
    """One line per flow whose alerts differ: its events (reported), each side's standing
    breaches by rule, the rules added and removed, and a few event ids."""
    base, cand = comparison.sides
    changed: dict[Edge, list[AlertChange]] = {}
    for c in comparison.alerts:
        changed.setdefault(c.edge, []).append(c)
    lines = []
    for edge in sorted(changed, key=lambda e: (e[0], e[1] or "", e[2] or "")):
        source, recipient, via = edge
        changes = changed[edge]
        samples = list(dict.fromkeys(c.alert["event_id"] for c in changes))[:SAMPLES]
        before = dict(sorted(base.by_edge.get(edge, Counter()).items()))
        after = dict(sorted(cand.by_edge.get(edge, Counter()).items()))
        lines.append(
            {
                "source": source,
                "recipient": recipient,
                "via": via,
                "events": comparison.edge_events.get(edge, 0),
                "breaches": {"baseline": before, "candidate": after},
                # The same by side, with the side's total: each side's view of the flow.
                "baseline": {"breaches": before, "alerts": sum(before.values())},
                "candidate": {"breaches": after, "alerts": sum(after.values())},
                "added": dict(
                    sorted(Counter(c.alert["rule"] for c in changes if c.change == "added").items())
                ),
                "removed": dict(
                    sorted(
                        Counter(c.alert["rule"] for c in changes if c.change == "removed").items()
                    )
                ),
                "sample_event_ids": samples,
            }
        )
    return lines


def summarize(
    comparison: Comparison,
    flows: list[dict[str, Any]],
    changes: list[Change],
    *,
    names: tuple[str | None, str | None] = (None, None),
    source: str = "-",
    seconds: float = 0.0,
) -> dict[str, Any]:
    """replay.json: the counts of each side and of the differences."""
    base, cand = comparison.sides
    records = Counter(r.change for r in comparison.records)
    since = comparison.report_since
    return {
        "source": source,
        "messages": comparison.messages,
        "events": comparison.events,
        "reported": comparison.reported,
        "report_since": since.isoformat() if since is not None else None,
        "duplicates": comparison.duplicates,
        "dead_letters": comparison.dead_letters,
        "baseline": _side(base, names[0]),
        "candidate": _side(cand, names[1]),
        "added": _changed(comparison.alerts, "added"),
        "removed": _changed(comparison.alerts, "removed"),
        "records_changed": {
            change: records.get(change, 0) for change in ("added", "removed", "lawful-changed")
        },
        "flows_changed": len(flows),
        "policy_changes": changes,
        "seconds": round(seconds, 3),
    }


def write_lines(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    try:
        with path.open("wb") as handle:
            for row in rows:
                handle.write(orjson.dumps(row) + b"\n")
    except OSError as exc:
        raise RunError(f"cannot write {path}: {exc.strerror}") from exc


def write_line(handle: IO[bytes], row: dict[str, Any]) -> None:
    handle.write(orjson.dumps(row) + b"\n")
