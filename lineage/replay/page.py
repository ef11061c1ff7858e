"""``replay.html``: the officer's brief of a policy what-if, in the look of lineage.html.

Read top to bottom it answers, in order: what changed in the policy; which recipients
would gain or lose which breaches (how many alerts, under which rule and article, of
which severity, on which flows, with example event ids to look up); which flows change;
and what happens to the provision records. One self-contained page: no script, no
network, everything from the data HTML-escaped; it prints as it shows.
"""

from __future__ import annotations

import importlib.resources
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from html import escape
from typing import Any

import orjson

from lineage.export._shared import KIND_PALETTES, plural
from lineage.export.html import page_style
from lineage.policy.model import Policy
from lineage.replay.compare import NO_RECIPIENT, AlertChange
from lineage.replay.report import SAMPLES, ReplayReport
from lineage.rules.base import art_label, article_key
from lineage.schemas import Severity
from lineage.schemas.types import KIND_LABELS

__all__ = ["render_page"]

_MARK = {"added": "+", "removed": "−", "changed": "~", "lawful-changed": "~"}
_BEFORE_AFTER_CHARS = 220


@dataclass(slots=True)
class _Names:
    """People's names for ids, from the candidate policy first, then the baseline."""

    recipients: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # name, kind, country
    systems: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, baseline: Policy, candidate: Policy) -> _Names:
        names = cls()
        for policy in (baseline, candidate):  # the candidate's words win
            for rid, r in policy.recipients.items():
                names.recipients[rid] = (r.name, r.kind.value, r.country_code)
            for sid, s in policy.systems.items():
                names.systems[sid] = s.label
        return names

    def node(self, ident: str | None) -> str:
        if ident is None:
            return "–"
        if ident in self.recipients:
            return self.recipients[ident][0]
        return self.systems.get(ident, ident)

    def kind(self, rid: str) -> str:
        if rid in self.recipients:
            return self.recipients[rid][1]
        return "internal" if rid in self.systems else "unknown"


@cache
def _style() -> str:
    """lineage.html's stylesheet, and what the brief adds to it (replay.css)."""
    own = (importlib.resources.files("lineage.replay") / "replay.css").read_text("utf-8")
    return page_style() + own


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _text(data: Any) -> str:
    """A policy value in few characters: text as it is, anything else as compact JSON."""
    text = data if isinstance(data, str) else orjson.dumps(data).decode()
    if len(text) > _BEFORE_AFTER_CHARS:
        return text[: _BEFORE_AFTER_CHARS - 1] + "…"
    return text


def _difference(before: Any, after: Any) -> str:
    """What changed, for people: of two mappings only the keys that differ, one a line
    (``expires_on: 2026-04-30 → 2029-04-30``); of anything else before → after."""
    arrow = '<span class="arrow">→</span>'
    if isinstance(before, dict) and isinstance(after, dict):
        lines = [
            f"{_e(key)}: {_e(_text(before.get(key))) if key in before else '–'}{arrow}"
            f"{_e(_text(after.get(key))) if key in after else '–'}"
            for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key)
        ]
        return "<br>".join(lines)
    if before is None or after is None:
        value = after if before is None else before
        if isinstance(value, dict):
            return "<br>".join(f"{_e(k)}: {_e(_text(v))}" for k, v in value.items())
        return _e(_text(value))
    return f"{_e(_text(before))}{arrow}{_e(_text(after))}"


def _path(path: str) -> str:
    """A dotted path that may break after each dot, never inside a name."""
    return ".<wbr>".join(_e(part) for part in path.split("."))


def _stat(value: int, label: str, note: str = "", cls: str = "") -> str:
    return (
        f'<div class="stat {cls}"><div class="stat-value">{value:,}</div>'
        f'<div class="stat-label">{_e(label)}</div>'
        + (f'<div class="stat-note">{_e(note)}</div>' if note else "")
        + "</div>"
    )


def _severity_note(by_severity: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {s.value}" for s in Severity if (n := by_severity.get(s.value, 0)))


def _header(report: ReplayReport, baseline: Policy, candidate: Policy) -> str:
    s = report.summary
    changes = s["policy_changes"]
    kinds = Counter(c["change"] for c in changes)
    rec = s["records_changed"]
    base_file, cand_file = s["baseline"]["file"], s["candidate"]["file"]
    meta = [
        f"Now: {base_file or baseline.policy.name} (version {baseline.version})",
        f"revised: {cand_file or candidate.policy.name} (version {candidate.version})",
    ]
    reach = f"{plural(s['events'], 'event')} judged from {s['source']}"
    if s["report_since"]:
        reach += f"; {s['reported']:,} of them at or after {s['report_since']} reported on"
    added, removed = s["added"], s["removed"]
    return (
        '<header class="top"><div class="title">'
        '<div class="eyebrow">privacy-lineage · policy what-if</div>'
        "<h1>What the revised policy would change</h1>"
        f'<p class="meta">{_e(" · ".join(meta))}</p>'
        f'<p class="meta">{_e(reach)}</p></div>'
        '<div class="stats">'
        + _stat(
            len(changes),
            "Policy changes",
            f"{kinds['added']} added, {kinds['removed']} removed, {kinds['changed']} changed",
        )
        + _stat(
            added["alerts"],
            "Alerts added",
            _severity_note(added["by_severity"]) or "none",
            "bad" if added["alerts"] else "ok",
        )
        + _stat(
            removed["alerts"],
            "Alerts removed",
            _severity_note(removed["by_severity"]) or "none",
            "good" if removed["alerts"] else "",
        )
        + _stat(s["flows_changed"], "Flows that change")
        + _stat(
            sum(rec.values()),
            "Provision records",
            f"{rec['added']} added, {rec['removed']} removed, {rec['lawful-changed']} now "
            "judged otherwise",
        )
        + "</div></header>"
    )


def _policy_changes(changes: list[dict[str, Any]]) -> str:
    if not changes:
        return (
            '<section class="panel"><h2>1. What changed in the policy</h2>'
            '<p class="empty">Nothing: the two policies hold the same data.</p></section>'
        )
    rows = "".join(
        f'<tr><td class="mark {_e(c["change"])}" title="{_e(c["change"])}">'
        f"{_MARK[c['change']]}</td>"
        f'<td class="path">{_path(c["path"])}</td>'
        f'<td class="value">{_difference(c["before"], c["after"])}</td></tr>'
        for c in changes
    )
    return (
        '<section class="panel"><h2>1. What changed in the policy '
        f'<span class="count neutral">{len(changes)}</span></h2>'
        '<table class="flows changes"><thead><tr><th></th><th>Where</th>'
        "<th>What changed (before → after; an addition or removal: its content)</th>"
        "</tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _flow_name(names: _Names, source: str, recipient: str | None, via: str | None) -> str:
    if recipient is None:
        return f"{names.node(source)} (its own use)"
    if via is not None:
        onward = f"{names.node(via)} → {names.node(recipient)}"
        return f"{onward} (onward, reported by {names.node(source)})"
    return f"{names.node(source)} → {names.node(recipient)}"


def _kind_tag(names: _Names, rid: str) -> str:
    kind = names.kind(rid)
    label = KIND_LABELS.get(kind, "Internal system" if kind == "internal" else kind)
    colour = KIND_PALETTES.get(kind, KIND_PALETTES["unknown"]).accent
    country = names.recipients[rid][2] if rid in names.recipients else ""
    return (
        f'<span class="kind-tag"><span class="kind-dot" style="background:{colour}"></span>'
        f"{_e(label)}{' · ' + _e(country) if country else ''}</span>"
    )


def _who(report: ReplayReport, names: _Names) -> str:
    by_recipient: dict[str, list[AlertChange]] = {}
    for c in report.alerts:
        by_recipient.setdefault(c.alert["recipient"] or NO_RECIPIENT, []).append(c)
    if not by_recipient:
        return (
            '<section class="panel"><h2>2. Who gains or loses breaches</h2>'
            '<p class="empty">No alert changes: every event is judged alike under both '
            "policies.</p></section>"
        )

    def weight(item: tuple[str, list[AlertChange]]) -> tuple[int, int, str]:
        rid, changes = item
        added = sum(c.change == "added" for c in changes)
        return (-added, -(len(changes) - added), rid)

    blocks = []
    for rid, changes in sorted(by_recipient.items(), key=weight):
        added = sum(c.change == "added" for c in changes)
        removed = len(changes) - added
        groups: dict[tuple[str, str], list[AlertChange]] = {}
        for c in changes:
            groups.setdefault((c.change, c.alert["rule"]), []).append(c)
        rows = []
        for (change, rule), members in sorted(
            groups.items(), key=lambda kv: (kv[0][0] != "added", -len(kv[1]), kv[0][1])
        ):
            first = members[0].alert
            flows = Counter(_flow_name(names, *m.edge) for m in members)
            samples = list(dict.fromkeys(m.alert["event_id"] for m in members))[:SAMPLES]
            rows.append(
                f'<tr><td class="mark {change}">{_MARK[change]}</td>'
                f'<td><span class="rules-list">{_e(rule)}</span>'
                f'<div class="message">{_e(first["message"])}</div></td>'
                f'<td class="arts">{_e(art_label(first["article"]))}</td>'
                f'<td><span class="sev {_e(first["severity"])}">{_e(first["severity"])}</span></td>'
                f'<td class="num">{len(members):,}</td>'
                "<td>"
                + "<br>".join(f"{_e(flow)} ({n:,})" for flow, n in flows.most_common())
                + f'</td><td class="samples">{_e(", ".join(samples))}</td></tr>'
            )
        if rid == NO_RECIPIENT:
            title = '<span class="name">No recipient: what systems collect and use</span>'
        else:
            title = (
                f'<span class="name">{_e(names.node(rid))}</span>'
                f'<span class="id">{_e(rid)}</span>{_kind_tag(names, rid)}'
            )
        deltas = (f'<span class="delta added">+{added:,}</span>' if added else "") + (
            f'<span class="delta removed">−{removed:,}</span>' if removed else ""
        )
        causes = [
            c
            for c in report.summary["policy_changes"]
            if c["path"].startswith(f"recipients.{rid}.") or c["path"] == f"recipients.{rid}"
        ]
        cause = (
            '<p class="cause">In the policy: '
            + "; ".join(
                f'<span class="mark {_e(c["change"])}">{_MARK[c["change"]]}</span> '
                f"{_path(c['path'])}"
                for c in causes
            )
            + "</p>"
            if causes
            else ""
        )
        blocks.append(
            f'<div class="who" data-recipient="{_e(rid)}"><header>{title}'
            f'<span class="deltas">{deltas}</span></header>{cause}'
            '<table class="flows"><thead><tr><th></th><th>Rule</th><th>Article</th>'
            '<th>Severity</th><th class="num">Alerts</th><th>Flows</th>'
            "<th>Example events</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
        )
    return (
        '<section class="panel"><h2>2. Who gains or loses breaches '
        f'<span class="count">{len(by_recipient)}</span></h2>'
        '<p class="lead"><b class="mark added">+</b> the revised policy raises the alert and '
        'the baseline does not; <b class="mark removed">−</b> the breach ends. Alerts a late '
        "consent retracted are not counted.</p>" + "".join(blocks) + "</section>"
    )


def _rules(counts: dict[str, int], other: dict[str, int], cls: str) -> str:
    if not counts:
        return '<span class="none">none</span>'
    return "<br>".join(
        f'<span class="{cls if rule not in other else ""}">{_e(rule)} ({n:,})</span>'
        for rule, n in counts.items()
    )


def _flows(report: ReplayReport, names: _Names) -> str:
    if not report.flows:
        return (
            '<section class="panel"><h2>3. Flows that change</h2>'
            '<p class="empty">None.</p></section>'
        )
    rows = []
    for flow in report.flows:
        before, after = flow["breaches"]["baseline"], flow["breaches"]["candidate"]
        added, removed = sum(flow["added"].values()), sum(flow["removed"].values())
        deltas = (f'<span class="delta added">+{added:,}</span> ' if added else "") + (
            f'<span class="delta removed">−{removed:,}</span>' if removed else ""
        )
        recipient = flow["recipient"]
        rows.append(
            "<tr>"
            f'<td><span class="flow-name">'
            f"{_e(_flow_name(names, flow['source'], recipient, flow['via']))}</span>"
            + (_kind_tag(names, recipient) if recipient else "")
            + f'</td><td class="num">{flow["events"]:,}</td>'
            f'<td class="rules-list">{_rules(before, after, "gone")}</td>'
            f'<td class="rules-list">{_rules(after, before, "new")}</td>'
            f'<td class="num">{deltas}</td>'
            f'<td class="samples">{_e(", ".join(flow["sample_event_ids"]))}</td></tr>'
        )
    return (
        '<section class="panel"><h2>3. Flows that change '
        f'<span class="count neutral">{len(rows)}</span></h2>'
        '<table class="flows"><thead><tr><th>Flow</th><th class="num">Events</th>'
        "<th>Breaches now (rule, alerts)</th><th>Under the revised policy</th>"
        '<th class="num">Change</th><th>Example events</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _records(report: ReplayReport) -> str:
    s = report.summary
    rec = s["records_changed"]
    base, cand = s["baseline"]["provision_records"], s["candidate"]["provision_records"]
    return (
        '<section class="panel"><h2>4. Records of provision to third parties '
        "(APPI Art. 29)</h2>"
        f'<p class="lead">{base:,} records under the baseline, {cand:,} under the revised '
        f"policy: {rec['added']:,} written only under the revised policy, "
        f"{rec['removed']:,} only under the baseline, and {rec['lawful-changed']:,} written "
        "under both but judged lawful under one only. Each is in replay-records.jsonl.</p>"
        "</section>"
    )


def _articles(items: Iterable[AlertChange]) -> str:
    arts = sorted({c.alert["article"] for c in items}, key=article_key)
    return ", ".join(art_label(a) for a in arts)


def render_page(report: ReplayReport, baseline: Policy, candidate: Policy) -> str:
    """The brief as one self-contained HTML page."""
    names = _Names.of(baseline, candidate)
    title = f"Policy what-if · {baseline.version} → {candidate.version}"
    articles = _articles(report.alerts)
    footer = (
        "Generated by privacy-lineage (lineage replay). This page is self-contained and "
        "works offline. The same differences, one a line: replay-alerts.jsonl, "
        "replay-records.jsonl, replay-flows.jsonl; the counts: replay.json."
        + (f" Articles concerned: {articles}." if articles else "")
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="privacy-lineage">'
        f"<title>{_e(title)}</title><style>{_style()}</style></head>"
        '<body><div class="app" id="app">'
        + _header(report, baseline, candidate)
        + _policy_changes(report.summary["policy_changes"])
        + _who(report, names)
        + _flows(report, names)
        + _records(report)
        + f"<footer>{_e(footer)}</footer></div></body></html>\n"
    )
