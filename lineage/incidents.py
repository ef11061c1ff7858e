"""Incidents: alerts grouped by (rule, source, recipient) for people and pagers (docs/contract.md).

Every breaching event is still an alert; an incident counts them (less the alerts
a late consent retracted). The board merges per-partition partials: a partial
replaces the previous one from the same partition when it applied a later offset,
so a redelivered partial changes nothing. It decides when to publish: when the
incident opens, when its count has grown by ``factor`` since the last publication,
when a breach comes after ``quiet`` (event time) without any, and on
:meth:`IncidentBoard.flush` for whatever changed since (a count that went down
too). So a million identical breaches are about twenty messages, never a million.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from lineage.rules import CATALOGUE
from lineage.schemas.judged import iso_text
from lineage.state import INCIDENT_SAMPLES, IncidentPartial

__all__ = ["BoardEntry", "IncidentBoard"]


@dataclass(slots=True)
class BoardEntry:
    """An incident's partials by partition and what was last published of it."""

    partials: dict[int, IncidentPartial] = field(default_factory=dict)
    published_count: int = 0
    opened: bool = False  # published at least once (a count may go back to 0)
    #: The latest breach time of its partials, as of the last update.
    last: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "partials": {str(p): v.to_json() for p, v in self.partials.items()},
            "published_count": self.published_count,
            "opened": self.opened,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BoardEntry:
        entry = cls(
            partials={int(p): IncidentPartial.from_json(v) for p, v in data["partials"].items()},
            published_count=data["published_count"],
            opened=data.get("opened", data["published_count"] > 0),
        )
        seen = [p.last_seen for p in entry.partials.values() if p.last_seen is not None]
        entry.last = max(seen) if seen else None
        return entry


class IncidentBoard:
    """Merges incident partials from every partition and decides what to publish."""

    def __init__(
        self,
        entries: MutableMapping[str, BoardEntry] | None = None,
        *,
        factor: float = 2.0,
        quiet: timedelta = timedelta(hours=1),
    ) -> None:
        if factor <= 1:
            raise ValueError(f"factor must be above 1, got {factor}")
        self.entries: MutableMapping[str, BoardEntry] = entries if entries is not None else {}
        self.factor = factor
        self.quiet = quiet

    def update(
        self, incident_id: str, partition: int, partial: IncidentPartial, *, live: bool = False
    ) -> dict[str, Any] | None:
        """Take a partition's latest partial; return an incident to publish, or None.

        ``live``: the partial is the one its engine changes in place, after each change
        (an embedded run), held rather than copied; otherwise a partial is a new one,
        applied only when it applied later offsets than the one held (a redelivered or
        stale partial changes nothing).
        """
        entry = self.entries.get(incident_id) or BoardEntry()
        if not live:
            previous = entry.partials.get(partition)
            if previous is not None and previous.applied >= partial.applied:
                return None
        before = entry.last
        entry.partials[partition] = partial
        last = partial.last_seen
        if last is not None and (before is None or last > before):
            entry.last = last
        # A quiet period ended: the newest breach came ``quiet`` (event time) after the one
        # before it. While breaches keep coming, only growth by ``factor`` republishes.
        woke = before is not None and last is not None and last - before >= self.quiet
        publication = self._maybe_publish(incident_id, entry, force=woke)
        self.entries[incident_id] = entry
        return publication

    def flush(self) -> list[dict[str, Any]]:
        """Publish every incident whose count changed since its last publication."""
        out = []
        for incident_id in list(self.entries):
            entry = self.entries[incident_id]
            publication = self._maybe_publish(incident_id, entry, force=True)
            if publication is not None:
                self.entries[incident_id] = entry
                out.append(publication)
        return out

    def current(self, incident_id: str) -> dict[str, Any] | None:
        """The incident as it stands now (not a publication)."""
        entry = self.entries.get(incident_id)
        if entry is None or not entry.partials:
            return None
        return self._render(incident_id, entry, "updated" if entry.published_count else "open")

    def _maybe_publish(
        self, incident_id: str, entry: BoardEntry, *, force: bool
    ) -> dict[str, Any] | None:
        count = sum(p.count for p in entry.partials.values())
        if count == entry.published_count:
            return None
        if entry.published_count == 0 and count > 0 and not entry.opened:
            status = "open"
        elif force or count >= entry.published_count * self.factor:
            status = "updated"
        else:
            return None
        entry.opened = True
        entry.published_count = count
        return self._render(incident_id, entry, status)

    def _render(self, incident_id: str, entry: BoardEntry, status: str) -> dict[str, Any]:
        partials = list(entry.partials.values())
        head = partials[0]
        spec = CATALOGUE.get(head.rule)
        samples = sorted(s for p in partials for s in p.samples)[:INCIDENT_SAMPLES]
        return {
            "incident_id": incident_id,
            "rule": head.rule,
            "article": spec.article if spec else "",
            "severity": spec.severity.value if spec else "low",
            "source": head.source,
            "recipient": head.recipient,
            "count": sum(p.count for p in partials),
            "first_seen": iso_text(min(p.first_seen for p in partials if p.first_seen)),
            "last_seen": iso_text(max(p.last_seen for p in partials if p.last_seen)),
            "sample_event_ids": [event_id for _, event_id in samples],
            "status": status,
        }
