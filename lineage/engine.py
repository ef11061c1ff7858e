"""The engine: one message in; findings, dead letters and graph updates out.

    engine = Engine(load_policy(), State())
    outcome = engine.process(b'{"event_id": ...}', offset=0, origin="events.jsonl:1")
    outcome.alerts        # alert dicts (docs/contract.md), in catalogue order
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
import logging
import re
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from lineage.policy.model import Policy, Recipient
from lineage.redact import KIND_CATEGORY, Redactor, raw_facts
from lineage.rules import CATALOGUE, Breach, Context, RuleSpec, Scope, is_personal
from lineage.rules.art9 import consent_decision
from lineage.rules.base import scopes_for
from lineage.schemas import (
    MAX_EVENT_BYTES,
    AccessEvent,
    Action,
    ConsentEvent,
    ConsentStatus,
    EventRejected,
    LegalBasis,
    decode_event,
)
from lineage.state import (
    ConsentDecision,
    EdgeAggregate,
    EdgeKey,
    EdgeRetraction,
    IncidentPartial,
    PendingEvent,
    RecipientFacts,
    Shape,
    State,
    SubjectState,
)

log = logging.getLogger("lineage.engine")

_TRANSFER = Action.TRANSFER  # enum member lookups cost on the hot path
_JUDGMENT_CACHE_SIZE = 65_536

__all__ = [
    "DEAD_LETTER_KEEP",
    "DEAD_LETTER_MARGIN",
    "RETRACTABLE",
    "Engine",
    "Outcome",
    "Stats",
    "alert_id",
    "dead_letter_record",
    "incident_id",
    "record_id",
]

#: The rules a consent that arrives late can still prevent, and so retract (CONTRACT s.7),
#: as each rule says at its registration.
RETRACTABLE = frozenset(spec.id for spec in CATALOGUE.values() if spec.retractable)
#: Recipients that are third parties in APPI's sense (Art. 29): every provision to them
#: is recorded, at home or abroad.
THIRD_PARTY_KINDS = frozenset({"third_party", "ad_provider", "info_module", "unknown"})
#: Retractions a subject remembers, so that a consent delivered again says them again.
_RETRACTIONS_KEPT = 100


def alert_id(rule_id: str, event_id: str) -> str:
    """Deterministic from rule and event, so a replayed event yields the same id."""
    return hashlib.sha256(f"{rule_id}\x1f{event_id}".encode()).hexdigest()[:32]


def record_id(event_id: str) -> str:
    """The provision record of an event (APPI Art. 29): one per event, the same on replay."""
    return hashlib.sha256(f"provision\x1f{event_id}".encode()).hexdigest()[:32]


def incident_id(rule_id: str, source: str, recipient: str | None) -> str:
    """One incident per (rule, source, recipient), the same on every worker."""
    digest = hashlib.sha256(f"{rule_id}\x1f{source}\x1f{recipient or ''}".encode()).hexdigest()
    return "inc-" + digest[:24]


class Outcome:
    """What one message led to.

    ``status`` is "judged", "duplicate" or "rejected"; ``alerts`` the alert dicts raised,
    and the retraction records of alerts a late consent prevented (docs/contract.md);
    ``records`` the provision records written (s.8); ``incidents`` the ids of incidents
    whose partial changed.
    """

    __slots__ = (
        "alerts",
        "dead_letter",
        "event",
        "incidents",
        "records",
        "redelivered",
        "status",
    )

    def __init__(
        self,
        status: str,
        *,
        dead_letter: dict[str, Any] | None = None,
        event: AccessEvent | ConsentEvent | None = None,
    ) -> None:
        self.status = status
        self.alerts: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.incidents: list[str] = []
        self.dead_letter = dead_letter
        self.event = event
        self.redelivered = False


@dataclass(slots=True)
class Stats:
    """Running counts for the closing summary and the metrics endpoint."""

    messages: int = 0
    access_events: int = 0
    consent_events: int = 0
    duplicates: int = 0
    conflicts: int = 0  # duplicates with other content, set aside as dead letters
    dead_letters: int = 0
    alerts: int = 0
    retracted: int = 0
    records: int = 0
    by_article: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)


#: The most of a bad message's bytes a dead letter keeps; beyond it, its start, size and digest.
DEAD_LETTER_KEEP = 64 * 1024
#: How much more than that is read and masked, so that a value the cut falls in is masked
#: whole before the cut, never cut first and then missed.
DEAD_LETTER_MARGIN = 1024

# A cut can halve a value; what follows the last separator is dropped with it, and so is a
# run of digits and the separators written between them.
_CUT_TAIL = re.compile(r"[^\s\"',;:{}\[\]<>]{0,320}$")
_CUT_DIGITS = re.compile(r"[\d\s\-/_.()+]{0,320}$")


def dead_letter_record(
    raw: bytes,
    rejection: EventRejected,
    origin: str,
    redactor: Redactor,
    received_at: datetime | None = None,
    *,
    size: int | None = None,
    digest: str | None = None,
) -> dict[str, Any]:
    """The dead-letter record of a message: the original kept, raw personal data masked.

    A message longer than :data:`DEAD_LETTER_KEEP` bytes keeps only its start, with
    ``truncated``, its ``size`` and ``sha256``; ``size`` and ``digest`` are given when
    the caller never held the whole message (a line too long to read).
    """
    total = len(raw) if size is None else size
    truncated = total > len(raw) or len(raw) > DEAD_LETTER_KEEP
    # Masked first, over a little more than is kept, then cut: a value the cut falls in
    # is masked whole.
    kept = raw[: DEAD_LETTER_KEEP + DEAD_LETTER_MARGIN] if truncated else raw
    try:
        original, encoding = kept.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if truncated and exc.start >= len(kept) - 3 and exc.reason == "unexpected end of data":
            original, encoding = kept[: exc.start].decode("utf-8"), "utf-8"
        else:
            original, encoding = base64.b64encode(kept).decode("ascii"), "base64"
    redacted = False
    if encoding == "utf-8":
        masked = redactor.mask(original)
        redacted = masked != original
        original = _cut(masked) if truncated else masked
    else:
        text = kept.decode("utf-8", errors="replace")
        if redactor.spans(text):
            original, encoding, redacted = redactor.mask(text), "utf-8", True
            if truncated:
                original = _cut(original)
        elif truncated:
            original = base64.b64encode(kept[:DEAD_LETTER_KEEP]).decode("ascii")
    record: dict[str, Any] = {
        "reason": redactor.mask(rejection.reason),
        "kind": rejection.kind,
        "field": redactor.mask(rejection.field) if rejection.field else None,
        "event_id": redactor.mask(rejection.event_id) if rejection.event_id else None,
        "origin": origin,
        "received_at": (received_at or datetime.now(UTC)).isoformat(),
        "original": original,
        "original_encoding": encoding,
        "redacted": redacted,
    }
    if truncated:
        record["truncated"] = True
        record["size"] = total
        record["sha256"] = digest or hashlib.sha256(raw).hexdigest()
    return record


def _cut(text: str) -> str:
    """The start of a masked text that fits :data:`DEAD_LETTER_KEEP` bytes, without the
    value the cut falls in."""
    cut = text.encode("utf-8")[:DEAD_LETTER_KEEP].decode("utf-8", errors="ignore")
    return _CUT_DIGITS.sub("", _CUT_TAIL.sub("", cut))


class Engine:
    """Judges events against one policy, reading and writing one partition's :class:`State`."""

    def __init__(
        self,
        policy: Policy,
        state: State | None = None,
        *,
        redactor: Redactor | None = None,
        rules: Iterable[RuleSpec] | None = None,
        consent_lateness: timedelta = timedelta(hours=24),
    ) -> None:
        self.policy = policy
        self.state = state if state is not None else State()
        self.redactor = redactor if redactor is not None else Redactor()
        self.stats = Stats()
        self.lateness = consent_lateness.total_seconds()
        self._rules = list(rules) if rules is not None else list(CATALOGUE.values())
        self._order = {spec.id: i for i, spec in enumerate(self._rules)}
        # Enum values read once: a member's .value is a descriptor call.
        self._severity = {spec.id: spec.severity.value for spec in CATALOGUE.values()}
        self._by_shape: dict[
            tuple[bool, str | None, str | None, bool], tuple[list[RuleSpec], list[RuleSpec]]
        ] = {}
        self._judgments: dict[tuple[Any, ...], list[tuple[RuleSpec, Breach]]] = {}
        self._resolved: dict[str, tuple[Recipient | None, str | None]] = {}
        self._incident_ids: dict[tuple[str, str, str | None], str] = {}

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
        """Decode, validate and judge one message; bad input becomes a dead letter.

        A message that makes the engine itself fail (a bug of ours) is set aside the
        same way, as ``internal_error``, and logged with where it failed (never its
        contents): one message must never stop the stream nor be retried forever.
        """
        self.stats.messages += 1
        try:
            event = decode_event(raw)
        except EventRejected as rejection:
            return self._reject(raw, rejection, origin, received_at)
        try:
            return self.apply(event, offset=offset, partition=partition, raw=raw)
        except Exception as exc:
            where = "; ".join(
                f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
                for frame in traceback.extract_tb(exc.__traceback__)[-3:]
            )
            log.error(
                "could not judge the message at %s: %s at %s", origin, type(exc).__name__, where
            )
            failure = EventRejected(
                f"the monitor could not judge this event ({type(exc).__name__}); it was set "
                "aside for a person to look at",
                field=None,
                kind="internal_error",
            )
            return self._reject(raw, failure, origin, received_at)

    def refuse(self, start: bytes, *, size: int, digest: str, origin: str) -> Outcome:
        """A message too long to be read whole: a dead letter from its start, size and
        SHA-256 (the caller read the rest through without keeping it)."""
        self.stats.messages += 1
        rejection = EventRejected(
            f"oversized: {size} bytes, the limit is {MAX_EVENT_BYTES}", field=None, kind="oversized"
        )
        self.stats.dead_letters += 1
        record = dead_letter_record(
            start, rejection, origin, self.redactor, size=size, digest=digest
        )
        return Outcome("rejected", dead_letter=record)

    def _reject(
        self, raw: bytes, rejection: EventRejected, origin: str, received_at: datetime | None
    ) -> Outcome:
        self.stats.dead_letters += 1
        record = dead_letter_record(raw, rejection, origin, self.redactor, received_at)
        return Outcome("rejected", dead_letter=record)

    def apply(
        self,
        event: AccessEvent | ConsentEvent,
        *,
        offset: int,
        partition: int = 0,
        raw: bytes | None = None,
    ) -> Outcome:
        """Judge one valid event found at ``offset`` of ``partition`` (``raw``: its bytes)."""
        event, raw_findings = self.redactor.scan_event(event, raw)
        fingerprint = self._fingerprint(event, raw, bool(raw_findings))
        seen = self.state.seen.get(event.event_id)
        if seen is not None and seen[0] != offset:
            if seen[1] and seen[1] != fingerprint:
                self.stats.conflicts += 1
                return self._reject(
                    raw if raw is not None else event.model_dump_json().encode(),
                    EventRejected(
                        f"duplicate-conflict: event id seen before at offset {seen[0]} with "
                        "other content; neither is judged again",
                        field="event_id",
                        kind="duplicate-conflict",
                        event_id=event.event_id,
                    ),
                    f"offset {offset}",
                    None,
                )
            self.stats.duplicates += 1
            return Outcome("duplicate", event=event)
        redelivered = seen is not None
        if seen is None:
            self.state.seen[event.event_id] = (offset, fingerprint)
        if isinstance(event, ConsentEvent):
            self.stats.consent_events += 1
            outcome = self._consent(event, offset)
            if raw_findings:
                # A consent event is judged only for what it leaks, never for a flow.
                outcome = self._judge_consent_leak(event, raw_findings, offset, outcome)
            outcome.redelivered = redelivered
            return outcome
        self.stats.access_events += 1
        outcome = self._judge_access(event, raw_findings, offset)
        outcome.redelivered = redelivered
        return outcome

    def _fingerprint(
        self, event: AccessEvent | ConsentEvent, raw: bytes | None, has_raw_data: bool
    ) -> str:
        """A digest of an event's content, whatever the order of its keys.

        Taken of the message itself when it holds no raw personal data, else of the
        event as redacted: the digest stored for dedup never stands for a raw value.
        """
        if raw is None or has_raw_data:
            content = event.model_dump_json().encode()
        else:
            content = orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(content, digest_size=8).hexdigest()

    # -- consents ------------------------------------------------------------------------------

    def _consent(self, event: ConsentEvent, offset: int) -> Outcome:
        outcome = Outcome("judged", event=event)
        subject = self.state.subjects.get(event.subject) or SubjectState()
        if subject.applied >= offset:
            # Delivered again: its decision is in the ledger; say again what it retracted.
            self._retract_again(subject, offset, outcome)
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
        self._advance(subject, event.occurred_at.timestamp())
        if event.status is ConsentStatus.GRANTED and subject.pending:
            # A grant that was in force at an earlier event's time may prevent its alerts:
            # a late withdrawal, by contrast, raises nothing after the fact.
            self._retract(subject, decision, offset, outcome)
            self._settle(subject, offset)
        self.state.subjects[event.subject] = subject
        return outcome

    def _retract_again(self, subject: SubjectState, offset: int, outcome: Outcome) -> None:
        """A consent delivered again whose subject record was written: say its
        retractions again, and settle them on any record written without them."""
        again = [record for o, record in subject.retracted if o == offset]
        outcome.alerts.extend(again)
        outcome.incidents.extend(incident_id(r["rule"], r["source"], r["recipient"]) for r in again)
        self._settle(subject, offset)

    def _settle(self, subject: SubjectState, offset: int) -> None:
        """Take the retractions of the consent at ``offset`` off the incident partials and
        edges, each record at most once: a record whose ``applied`` has reached the
        consent has them already. So a consent that retracts two breaches of one
        incident or edge takes both off, and one delivered again after a crash that
        wrote some records of a flush and not others completes the rest."""
        incidents = self.state.incidents
        by_incident: dict[str, list[str]] = {}
        for o, record in subject.retracted:
            if o == offset:
                iid = incident_id(record["rule"], record["source"], record["recipient"])
                by_incident.setdefault(iid, []).append(record["event_id"])
        for iid, event_ids in by_incident.items():
            partial = incidents.get(iid)
            if partial is not None and partial.applied < offset:
                for event_id in event_ids:
                    partial.retract(event_id)
                partial.applied = offset
                incidents[iid] = partial
        edges = self.state.edges
        by_edge: dict[EdgeKey, list[EdgeRetraction]] = {}
        for entry in subject.unbreached:
            if entry[0] == offset:
                by_edge.setdefault(entry[1], []).append(entry)
        for key, entries in by_edge.items():
            edge = edges.get(key)
            if edge is not None and edge.applied < offset:
                for _, _, gone, kept, day in entries:
                    edge.retract(gone, kept, day)
                edge.applied = offset
                edges[key] = edge

    def _advance(self, subject: SubjectState, posix: float) -> None:
        """The subject's newest event time moves on: alerts older than the consent
        lateness behind it stand, and are no longer looked at."""
        if posix > subject.newest:
            subject.newest = posix
        if subject.pending:
            horizon = subject.newest - self.lateness
            subject.pending = [p for p in subject.pending if p.at > horizon]

    def _retract(
        self, subject: SubjectState, decision: ConsentDecision, offset: int, outcome: Outcome
    ) -> None:
        """Retract every pending alert the new decision would have prevented in time
        (:meth:`_settle` then takes them off the incidents and edges)."""
        # The ledgers keep the last retractions, and every one of this consent.
        del subject.retracted[:-_RETRACTIONS_KEPT]
        del subject.unbreached[:-_RETRACTIONS_KEPT]
        granted_at = decision.occurred_at.timestamp()
        keep: list[PendingEvent] = []
        for pending in subject.pending:
            if granted_at > pending.at:
                keep.append(pending)  # not in force at that event's time
                continue
            event = AccessEvent.model_validate_json(orjson.dumps(pending.event))
            recipient, kind = self._resolve(event.recipient)
            via, _ = self._resolve(event.via) if event.via else (None, None)
            # Every decision known now, this one too (the rules keep those made by then).
            ctx = Context(event, self.policy, recipient, kind, via, subject, offset + 1, {})
            # An alert is prevented when its article would have raised nothing: a consent
            # for someone else turns no-consent into consent-scope, and retracts nothing.
            still = {
                CATALOGUE[rule].article
                for rule in RETRACTABLE
                if CATALOGUE[rule].fn(ctx) is not None
            }
            gone = [a for a in pending.alerts if a["article"] not in still]
            if gone:
                self._take_back(subject, pending, gone, decision, offset, ctx, outcome)
            if pending.alerts:
                keep.append(pending)
        subject.pending = keep

    def _take_back(
        self,
        subject: SubjectState,
        pending: PendingEvent,
        gone: list[dict[str, Any]],
        decision: ConsentDecision,
        offset: int,
        ctx: Context,
        outcome: Outcome,
    ) -> None:
        gone_rules = {a["rule"] for a in gone}
        retracted = [f for f in pending.fired if f[0] in gone_rules]
        remaining = [f for f in pending.fired if f[0] not in gone_rules]
        pending.alerts = [a for a in pending.alerts if a["rule"] not in gone_rules]
        pending.fired = remaining
        day = ctx.day.isoformat()
        for alert in gone:
            record = {**alert, "status": "retracted", "retracted_by": decision.event_id}
            outcome.alerts.append(record)
            subject.retracted.append((offset, record))
            self.stats.retracted += 1
            iid = incident_id(alert["rule"], alert["source"], alert["recipient"])
            outcome.incidents.append(iid)
            facts = subject.recipients.get(alert["recipient"] or "")
            if facts is not None:
                n = facts.breaches.get(alert["rule"], 0) - 1
                if n > 0:
                    facts.breaches[alert["rule"]] = n
                else:
                    facts.breaches.pop(alert["rule"], None)
        subject.unbreached.append((offset, pending.edge, retracted, remaining, day))

    def _judge_consent_leak(
        self,
        event: ConsentEvent,
        raw_findings: dict[str, list[str]],
        offset: int,
        outcome: Outcome,
    ) -> Outcome:
        spec = CATALOGUE["art6.raw-personal-data"]
        kinds, fields = raw_facts(raw_findings)
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
        """The policy's recipient and its kind ('internal', 'unknown' when it has none)."""
        if rid is None:
            return None, None
        resolved = self._resolved.get(rid)
        if resolved is None:
            recipient = self.policy.recipients.get(rid)
            if recipient is not None:
                resolved = (recipient, recipient.kind.value)
            elif rid in self.policy.systems:
                resolved = (None, "internal")
            else:
                resolved = (None, "unknown")
            if len(self._resolved) < _JUDGMENT_CACHE_SIZE:
                self._resolved[rid] = resolved
        return resolved

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

    def _judge_access(
        self, event: AccessEvent, raw_findings: dict[str, list[str]], offset: int
    ) -> Outcome:
        # The hot path of every event: no work a lawful, common flow does not need.
        transfer = event.action is _TRANSFER
        foreign = False
        if transfer:
            recipient, kind = self._resolve(event.recipient)
            via, via_kind = self._resolve(event.via) if event.via else (None, None)
            foreign = recipient is not None and self.policy.foreign_without_basis(recipient)
        else:
            recipient = via = None
            kind = via_kind = None
        personal = is_personal(event)
        posix = event.occurred_at.timestamp()
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
        )
        categories = tuple(event.categories)
        cacheable, every_time = self._rules_for(transfer, kind, via_kind, foreign)
        found = self._cached_findings(ctx, categories, cacheable) if cacheable else []
        extra = [(spec, b) for spec in every_time if (b := spec.fn(ctx)) is not None]
        if extra:
            found = sorted([*found, *extra], key=lambda pair: self._order[pair[0].id])
        outcome = Outcome("judged", event=event)
        fired: list[tuple[str, str]] = []
        alert_recipient = event.recipient if transfer else None
        at_text: str | None = None
        if found:
            at_text = event.occurred_at.isoformat()
            for spec, breach in found:
                fired.append((spec.id, spec.article))
                outcome.alerts.append(
                    self._alert(
                        spec,
                        event_id=event.event_id,
                        occurred_at=at_text,
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
                    self._fold_incident(spec, event.source, alert_recipient, event, offset, posix)
                )
        # Enum members are str: they key the shape as their values would.
        shape = (
            categories,
            event.purpose,
            event.legal_basis or "unstated",
            event.form,
            event.action,
        )
        day = ctx.day.isoformat()
        if not transfer:
            key: EdgeKey = ("system", event.source, "")
        elif event.via is not None:
            key = ("onward", event.via, event.recipient or "")
            # The source that reports an onward transfer held that data too: keep it in the
            # graph. The breaches belong to the onward edge, so none are counted here.
            system = ("system", event.source, "")
            self._fold_edge(system, event.occurred_at, posix, shape, offset, personal, [], day)
        else:
            key = ("flow", event.source, event.recipient or "")
        self._fold_edge(key, event.occurred_at, posix, shape, offset, personal, fired, day)
        if transfer and kind != "internal":
            record = self._provision(ctx, recipient, kind, outcome, at_text) if personal else None
            if event.subject is not None:
                subject = self._remember(
                    ctx, subject, recipient, kind, outcome, fired, key, record, offset
                )
        if subject is not None and subject.pending and subject.applied < offset:
            # Time moves on for the subject's pending alerts, whatever this event was.
            self._advance(subject, posix)
            subject.applied = offset
            self.state.subjects[event.subject or ""] = subject
        return outcome

    def _provision(
        self,
        ctx: Context,
        recipient: Recipient | None,
        kind: str | None,
        outcome: Outcome,
        at_text: str | None = None,
    ) -> dict[str, Any] | None:
        """The provision record of a transfer (APPI Art. 29), or None when it needs none;
        ``at_text``: the event time as text, when the caller has made it already.

        To a third party in APPI's sense (third party, ad provider, information module,
        unknown) or abroad: recorded, lawful or not. Outsourcing and joint use at home,
        and a disclosure under a valid Art. 9 exception anywhere, are not.
        """
        event = ctx.event
        abroad = recipient is not None and self.policy.abroad(recipient)
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
            "provided_at": at_text or event.occurred_at.isoformat(),
            "recipient": event.recipient,
            "recipient_name": recipient.name if recipient is not None else event.recipient,
            "recipient_country": recipient.country_code if recipient is not None else None,
            "subject": event.subject,
            "categories": list(event.categories),
            "purpose": event.purpose,
            "legal_basis": event.legal_basis.value if event.legal_basis else None,
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

    def _remember(
        self,
        ctx: Context,
        subject: SubjectState | None,
        recipient: Recipient | None,
        kind: str | None,
        outcome: Outcome,
        fired: list[tuple[str, str]],
        edge: EdgeKey,
        record: dict[str, Any] | None,
        offset: int,
    ) -> SubjectState:
        """What the subject's lineage keeps of a transfer: who received what, and the
        alerts a late consent may still retract."""
        event = ctx.event
        subject = subject if subject is not None else SubjectState()
        if subject.applied >= offset:
            return subject  # delivered again: already counted
        rid = event.recipient or ""
        facts = subject.recipients.get(rid)
        if facts is None:
            facts = subject.recipients[rid] = RecipientFacts(
                name=recipient.name if recipient is not None else rid,
                kind=kind or "unknown",
                country=recipient.country_code if recipient is not None else "",
            )
        facts.categories.update(event.categories)
        facts.purposes.add(event.purpose)
        facts.bases.add(event.legal_basis.value if event.legal_basis else "unstated")
        facts.forms.add(event.form.value)
        facts.seen_at(event.occurred_at, ctx.posix)
        facts.events += 1
        facts.personal += ctx.personal
        for rule_id, _ in fired:
            facts.breaches[rule_id] = facts.breaches.get(rule_id, 0) + 1
        if record is not None:
            facts.records.append(record["record_id"])
        retractable = [a for a in outcome.alerts if a["rule"] in RETRACTABLE]
        self._advance(subject, ctx.posix)
        if retractable:
            subject.pending.append(
                PendingEvent(
                    at=ctx.posix,
                    offset=offset,
                    event=event.model_dump(mode="json", exclude_none=True),
                    alerts=retractable,
                    fired=list(fired),
                    edge=edge,
                )
            )
        subject.applied = offset
        self.state.subjects[event.subject or ""] = subject
        return subject

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
            if len(self._judgments) >= _JUDGMENT_CACHE_SIZE:
                self._judgments.clear()
            self._judgments[key] = cached
        return cached

    # -- outputs and partials --------------------------------------------------------------------

    def _alert(
        self,
        spec: RuleSpec,
        *,
        event_id: str,
        occurred_at: datetime | str,
        source: str,
        recipient: str | None,
        recipient_kind: str | None,
        subject: str | None,
        categories: list[str],
        message: str,
        evidence: dict[str, Any],
    ) -> dict[str, Any]:
        """An alert record; ``occurred_at`` as text when the caller has made it already."""
        stats = self.stats
        severity = self._severity[spec.id]
        stats.alerts += 1
        stats.by_article[spec.article] += 1
        stats.by_severity[severity] += 1
        stats.by_rule[spec.id] += 1
        return {
            "alert_id": alert_id(spec.id, event_id),
            "rule": spec.id,
            "article": spec.article,
            "severity": severity,
            "event_id": event_id,
            "occurred_at": occurred_at if isinstance(occurred_at, str) else occurred_at.isoformat(),
            "source": source,
            "recipient": recipient,
            "recipient_kind": recipient_kind,
            "subject": subject,
            "categories": categories,
            "policy_version": self.policy.version,
            "message": message,
            "evidence": evidence,
            "status": "open",
        }

    def _fold_incident(
        self,
        spec: RuleSpec,
        source: str,
        recipient: str | None,
        event: AccessEvent | ConsentEvent,
        offset: int,
        posix: float | None = None,
    ) -> str:
        key = (spec.id, source, recipient)
        iid = self._incident_ids.get(key)
        if iid is None:
            iid = incident_id(spec.id, source, recipient)
            if len(self._incident_ids) >= _JUDGMENT_CACHE_SIZE:
                self._incident_ids.clear()
            self._incident_ids[key] = iid
        partial = self.state.incidents.get(iid)
        if partial is None:
            partial = IncidentPartial(rule=spec.id, source=source, recipient=recipient)
        if partial.applied < offset:
            keep = IncidentPartial.SAMPLES
            if spec.retractable:
                keep += IncidentPartial.RESERVE
            partial.add(event.occurred_at, event.event_id, posix, keep)
            partial.applied = offset
            self.state.incidents[iid] = partial
        return iid

    def _fold_edge(
        self,
        key: EdgeKey,
        at: datetime,
        posix: float,
        shape: Shape,
        offset: int,
        personal: bool,
        fired: list[tuple[str, str]],
        day: str = "",
    ) -> None:
        edges = self.state.edges
        aggregate = edges.get(key)
        if aggregate is None:
            aggregate = EdgeAggregate()
        elif aggregate.applied >= offset:
            return
        aggregate.add(at, shape, personal, fired, posix, day)
        aggregate.applied = offset
        edges[key] = aggregate
