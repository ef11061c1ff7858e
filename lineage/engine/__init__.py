"""The engine: one message in; findings, dead letters, graph updates and view facts out.

    engine = Engine(load_policy(), State())
    outcome = engine.process(b'{"event_id": ...}', offset=0, origin="events.jsonl:1")
    outcome.alerts        # alert dicts (docs/contract.md), in catalogue order
    outcome.dead_letter   # a dead-letter dict when the message was not a valid event
    outcome.view          # facts for the per-subject view (lineage.view)

Order of work for one message: decode and validate (bad input becomes a dead
letter; the common access event takes :func:`~lineage.scanning.plain_verdict`, without
the models), redact raw personal data, drop a duplicate event id, then judge the
event against the policy at its ``occurred_at`` and the subject's consents that
came before it in the partition, and fold it into the edge and incident partials.

Each job has a module: :mod:`~lineage.engine.judging` (access events: rules, alerts,
provision records, partials, view facts), :mod:`~lineage.engine.consents` (consent in
event time: the ledgers, pending alerts, retractions), :mod:`~lineage.engine.partials`
(edges and incidents), :mod:`~lineage.engine.outputs` (alerts, records, dead letters,
their ids, the outcome of a message). This module decodes, dedups and dispatches.

Exactness: every record carries the offset it has applied up to; a redelivered
message (same offset) re-derives the same alerts, with the same ids, from the
same facts, and changes no count.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable
from datetime import datetime, timedelta

from lineage.engine.consents import RETRACTABLE, ConsentBook
from lineage.engine.judging import THIRD_PARTY_KINDS, Judge
from lineage.engine.outputs import (
    DEAD_LETTER_KEEP,
    DEAD_LETTER_MARGIN,
    Alerts,
    Outcome,
    Stats,
    alert_id,
    dead_letter_record,
    incident_id,
    record_id,
)
from lineage.engine.partials import Partials
from lineage.policy.model import Policy
from lineage.redact import Redactor
from lineage.rules import RuleSpec
from lineage.scanning import Scanned, plain_verdict, scan
from lineage.schemas import (
    MAX_EVENT_BYTES,
    AccessEvent,
    ConsentEvent,
    EventRejected,
    decode_event,
)
from lineage.schemas.judged import Access, judged, model_of
from lineage.state import State
from lineage.verdicts import as_scanned

log = logging.getLogger("lineage.engine")

__all__ = [
    "DEAD_LETTER_KEEP",
    "DEAD_LETTER_MARGIN",
    "RETRACTABLE",
    "THIRD_PARTY_KINDS",
    "Engine",
    "Outcome",
    "Scanned",
    "Stats",
    "alert_id",
    "dead_letter_record",
    "incident_id",
    "record_id",
]


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
        #: Whether a message may skip the models (:func:`plain_verdict`): with our own
        #: redactor, which finds no raw value where that finds none.
        self._plain = type(self.redactor) is Redactor
        self.stats = Stats()
        self.lateness = consent_lateness.total_seconds()
        alerts = Alerts(policy, self.stats)
        partials = Partials(self.state)
        self.judge = Judge(policy, self.state, alerts, self.stats, partials, rules)
        self.consents = ConsentBook(
            policy,
            self.state,
            alerts,
            self.stats,
            partials,
            self.judge.resolve,
            self.judge.days,
            self.lateness,
        )
        self.judge.consents = self.consents

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
        if self._plain:
            try:
                plain = plain_verdict(raw)
                if plain is not None:
                    scanned = as_scanned(*plain)
                    return self.apply(
                        scanned[0], offset=offset, partition=partition, raw=raw, scanned=scanned
                    )
            except Exception as exc:
                return self.failed(raw, exc, origin, received_at)
        try:
            event = decode_event(raw)
        except EventRejected as rejection:
            return self._reject(raw, rejection, origin, received_at)
        try:
            return self.apply(event, offset=offset, partition=partition, raw=raw)
        except Exception as exc:
            return self.failed(raw, exc, origin, received_at)

    def process_scanned(self, raw: bytes, scanned: Scanned, *, offset: int, origin: str) -> Outcome:
        """:meth:`process` of a message another process decoded, validated and scanned
        already (:mod:`lineage.decode_process`): ``scanned`` is what :meth:`scan` would
        have made of it."""
        self.stats.messages += 1
        try:
            return self.apply(scanned[0], offset=offset, raw=raw, scanned=scanned)
        except Exception as exc:
            return self.failed(raw, exc, origin)

    def failed(
        self, raw: bytes, exc: Exception, origin: str, received_at: datetime | None = None
    ) -> Outcome:
        """The dead letter of a message the engine itself failed on (``internal_error``),
        logged with where it failed, never with its contents."""
        where = "; ".join(
            f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno} {frame.name}"
            for frame in traceback.extract_tb(exc.__traceback__)[-3:]
        )
        log.error("could not judge the message at %s: %s at %s", origin, type(exc).__name__, where)
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
        event: Access | AccessEvent | ConsentEvent,
        *,
        offset: int,
        partition: int = 0,
        raw: bytes | None = None,
        scanned: Scanned | None = None,
    ) -> Outcome:
        """Judge one valid event found at ``offset`` of ``partition`` (``raw``: its bytes).

        ``scanned``: what :meth:`scan` made of it already (another engine judging the
        same event, as a policy replay does), so that it is redacted and digested once.
        """
        if scanned is None:
            scanned = self.scan(event, raw)
        event, raw_findings, fingerprint = scanned
        seen = self.state.seen.get(event.event_id)
        if seen is not None and seen[0] != offset:
            if seen[1] and seen[1] != fingerprint:
                self.stats.conflicts += 1
                return self._reject(
                    raw if raw is not None else _model(event).model_dump_json().encode(),
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
            outcome = self.consents.consent(event, offset)
            if raw_findings:
                # A consent event is judged only for what it leaks, never for a flow.
                outcome = self.judge.consent_leak(event, raw_findings, offset, outcome)
            outcome.redelivered = redelivered
            return outcome
        self.stats.access_events += 1
        access = event if isinstance(event, Access) else judged(event)
        outcome = self.judge.access(access, raw_findings, offset)
        outcome.redelivered = redelivered
        return outcome

    def scan(self, event: Access | AccessEvent | ConsentEvent, raw: bytes | None = None) -> Scanned:
        """(the event redacted, what was found where, a digest of its content)."""
        return scan(self.redactor, _model(event), raw)


def _model(event: Access | AccessEvent | ConsentEvent) -> AccessEvent | ConsentEvent:
    """The event as its validated model."""
    return model_of(event) if isinstance(event, Access) else event
