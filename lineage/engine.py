"""The engine: one message in; findings, dead letters and graph updates out.

    engine = Engine(load_policy(), State())
    outcome = engine.process(b'{"event_id": ...}', offset=0, origin="events.jsonl:1")
    outcome.alerts        # alert dicts (CONTRACT.md s.4), in catalogue order
    outcome.dead_letter   # a dead-letter dict when the message was not a valid event

Order of work for one message: decode and validate (bad input becomes a dead
letter), redact raw personal data, drop a duplicate event id, then judge the
event against the policy at its ``occurred_at`` and the subject's consents that
came before it in the partition, and fold it into the edge and incident partials.

Exactness: every record carries the offset it has applied up to; a redelivered
message (same offset) re-derives the same alerts, with the same ids, from the
same facts, and changes no count.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lineage.policy.model import Policy, Recipient
from lineage.redact import KIND_CATEGORY, Redactor
from lineage.rules import CATALOGUE, Context, RuleSpec, Scope, is_personal
from lineage.rules.base import scopes_for
from lineage.state import (
    ConsentDecision,
    ConsentLedger,
    EdgeAggregate,
    EdgeKey,
    IncidentPartial,
    State,
)
from schemas import AccessEvent, Action, ConsentEvent, EventRejected, decode_event

__all__ = ["Engine", "Outcome", "Stats", "alert_id", "dead_letter_record", "incident_id"]


def alert_id(rule_id: str, event_id: str) -> str:
    """Deterministic from rule and event, so a replayed event yields the same id."""
    return hashlib.sha256(f"{rule_id}\x1f{event_id}".encode()).hexdigest()[:32]


def incident_id(rule_id: str, source: str, recipient: str | None) -> str:
    """One incident per (rule, source, recipient), the same on every worker."""
    digest = hashlib.sha256(f"{rule_id}\x1f{source}\x1f{recipient or ''}".encode()).hexdigest()
    return "inc-" + digest[:24]


@dataclass(slots=True)
class Outcome:
    """What one message led to."""

    status: str  # "judged", "duplicate" or "rejected"
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dead_letter: dict[str, Any] | None = None
    event: AccessEvent | ConsentEvent | None = None
    incidents: list[str] = field(default_factory=list)  # incident ids whose partial changed
    redelivered: bool = False


@dataclass(slots=True)
class Stats:
    """Running counts for the closing summary and the metrics endpoint."""

    messages: int = 0
    access_events: int = 0
    consent_events: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    alerts: int = 0
    by_article: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)


def dead_letter_record(
    raw: bytes,
    rejection: EventRejected,
    origin: str,
    redactor: Redactor,
    received_at: datetime | None = None,
) -> dict[str, Any]:
    """The dead-letter record of a message: original kept whole unless it holds raw PD."""
    try:
        original, encoding = raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        original, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    redacted = False
    if encoding == "utf-8":
        masked = redactor.mask(original)
        redacted = masked != original
        original = masked
    else:
        text = raw.decode("utf-8", errors="replace")
        if redactor.scan_text(text):
            original, encoding, redacted = redactor.mask(text), "utf-8", True
    return {
        "reason": redactor.mask(rejection.reason),
        "kind": rejection.kind,
        "field": rejection.field,
        "event_id": redactor.mask(rejection.event_id) if rejection.event_id else None,
        "origin": origin,
        "received_at": (received_at or datetime.now(UTC)).isoformat(),
        "original": original,
        "original_encoding": encoding,
        "redacted": redacted,
    }


class Engine:
    """Judges events against one policy, reading and writing one partition's :class:`State`."""

    def __init__(
        self,
        policy: Policy,
        state: State | None = None,
        *,
        redactor: Redactor | None = None,
        rules: Iterable[RuleSpec] | None = None,
    ) -> None:
        self.policy = policy
        self.state = state if state is not None else State()
        self.redactor = redactor if redactor is not None else Redactor()
        self.stats = Stats()
        self._rules = list(rules) if rules is not None else list(CATALOGUE.values())
        self._by_scopes: dict[tuple[Scope, ...], list[RuleSpec]] = {}
        self._any = [r for r in self._rules if r.scope is Scope.ANY]

    # -- entry points --------------------------------------------------------------------------

    def process(
        self,
        raw: bytes,
        *,
        offset: int,
        origin: str,
        partition: int = 0,
        received_at: datetime | None = None,
    ) -> Outcome:
        """Decode, validate and judge one message; bad input becomes a dead letter."""
        self.stats.messages += 1
        try:
            event = decode_event(raw)
        except EventRejected as rejection:
            self.stats.dead_letters += 1
            record = dead_letter_record(raw, rejection, origin, self.redactor, received_at)
            return Outcome("rejected", dead_letter=record)
        return self.apply(event, offset=offset, partition=partition)

    def apply(
        self, event: AccessEvent | ConsentEvent, *, offset: int, partition: int = 0
    ) -> Outcome:
        """Judge one valid event found at ``offset`` of ``partition``."""
        event, raw_findings = self.redactor.scan_event(event)
        seen = self.state.seen.get(event.event_id)
        if seen is not None and seen != offset:
            self.stats.duplicates += 1
            return Outcome("duplicate", event=event)
        redelivered = seen == offset
        if seen is None:
            self.state.seen[event.event_id] = offset
        if isinstance(event, ConsentEvent):
            self.stats.consent_events += 1
            self._record_consent(event, offset)
            outcome = Outcome("judged", event=event)
            if raw_findings:
                # A consent event is judged only for what it leaks, never for a flow.
                outcome = self._judge_consent_leak(event, raw_findings, offset, outcome)
            outcome.redelivered = redelivered
            return outcome
        self.stats.access_events += 1
        outcome = self._judge_access(event, raw_findings, offset)
        outcome.redelivered = redelivered
        return outcome

    # -- consents ------------------------------------------------------------------------------

    def _record_consent(self, event: ConsentEvent, offset: int) -> None:
        ledger = self.state.consents.get(event.subject) or ConsentLedger()
        if ledger.applied >= offset:
            return
        ledger.decisions.append(
            ConsentDecision(
                occurred_at=event.occurred_at,
                recipient=event.recipient,
                purposes=frozenset(event.purposes) if event.purposes is not None else None,
                status=event.status,
                event_id=event.event_id,
                offset=offset,
                reference=event.reference,
            )
        )
        ledger.applied = offset
        self.state.consents[event.subject] = ledger

    def _judge_consent_leak(
        self,
        event: ConsentEvent,
        raw_findings: dict[str, list[str]],
        offset: int,
        outcome: Outcome,
    ) -> Outcome:
        spec = CATALOGUE["art6.raw-personal-data"]
        kinds = sorted({k for ks in raw_findings.values() for k in ks})
        fields = sorted(p.removesuffix("#key") for p in raw_findings)
        alert = self._alert(
            spec,
            event_id=event.event_id,
            occurred_at=event.occurred_at,
            source="consent-platform",
            recipient=None,
            recipient_kind=None,
            subject=event.subject,
            categories=[KIND_CATEGORY[k] for k in kinds],
            message=f"A consent event carried raw personal data ({', '.join(kinds)}) in "
            f"{', '.join(fields)}; it was redacted (Art. 6 (1)).",
            evidence={"fields": fields, "kinds": kinds, "redacted": True},
        )
        outcome.alerts.append(alert)
        outcome.incidents.append(self._fold_incident(spec, "consent-platform", None, event, offset))
        return outcome

    # -- access events -------------------------------------------------------------------------

    def _resolve(self, rid: str | None) -> tuple[Recipient | None, str | None]:
        if rid is None:
            return None, None
        recipient = self.policy.recipients.get(rid)
        if recipient is not None:
            return recipient, recipient.kind.value
        if rid in self.policy.systems:
            return None, "internal"
        return None, "unknown"

    def _rules_for(
        self, event: AccessEvent, kind: str | None, via_kind: str | None
    ) -> list[RuleSpec]:
        if event.action is not Action.TRANSFER:
            return self._any
        scopes = scopes_for(kind, via_kind)
        rules = self._by_scopes.get(scopes)
        if rules is None:
            wanted = {Scope.ANY, *scopes}
            rules = [r for r in self._rules if r.scope in wanted]
            self._by_scopes[scopes] = rules
        return rules

    def _judge_access(
        self, event: AccessEvent, raw_findings: dict[str, list[str]], offset: int
    ) -> Outcome:
        transfer = event.action is Action.TRANSFER
        recipient, kind = self._resolve(event.recipient) if transfer else (None, None)
        via, via_kind = self._resolve(event.via) if transfer else (None, None)
        ledger = self.state.consents.get(event.subject) if event.subject else None
        ctx = Context(
            event,
            self.policy,
            recipient,
            kind,
            via,
            ledger.known_before(offset) if ledger is not None else (),
            raw_findings,
        )
        outcome = Outcome("judged", event=event)
        fired: list[tuple[str, str]] = []
        alert_recipient = event.recipient if transfer else None
        for spec in self._rules_for(event, kind, via_kind):
            breach = spec.fn(ctx)
            if breach is None:
                continue
            fired.append((spec.id, spec.article))
            outcome.alerts.append(
                self._alert(
                    spec,
                    event_id=event.event_id,
                    occurred_at=event.occurred_at,
                    source=event.source,
                    recipient=alert_recipient,
                    recipient_kind=kind,
                    subject=event.subject,
                    categories=list(breach.categories),
                    message=breach.message,
                    evidence=dict(breach.evidence),
                )
            )
            outcome.incidents.append(
                self._fold_incident(spec, event.source, alert_recipient, event, offset)
            )
        personal = is_personal(event)
        self._fold_edge(
            ("system", event.source, ""), event, offset, personal, [] if transfer else fired
        )
        if transfer:
            assert event.recipient is not None
            self._fold_edge(
                ("flow", event.via or event.source, event.recipient), event, offset, personal, fired
            )
        return outcome

    # -- outputs and partials --------------------------------------------------------------------

    def _alert(
        self,
        spec: RuleSpec,
        *,
        event_id: str,
        occurred_at: datetime,
        source: str,
        recipient: str | None,
        recipient_kind: str | None,
        subject: str | None,
        categories: list[str],
        message: str,
        evidence: dict[str, Any],
    ) -> dict[str, Any]:
        self.stats.alerts += 1
        self.stats.by_article[spec.article] += 1
        self.stats.by_severity[spec.severity.value] += 1
        self.stats.by_rule[spec.id] += 1
        return {
            "alert_id": alert_id(spec.id, event_id),
            "rule": spec.id,
            "article": spec.article,
            "severity": spec.severity.value,
            "event_id": event_id,
            "occurred_at": occurred_at.isoformat(),
            "source": source,
            "recipient": recipient,
            "recipient_kind": recipient_kind,
            "subject": subject,
            "categories": categories,
            "policy_version": self.policy.version,
            "message": message,
            "evidence": evidence,
        }

    def _fold_incident(
        self,
        spec: RuleSpec,
        source: str,
        recipient: str | None,
        event: AccessEvent | ConsentEvent,
        offset: int,
    ) -> str:
        iid = incident_id(spec.id, source, recipient)
        partial = self.state.incidents.get(iid)
        if partial is None:
            partial = IncidentPartial(rule=spec.id, source=source, recipient=recipient)
        if partial.applied < offset:
            partial.add(event.occurred_at, event.event_id)
            partial.applied = offset
            self.state.incidents[iid] = partial
        return iid

    def _fold_edge(
        self,
        key: EdgeKey,
        event: AccessEvent,
        offset: int,
        personal: bool,
        fired: list[tuple[str, str]],
    ) -> None:
        edges = self.state.edges
        aggregate = edges.get(key)
        if aggregate is None:
            aggregate = EdgeAggregate()
        elif aggregate.applied >= offset:
            return
        aggregate.add(
            at=event.occurred_at,
            categories=event.categories,
            purpose=event.purpose,
            legal_basis=event.legal_basis.value if event.legal_basis else "unstated",
            form=event.form.value,
            action=event.action.value,
            personal=personal,
            rules=fired,
        )
        aggregate.applied = offset
        edges[key] = aggregate
