"""Consent in event time: the subjects' consent ledgers, and the alerts a late consent
retracts (docs/contract.md, section 7; CONTRACT section 10).

A consent decision counts for an event when it was made at or before the event,
whatever order they arrive in. An event whose alerts a late consent could prevent
(the rules registered ``retractable``) is kept pending, compactly
(:class:`~lineage.state.PendingEvent`), while the subject's newest event time is less
than the consent lateness past it. A grant that arrives then and was in force at the
event's time retracts those alerts: the same alert said again with ``status:
"retracted"`` and ``retracted_by``, made again from the kept facts by the rule itself,
exactly as it was raised.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from lineage.engine.outputs import Alerts, Outcome, Stats
from lineage.engine.partials import Partials
from lineage.policy.model import Policy, Recipient
from lineage.rules import CATALOGUE, Context
from lineage.rules.base import Days
from lineage.schemas import Action, ConsentEvent, ConsentStatus, Form, LegalBasis
from lineage.schemas.judged import EVERY_FIELD, Access, iso_text
from lineage.state import (
    ConsentDecision,
    EdgeKey,
    PendingEvent,
    Retraction,
    State,
    SubjectState,
    posix_of,
)
from lineage.view import Consent, Retracted

__all__ = ["RETRACTABLE", "ConsentBook"]

#: The rules a consent that arrives late can still prevent, and so retract (CONTRACT s.7),
#: as each rule says at its registration.
RETRACTABLE = frozenset(spec.id for spec in CATALOGUE.values() if spec.retractable)
#: Retractions a subject remembers, so that a consent delivered again says them again.
_RETRACTIONS_KEPT = 100

Resolve = Callable[[str | None], tuple[Recipient | None, str | None]]


class ConsentBook:
    """Consent events, and the pending alerts of access events, for one partition."""

    def __init__(
        self,
        policy: Policy,
        state: State,
        alerts: Alerts,
        stats: Stats,
        partials: Partials,
        resolve: Resolve,
        days: Days,
        lateness: float,
    ) -> None:
        self.policy = policy
        self.state = state
        self.alerts = alerts
        self.stats = stats
        self.partials = partials
        self.resolve = resolve
        self.days = days
        self.lateness = lateness

    # -- consent events --------------------------------------------------------------------------

    def consent(self, event: ConsentEvent, offset: int) -> Outcome:
        """Record a consent decision; a grant retracts what it would have prevented."""
        outcome = Outcome("judged", event=event)
        subject = self.state.subjects.get(event.subject) or SubjectState()
        if subject.applied >= offset:
            # Delivered again: its decision is in the ledger; say again what it retracted.
            self._retract_again(event.subject, subject, offset, outcome)
            return outcome
        decision = ConsentDecision(
            occurred_at=event.occurred_at,
            recipient=event.recipient,
            purposes=frozenset(event.purposes) if event.purposes is not None else None,
            status=event.status,
            event_id=event.event_id,
            offset=offset,
            reference=event.reference,
        )
        subject.decisions.append(decision)
        subject.applied = offset
        posix = posix_of(event.occurred_at)
        if posix > self.stats.newest:
            self.stats.newest = posix
        self.advance(subject, posix)
        outcome.view.append(
            Consent(
                event.subject,
                event.event_id,
                event.recipient,
                tuple(event.purposes) if event.purposes is not None else None,
                event.status.value,
                iso_text(event.occurred_at),
                posix,
                event.reference,
                offset,
            )
        )
        if event.status is ConsentStatus.GRANTED and subject.pending:
            # A grant that was in force at an earlier event's time may prevent its alerts:
            # a late withdrawal, by contrast, raises nothing after the fact.
            self._retract(event.subject, subject, decision, offset, outcome)
            self.partials.settle(subject, offset)
        self.state.subjects[event.subject] = subject
        return outcome

    def _retract_again(
        self, name: str, subject: SubjectState, offset: int, outcome: Outcome
    ) -> None:
        """A consent delivered again whose subject record was written: say its
        retractions again, and settle them on any record written without them."""
        for retraction in subject.retracted:
            if retraction.offset != offset:
                continue
            if retraction.record is not None:
                outcome.alerts.append(retraction.record)
            else:
                assert retraction.event is not None
                alert = self._alert_of(name, subject, retraction.event, retraction.rule)
                outcome.alerts.append(
                    {**alert, "status": "retracted", "retracted_by": retraction.consent}
                )
            outcome.incidents.append(
                self.partials.incident_id(retraction.rule, retraction.source, retraction.recipient)
            )
        self.partials.settle(subject, offset)

    # -- pending alerts --------------------------------------------------------------------------

    def remember(
        self,
        subject_name: str,
        subject: SubjectState | None,
        ctx: Context,
        kind: str | None,
        outcome: Outcome,
        fired: list[tuple[str, str]],
        edge: EdgeKey,
        offset: int,
    ) -> SubjectState:
        """The subject's record after a transfer outside the company: its newest event
        time moves on, and the alerts a late consent may still retract are kept."""
        subject = subject if subject is not None else SubjectState()
        if subject.applied >= offset:
            return subject  # delivered again: already counted
        event = ctx.event
        retractable = [a["rule"] for a in outcome.alerts if a["rule"] in RETRACTABLE]
        self.advance(subject, ctx.posix)
        if retractable:
            subject.pending.append(
                PendingEvent(
                    at=ctx.posix,
                    offset=offset,
                    occurred=event.at_text,
                    event_id=event.event_id,
                    source=event.source,
                    recipient=event.recipient or "",
                    kind=kind,
                    via=event.via,
                    purpose=event.purpose,
                    basis=event.legal_basis.value if event.legal_basis else None,
                    categories=list(event.categories),
                    alerts=retractable,
                    fired=list(fired),
                    edge=edge,
                )
            )
        subject.applied = offset
        self.state.subjects[subject_name] = subject
        return subject

    def advance(self, subject: SubjectState, posix: float) -> None:
        """The subject's newest event time moves on: alerts older than the consent
        lateness behind it stand, and are no longer looked at."""
        if posix > subject.newest:
            subject.newest = posix
        if subject.pending:
            horizon = subject.newest - self.lateness
            subject.pending = [p for p in subject.pending if p.at > horizon]

    def _event_of(self, name: str, pending: PendingEvent) -> Access:
        """The access event as the retractable rules read it, from its kept facts."""
        return Access(
            pending.event_id,
            datetime.fromisoformat(pending.occurred),
            pending.source,
            Action.TRANSFER,
            name,
            pending.categories,
            Form.IDENTIFIED,
            None,
            pending.purpose,
            pending.recipient,
            pending.via,
            LegalBasis(pending.basis) if pending.basis else None,
            None,
            None,
            {},
            EVERY_FIELD,
            pending.occurred,
        )

    def _context(
        self, name: str, subject: SubjectState, pending: PendingEvent, known_before: int
    ) -> Context:
        recipient, kind = self.resolve(pending.recipient)
        via, _ = self.resolve(pending.via) if pending.via else (None, None)
        return Context(
            self._event_of(name, pending),
            self.policy,
            recipient,
            kind,
            via,
            subject,
            known_before,
            {},
            True,  # it raised an alert of these rules: it carried personal data
            pending.at,
            self.days.at(pending.at),
        )

    def _alert_of(
        self, name: str, subject: SubjectState, pending: PendingEvent, rule: str
    ) -> dict[str, Any]:
        """The alert of ``rule`` the pending event raised, made again as it was: by the
        rule, from the consents known before the event."""
        spec = CATALOGUE[rule]
        breach = spec.fn(self._context(name, subject, pending, pending.offset))
        if breach is None:  # pragma: no cover - a rule judges the same facts the same
            raise AssertionError(f"{rule} no longer finds the breach of {pending.event_id}")
        return self.alerts.make(
            spec,
            event_id=pending.event_id,
            occurred_at=pending.occurred,
            source=pending.source,
            recipient=pending.recipient,
            recipient_kind=pending.kind,
            subject=name,
            categories=list(breach.categories),
            message=breach.message,
            evidence=dict(breach.evidence),
            count=False,
        )

    def _retract(
        self,
        name: str,
        subject: SubjectState,
        decision: ConsentDecision,
        offset: int,
        outcome: Outcome,
    ) -> None:
        """Retract every pending alert the new decision would have prevented in time
        (:meth:`Partials.settle` then takes them off the incidents and edges)."""
        # The ledgers keep the last retractions, and every one of this consent.
        del subject.retracted[:-_RETRACTIONS_KEPT]
        del subject.unbreached[:-_RETRACTIONS_KEPT]
        granted_at = posix_of(decision.occurred_at)
        keep: list[PendingEvent] = []
        taken: dict[str, dict[str, int]] = {}  # recipient -> rule -> breaches taken back
        for pending in subject.pending:
            if granted_at > pending.at:
                keep.append(pending)  # not in force at that event's time
                continue
            # Every decision known now, this one too (the rules keep those made by then).
            ctx = self._context(name, subject, pending, offset + 1)
            # An alert is prevented when its article would have raised nothing: a consent
            # for someone else turns no-consent into consent-scope, and retracts nothing.
            still = {
                CATALOGUE[rule].article
                for rule in RETRACTABLE
                if CATALOGUE[rule].fn(ctx) is not None
            }
            gone = [rule for rule in pending.alerts if CATALOGUE[rule].article not in still]
            if gone:
                self._take_back(name, subject, pending, gone, decision, offset, ctx, outcome)
                by_rule = taken.setdefault(pending.recipient, {})
                for rule in gone:
                    by_rule[rule] = by_rule.get(rule, 0) + 1
            if pending.alerts:
                keep.append(pending)
        subject.pending = keep
        for recipient, rules in taken.items():
            outcome.view.append(Retracted(name, recipient, rules, offset))

    def _take_back(
        self,
        name: str,
        subject: SubjectState,
        pending: PendingEvent,
        gone: list[str],
        decision: ConsentDecision,
        offset: int,
        ctx: Context,
        outcome: Outcome,
    ) -> None:
        gone_rules = set(gone)
        retracted = [f for f in pending.fired if f[0] in gone_rules]
        remaining = [f for f in pending.fired if f[0] not in gone_rules]
        for rule in gone:
            alert = self._alert_of(name, subject, pending, rule)
            outcome.alerts.append(
                {**alert, "status": "retracted", "retracted_by": decision.event_id}
            )
            subject.retracted.append(Retraction(offset, decision.event_id, rule, pending))
            self.stats.retracted += 1
            outcome.incidents.append(
                self.partials.incident_id(rule, pending.source, pending.recipient)
            )
        pending.alerts = [rule for rule in pending.alerts if rule not in gone_rules]
        pending.fired = remaining
        subject.unbreached.append((offset, pending.edge, retracted, remaining, ctx.day_text))
