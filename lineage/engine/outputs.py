"""What the engine puts out: alerts, provision records and dead letters, their ids, and
the :class:`Outcome` of one message.

Ids are deterministic, so a message judged again (at-least-once delivery, a replay)
yields the same ids: an alert's from its rule and event, a provision record's from
its event, an incident's from its rule, source and recipient.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from lineage.policy.model import Policy
from lineage.redact import Redactor
from lineage.redact.fold import without_trailing_number
from lineage.rules import CATALOGUE, RuleSpec
from lineage.schemas import AccessEvent, ConsentEvent, EventRejected
from lineage.schemas.judged import Access
from lineage.schemas.outputs import DEAD_LETTER_KEEP, DEAD_LETTER_MARGIN
from lineage.view import ViewFact

__all__ = [
    "DEAD_LETTER_KEEP",
    "DEAD_LETTER_MARGIN",
    "Alerts",
    "Outcome",
    "Stats",
    "alert_id",
    "dead_letter_record",
    "incident_id",
    "record_id",
]


class _Digest(Protocol):
    def hexdigest(self) -> str: ...


def _builtin_sha256() -> Callable[[bytes], _Digest]:
    """SHA-256 as CPython builds it in, where it has it (``_sha256``; ``_sha2`` from
    Python 3.12), else hashlib's. The ids take about 0.9 µs so against 1.4 µs through
    OpenSSL, whose per-call set-up costs more than hashing a short text; a breach
    storm of 200,000 events makes 440,000 ids. The digest is the same."""
    for name in ("_sha256", "_sha2"):
        try:
            found: Callable[[bytes], _Digest] = importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
        return found
    return hashlib.sha256


_sha256 = _builtin_sha256()


def alert_id(rule_id: str, event_id: str) -> str:
    """Deterministic from rule and event, so a replayed event yields the same id."""
    return _sha256(f"{rule_id}\x1f{event_id}".encode()).hexdigest()[:32]


def record_id(event_id: str) -> str:
    """The provision record of an event (APPI Art. 29): one per event, the same on replay."""
    return _sha256(f"provision\x1f{event_id}".encode()).hexdigest()[:32]


def incident_id(rule_id: str, source: str, recipient: str | None) -> str:
    """One incident per (rule, source, recipient), the same on every worker."""
    digest = _sha256(f"{rule_id}\x1f{source}\x1f{recipient or ''}".encode()).hexdigest()
    return "inc-" + digest[:24]


class Outcome:
    """What one message led to.

    ``status`` is "judged", "duplicate" or "rejected"; ``alerts`` the alert dicts raised,
    and the retraction records of alerts a late consent prevented (docs/contract.md);
    ``records`` the provision records written (s.8); ``incidents`` the ids of incidents
    whose partial changed; ``view`` the facts of the per-subject view
    (:mod:`lineage.view`).
    """

    __slots__ = (
        "alerts",
        "dead_letter",
        "event",
        "incidents",
        "records",
        "redelivered",
        "status",
        "view",
    )

    def __init__(
        self,
        status: str,
        *,
        dead_letter: dict[str, Any] | None = None,
        event: Access | AccessEvent | ConsentEvent | None = None,
    ) -> None:
        self.status = status
        self.alerts: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.incidents: list[str] = []
        self.view: list[ViewFact] = []
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
    #: The newest event time judged, POSIX seconds (retention is judged against it).
    newest: float = float("-inf")
    by_rule: Counter[str] = field(default_factory=Counter)

    # Alerts are counted by rule alone, once an alert (a breach storm makes 345,000 of
    # them): each rule has one article and one severity, so these are made from it, in
    # the order the articles and severities were first raised, as counting each alert
    # three times gave.

    @property
    def by_article(self) -> Counter[str]:
        """Alerts by article."""
        counts: Counter[str] = Counter()
        for rule, n in self.by_rule.items():
            counts[CATALOGUE[rule].article] += n
        return counts

    @property
    def by_severity(self) -> Counter[str]:
        """Alerts by severity."""
        counts: Counter[str] = Counter()
        for rule, n in self.by_rule.items():
            counts[CATALOGUE[rule].severity.value] += n
        return counts


class Alerts:
    """Makes alert records under one policy and counts them."""

    def __init__(self, policy: Policy, stats: Stats) -> None:
        self.version = policy.version
        self.stats = stats
        # Enum values read once: a member's .value is a descriptor call.
        self._severity = {spec.id: spec.severity.value for spec in CATALOGUE.values()}

    def make(
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
        count: bool = True,
    ) -> dict[str, Any]:
        """An alert record; ``occurred_at`` as text when the caller has made it already;
        ``count``: False for an alert said again (a retraction's), which counts nothing."""
        severity = self._severity[spec.id]
        if count:
            stats = self.stats
            stats.alerts += 1
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
            "policy_version": self.version,
            "message": message,
            "evidence": evidence,
            "status": "open",
        }


# A cut can halve a value; what follows the last separator is dropped with it, and so is
# the number it ends in (lineage.redact.fold.without_trailing_number), and the blanks and
# separators before it.
_CUT_TAIL = re.compile(r"[^\s\"',;:{}\[\]<>]{0,320}$")
_CUT_DIGITS = re.compile(r"[\d\s\-/_.()+]{0,320}$")
#: Where a match of either can start: within the last 321 characters (320 of them, and
#: a final newline ``$`` may stand before). The expressions are run over the text's last
#: :data:`_CUT_SPAN` characters only: over the whole of a 64 KB start with no separator,
#: ``re`` tried each position for up to 320 characters, a quarter of a second a
#: message.
_CUT_SPAN = 322
#: A JSON string, whole: what is left of a text without them holds a quote when the
#: text ends inside a string.
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


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
        if truncated:
            masked = _cut(masked)
        elif rejection.kind == "not_json":
            masked = _without_cut_value(masked)
        redacted = masked != original
        original = masked
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


def _without_cut_value(text: str) -> str:
    """A text that is no JSON without the value it was cut in, if any.

    JSON never ends in a digit (nor in a digit and a space or dash) but for a bare
    number, which is JSON: such a message was cut before it arrived, and the digits
    left are the start of a value no detector can confirm any more (a card short of
    its check digit), as personal as the whole. Nor does JSON end inside a string: what
    follows that string's last separator goes too (an address cut in its domain,
    ``john(home)@exam``, which no detector confirms), as from a cut of ours
    (:func:`_cut`).
    """
    if '"' in _STRINGS.sub("", text):
        return _without_end(_CUT_DIGITS, without_trailing_number(_without_end(_CUT_TAIL, text)))
    return without_trailing_number(text)


def _cut(text: str) -> str:
    """The start of a masked text that fits :data:`DEAD_LETTER_KEEP` bytes, without the
    value the cut falls in."""
    cut = text.encode("utf-8")[:DEAD_LETTER_KEEP].decode("utf-8", errors="ignore")
    return _without_end(_CUT_DIGITS, without_trailing_number(_without_end(_CUT_TAIL, cut)))


def _without_end(pattern: re.Pattern[str], text: str) -> str:
    """``pattern.sub("", text)`` for a pattern that matches only within the last
    :data:`_CUT_SPAN` characters, run over those alone."""
    split = max(0, len(text) - _CUT_SPAN)
    return text[:split] + pattern.sub("", text[split:])
