"""What the monitor writes: alerts, incidents, dead letters, provision records and subject
answers (docs/contract.md).

These models are the shapes consumers rely on; the monitor builds them, so they
validate leniently in type but forbid unknown fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lineage.schemas.types import Form, Severity

__all__ = [
    "DEAD_LETTER_KEEP",
    "DEAD_LETTER_MARGIN",
    "Alert",
    "AlertStatus",
    "ConsentOnRecord",
    "DeadLetter",
    "Incident",
    "IncidentStatus",
    "ProvisionRecord",
    "RecipientLineage",
    "SubjectLineage",
]

AlertStatus = Literal["open", "retracted"]

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
    status: AlertStatus = Field(
        default="open",
        description="'retracted' when a consent in force at the event's time arrived late: "
        "the same alert_id again, with retracted_by",
    )
    retracted_by: str | None = Field(
        default=None, description="the consent event that retracted it"
    )


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
    count: int = Field(
        ge=0, description="breaching events so far (less those a late consent retracted)"
    )
    first_seen: datetime = Field(description="earliest event time of a breach")
    last_seen: datetime = Field(description="latest event time of a breach")
    sample_event_ids: list[str] = Field(description="a few breaching event ids, earliest first")
    status: IncidentStatus = Field(description="'open' when first published, then 'updated'")


#: The most of a bad message's bytes a dead letter keeps; beyond it, its start, size and digest.
DEAD_LETTER_KEEP = 64 * 1024
#: How much more than that is read and masked, so that a value the cut falls in is masked
#: whole before the cut, never cut first and then missed.
DEAD_LETTER_MARGIN = 1024


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


class ProvisionRecord(BaseModel):
    """A record of provision to a third party (APPI Art. 29): one per transfer, written once."""

    model_config = _OUT

    record_id: str = Field(description="deterministic from the event")
    provided_at: datetime = Field(description="the event's occurred_at")
    recipient: str = Field(description="who received the data")
    recipient_name: str = Field(description="the recipient's name in the policy")
    recipient_country: str | None = Field(description="ISO 3166 alpha-2; null when unknown")
    subject: str | None = Field(description="pseudonymous subject reference")
    categories: list[str] = Field(description="the categories provided")
    purpose: str = Field(description="the purpose of the provision")
    legal_basis: str | None = Field(description="the legal basis the producer claimed")
    consent_reference: str | None = Field(description="the consent record relied on, if any")
    lawful: bool = Field(description="no alert on that event when the record was written")
    event_id: str = Field(description="the event recorded")
    policy_version: str = Field(description="the policy version judged against")


class RecipientLineage(BaseModel):
    """What one recipient received of one subject's data."""

    model_config = ConfigDict(extra="allow", frozen=True)

    recipient: str = Field(description="recipient id")
    name: str = Field(description="its name in the policy")
    kind: str = Field(description="outsourcer, affiliate, ... or unknown")
    country: str = Field(description="ISO 3166 alpha-2 ('' when unknown)")
    categories: list[str] = Field(description="categories it received")
    purposes: list[str] = Field(description="for which purposes")
    legal_bases: list[str] = Field(description="on what bases ('unstated' when none was given)")
    first_at: datetime = Field(description="first time")
    last_at: datetime = Field(description="last time")
    events: int = Field(description="how many transfers")
    breaches: list[str] = Field(description="rules those transfers broke (not retracted)")
    forms: list[Form] | None = Field(
        default=None,
        description="how identifiable the data was when it went (identified, pseudonymized, "
        "anonymized, aggregated); a recipient that received only pseudonymized (keyed), "
        "anonymized or aggregated data is not in notify_on_correction",
    )


class ConsentOnRecord(BaseModel):
    """One consent decision of the subject."""

    model_config = ConfigDict(extra="allow", frozen=True)

    recipient: str = Field(description="recipient id or '*'")
    purposes: list[str] | None = Field(description="null: every purpose")
    status: Literal["granted", "withdrawn"] = Field(description="the decision")
    occurred_at: datetime = Field(description="when it was made")
    reference: str | None = Field(description="record id in the consent platform")


class SubjectLineage(BaseModel):
    """The answer to a disclosure request (policy Art. 11; APPI Arts. 33 and 33 (5))."""

    model_config = ConfigDict(extra="allow", frozen=True)

    subject: str = Field(description="pseudonymous subject reference")
    policy_version: str = Field(description="the policy version judged against")
    as_of: datetime = Field(description="when the answer was made")
    recipients: list[RecipientLineage] = Field(description="every recipient of the data")
    consents: list[ConsentOnRecord] = Field(description="consent decisions on record")
    provision_records: list[str] = Field(description="record ids (APPI Art. 29)")
    notify_on_correction: list[str] = Field(
        description="recipients outside the company that received personal data"
    )
