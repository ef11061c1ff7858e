"""The rule catalogue's machinery: a rule is a small pure function registered with a stable id.

A rule sees a :class:`Context` (the event, the policy, the recipient it names, the
subject's consents known before the event) and returns a :class:`Breach` or
None. It never raises on odd but valid input. The engine calls only the rules
whose :class:`Scope` fits the event, so a transfer to an ad provider never pays
for the outsourcing rules.

    @rule("art6.unencrypted", article="6", severity=Severity.HIGH, scope=Scope.TRANSFER,
          title="Personal data left unencrypted")
    def unencrypted(ctx: Context) -> Breach | None: ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from enum import StrEnum
from typing import Any

from lineage.policy.model import Policy, Recipient
from lineage.schemas import Form, Severity
from lineage.schemas.judged import Access
from lineage.schemas.types import RecipientKind
from lineage.state import ConsentDecision, SubjectState

__all__ = [
    "CATALOGUE",
    "Breach",
    "Context",
    "Days",
    "RuleFn",
    "RuleSpec",
    "Scope",
    "art_label",
    "article_key",
    "is_personal",
    "rule",
]


class Scope(StrEnum):
    """Which events a rule is asked about."""

    ANY = "any"  # every access event (may read its subject, consents, attributes)
    EVERY = "every"  # every access event, reading only the flow's shape
    TRANSFER = "transfer"  # every transfer
    OUTSOURCER = "outsourcer"  # transfers to an outsourcer
    AFFILIATE = "affiliate"  # transfers to an affiliate
    AD_PROVIDER = "ad_provider"  # transfers to an ad provider
    DISCLOSURE = "disclosure"  # transfers to a third party, an authority or an unknown id
    VIA_OUTSOURCER = "via_outsourcer"  # onward transfers passed on by an outsourcer
    VIA_AD_PROVIDER = "via_ad_provider"  # onward transfers passed on by an ad provider
    INFO_MODULE = "info_module"  # transfers to an information gathering module (Art. 8)
    ABROAD = "abroad"  # transfers abroad without an adequate country or equivalent system


@dataclass(frozen=True, slots=True, init=False)
class Breach:
    """What a rule found: the categories at fault, a sentence, and the facts it used.

    Its ``__init__`` is written out, to run compiled (:mod:`lineage.compiled`).
    """

    categories: tuple[str, ...]
    message: str
    evidence: Mapping[str, Any]

    def __init__(
        self, categories: tuple[str, ...], message: str, evidence: Mapping[str, Any] | None = None
    ) -> None:
        # Frozen: set as the generated __init__ sets them.
        object.__setattr__(self, "categories", categories)
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "evidence", {} if evidence is None else evidence)


def is_personal(event: Access) -> bool:
    """Personal data (docs/rules.md): identified, or pseudonymized without a key."""
    if event.form is Form.IDENTIFIED:
        return True
    if event.form is Form.PSEUDONYMIZED:
        return event.pseudonymization is None or not event.pseudonymization.keyed
    return False


#: Minutes (and days) a :class:`Days` remembers before it starts again.
_DAYS_HELD = 100_000


class Days:
    """The calendar day in a policy's zone at an instant, and its ISO text, remembered
    per UTC minute: every zone's offset is whole minutes, so one UTC minute lies in one
    day, and the zone conversion costs more than the rest of a rule. A day's text is one
    string, shared by every edge and retraction of that day."""

    __slots__ = ("_minutes", "_texts", "_zone")

    def __init__(self, zone: tzinfo) -> None:
        self._zone = zone
        self._minutes: dict[int, tuple[date, str]] = {}
        self._texts: dict[date, str] = {}

    def at(self, posix: float) -> tuple[date, str]:
        """(the day at ``posix``, POSIX seconds; its ISO text)."""
        minute = int(posix // 60)
        found = self._minutes.get(minute)
        if found is None:
            day = datetime.fromtimestamp(minute * 60, self._zone).date()
            text = self._texts.get(day)
            if text is None:
                if len(self._texts) >= _DAYS_HELD:
                    self._texts.clear()
                text = self._texts[day] = day.isoformat()
            if len(self._minutes) >= _DAYS_HELD:
                self._minutes.clear()
            found = self._minutes[minute] = (day, text)
        return found


class Context:
    """What a rule may read about one event."""

    __slots__ = (
        "_ledger",
        "_offset",
        "day",
        "day_text",
        "event",
        "personal",
        "policy",
        "posix",
        "raw_findings",
        "recipient",
        "recipient_kind",
        "via",
    )

    def __init__(
        self,
        event: Access,
        policy: Policy,
        recipient: Recipient | None,
        recipient_kind: str | None,
        via: Recipient | None,
        ledger: SubjectState | None,
        offset: int,
        raw_findings: Mapping[str, list[str]],
        personal: bool,
        posix: float,
        day: tuple[date, str],
    ) -> None:
        self.event = event
        #: The event time as POSIX seconds (:func:`~lineage.state.posix_of`).
        self.posix = posix
        self.policy = policy
        self.recipient = recipient
        self.recipient_kind = recipient_kind
        self.via = via
        self._ledger = ledger
        self._offset = offset
        self.raw_findings = raw_findings
        #: Whether the event carries personal data (:func:`is_personal`).
        self.personal = personal
        #: The event's calendar day in the policy's zone, the day policy dates speak of,
        #: and its ISO text (:meth:`Days.at`).
        self.day, self.day_text = day

    @property
    def consents(self) -> tuple[ConsentDecision, ...]:
        """The subject's consent decisions that came before this event in its partition
        (the rules count those made at or before the event's time)."""
        return self._ledger.known_before(self._offset) if self._ledger is not None else ()


RuleFn = Callable[[Context], Breach | None]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A registered rule: its stable id, article, severity, scope and function."""

    id: str
    article: str
    severity: Severity
    scope: Scope
    title: str
    fn: RuleFn
    #: A consent that arrives late, in force at the event's time, would have prevented
    #: this rule's alert: it retracts it (docs/contract.md, consent in event time).
    retractable: bool = False

    @property
    def cacheable(self) -> bool:
        """True when the rule reads only the flow's shape and the policy at the event's day.

        Rules of these scopes never read the subject, its consents or the attributes,
        so the engine may remember their findings per flow shape and day.
        """
        return self.scope not in (Scope.ANY, Scope.DISCLOSURE, Scope.ABROAD)


#: Every registered rule by id, in registration order (the order alerts are raised in).
CATALOGUE: dict[str, RuleSpec] = {}


def rule(
    rule_id: str,
    *,
    article: str,
    severity: Severity,
    scope: Scope,
    title: str,
    retractable: bool = False,
) -> Callable[[RuleFn], RuleFn]:
    """Register a rule under a stable id; ids are never reused for another meaning.

    ``retractable``: a consent in force at the event's time that arrives late would have
    prevented the alert, and retracts it (only rules that read the subject's consents).
    """

    def register(fn: RuleFn) -> RuleFn:
        if rule_id in CATALOGUE:
            raise ValueError(f"rule id {rule_id!r} is registered twice")
        CATALOGUE[rule_id] = RuleSpec(
            rule_id, article, severity, scope, title, fn, retractable=retractable
        )
        return fn

    return register


def article_key(article: str) -> tuple[int, str]:
    """Sort key of an article: the policy's numbered ones in order, then others (APPI-28)."""
    return (int(article), "") if article.isdigit() else (1 << 30, article)


def art_label(article: str) -> str:
    """How an article is named for people: ``Art. 9`` (the policy's), ``APPI Art. 28``."""
    if article.isdigit():
        return f"Art. {article}"
    law, _, number = article.partition("-")
    return f"{law} Art. {number}" if number else article


def scopes_for(kind: str | None, via_kind: str | None, foreign: bool = False) -> tuple[Scope, ...]:
    """The scopes a transfer to a recipient of ``kind`` (passed on by ``via_kind``) falls
    in; ``foreign``: abroad with no adequate country or equivalent system."""
    scopes = [Scope.TRANSFER]
    if foreign:
        scopes.append(Scope.ABROAD)
    if kind == RecipientKind.OUTSOURCER:
        scopes.append(Scope.OUTSOURCER)
    elif kind == RecipientKind.AFFILIATE:
        scopes.append(Scope.AFFILIATE)
    elif kind == RecipientKind.AD_PROVIDER:
        scopes.append(Scope.AD_PROVIDER)
    elif kind in (RecipientKind.THIRD_PARTY, RecipientKind.AUTHORITY, "unknown"):
        scopes.append(Scope.DISCLOSURE)
    elif kind == RecipientKind.INFO_MODULE:
        scopes.append(Scope.INFO_MODULE)
    if via_kind == RecipientKind.OUTSOURCER:
        scopes.append(Scope.VIA_OUTSOURCER)
    elif via_kind == RecipientKind.AD_PROVIDER:
        scopes.append(Scope.VIA_AD_PROVIDER)
    return tuple(scopes)
