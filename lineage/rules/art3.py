"""Article 3: purposes of use, and the information each purpose may use.

Personal data is used or passed on only for a purpose the policy declares, and only
of the categories that purpose lists (a listed prefix covers its categories).
"""

from __future__ import annotations

from lineage.rules.base import Breach, Context, Scope, rule
from lineage.schemas import Action, Severity

__all__: list[str] = []

_USED = (Action.USE, Action.TRANSFER)


@rule(
    "art3.undeclared-purpose",
    article="3",
    severity=Severity.HIGH,
    scope=Scope.EVERY,
    title="Used for a purpose the policy does not declare",
)
def undeclared_purpose(ctx: Context) -> Breach | None:
    """A ``use`` or ``transfer`` of personal data names a purpose the policy does not
    declare under ``purposes``.

    Lawful near-miss: a ``collect`` for that purpose, or data that is not personal.
    """
    event = ctx.event
    if not ctx.personal or event.action not in _USED or event.purpose in ctx.policy.purposes:
        return None
    return Breach(
        tuple(event.categories),
        f"{event.source} {'passed on' if event.action is Action.TRANSFER else 'used'} "
        f"personal data for {event.purpose}, a purpose the policy does not declare (Art. 3).",
        {"purpose": event.purpose, "declared_purposes": sorted(ctx.policy.purposes)},
    )


@rule(
    "art3.category-not-for-purpose",
    article="3",
    severity=Severity.MEDIUM,
    scope=Scope.EVERY,
    title="A category the purpose does not list",
)
def category_not_for_purpose(ctx: Context) -> Breach | None:
    """A ``use`` or ``transfer`` of personal data for a declared purpose includes a
    declared category that the purpose's ``categories`` do not list (a listed prefix
    covers its categories). Undeclared categories are left to
    ``art2.undeclared-category``, undeclared purposes to ``art3.undeclared-purpose``.

    Lawful near-miss: a category the purpose lists by prefix.
    """
    event = ctx.event
    if not ctx.personal or event.action not in _USED:
        return None
    purpose = ctx.policy.purposes.get(event.purpose)
    if purpose is None:
        return None  # art3.undeclared-purpose speaks for this flow
    # A category the policy does not declare is art2.undeclared-category's finding.
    declared = [c for c in event.categories if c in ctx.policy.categories]
    beyond = ctx.policy.purpose_categories(event.purpose).missing(declared)
    if not beyond:
        return None
    return Breach(
        tuple(beyond),
        f"{event.source} {'passed on' if event.action is Action.TRANSFER else 'used'} "
        f"{', '.join(beyond)} for {event.purpose}, which does not list "
        f"{'it' if len(beyond) == 1 else 'them'} among the information it uses (Art. 3).",
        {
            "purpose": event.purpose,
            "beyond_purpose": beyond,
            "purpose_categories": purpose.categories,
        },
    )
