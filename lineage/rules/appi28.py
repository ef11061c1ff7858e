"""APPI Article 28: provision to a third party in a foreign country.

Personal data may go abroad without the subject's consent only to a country the
PPC recognises (``adequate_countries``) or to a recipient that keeps a system
meeting the PPC's standards (``equivalent_system``). Outsourcing and joint use
abroad are not exempt.
"""

from __future__ import annotations

from lineage.rules.art9 import consent_decision, decision_facts
from lineage.rules.base import Breach, Context, Scope, rule
from lineage.schemas import Severity

__all__: list[str] = []


@rule(
    "appi28.foreign-no-basis",
    article="APPI-28",
    severity=Severity.HIGH,
    scope=Scope.ABROAD,
    title="Personal data abroad without a basis",
    retractable=True,
)
def foreign_no_basis(ctx: Context) -> Breach | None:
    """Personal data goes to a recipient whose ``country`` is neither
    ``policy.home_country`` nor in ``policy.adequate_countries``, that has no
    ``equivalent_system: true``, and the subject has no consent in force at the event's
    time for that recipient (or ``*``) and purpose. Any kind of recipient: outsourcing
    and joint use abroad are not exempt.

    Lawful near-miss: a recipient in an adequate country or with an equivalent system;
    a consent for that recipient or ``*``; a keyed pseudonym.
    """
    if not ctx.personal or ctx.recipient is None:
        return None
    state, decision = consent_decision(ctx.consents, ctx)
    if state == "granted":
        return None
    event = ctx.event
    country = ctx.recipient.country_code
    return Breach(
        tuple(event.categories),
        f"Personal data went to {event.recipient} in {country}, which is neither "
        f"{ctx.policy.policy.home_country} nor a country the PPC recognises, keeps no "
        f"equivalent system, and the data subject has not consented (APPI Art. 28).",
        {
            "country": country,
            "home_country": ctx.policy.policy.home_country,
            "equivalent_system": ctx.recipient.equivalent_system,
            "consent_state": state,
            "decision": decision_facts(decision),
        },
    )
