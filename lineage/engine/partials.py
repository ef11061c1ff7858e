"""The partials judging folds events into: edges of the lineage graph, incidents.

Each record carries the offset it applied up to: an event at or below it is folded in
already (at-least-once delivery), and a retraction at or below it is taken off
already (:meth:`Partials.settle`).
"""

from __future__ import annotations

from datetime import datetime

from lineage.engine.outputs import incident_id
from lineage.rules import RuleSpec
from lineage.state import (
    INCIDENT_RESERVE,
    INCIDENT_SAMPLES,
    EdgeAggregate,
    EdgeKey,
    EdgeRetraction,
    IncidentPartial,
    Shape,
    State,
    SubjectState,
)

__all__ = ["Partials"]

_IDS_CACHED = 65_536


class Partials:
    """Folds events into one partition's edge and incident partials."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._incident_ids: dict[tuple[str, str, str | None], str] = {}

    def incident_id(self, rule: str, source: str, recipient: str | None) -> str:
        key = (rule, source, recipient)
        iid = self._incident_ids.get(key)
        if iid is None:
            iid = incident_id(rule, source, recipient)
            if len(self._incident_ids) >= _IDS_CACHED:
                self._incident_ids.clear()
            self._incident_ids[key] = iid
        return iid

    def incident(
        self,
        spec: RuleSpec,
        source: str,
        recipient: str | None,
        at: datetime,
        event_id: str,
        offset: int,
        posix: float | None = None,
    ) -> str:
        """Count one breach of ``spec`` in its incident; return the incident's id."""
        iid = self.incident_id(spec.id, source, recipient)
        incidents = self.state.incidents
        partial = incidents.get(iid)
        if partial is None:
            partial = IncidentPartial(rule=spec.id, source=source, recipient=recipient)
        if partial.applied < offset:
            keep = INCIDENT_SAMPLES
            if spec.retractable:
                keep += INCIDENT_RESERVE
            partial.add(at, event_id, posix, keep)
            partial.applied = offset
            incidents[iid] = partial
        return iid

    def edge(
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

    def settle(self, subject: SubjectState, offset: int) -> None:
        """Take the retractions of the consent at ``offset`` off the incident partials and
        edges, each record at most once: a record whose ``applied`` has reached the
        consent has them already. So a consent that retracts two breaches of one
        incident or edge takes both off, and one delivered again after a crash that
        wrote some records of a flush and not others completes the rest."""
        incidents = self.state.incidents
        by_incident: dict[str, list[str]] = {}
        for retraction in subject.retracted:
            if retraction.offset == offset:
                iid = self.incident_id(retraction.rule, retraction.source, retraction.recipient)
                by_incident.setdefault(iid, []).append(retraction.event_id)
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
