"""The engine's state records, kept behind plain mappings.

The embedded run keeps them in dicts; the stream processors keep them in faust
tables (changelog-backed), converting with ``to_json``/``from_json`` at batch
boundaries. Every record carries ``applied``: the source offset of the last
event folded into it. An event at or below it is not folded in again, so a
redelivered event (at-least-once) changes no count; the value and its
watermark travel in the same changelog record, so no transaction is needed.

Aggregates merge associatively and commutatively (sum counts, min first seen,
max last seen, union of sets): the global graph is the merge of every
partition's partials, in any order.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lineage.schemas import ConsentStatus
from lineage.schemas.judged import iso_text, posix_of

__all__ = [
    "INCIDENT_RESERVE",
    "INCIDENT_SAMPLES",
    "ConsentDecision",
    "EdgeAggregate",
    "EdgeKey",
    "IncidentPartial",
    "PendingEvent",
    "Retraction",
    "Shape",
    "State",
    "SubjectState",
    "edge_key_from_str",
    "edge_key_to_str",
    "posix_of",
]

#: ("system", source, "") for what a system used without passing it on; ("flow", source,
#: recipient) for a transfer; ("onward", via, recipient) for a recipient passing data on.
EdgeKey = tuple[str, str, str]
#: What a retraction took off an edge: (consent offset, edge, (rule, article) retracted,
#: (rule, article) the event still breaches, the event's day).
EdgeRetraction = tuple[int, EdgeKey, list[tuple[str, str]], list[tuple[str, str]], str]


def edge_key_to_str(key: EdgeKey) -> str:
    return "|".join(key)


def edge_key_from_str(text: str) -> EdgeKey:
    relation, src, dst = text.split("|", 2)
    return relation, src, dst


def _bump(counter: dict[str, int], key: str, by: int = 1) -> None:
    counter[key] = counter.get(key, 0) + by


def _drop(counter: dict[str, int], key: str) -> None:
    n = counter.get(key, 0) - 1
    if n > 0:
        counter[key] = n
    else:
        counter.pop(key, None)


@dataclass(slots=True, init=False)
class ConsentDecision:
    """One consent event as the rules need it (its ``__init__`` written out, to run
    compiled: :mod:`lineage.compiled`)."""

    occurred_at: datetime
    recipient: str  # a recipient id or "*"
    purposes: frozenset[str] | None  # None: all purposes
    status: ConsentStatus
    event_id: str
    offset: int  # where it stood in its partition: judgments use only earlier decisions
    reference: str | None

    def __init__(
        self,
        occurred_at: datetime,
        recipient: str,
        purposes: frozenset[str] | None,
        status: ConsentStatus,
        event_id: str,
        offset: int,
        reference: str | None = None,
    ) -> None:
        self.occurred_at = occurred_at
        self.recipient = recipient
        self.purposes = purposes
        self.status = status
        self.event_id = event_id
        self.offset = offset
        self.reference = reference

    def covers(self, recipient: str, purpose: str) -> bool:
        return (self.recipient == "*" or self.recipient == recipient) and (
            self.purposes is None or purpose in self.purposes
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso_text(self.occurred_at),
            "r": self.recipient,
            "p": sorted(self.purposes) if self.purposes is not None else None,
            "s": self.status.value,
            "id": self.event_id,
            "o": self.offset,
            "ref": self.reference,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConsentDecision:
        return cls(
            occurred_at=datetime.fromisoformat(data["at"]),
            recipient=data["r"],
            purposes=frozenset(data["p"]) if data["p"] is not None else None,
            status=ConsentStatus(data["s"]),
            event_id=data["id"],
            offset=data["o"],
            reference=data.get("ref"),
        )


@dataclass(slots=True, init=False)
class PendingEvent:
    """An access event whose alerts a consent that arrives late may still retract: what a
    retraction needs of it, never the event (CONTRACT section 10).

    ``alerts`` are the rules of its alerts that such a consent could prevent (Art. 9,
    APPI Art. 28) and that still stand; ``fired`` every (rule, article) the event
    raised, so that its breach counts can be lowered right. The rest is what the rules
    read to judge it again with the consent, and to say again the alert it raised:
    the event's id, its time as written (``occurred``) and as POSIX seconds (``at``),
    its source, recipient (and the recipient's kind), ``via``, purpose, legal basis and
    categories.
    """

    at: float
    offset: int
    occurred: str
    event_id: str
    source: str
    recipient: str
    kind: str | None
    via: str | None
    purpose: str
    basis: str | None
    categories: list[str]
    alerts: list[str]
    fired: list[tuple[str, str]]
    edge: EdgeKey

    def __init__(
        self,
        at: float,
        offset: int,
        occurred: str,
        event_id: str,
        source: str,
        recipient: str,
        kind: str | None,
        via: str | None,
        purpose: str,
        basis: str | None,
        categories: list[str],
        alerts: list[str],
        fired: list[tuple[str, str]],
        edge: EdgeKey,
    ) -> None:
        # Written out, to run compiled (lineage.compiled).
        self.at = at
        self.offset = offset
        self.occurred = occurred
        self.event_id = event_id
        self.source = source
        self.recipient = recipient
        self.kind = kind
        self.via = via
        self.purpose = purpose
        self.basis = basis
        self.categories = categories
        self.alerts = alerts
        self.fired = fired
        self.edge = edge

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "o": self.offset,
            "t": self.occurred,
            "id": self.event_id,
            "s": self.source,
            "r": self.recipient,
            "k": self.kind,
            "v": self.via,
            "p": self.purpose,
            "b": self.basis,
            "c": self.categories,
            "a": self.alerts,
            "f": [list(f) for f in self.fired],
            "g": list(self.edge),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PendingEvent:
        if "e" in data:  # kept whole by a worker before 2026-12: its facts are taken out
            event, alerts = data["e"], data["a"]
            return cls(
                at=data["at"],
                offset=data["o"],
                occurred=alerts[0]["occurred_at"] if alerts else event["occurred_at"],
                event_id=event["event_id"],
                source=event["source"],
                recipient=event.get("recipient", ""),
                kind=alerts[0]["recipient_kind"] if alerts else None,
                via=event.get("via"),
                purpose=event["purpose"],
                basis=event.get("legal_basis"),
                categories=list(event["categories"]),
                alerts=[a["rule"] for a in alerts],
                fired=[(r, a) for r, a in data["f"]],
                edge=(data["g"][0], data["g"][1], data["g"][2]),
            )
        return cls(
            at=data["at"],
            offset=data["o"],
            occurred=data["t"],
            event_id=data["id"],
            source=data["s"],
            recipient=data["r"],
            kind=data["k"],
            via=data["v"],
            purpose=data["p"],
            basis=data["b"],
            categories=list(data["c"]),
            alerts=list(data["a"]),
            fired=[(r, a) for r, a in data["f"]],
            edge=(data["g"][0], data["g"][1], data["g"][2]),
        )


@dataclass(slots=True)
class Retraction:
    """An alert a consent retracted: that consent's offset and event id, the rule, and the
    event's facts (:class:`PendingEvent`), from which the retraction is said again when
    the consent is delivered again. ``record`` holds, instead, a whole retraction record
    kept by a worker before 2026-12."""

    offset: int
    consent: str
    rule: str
    event: PendingEvent | None = None
    record: dict[str, Any] | None = None

    @property
    def event_id(self) -> str:
        return self.event.event_id if self.event is not None else str(self.record["event_id"])  # type: ignore[index]

    @property
    def source(self) -> str:
        return self.event.source if self.event is not None else str(self.record["source"])  # type: ignore[index]

    @property
    def recipient(self) -> str | None:
        if self.event is not None:
            return self.event.recipient
        return self.record["recipient"]  # type: ignore[index,no-any-return]

    def to_json(self) -> list[Any]:
        if self.record is not None:
            return [self.offset, self.record]
        assert self.event is not None
        return [self.offset, self.consent, self.rule, self.event.to_json()]

    @classmethod
    def from_json(cls, data: list[Any]) -> Retraction:
        if len(data) == 2:
            offset, record = data
            return cls(offset, str(record["retracted_by"]), str(record["rule"]), record=record)
        offset, consent, rule, event = data
        return cls(offset, consent, rule, PendingEvent.from_json(event))


@dataclass(slots=True, init=False)
class SubjectState:
    """What judging keeps of one data subject: its consent decisions, and the alerts a
    late consent may still retract. Its size grows with the subject's consents, never
    with its events: what each recipient received is the subject's lineage, a view
    (:mod:`lineage.view`), kept apart.

    ``decisions`` in arrival order; ``pending`` the events whose alerts a late consent
    may still retract; ``retracted`` the last retractions (:class:`Retraction`), so that
    a consent event delivered again says its retractions again; ``unbreached``
    (consent offset, edge, rules retracted, rules remaining, day): what each retraction
    took off an edge, so that a consent delivered again can take it off an edge record
    that was not written with this one; ``newest`` the newest event time seen for the
    subject while alerts are pending (POSIX seconds).
    """

    decisions: list[ConsentDecision]
    pending: list[PendingEvent]
    retracted: list[Retraction]
    unbreached: list[EdgeRetraction]
    newest: float
    applied: int
    #: How many of ``decisions`` a store holds already (it writes them apart, and only
    #: when a decision was added: what is written per event does not grow with them).
    stored_decisions: int

    def __init__(
        self,
        decisions: list[ConsentDecision] | None = None,
        pending: list[PendingEvent] | None = None,
        retracted: list[Retraction] | None = None,
        unbreached: list[EdgeRetraction] | None = None,
        newest: float = float("-inf"),
        applied: int = -1,
        stored_decisions: int = 0,
    ) -> None:
        # Written out, to run compiled (lineage.compiled); each list its own.
        self.decisions = [] if decisions is None else decisions
        self.pending = [] if pending is None else pending
        self.retracted = [] if retracted is None else retracted
        self.unbreached = [] if unbreached is None else unbreached
        self.newest = newest
        self.applied = applied
        self.stored_decisions = stored_decisions

    def known_before(self, offset: int) -> tuple[ConsentDecision, ...]:
        return tuple(d for d in self.decisions if d.offset < offset)

    def to_json(self, decisions: bool = True) -> dict[str, Any]:
        """The record; without the decisions when ``decisions`` is False (a store that
        keeps them apart: :meth:`decisions_json`)."""
        data: dict[str, Any] = (
            {"d": self.decisions_json()} if decisions else {"dn": len(self.decisions)}
        )
        data.update(self._clock_json())
        return data

    def decisions_json(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        return [d.to_json() for d in self.decisions[start:stop]]

    def _clock_json(self) -> dict[str, Any]:
        return {
            "p": [p.to_json() for p in self.pending],
            "x": [r.to_json() for r in self.retracted],
            "xe": [
                [o, list(edge), [list(f) for f in gone], [list(f) for f in kept], day]
                for o, edge, gone, kept, day in self.unbreached
            ],
            "n": self.newest if self.newest != float("-inf") else None,
            "applied": self.applied,
        }

    @classmethod
    def from_json(
        cls, data: dict[str, Any], decisions: list[dict[str, Any]] | None = None
    ) -> SubjectState:
        """The record ``to_json`` made; ``decisions`` when they were kept apart."""
        newest = data.get("n")
        held = decisions if decisions is not None else data.get("d", [])
        return cls(
            decisions=[ConsentDecision.from_json(d) for d in held],
            stored_decisions=len(held),
            pending=[PendingEvent.from_json(p) for p in data.get("p", [])],
            retracted=[Retraction.from_json(x) for x in data.get("x", [])],
            unbreached=[
                (
                    o,
                    (edge[0], edge[1], edge[2]),
                    [(r, a) for r, a in gone],
                    [(r, a) for r, a in kept],
                    day,
                )
                for o, edge, gone, kept, day in data.get("xe", [])
            ],
            newest=float("-inf") if newest is None else newest,
            applied=data["applied"],
        )


#: The shape of one event on an edge: (categories, purpose, legal basis, form, action).
Shape = tuple[tuple[str, ...], str, str, str, str]


@dataclass(slots=True)
class EdgeAggregate:
    """What went along one edge of the lineage graph, summed over events.

    Events are counted by their shape (categories, purpose, legal basis, form,
    action): one dict update per event on the hot path, and the per-category,
    per-purpose... counts are derived from the shapes when the graph is drawn.
    """

    count: int = 0
    personal: int = 0  # events that carried personal data
    breaching: int = 0  # events that broke at least one article
    shapes: dict[Shape, int] = field(default_factory=dict)
    breaches: dict[str, int] = field(default_factory=dict)  # article -> breaching events
    rules: dict[str, int] = field(default_factory=dict)  # rule id -> breaching events
    days: dict[str, int] = field(default_factory=dict)  # policy day (ISO) -> events
    breach_days: dict[str, int] = field(default_factory=dict)  # day -> breaching events
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    applied: int = -1
    # The same instants as POSIX seconds: comparing aware datetimes with different
    # tzinfo objects costs more than the rest of ``add``.
    _first: float = float("inf")
    _last: float = float("-inf")
    #: Days whose counts changed since a store last wrote them (a store that keeps the
    #: days apart rewrites those alone); not part of the value.
    touched: set[str] = field(default_factory=set, compare=False, repr=False)

    def add(
        self,
        at: datetime,
        shape: Shape,
        personal: bool,
        rules: list[tuple[str, str]],
        posix: float | None = None,
        day: str = "",
    ) -> None:
        """Fold one event in; ``rules`` is (rule id, article) for each breach it raised;
        ``posix`` is ``at`` as POSIX seconds when the caller has it; ``day`` its day in
        the policy's calendar (ISO)."""
        self.count += 1
        self.personal += personal
        shapes = self.shapes
        shapes[shape] = shapes.get(shape, 0) + 1
        if day:
            days = self.days
            days[day] = days.get(day, 0) + 1
            self.touched.add(day)
        if rules:
            counts = self.rules
            for rule_id, _ in rules:
                counts[rule_id] = counts.get(rule_id, 0) + 1
            breaches = self.breaches
            for article in {article for _, article in rules}:
                breaches[article] = breaches.get(article, 0) + 1
            self.breaching += 1
            if day:
                breach_days = self.breach_days
                breach_days[day] = breach_days.get(day, 0) + 1
        ts = posix_of(at) if posix is None else posix
        if ts < self._first:
            self._first, self.first_seen = ts, at
        if ts > self._last:
            self._last, self.last_seen = ts, at

    def retract(
        self, retracted: list[tuple[str, str]], remaining: list[tuple[str, str]], day: str = ""
    ) -> None:
        """Take back breaches of one event that a late consent retracted; ``remaining``
        are the (rule, article) the event still breaches."""
        for rule_id, _ in retracted:
            _drop(self.rules, rule_id)
        before = {a for _, a in retracted} | {a for _, a in remaining}
        after = {a for _, a in remaining}
        for article in before - after:
            _drop(self.breaches, article)
        if not after:
            self.breaching -= 1
            if day:
                _drop(self.breach_days, day)
                self.touched.add(day)

    def _tally(self, index: int) -> dict[str, int]:
        out: dict[str, int] = {}
        for shape, n in self.shapes.items():
            _bump(out, shape[index], n)  # type: ignore[arg-type]
        return dict(sorted(out.items()))

    @property
    def categories(self) -> dict[str, int]:
        """Events per category (an event counts once for each category it carried)."""
        out: dict[str, int] = {}
        for (categories, *_), n in self.shapes.items():
            for category in categories:
                _bump(out, category, n)
        return dict(sorted(out.items()))

    @property
    def purposes(self) -> dict[str, int]:
        return self._tally(1)

    @property
    def legal_bases(self) -> dict[str, int]:
        return self._tally(2)

    @property
    def forms(self) -> dict[str, int]:
        return self._tally(3)

    @property
    def actions(self) -> dict[str, int]:
        return self._tally(4)

    def merge(self, other: EdgeAggregate) -> EdgeAggregate:
        """A new aggregate holding both (associative and commutative)."""
        out = EdgeAggregate(
            count=self.count + other.count,
            personal=self.personal + other.personal,
            breaching=self.breaching + other.breaching,
            shapes=dict(self.shapes),
            breaches=dict(self.breaches),
            rules=dict(self.rules),
            days=dict(self.days),
            breach_days=dict(self.breach_days),
        )
        for day, n in other.days.items():
            _bump(out.days, day, n)
        for day, n in other.breach_days.items():
            _bump(out.breach_days, day, n)
        for shape, n in other.shapes.items():
            out.shapes[shape] = out.shapes.get(shape, 0) + n
        for key, n in other.breaches.items():
            _bump(out.breaches, key, n)
        for key, n in other.rules.items():
            _bump(out.rules, key, n)
        firsts = [t for t in (self.first_seen, other.first_seen) if t is not None]
        lasts = [t for t in (self.last_seen, other.last_seen) if t is not None]
        out.first_seen = min(firsts) if firsts else None
        out.last_seen = max(lasts) if lasts else None
        out._first = out.first_seen.timestamp() if out.first_seen else float("inf")
        out._last = out.last_seen.timestamp() if out.last_seen else float("-inf")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "personal": self.personal,
            "breaching": self.breaching,
            "shapes": [[list(s[0]), s[1], s[2], s[3], s[4], n] for s, n in self.shapes.items()],
            "breaches": self.breaches,
            "rules": self.rules,
            "days": self.days,
            "breach_days": self.breach_days,
            "first_seen": iso_text(self.first_seen) if self.first_seen else None,
            "last_seen": iso_text(self.last_seen) if self.last_seen else None,
            "applied": self.applied,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EdgeAggregate:
        first = datetime.fromisoformat(data["first_seen"]) if data["first_seen"] else None
        last = datetime.fromisoformat(data["last_seen"]) if data["last_seen"] else None
        return cls(
            count=data["count"],
            personal=data["personal"],
            breaching=data["breaching"],
            shapes={(tuple(c), p, lb, f, a): n for c, p, lb, f, a, n in data["shapes"]},
            breaches=dict(data["breaches"]),
            rules=dict(data["rules"]),
            days=dict(data.get("days", {})),
            breach_days=dict(data.get("breach_days", {})),
            first_seen=first,
            last_seen=last,
            applied=data["applied"],
            _first=first.timestamp() if first else float("inf"),
            _last=last.timestamp() if last else float("-inf"),
        )


#: Event ids an incident shows: the earliest standing alerts' (docs/contract.md).
INCIDENT_SAMPLES = 5
#: Kept beyond those for a rule whose alerts a late consent may retract: a sample
#: retracted is replaced by the next earliest standing one.
INCIDENT_RESERVE = 15


@dataclass(slots=True)
class IncidentPartial:
    """One partition's share of an incident (rule, source, recipient)."""

    rule: str
    source: str
    recipient: str | None
    count: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    samples: list[tuple[str, str]] = field(default_factory=list)  # (UTC time, event id)
    applied: int = -1
    # first_seen, last_seen and the latest sample's time as POSIX seconds (comparing
    # aware datetimes costs more than the rest of ``add``).
    _first: float = float("inf")
    _last: float = float("-inf")
    _latest_sample: float = float("inf")

    def add(
        self, at: datetime, event_id: str, posix: float | None = None, keep: int = INCIDENT_SAMPLES
    ) -> None:
        """Count one breach at ``at`` (``posix``: the same instant as POSIX seconds);
        ``keep`` the earliest breaches' samples to hold."""
        self.count += 1
        ts = posix_of(at) if posix is None else posix
        if ts < self._first:
            self._first, self.first_seen = ts, at
        if ts > self._last:
            self._last, self.last_seen = ts, at
        # Keep the earliest few by event time; UTC text sorts as the times do. In a stream
        # in time order a breach is seldom among them: the text is made only when it is.
        if len(self.samples) < keep or ts < self._latest_sample:
            self.samples.append((at.astimezone(UTC).isoformat(), event_id))
            self.samples.sort()
            del self.samples[keep:]
            self._latest_sample = datetime.fromisoformat(self.samples[-1][0]).timestamp()

    def retract(self, event_id: str) -> None:
        """Take one breach back (a late consent retracted its alert)."""
        self.count -= 1
        self.samples = [s for s in self.samples if s[1] != event_id]
        self._latest_sample = _latest(self.samples)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "source": self.source,
            "recipient": self.recipient,
            "count": self.count,
            "first_seen": iso_text(self.first_seen) if self.first_seen else None,
            "last_seen": iso_text(self.last_seen) if self.last_seen else None,
            "samples": self.samples,
            "applied": self.applied,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IncidentPartial:
        first = datetime.fromisoformat(data["first_seen"]) if data["first_seen"] else None
        last = datetime.fromisoformat(data["last_seen"]) if data["last_seen"] else None
        samples = [(at, eid) for at, eid in data["samples"]]
        return cls(
            rule=data["rule"],
            source=data["source"],
            recipient=data["recipient"],
            count=data["count"],
            first_seen=first,
            last_seen=last,
            samples=samples,
            applied=data["applied"],
            _first=first.timestamp() if first else float("inf"),
            _last=last.timestamp() if last else float("-inf"),
            _latest_sample=_latest(samples),
        )


def _latest(samples: list[tuple[str, str]]) -> float:
    """The time of the latest of the samples kept, as POSIX seconds (+inf when none)."""
    return datetime.fromisoformat(samples[-1][0]).timestamp() if samples else float("inf")


@dataclass(slots=True)
class State:
    """The mappings one partition's engine reads and writes.

    ``seen`` maps an event id to (the offset it was first applied at, a digest of its
    content) for dedup; ``subjects`` a subject to its :class:`SubjectState`; ``edges``
    an edge key to its aggregate; ``incidents`` an incident id to this partition's share.
    """

    seen: MutableMapping[str, tuple[int, str]] = field(default_factory=dict)
    subjects: MutableMapping[str, SubjectState] = field(default_factory=dict)
    edges: MutableMapping[EdgeKey, EdgeAggregate] = field(default_factory=dict)
    incidents: MutableMapping[str, IncidentPartial] = field(default_factory=dict)
