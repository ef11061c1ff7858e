"""What the monitor writes: alerts, incidents and dead-letter records (CONTRACT.md s.1, s.4).

These models are the shapes consumers rely on; the monitor builds them, so they
validate leniently in type but forbid unknown fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import Severity

__all__ = ["Alert", "DeadLetter", "Incident", "IncidentStatus"]

_OUT = ConfigDict(extra="forbid", frozen=True)


class Alert(BaseModel):
    """One rule broken by one event: the complete audit trail, one line per alert."""

    model_config = _OUT

    alert_id: str = Field(description="deterministic from rule and event: replays keep the id")
    rule: str = Field(description="stable rule id, e.g. 'art9.no-consent'")
    article: str = Field(description="the policy article broken: '6', '7', '9', '10', ...")
    severity: Severity = Field(description="critical, high, medium or low")
    event_id: str = Field(description="the breaching event")
    occurred_at: datetime = Field(description="event time of the breaching event")
    source: str = Field(description="the internal system that acted")
    recipient: str | None = Field(description="who received the data, if anyone")
    recipient_kind: str | None = Field(
        description="the recipient's kind in the policy, 'unknown' or 'internal'"
    )
    subject: str | None = Field(description="pseudonymous subject reference (redacted if raw)")
    categories: list[str] = Field(description="the categories that make it a breach")
    policy_version: str = Field(description="the policy version judged against")
    message: str = Field(description="one sentence a privacy officer understands")
    evidence: dict[str, Any] = Field(description="the facts the rule used")


IncidentStatus = Literal["open", "updated"]


class Incident(BaseModel):
    """Alerts grouped by (rule, source, recipient) across all workers, for people and pagers."""

    model_config = _OUT

    incident_id: str = Field(description="deterministic from rule, source and recipient")
    rule: str = Field(description="stable rule id")
    article: str = Field(description="the policy article broken")
    severity: Severity = Field(description="severity of the rule")
    source: str = Field(description="the internal system that acted")
    recipient: str | None = Field(description="the recipient, if the rule concerns one")
    count: int = Field(ge=1, description="breaching events so far")
    first_seen: datetime = Field(description="earliest event time of a breach")
    last_seen: datetime = Field(description="latest event time of a breach")
    sample_event_ids: list[str] = Field(description="a few breaching event ids, earliest first")
    status: IncidentStatus = Field(description="'open' when first published, then 'updated'")


class DeadLetter(BaseModel):
    """A message that could not be judged, kept whole with the reason (``dead-letter.jsonl``)."""

    model_config = _OUT

    reason: str = Field(description="what is wrong, naming the field; never repeats raw PD")
    kind: str = Field(description="stable word: not_json, missing_field, wrong_type, ...")
    field: str | None = Field(description="dotted path of the field at fault, if one is")
    event_id: str | None = Field(description="the event id, when one could be read")
    origin: str = Field(description="where it came from: 'file:line' or 'topic[partition]@offset'")
    received_at: datetime = Field(description="when the monitor read it")
    original: str = Field(description="the message as received (see original_encoding)")
    original_encoding: Literal["utf-8", "base64"] = Field(
        description="'base64' when the bytes were not UTF-8"
    )
    redacted: bool = Field(
        default=False,
        description="true when raw personal data in the original was masked before storing",
    )
    truncated: bool = Field(
        default=False,
        description="true when the message was over the size limit: 'original' holds its start",
    )
    size: int | None = Field(
        default=None, description="the message's size in bytes, when truncated"
    )
    sha256: str | None = Field(
        default=None, description="SHA-256 of the whole message (hex), when truncated"
    )
