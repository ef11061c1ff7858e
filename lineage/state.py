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

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas import ConsentStatus

__all__ = [
    "ConsentDecision",
    "ConsentLedger",
    "EdgeAggregate",
    "EdgeKey",
    "IncidentPartial",
    "State",
    "edge_key_from_str",
    "edge_key_to_str",
]

#: ("system", source, "") for what a system holds; ("flow", from, to) for a transfer.
EdgeKey = tuple[str, str, str]


def edge_key_to_str(key: EdgeKey) -> str:
    return "|".join(key)


def edge_key_from_str(text: str) -> EdgeKey:
    relation, src, dst = text.split("|", 2)
    return relation, src, dst


def _bump(counter: dict[str, int], key: str, by: int = 1) -> None:
    counter[key] = counter.get(key, 0) + by


def _iso(moment: datetime) -> str:
    return moment.isoformat()


@dataclass(slots=True)
class ConsentDecision:
    """One consent event as the rules need it."""

    occurred_at: datetime
    recipient: str  # a recipient id or "*"
    purposes: frozenset[str] | None  # None: all purposes
    status: ConsentStatus
    event_id: str
    offset: int  # where it stood in its partition: judgments use only earlier decisions
    reference: str | None = None

    def covers(self, recipient: str, purpose: str) -> bool:
        return (self.recipient == "*" or self.recipient == recipient) and (
            self.purposes is None or purpose in self.purposes
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "at": _iso(self.occurred_at),
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


@dataclass(slots=True)
class ConsentLedger:
    """A subject's consent decisions, in arrival order."""

    decisions: list[ConsentDecision] = field(default_factory=list)
    applied: int = -1

    def known_before(self, offset: int) -> tuple[ConsentDecision, ...]:
        return tuple(d for d in self.decisions if d.offset < offset)

    def to_json(self) -> dict[str, Any]:
        return {"d": [d.to_json() for d in self.decisions], "applied": self.applied}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConsentLedger:
        return cls([ConsentDecision.from_json(d) for d in data["d"]], data["applied"])


@dataclass(slots=True)
class EdgeAggregate:
    """What went along one edge of the lineage graph, summed over events."""

    count: int = 0
    personal: int = 0  # events that carried personal data
    breaching: int = 0  # events that broke at least one article
    categories: dict[str, int] = field(default_factory=dict)
    purposes: dict[str, int] = field(default_factory=dict)
    legal_bases: dict[str, int] = field(default_factory=dict)
    forms: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    breaches: dict[str, int] = field(default_factory=dict)  # article -> breaching events
    rules: dict[str, int] = field(default_factory=dict)  # rule id -> breaching events
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    applied: int = -1

    def add(
        self,
        *,
        at: datetime,
        categories: Iterable[str],
        purpose: str,
        legal_basis: str,
        form: str,
        action: str,
        personal: bool,
        rules: Iterable[tuple[str, str]],
    ) -> None:
        """Fold one event in; ``rules`` is (rule id, article) for each breach it raised."""
        self.count += 1
        self.personal += personal
        for category in categories:
            _bump(self.categories, category)
        _bump(self.purposes, purpose)
        _bump(self.legal_bases, legal_basis)
        _bump(self.forms, form)
        _bump(self.actions, action)
        articles = set()
        for rule_id, article in rules:
            _bump(self.rules, rule_id)
            articles.add(article)
        for article in articles:
            _bump(self.breaches, article)
        self.breaching += bool(articles)
        if self.first_seen is None or at < self.first_seen:
            self.first_seen = at
        if self.last_seen is None or at > self.last_seen:
            self.last_seen = at

    def merge(self, other: EdgeAggregate) -> EdgeAggregate:
        """A new aggregate holding both (associative and commutative)."""
        out = EdgeAggregate(
            count=self.count + other.count,
            personal=self.personal + other.personal,
            breaching=self.breaching + other.breaching,
        )
        for name in (
            "categories",
            "purposes",
            "legal_bases",
            "forms",
            "actions",
            "breaches",
            "rules",
        ):
            merged = dict(getattr(self, name))
            for key, n in getattr(other, name).items():
                _bump(merged, key, n)
            setattr(out, name, merged)
        firsts = [t for t in (self.first_seen, other.first_seen) if t is not None]
        lasts = [t for t in (self.last_seen, other.last_seen) if t is not None]
        out.first_seen = min(firsts) if firsts else None
        out.last_seen = max(lasts) if lasts else None
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "personal": self.personal,
            "breaching": self.breaching,
            "categories": self.categories,
            "purposes": self.purposes,
            "legal_bases": self.legal_bases,
            "forms": self.forms,
            "actions": self.actions,
            "breaches": self.breaches,
            "rules": self.rules,
            "first_seen": _iso(self.first_seen) if self.first_seen else None,
            "last_seen": _iso(self.last_seen) if self.last_seen else None,
            "applied": self.applied,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EdgeAggregate:
        return cls(
            count=data["count"],
            personal=data["personal"],
            breaching=data["breaching"],
            categories=dict(data["categories"]),
            purposes=dict(data["purposes"]),
            legal_bases=dict(data["legal_bases"]),
            forms=dict(data["forms"]),
            actions=dict(data["actions"]),
            breaches=dict(data["breaches"]),
            rules=dict(data["rules"]),
            first_seen=datetime.fromisoformat(data["first_seen"]) if data["first_seen"] else None,
            last_seen=datetime.fromisoformat(data["last_seen"]) if data["last_seen"] else None,
            applied=data["applied"],
        )


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

    SAMPLES = 5

    def add(self, at: datetime, event_id: str) -> None:
        self.count += 1
        if self.first_seen is None or at < self.first_seen:
            self.first_seen = at
        if self.last_seen is None or at > self.last_seen:
            self.last_seen = at
        # Keep the earliest few by event time; UTC text sorts as the times do.
        stamp = at.astimezone(UTC).isoformat()
        if len(self.samples) < self.SAMPLES or stamp < self.samples[-1][0]:
            self.samples.append((stamp, event_id))
            self.samples.sort()
            del self.samples[self.SAMPLES :]

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "source": self.source,
            "recipient": self.recipient,
            "count": self.count,
            "first_seen": _iso(self.first_seen) if self.first_seen else None,
            "last_seen": _iso(self.last_seen) if self.last_seen else None,
            "samples": self.samples,
            "applied": self.applied,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IncidentPartial:
        return cls(
            rule=data["rule"],
            source=data["source"],
            recipient=data["recipient"],
            count=data["count"],
            first_seen=datetime.fromisoformat(data["first_seen"]) if data["first_seen"] else None,
            last_seen=datetime.fromisoformat(data["last_seen"]) if data["last_seen"] else None,
            samples=[(at, eid) for at, eid in data["samples"]],
            applied=data["applied"],
        )


@dataclass(slots=True)
class State:
    """The mappings one partition's engine reads and writes.

    ``seen`` maps an event id to the offset it was first applied at (dedup);
    ``consents`` a subject to its ledger; ``edges`` an edge key to its aggregate;
    ``incidents`` an incident id to this partition's share.
    """

    seen: MutableMapping[str, int] = field(default_factory=dict)
    consents: MutableMapping[str, ConsentLedger] = field(default_factory=dict)
    edges: MutableMapping[EdgeKey, EdgeAggregate] = field(default_factory=dict)
    incidents: MutableMapping[str, IncidentPartial] = field(default_factory=dict)
