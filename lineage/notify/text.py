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
ids lead to the full record in the audit trail. Every value shown passes
:func:`lineage.notify.sanitize.for_people` after the subject is masked
(:func:`~lineage.notify.sanitize.without_subject`): a line break or a control
character in a field is shown as an escape (``\\n``), never as a line of its own,
and ``@here``, ``<!channel>`` or ``<at>`` in a field notify no one. The only line
breaks in a body are those the template puts between facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lineage.notify.routes import Kind
from lineage.notify.sanitize import for_people, without_subject
from lineage.rules.base import art_label

__all__ = ["body", "level", "title"]


def _field(record: Mapping[str, Any], key: str) -> str:
    return for_people(record.get(key))


def _listed(record: Mapping[str, Any], key: str) -> str:
    return ", ".join(for_people(item) for item in record.get(key) or [])


def _flow(record: Mapping[str, Any]) -> str:
    flow = for_people(record.get("source", ""))
    if record.get("recipient"):
        flow += f" -> {_field(record, 'recipient')}"
    return flow


def title(kind: Kind, record: Mapping[str, Any]) -> str:
    """One line: ``[severity] Art. N rule: source -> recipient``, marked when retracted or
    an incident."""
    record = without_subject(record)
    article = for_people(art_label(str(record.get("article", ""))))
    head = f"{article} {for_people(record.get('rule', ''))}: {_flow(record)}"
    if kind is Kind.INCIDENT:
        return f"[{_field(record, 'severity')}] incident {head} ({_field(record, 'count')} events)"
    if record.get("status") == "retracted":
        return f"[retracted] {head}"
    return f"[{_field(record, 'severity')}] {head}"


def body(kind: Kind, record: Mapping[str, Any]) -> str:
    """The message, then the ids that lead to the record (plain text, one fact a line)."""
    record = without_subject(record)
    if kind is Kind.INCIDENT:
        lines = [
            f"{_field(record, 'count')} breaching events of {_field(record, 'rule')} "
            f"({_flow(record)}), from {_field(record, 'first_seen')} to "
            f"{_field(record, 'last_seen')}.",
            f"incident_id: {_field(record, 'incident_id')}",
            f"status: {_field(record, 'status')}",
            f"sample_event_ids: {_listed(record, 'sample_event_ids')}",
        ]
        return "\n".join(lines)
    lines = [for_people(record.get("message", ""))]
    if record.get("status") == "retracted":
        lines.append(
            f"Retracted: consent event {_field(record, 'retracted_by')} was in force at the "
            "event's time."
        )
    lines += [
        f"alert_id: {_field(record, 'alert_id')}",
        f"event_id: {_field(record, 'event_id')}",
        f"categories: {_listed(record, 'categories')}",
        f"policy_version: {_field(record, 'policy_version')}",
        f"occurred_at: {_field(record, 'occurred_at')}",
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
