"""Judging an access event: the rules its flow's shape calls for, its alerts and provision
record, the partials it folds into, and the view facts it emits.

The hot path of every event: a lawful, common flow does no work it does not need.
Rules that read only the flow's shape and the policy on the event's day are run once
per shape and day (:attr:`~lineage.rules.RuleSpec.cacheable`); the others, which read
the subject's consents or the event's attributes, run every time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lineage.engine.consents import ConsentBook
from lineage.engine.outputs import Alerts, Outcome, Stats, record_id
from lineage.engine.partials import Partials
from lineage.policy.model import Policy, Recipient
from lineage.redact import KIND_CATEGORY, raw_facts
from lineage.rules import CATALOGUE, Breach, Context, RuleSpec, Scope, is_personal
from lineage.rules.art9 import consent_decision
from lineage.rules.base import Days, scopes_for
from lineage.schemas import Action, ConsentEvent, LegalBasis
from lineage.schemas.judged import Access
from lineage.state import EdgeKey, State
from lineage.view import Flow

__all__ = ["THIRD_PARTY_KINDS", "Judge"]

#: Recipients that are third parties in APPI's sense (Art. 29): every provision to them
#: is recorded, at home or abroad.
THIRD_PARTY_KINDS = frozenset({"third_party", "ad_provider", "info_module", "unknown"})

_TRANSFER = Action.TRANSFER  # enum member lookups cost on the hot path
_CACHE_SIZE = 65_536
#: What :meth:`Judge._flow_to` tells of a recipient.
_Flow = tuple[Recipient | None, str | None, bool, bool, str]
_NOWHERE: _Flow = (None, None, False, False, "")


class Judge:
    """Judges access events against one policy, into one partition's state."""

    def __init__(
        self,
        policy: Policy,
        state: State,
        alerts: Alerts,
        stats: Stats,
        partials: Partials,
        rules: Iterable[RuleSpec] | None = None,
    ) -> None:
        self.policy = policy
        self.state = state
        self.alerts = alerts
        self.stats = stats
        self.partials = partials
        self.consents: ConsentBook | None = None  # set by the engine
        self._rules = list(rules) if rules is not None else list(CATALOGUE.values())
        self._order = {spec.id: i for i, spec in enumerate(self._rules)}
        self._by_shape: dict[
            tuple[bool, str | None, str | None, bool], tuple[list[RuleSpec], list[RuleSpec]]
        ] = {}
        self._judgments: dict[tuple[Any, ...], list[tuple[RuleSpec, Breach]]] = {}
        # What the policy tells of each recipient id (:meth:`_flow_to`).
        self._flows: dict[str, _Flow] = {}
        #: The policy's day at an event's time.
        self.days = Days(policy.zone)

    def resolve(self, rid: str | None) -> tuple[Recipient | None, str | None]:
        """The policy's recipient and its kind ('internal', 'unknown' when it has none)."""
        if rid is None:
            return None, None
        flow = self._flow_to(rid)
        return flow[0], flow[1]

    def _flow_to(self, rid: str) -> _Flow:
        """(:meth:`resolve`'s recipient and kind, whether a transfer to it needs the
        subject's consent as one abroad (:meth:`Policy.foreign_without_basis`), whether
        it is abroad, its country code or "")."""
        flow = self._flows.get(rid)
        if flow is None:
            recipient = self.policy.recipients.get(rid)
            if recipient is None:
                kind = "internal" if rid in self.policy.systems else "unknown"
                flow = (None, kind, False, False, "")
            else:
                kind = recipient.kind.value
                flow = (
                    recipient,
                    kind,
                    self.policy.foreign_without_basis(recipient),
                    self.policy.abroad(recipient),
                    recipient.country_code,
                )
            if len(self._flows) < _CACHE_SIZE:
                self._flows[rid] = flow
        return flow

    def _rules_for(
        self, transfer: bool, kind: str | None, via_kind: str | None, foreign: bool
    ) -> tuple[list[RuleSpec], list[RuleSpec]]:
        """(cacheable rules, rules to run every time) for a flow of this shape."""
        shape = (transfer, kind, via_kind, foreign)
        rules = self._by_shape.get(shape)
        if rules is None:
            wanted = {Scope.ANY, Scope.EVERY}
            if transfer:
                wanted.update(scopes_for(kind, via_kind, foreign))
            chosen = [r for r in self._rules if r.scope in wanted]
            rules = ([r for r in chosen if r.cacheable], [r for r in chosen if not r.cacheable])
            self._by_shape[shape] = rules
        return rules

    def access(self, event: Access, raw_findings: dict[str, list[str]], offset: int) -> Outcome:
        """Judge one access event at ``offset``."""
        transfer = event.action is _TRANSFER
        foreign = False
        if transfer:
            recipient, kind, foreign, abroad, country = (
                self._flow_to(event.recipient) if event.recipient is not None else _NOWHERE
            )
            via, via_kind = self.resolve(event.via) if event.via else (None, None)
        else:
            recipient = via = None
            kind = via_kind = None
            abroad = False
            country = ""
        personal = is_personal(event)
        posix = event.posix
        if posix > self.stats.newest:
            self.stats.newest = posix
        subject = self.state.subjects.get(event.subject) if event.subject else None
        ctx = Context(
            event,
            self.policy,
            recipient,
            kind,
            via,
            subject,
            offset,
            raw_findings,
            personal,
            posix,
            self.days.at(posix),
        )
        categories = tuple(event.categories)
        cacheable, every_time = self._rules_for(transfer, kind, via_kind, foreign)
        found = self._cached_findings(ctx, categories, cacheable) if cacheable else []
        extra = [(spec, b) for spec in every_time if (b := spec.fn(ctx)) is not None]
        if extra:
            order = self._order
            found = sorted([*found, *extra], key=lambda pair: order[pair[0].id])
        outcome = Outcome("judged", event=event)
        fired: list[tuple[str, str]] = []
        alert_recipient = event.recipient if transfer else None
        if found:
            for spec, breach in found:
                fired.append((spec.id, spec.article))
                outcome.alerts.append(
                    self.alerts.make(
                        spec,
                        event_id=event.event_id,
                        occurred_at=event.at_text,
                        source=event.source,
                        recipient=alert_recipient,
                        recipient_kind=kind,
                        subject=event.subject,
                        categories=list(breach.categories),
                        message=breach.message,
                        evidence=dict(breach.evidence),
                    )
                )
                iid = self.partials.incident(
                    spec, event.source, alert_recipient, event.occurred_at, event.event_id,
                    offset, posix,
                )  # fmt: skip
                outcome.incidents.append(iid)
        # Enum members are str: they key the shape as their values would.
        shape = (
            categories,
            event.purpose,
            event.legal_basis or "unstated",
            event.form,
            event.action,
        )
        day = ctx.day_text
        if not transfer:
            key: EdgeKey = ("system", event.source, "")
        elif event.via is not None:
            key = ("onward", event.via, event.recipient or "")
            # The source that reports an onward transfer held that data too: keep it in the
            # graph. The breaches belong to the onward edge, so none are counted here.
            system = ("system", event.source, "")
            self.partials.edge(system, event.occurred_at, posix, shape, offset, personal, [], day)
        else:
            key = ("flow", event.source, event.recipient or "")
        self.partials.edge(key, event.occurred_at, posix, shape, offset, personal, fired, day)
        if transfer and kind != "internal":
            record = (
                self._provision(ctx, recipient, kind, abroad, country, outcome)
                if personal
                else None
            )
            if event.subject is not None:
                outcome.view.append(
                    Flow(
                        event.subject,
                        event.recipient or "",
                        recipient.name if recipient is not None else event.recipient or "",
                        kind or "unknown",
                        country,
                        categories,
                        event.purpose,
                        # StrEnums: str() is the value, without .value's descriptor call.
                        str(event.legal_basis) if event.legal_basis else "unstated",
                        str(event.form),
                        event.at_text,
                        posix,
                        personal,
                        tuple(rule for rule, _ in fired),
                        record["record_id"] if record is not None else None,
                        offset,
                    )
                )
                assert self.consents is not None
                subject = self.consents.remember(
                    event.subject, subject, ctx, kind, outcome, fired, key, offset
                )
        if subject is not None and subject.pending and subject.applied < offset:
            # Time moves on for the subject's pending alerts, whatever this event was.
            assert self.consents is not None
            self.consents.advance(subject, posix)
            subject.applied = offset
            self.state.subjects[event.subject or ""] = subject
        return outcome

    def _provision(
        self,
        ctx: Context,
        recipient: Recipient | None,
        kind: str | None,
        abroad: bool,
        country: str,
        outcome: Outcome,
    ) -> dict[str, Any] | None:
        """The provision record of a transfer (APPI Art. 29), or None when it needs none;
        ``abroad`` and ``country`` as :meth:`_flow_to` tells them.

        To a third party in APPI's sense (third party, ad provider, information module,
        unknown) or abroad: recorded, lawful or not. Outsourcing and joint use at home,
        and a disclosure under a valid Art. 9 exception anywhere, are not.
        """
        event = ctx.event
        if kind not in THIRD_PARTY_KINDS and not abroad:
            return None
        claim = event.exception
        if (
            event.legal_basis is LegalBasis.EXCEPTION
            and claim is not None
            and claim.kind in self.policy.exceptions
            and claim.reference.strip()
        ):
            return None
        state, decision = consent_decision(ctx.consents, ctx) if event.subject else ("none", None)
        record = {
            "record_id": record_id(event.event_id),
            "provided_at": event.at_text,
            "recipient": event.recipient,
            "recipient_name": recipient.name if recipient is not None else event.recipient,
            "recipient_country": country if recipient is not None else None,
            "subject": event.subject,
            "categories": list(event.categories),
            "purpose": event.purpose,
            "legal_basis": str(event.legal_basis) if event.legal_basis else None,
            "consent_reference": decision.reference
            if state == "granted" and decision is not None
            else None,
            "lawful": not outcome.alerts,
            "event_id": event.event_id,
            "policy_version": self.policy.version,
        }
        outcome.records.append(record)
        self.stats.records += 1
        return record

    def _cached_findings(
        self, ctx: Context, categories: tuple[str, ...], rules: list[RuleSpec]
    ) -> list[tuple[RuleSpec, Breach]]:
        """Findings of the cacheable rules, remembered per flow shape and day.

        Those rules are pure functions of exactly the fields in the key (see
        :attr:`RuleSpec.cacheable`), so a hit returns what running them would.
        The list returned is shared: callers must not change it.
        """
        event = ctx.event
        pseudo = event.pseudonymization
        key = (
            event.source,
            event.recipient,
            event.via,
            categories,
            event.purpose,
            event.form,
            pseudo.keyed if pseudo is not None else None,
            # art10.identifiable names the method in its evidence.
            pseudo.method if pseudo is not None else None,
            event.encrypted_in_transit,
            event.action,
            ctx.day,
        )
        cached = self._judgments.get(key)
        if cached is None:
            cached = [(spec, b) for spec in rules if (b := spec.fn(ctx)) is not None]
            if len(self._judgments) >= _CACHE_SIZE:
                self._judgments.clear()
            self._judgments[key] = cached
        return cached

    def consent_leak(
        self,
        event: ConsentEvent,
        raw_findings: dict[str, list[str]],
        offset: int,
        outcome: Outcome,
    ) -> Outcome:
        """A consent event is judged only for the raw personal data it carries."""
        spec = CATALOGUE["art6.raw-personal-data"]
        kinds, fields = raw_facts(raw_findings)
        alert = self.alerts.make(
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
        outcome.incidents.append(
            self.partials.incident(
                spec, "consent-platform", None, event.occurred_at, event.event_id, offset
            )
        )
        return outcome
