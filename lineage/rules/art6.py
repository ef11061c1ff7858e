"""Article 6: security management and outsourcing.

Outsourcing personal data needs, in advance, a confidentiality agreement that
conforms to the policy, and supervision of the outsourcer (Art. 6 (2)); personal
data must be protected against leakage (Art. 6 (1)).
"""

from __future__ import annotations

from lineage.redact import KIND_CATEGORY, raw_facts
from lineage.rules.base import Breach, Context, Scope, rule
from lineage.schemas import Severity

__all__: list[str] = []


def _agreement_facts(ctx: Context) -> list[dict[str, object]]:
    assert ctx.recipient is not None
    return [
        {
            "id": a.id,
            "signed_on": a.signed_on.isoformat(),
            "expires_on": a.expires_on.isoformat() if a.expires_on else None,
            "conforms_to_policy": a.conforms_to_policy,
        }
        for a in ctx.recipient.agreements
    ]


@rule(
    "art6.no-agreement",
    article="6",
    severity=Severity.HIGH,
    scope=Scope.OUTSOURCER,
    title="Outsourced without a confidentiality agreement in force",
)
def no_agreement(ctx: Context) -> Breach | None:
    """Personal data goes to an outsourcer with no confidentiality agreement that conforms
    to the policy in force on the event's day (``signed_on`` <= day <= ``expires_on``):
    it has none, its agreement is not yet signed or has expired, or the one in force
    says ``conforms_to_policy: false``.

    Lawful near-miss: a transfer on the agreement's ``expires_on`` day (the last day in
    force), or of data that is not personal (a keyed pseudonym, anonymized, aggregated).
    """
    if not ctx.personal or ctx.recipient is None:
        return None
    if ctx.recipient.agreements_in_force(ctx.day):
        return None
    agreements = ctx.recipient.agreements
    if not agreements:
        why = "it has no confidentiality agreement"
    elif any(a.in_force(ctx.day) for a in agreements):
        why = "its agreement in force does not conform to the policy"
    elif all(ctx.day < a.signed_on for a in agreements):
        why = "its agreement was not yet signed"
    else:
        why = "its agreement had expired"
    return Breach(
        tuple(ctx.event.categories),
        f"Personal data went to outsourcer {ctx.event.recipient} on {ctx.day}, but {why} "
        "(Art. 6 (2)).",
        {"day": ctx.day_text, "agreements": _agreement_facts(ctx)},
    )


@rule(
    "art6.out-of-scope",
    article="6",
    severity=Severity.MEDIUM,
    scope=Scope.OUTSOURCER,
    title="Outsourced data outside the agreement's scope",
)
def out_of_scope(ctx: Context) -> Breach | None:
    """An outsourcer with an agreement in force receives personal data that no agreement in
    force covers: none of them lists the flow's purpose, or those that do leave a category
    of the flow uncovered (a listed prefix covers its categories). Without any agreement
    in force, ``art6.no-agreement`` speaks instead.

    Lawful near-miss: categories covered by prefix (``financial`` covers
    ``financial.credit_card``) for a purpose the agreement lists.
    """
    if not ctx.personal or ctx.recipient is None:
        return None
    in_force = ctx.recipient.agreements_in_force(ctx.day)
    if not in_force:
        return None  # art6.no-agreement speaks for this flow
    event = ctx.event
    for_purpose = [a for a in in_force if event.purpose in a.purposes]
    uncovered = list(event.categories)
    for agreement in for_purpose:
        uncovered = agreement.category_set.missing(uncovered)
    if for_purpose and not uncovered:
        return None
    if not for_purpose:
        what = f"purpose {event.purpose}"
        uncovered = list(event.categories)
    else:
        what = "categories " + ", ".join(uncovered)
    return Breach(
        tuple(uncovered),
        f"Outsourcer {event.recipient} received {what}, which its agreement in force does "
        "not cover (Art. 6 (2)).",
        {
            "purpose": event.purpose,
            "uncovered_categories": uncovered,
            "agreements_in_force": [
                {"id": a.id, "categories": a.categories, "purposes": a.purposes} for a in in_force
            ],
        },
    )


@rule(
    "art6.unsupervised",
    article="6",
    severity=Severity.MEDIUM,
    scope=Scope.OUTSOURCER,
    title="Outsourcer not supervised",
)
def unsupervised(ctx: Context) -> Breach | None:
    """Personal data goes to an outsourcer that was never audited
    (no ``supervision.last_audit_on``), whose only audit on record is dated after the
    event, or whose last audit is more than ``supervision.interval_days`` days before
    the event's day.

    Lawful near-miss: an audit exactly ``interval_days`` days old is still in time.
    """
    if not ctx.personal or ctx.recipient is None:
        return None
    supervision = ctx.recipient.supervision
    last = supervision.last_audit_on if supervision else None
    if supervision is not None and last is not None and last <= ctx.day:
        overdue = (ctx.day - last).days - supervision.interval_days
        if overdue <= 0:
            return None
        why = f"its last audit ({last}) is {overdue} days overdue"
    elif supervision is None or last is None:
        why = "it has never been audited"
    else:
        why = f"no audit was on record by then (the last one is dated {last})"
    return Breach(
        tuple(ctx.event.categories),
        f"Personal data went to outsourcer {ctx.event.recipient} on {ctx.day}, but {why} "
        "(Art. 6 (2) supervision).",
        {
            "day": ctx.day_text,
            "last_audit_on": last.isoformat() if last else None,
            "interval_days": supervision.interval_days if supervision else None,
        },
    )


@rule(
    "art6.sub-outsourcing",
    article="6",
    severity=Severity.HIGH,
    scope=Scope.VIA_OUTSOURCER,
    title="Outsourcer passed data on without leave",
)
def sub_outsourcing(ctx: Context) -> Breach | None:
    """An outsourcer (the event's ``via``) passes personal data on to a recipient that is
    not in its ``onward`` list, or that has no conforming confidentiality agreement of
    its own in force on the event's day.

    Lawful near-miss: an onward recipient in the outsourcer's ``onward`` list with its
    own agreement in force.
    """
    if not ctx.personal or ctx.via is None:
        return None
    event = ctx.event
    if event.recipient not in ctx.via.onward:
        why = f"{event.recipient} is not among the recipients it may pass data on to"
    elif ctx.recipient is None or not ctx.recipient.agreements_in_force(ctx.day):
        why = f"{event.recipient} has no confidentiality agreement of its own in force"
    else:
        return None
    return Breach(
        tuple(event.categories),
        f"Outsourcer {event.via} passed personal data on to {event.recipient}, but {why} "
        "(Art. 6 (2)).",
        {"via": event.via, "allowed_onward": list(ctx.via.onward), "day": ctx.day_text},
    )


@rule(
    "art6.unencrypted",
    article="6",
    severity=Severity.HIGH,
    scope=Scope.TRANSFER,
    title="Personal data transferred unencrypted",
)
def unencrypted(ctx: Context) -> Breach | None:
    """A transfer of personal data says ``encrypted_in_transit: false``, whoever the
    recipient is (an internal system too: Art. 6 (1) protects data on every path).

    Lawful near-miss: ``encrypted_in_transit`` left out (nothing is claimed), or a keyed
    pseudonym; an unkeyed hash of an e-mail address is personal data and is judged.
    """
    if ctx.event.encrypted_in_transit is not False or not ctx.personal:
        return None
    return Breach(
        tuple(ctx.event.categories),
        f"Personal data left {ctx.event.source} for {ctx.event.recipient} without encryption in "
        "transit (Art. 6 (1)).",
        {"encrypted_in_transit": False},
    )


@rule(
    "art6.raw-personal-data",
    article="6",
    severity=Severity.HIGH,
    scope=Scope.ANY,
    title="Raw personal data in the monitoring stream",
)
def raw_personal_data(ctx: Context) -> Breach | None:
    """The event itself carries a raw e-mail address, phone or card number, My Number,
    corporate number, IBAN, passport number or postal code, in any text it holds (ids
    such as ``source`` and ``recipient``, ``subject``, references, attribute keys and
    values), however disguised (full-width or kanji digits, invisible characters,
    escapes, ``[at]``, base64; see docs/redaction.md). The value is replaced by a
    keyed token before anything is kept or written. Consent events are judged for this
    too (the alert's ``source`` is then ``consent-platform``).

    Lawful near-miss: order numbers, dates and timestamps, UUIDs, large counts and digit
    runs that fail their check digit are not raw personal data.
    """
    if not ctx.raw_findings:
        return None
    kinds, fields = raw_facts(dict(ctx.raw_findings))
    return Breach(
        tuple(KIND_CATEGORY[k] for k in kinds),
        f"{ctx.event.source} sent raw personal data ({', '.join(kinds)}) in the event itself "
        f"({', '.join(fields)}); it was redacted (Art. 6 (1)).",
        {"fields": fields, "kinds": kinds, "redacted": True},
    )
