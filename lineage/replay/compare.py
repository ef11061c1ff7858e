"""Two policies judge the same events: what each raises, and what only one of them does.

Each side is an :class:`~lineage.engine.Engine` on fresh state, fed exactly what
``lineage run`` would feed it with that policy, so each side's alerts, retractions and
provision records are the run's. An event is decoded once and applied on both sides
with the same offset (a running sequence number, strictly increasing, as the engine's
exactness watermarks need). A message may come decoded already (:attr:`Message.scanned`)
by ``lineage.decode_process``: a file's lines as for ``lineage run``
(:func:`~lineage.replay.run.file_messages`), Kafka's messages a fetch ahead as for the
worker (:func:`~lineage.replay.run.decoded_ahead`).

What an alert *raised* means here: it stands at the end. An alert a late consent can
still retract (:data:`~lineage.engine.RETRACTABLE`) is held until the end; any other is
final when raised, and is compared at once with what the other side raised for the
same event, so memory holds the differences, not every alert.
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from lineage.engine import RETRACTABLE, Engine, Outcome, Scanned, dead_letter_record
from lineage.policy.model import Policy
from lineage.redact import Redactor
from lineage.schemas import AccessEvent, Action, ConsentEvent, EventRejected, decode_event
from lineage.schemas.judged import Access

__all__ = ["AlertChange", "Comparison", "Edge", "Message", "RecordChange", "Side"]

log = logging.getLogger("lineage.replay")

#: A flow as the lineage graph draws it: (source, recipient, via); a collect or use has no
#: recipient, and raw personal data in a consent event comes from "consent-platform".
Edge = tuple[str, str | None, str | None]

#: Alerts with no recipient (collect, use) are counted under this name.
NO_RECIPIENT = "(none)"


@dataclass(frozen=True, slots=True)
class Message:
    """One message to judge: its bytes and where it came from (``file:line`` or
    ``topic[partition]@offset``); ``size`` and ``digest`` when only its start was read
    (a line over the size limit); ``scanned`` when the process decoding ahead decoded,
    validated and digested it already, and found no raw personal data in it."""

    raw: bytes
    origin: str
    size: int | None = None
    digest: str | None = None
    scanned: Scanned | None = None


@dataclass(slots=True)
class AlertChange:
    """An alert raised under one policy only: ``added`` (the candidate's) or ``removed``."""

    change: Literal["added", "removed"]
    alert: dict[str, Any]
    edge: Edge
    at: float  # the event time, POSIX seconds: the files are in event-time order

    def sort_key(self) -> tuple[float, str, str, str]:
        return (self.at, self.alert["event_id"], self.alert["rule"], self.change)


@dataclass(slots=True)
class RecordChange:
    """A provision record only one side writes, or both with a different ``lawful``."""

    change: Literal["added", "removed", "lawful-changed"]
    record: dict[str, Any]
    at: float

    def sort_key(self) -> tuple[float, str, str]:
        return (self.at, self.record["event_id"], self.change)


@dataclass(slots=True)
class Side:
    """One policy's judging and what it raised on the reported events."""

    name: Literal["baseline", "candidate"]
    policy: Policy
    engine: Engine
    by_rule: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[str] = field(default_factory=Counter)
    by_edge: dict[Edge, Counter[str]] = field(default_factory=dict)
    records: int = 0
    # Alerts a late consent may still retract: id -> (alert, edge, event time).
    pending: dict[str, tuple[dict[str, Any], Edge, float]] = field(default_factory=dict)

    def judge(
        self,
        event: Access | AccessEvent | ConsentEvent,
        offset: int,
        raw: bytes,
        origin: str,
        scanned: Scanned | None = None,
    ) -> Outcome:
        """:meth:`Engine.apply`, with a failure of the engine set aside as
        :meth:`Engine.process` does: one message never stops the run. ``scanned``:
        the event as the other side's engine redacted and digested it already."""
        try:
            if scanned is None:
                scanned = self.engine.scan(event, raw)
            return self.engine.apply(event, offset=offset, raw=raw, scanned=scanned)
        except Exception as exc:
            where = "; ".join(
                f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
                for frame in traceback.extract_tb(exc.__traceback__)[-3:]
            )
            log.error(
                "%s could not judge the message at %s: %s at %s",
                self.name,
                origin,
                type(exc).__name__,
                where,
            )
            failure = EventRejected(
                f"the monitor could not judge this event ({type(exc).__name__}); it was set "
                "aside for a person to look at",
                field=None,
                kind="internal_error",
            )
            record = dead_letter_record(raw, failure, origin, self.engine.redactor)
            return Outcome("rejected", dead_letter=record)

    def stands(self, alert: dict[str, Any], edge: Edge) -> None:
        """Count an alert that stands at the end."""
        rule = alert["rule"]
        self.by_rule[rule] += 1
        self.by_severity[alert["severity"]] += 1
        counts = self.by_edge.get(edge)
        if counts is None:
            counts = self.by_edge[edge] = Counter()
        counts[rule] += 1


def edge_of(event: Access | AccessEvent | ConsentEvent) -> Edge:
    if isinstance(event, ConsentEvent):
        return ("consent-platform", None, None)
    if event.action is Action.TRANSFER:
        return (event.source, event.recipient, event.via)
    return (event.source, None, None)


class Comparison:
    """Feeds messages to both sides and keeps what differs.

    comparison = Comparison(baseline, candidate, redactor=Redactor(key))
    for message in messages:
        dead = comparison.add(message)   # a dead letter to write, or None
    comparison.finish()
    comparison.alerts, comparison.records, comparison.edge_events ...
    """

    def __init__(
        self,
        baseline: Policy,
        candidate: Policy,
        *,
        redactor: Redactor | None = None,
        consent_lateness: timedelta = timedelta(hours=24),
        report_since: datetime | None = None,
    ) -> None:
        redactor = redactor if redactor is not None else Redactor()
        # One redactor for both: the same raw value gets the same token on each side.
        self.sides = (
            Side("baseline", baseline, Engine(baseline, redactor=redactor,
                                              consent_lateness=consent_lateness)),
            Side("candidate", candidate, Engine(candidate, redactor=redactor,
                                                consent_lateness=consent_lateness)),
        )  # fmt: skip
        self.redactor = redactor
        self.report_since = report_since
        self._since = report_since.timestamp() if report_since is not None else None
        self.messages = 0
        self.events = 0  # judged (not a dead letter, not a duplicate)
        self.reported = 0
        self.duplicates = 0
        self.dead_letters = 0
        self.edge_events: Counter[Edge] = Counter()
        self.alerts: list[AlertChange] = []
        self.records: list[RecordChange] = []
        self._offset = 0
        self._finished = False

    # -- one message -----------------------------------------------------------------------

    def add(self, message: Message) -> dict[str, Any] | None:
        """Judge one message on both sides; returns its dead letter, if it is one."""
        self.messages += 1
        self._offset += 1
        base, cand = self.sides
        if message.digest is not None:
            self.dead_letters += 1
            size = message.size if message.size is not None else len(message.raw)
            refused = base.engine.refuse(
                message.raw, size=size, digest=message.digest, origin=message.origin
            )
            return refused.dead_letter
        scanned = message.scanned
        if scanned is not None:
            event = scanned[0]
        else:
            try:
                event = decode_event(message.raw)
            except EventRejected as rejection:
                self.dead_letters += 1
                return dead_letter_record(message.raw, rejection, message.origin, self.redactor)
            # Redacted and digested once for both sides (one redactor, one key).
            try:
                scanned = base.engine.scan(event, message.raw)
            except Exception:  # each side then sets the message aside as its engine would
                scanned = None
        offset = self._offset
        before = base.judge(event, offset, message.raw, message.origin, scanned)
        after = cand.judge(event, offset, message.raw, message.origin, scanned)
        dead = before.dead_letter or after.dead_letter
        if dead is not None:
            self.dead_letters += 1
        if before.status == "duplicate":
            self.duplicates += 1
        judged = before.status == "judged" or after.status == "judged"
        if not judged:
            return dead
        self.events += 1
        posix = event.occurred_at.timestamp()
        reported = self._since is None or posix >= self._since
        edge = edge_of(event)
        if reported:
            self.reported += 1
            self.edge_events[edge] += 1
        self._alerts(before, after, edge, posix, reported)
        if reported:
            self._records(before, after, posix)
        return dead

    def _alerts(
        self, before: Outcome, after: Outcome, edge: Edge, posix: float, reported: bool
    ) -> None:
        final: list[dict[str, dict[str, Any]]] = [{}, {}]
        for side, outcome, settled in zip(self.sides, (before, after), final, strict=True):
            for alert in outcome.alerts:
                if alert["status"] == "retracted":
                    side.pending.pop(alert["alert_id"], None)
                elif not reported:
                    continue
                elif alert["rule"] in RETRACTABLE:
                    side.pending[alert["alert_id"]] = (alert, edge, posix)
                else:
                    settled[alert["alert_id"]] = alert
        base, cand = self.sides
        for alert_id, alert in final[0].items():
            base.stands(alert, edge)
            if alert_id not in final[1]:
                self.alerts.append(AlertChange("removed", alert, edge, posix))
        for alert_id, alert in final[1].items():
            cand.stands(alert, edge)
            if alert_id not in final[0]:
                self.alerts.append(AlertChange("added", alert, edge, posix))

    def _records(self, before: Outcome, after: Outcome, posix: float) -> None:
        base, cand = self.sides
        was = {r["record_id"]: r for r in before.records}
        now = {r["record_id"]: r for r in after.records}
        base.records += len(was)
        cand.records += len(now)
        for record_id, record in was.items():
            if record_id not in now:
                self.records.append(RecordChange("removed", record, posix))
        for record_id, record in now.items():
            old = was.get(record_id)
            if old is None:
                self.records.append(RecordChange("added", record, posix))
            elif old["lawful"] != record["lawful"]:
                self.records.append(RecordChange("lawful-changed", record, posix))

    # -- the end ---------------------------------------------------------------------------

    def finish(self) -> None:
        """Settle the alerts a late consent could still have retracted, and sort."""
        if self._finished:
            return
        self._finished = True
        base, cand = self.sides
        for alert_id, (alert, edge, posix) in base.pending.items():
            base.stands(alert, edge)
            if alert_id not in cand.pending:
                self.alerts.append(AlertChange("removed", alert, edge, posix))
        for alert_id, (alert, edge, posix) in cand.pending.items():
            cand.stands(alert, edge)
            if alert_id not in base.pending:
                self.alerts.append(AlertChange("added", alert, edge, posix))
        base.pending.clear()
        cand.pending.clear()
        self.alerts.sort(key=AlertChange.sort_key)
        self.records.sort(key=RecordChange.sort_key)

    def run(self, messages: Iterable[Message]) -> list[dict[str, Any]]:
        """Add every message, then finish; returns the dead letters (for small inputs)."""
        dead = [d for m in messages if (d := self.add(m)) is not None]
        self.finish()
        return dead
