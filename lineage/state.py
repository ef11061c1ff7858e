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

from schemas import ConsentStatus

__all__ = [
    "ConsentDecision",
    "ConsentLedger",
    "EdgeAggregate",
    "EdgeKey",
    "IncidentPartial",
    "Shape",
    "State",
    "edge_key_from_str",
    "edge_key_to_str",
]

#: ("system", source, "") for what a system used without passing it on; ("flow", source,
#: recipient) for a transfer; ("onward", via, recipient) for a recipient passing data on.
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
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    applied: int = -1
    # The same instants as POSIX seconds: comparing aware datetimes with different
    # tzinfo objects costs more than the rest of ``add``.
    _first: float = float("inf")
    _last: float = float("-inf")

    def add(
        self,
        at: datetime,
        shape: Shape,
        personal: bool,
        rules: list[tuple[str, str]],
        posix: float | None = None,
    ) -> None:
        """Fold one event in; ``rules`` is (rule id, article) for each breach it raised;
        ``posix`` is ``at`` as POSIX seconds when the caller has it."""
        self.count += 1
        self.personal += personal
        self.shapes[shape] = self.shapes.get(shape, 0) + 1
        if rules:
            articles = set()
            for rule_id, article in rules:
                _bump(self.rules, rule_id)
                articles.add(article)
            for article in articles:
                _bump(self.breaches, article)
            self.breaching += 1
        ts = at.timestamp() if posix is None else posix
        if ts < self._first:
            self._first, self.first_seen = ts, at
        if ts > self._last:
            self._last, self.last_seen = ts, at

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
        )
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
            "first_seen": _iso(self.first_seen) if self.first_seen else None,
            "last_seen": _iso(self.last_seen) if self.last_seen else None,
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
            first_seen=first,
            last_seen=last,
            applied=data["applied"],
            _first=first.timestamp() if first else float("inf"),
            _last=last.timestamp() if last else float("-inf"),
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
