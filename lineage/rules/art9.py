"""Article 9: disclosure to third parties.

A transfer of personal data to a third party, an authority or a recipient the
policy does not know needs the subject's consent, in force at event time and
covering that recipient (or ``*``) and purpose, or a permitted exception with
evidence. Outsourcing (Art. 6) and joint use (Art. 7) are not disclosures here.
"""

from __future__ import annotations

from typing import Any

from lineage.rules.base import Breach, Context, Scope, rule
from lineage.schemas import ConsentStatus, LegalBasis, Severity
from lineage.schemas.judged import iso_text
from lineage.state import ConsentDecision

__all__ = ["consent_decision", "decision_facts"]


def consent_decision(
    consents: tuple[ConsentDecision, ...], ctx: Context
) -> tuple[str, ConsentDecision | None]:
    """The subject's consent to this flow at event time.

    Returns ("granted" | "withdrawn", the deciding decision) when a decision covers
    this recipient and purpose (the latest by event time wins; a withdrawal wins a tie),
    ("out_of_scope", a grant) when the subject consented only to something else, and
    ("none", None) when there is no consent at all.
    """
    event = ctx.event
    recipient, purpose, at = event.recipient or "", event.purpose, event.occurred_at
    latest: ConsentDecision | None = None
    other_grant: ConsentDecision | None = None
    for decision in consents:
        if decision.occurred_at > at:
            continue
        if decision.covers(recipient, purpose):
            if (
                latest is None
                or decision.occurred_at > latest.occurred_at
                or (
                    decision.occurred_at == latest.occurred_at
                    and decision.status is ConsentStatus.WITHDRAWN
                )
            ):
                latest = decision
        elif decision.status is ConsentStatus.GRANTED:
            other_grant = decision
    if latest is not None:
        return latest.status.value, latest
    if other_grant is not None:
        return "out_of_scope", other_grant
    return "none", None


def _exception_valid(ctx: Context) -> bool:
    claim = ctx.event.exception
    return (
        ctx.event.legal_basis is LegalBasis.EXCEPTION
        and claim is not None
        and claim.kind in ctx.policy.exceptions
        and bool(claim.reference.strip())
    )


def decision_facts(decision: ConsentDecision | None) -> dict[str, Any] | None:
    if decision is None:
        return None
    return {
        "event_id": decision.event_id,
        "occurred_at": iso_text(decision.occurred_at),
        "recipient": decision.recipient,
        "purposes": sorted(decision.purposes) if decision.purposes is not None else None,
        "status": decision.status.value,
        "reference": decision.reference,
    }


def _consent_breach(ctx: Context, wanted: str) -> Breach | None:
    if not ctx.personal or _exception_valid(ctx):
        return None
    state, decision = consent_decision(ctx.consents, ctx)
    if state != wanted:
        return None
    event = ctx.event
    # The subject stays out of the sentence: messages reach chat, e-mail and SIEMs, and
    # the alert's own ``subject`` field leads from the audit trail to the person.
    messages = {
        "none": f"Personal data was disclosed to {event.recipient} without the consent of "
        "the data subject and without a permitted exception (Art. 9).",
        "withdrawn": f"Personal data was disclosed to {event.recipient} after the data "
        "subject withdrew consent (Art. 9).",
        "out_of_scope": f"Personal data was disclosed to {event.recipient} for {event.purpose}, "
        "but the data subject consented only to other recipients or purposes (Art. 9).",
    }
    return Breach(
        tuple(event.categories),
        messages[wanted],
        {
            "consent_state": state,
            "decision": decision_facts(decision),
            "recipient": event.recipient,
            "purpose": event.purpose,
            "legal_basis": event.legal_basis.value if event.legal_basis else None,
        },
    )


@rule(
    "art9.no-consent",
    article="9",
    severity=Severity.HIGH,
    scope=Scope.DISCLOSURE,
    title="Disclosed without consent",
    retractable=True,
)
def no_consent(ctx: Context) -> Breach | None:
    """Personal data is disclosed to a third party, an authority or a recipient the policy
    does not know; at or before the event the subject made no consent decision covering
    this recipient (or ``*``) and purpose, and granted nothing else either; and no valid
    exception is claimed (``legal_basis: exception`` with a kind the policy lists and a
    non-empty reference).

    Lawful near-miss: a grant for this recipient or ``*`` and the purpose made at or before
    the event; a valid exception. A grant made after the event does not count.
    """
    return _consent_breach(ctx, "none")


@rule(
    "art9.consent-withdrawn",
    article="9",
    severity=Severity.HIGH,
    scope=Scope.DISCLOSURE,
    title="Disclosed after consent was withdrawn",
    retractable=True,
)
def consent_withdrawn(ctx: Context) -> Breach | None:
    """Personal data is disclosed (as for ``art9.no-consent``) when the latest decision
    covering this recipient and purpose, at or before the event, is a withdrawal (a
    withdrawal wins a tie with a grant at the same instant).

    Lawful near-miss: a withdrawal for one purpose leaves a grant for the others in force.
    """
    return _consent_breach(ctx, "withdrawn")


@rule(
    "art9.consent-scope",
    article="9",
    severity=Severity.MEDIUM,
    scope=Scope.DISCLOSURE,
    title="Disclosed beyond the consent given",
    retractable=True,
)
def consent_scope(ctx: Context) -> Breach | None:
    """Personal data is disclosed (as for ``art9.no-consent``) when the subject granted
    consent, but only to other recipients or other purposes: no decision covers this
    recipient and purpose.
    """
    return _consent_breach(ctx, "out_of_scope")


@rule(
    "art9.unknown-recipient",
    article="9",
    severity=Severity.CRITICAL,
    scope=Scope.DISCLOSURE,
    title="Disclosed to an unknown recipient",
)
def unknown_recipient(ctx: Context) -> Breach | None:
    """Personal data goes to a recipient id that is neither a recipient nor an internal
    system of the policy. Critical, even with consent or an exception: consent cannot
    cover a recipient the policy never disclosed.
    """
    if not ctx.personal or ctx.recipient_kind != "unknown":
        return None
    return Breach(
        tuple(ctx.event.categories),
        f"Personal data went from {ctx.event.source} to {ctx.event.recipient}, a recipient "
        "that no registry of the policy knows (Art. 9).",
        {"recipient": ctx.event.recipient, "known": False},
    )


@rule(
    "art9.exception-unsupported",
    article="9",
    severity=Severity.HIGH,
    scope=Scope.DISCLOSURE,
    title="Exception claimed without support",
)
def exception_unsupported(ctx: Context) -> Breach | None:
    """A disclosure claims ``legal_basis: exception`` with no ``exception`` object, with a
    kind the policy's ``exceptions`` does not list, or with an empty ``reference``.

    Lawful near-miss: a listed kind with a reference (a case or order number).
    """
    event = ctx.event
    if not ctx.personal or event.legal_basis is not LegalBasis.EXCEPTION:
        return None
    claim = event.exception
    if claim is None:
        why = "names no exception"
    elif claim.kind not in ctx.policy.exceptions:
        why = f"claims {claim.kind.value}, which the policy does not list"
    elif not claim.reference.strip():
        why = f"claims {claim.kind.value} without a reference"
    else:
        return None
    return Breach(
        tuple(event.categories),
        f"The disclosure to {event.recipient} {why} (Art. 9 (2)-(5)).",
        {
            "kind": claim.kind.value if claim else None,
            "has_reference": bool(claim and claim.reference.strip()),
            "listed_exceptions": [k.value for k in ctx.policy.exceptions],
        },
    )
