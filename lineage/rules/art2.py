"""Article 2: the User Information the policy says the company collects.

Data of a category the policy does not declare was collected outside Art. 2: the
company would hold what it never told its users it collects.
"""

from __future__ import annotations

from lineage.rules.base import Breach, Context, Scope, rule
from lineage.schemas import Severity

__all__: list[str] = []


@rule(
    "art2.undeclared-category",
    article="2",
    severity=Severity.MEDIUM,
    scope=Scope.EVERY,
    title="A category the policy does not declare",
)
def undeclared_category(ctx: Context) -> Breach | None:
    """An access event (any action, any form) names a category the policy does not
    declare under ``categories``: data handled outside Art. 2.

    Lawful near-miss: a declared category. A prefix (``activity``) is not a category.
    """
    undeclared = [c for c in ctx.event.categories if c not in ctx.policy.categories]
    if not undeclared:
        return None
    return Breach(
        tuple(undeclared),
        f"{ctx.event.source} handled {', '.join(undeclared)}, which the policy does not "
        "declare among the information it collects (Art. 2).",
        {"undeclared_categories": undeclared, "action": ctx.event.action.value},
    )
