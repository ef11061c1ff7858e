"""What people read: the title and body of an alert or incident in Slack, Teams or e-mail.

    [high] Art. 9 art9.no-consent: crm -> market-research

    Health data went to market-research without the subject's consent (Art. 9).
    alert_id: 3f2a...
    event_id: e-1041
    categories: health.condition
    policy_version: 2026-04-01
    occurred_at: 2026-11-20T10:02:11+09:00

Records are redacted before they are published; even so the subject and the
evidence stay out of these texts, which land in chat channels and mailboxes: the
ids lead to the full record in the audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lineage.notify.routes import Kind
from lineage.rules.base import art_label

__all__ = ["body", "level", "title"]


def _flow(record: Mapping[str, Any]) -> str:
    flow = str(record.get("source", ""))
    if record.get("recipient"):
        flow += f" -> {record['recipient']}"
    return flow


def title(kind: Kind, record: Mapping[str, Any]) -> str:
    """One line: ``[severity] Art. N rule: source -> recipient``, marked when retracted or
    an incident."""
    article = art_label(str(record.get("article", "")))
    head = f"{article} {record.get('rule', '')}: {_flow(record)}"
    if kind is Kind.INCIDENT:
        return f"[{record.get('severity')}] incident {head} ({record.get('count')} events)"
    if record.get("status") == "retracted":
        return f"[retracted] {head}"
    return f"[{record.get('severity')}] {head}"


def body(kind: Kind, record: Mapping[str, Any]) -> str:
    """The message, then the ids that lead to the record (plain text, one fact a line)."""
    if kind is Kind.INCIDENT:
        lines = [
            f"{record.get('count')} breaching events of {record.get('rule')} "
            f"({_flow(record)}), from {record.get('first_seen')} to {record.get('last_seen')}.",
            f"incident_id: {record.get('incident_id')}",
            f"status: {record.get('status')}",
            f"sample_event_ids: {', '.join(str(e) for e in record.get('sample_event_ids') or [])}",
        ]
        return "\n".join(lines)
    lines = [str(record.get("message", ""))]
    if record.get("status") == "retracted":
        lines.append(
            f"Retracted: consent event {record.get('retracted_by')} was in force at the "
            "event's time."
        )
    lines += [
        f"alert_id: {record.get('alert_id')}",
        f"event_id: {record.get('event_id')}",
        f"categories: {', '.join(str(c) for c in record.get('categories') or [])}",
        f"policy_version: {record.get('policy_version')}",
        f"occurred_at: {record.get('occurred_at')}",
    ]
    return "\n".join(lines)


def level(record: Mapping[str, Any]) -> str:
    """apprise's notification type: failure (critical, high), warning (medium), info (low),
    success (a retraction)."""
    if record.get("status") == "retracted":
        return "success"
    return {"critical": "failure", "high": "failure", "medium": "warning"}.get(
        str(record.get("severity")), "info"
    )
