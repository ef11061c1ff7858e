"""Article 7: sharing with affiliates (APPI joint use, Art. 27 (5) (iii)).

An affiliate may receive personal data only after the company announced, in
advance, the partner, the purpose, the categories shared and the manager, and
only the announced categories for the announced purposes.
"""

from __future__ import annotations

from lineage.rules.base import Breach, Context, Scope, rule
from lineage.schemas import Severity

__all__: list[str] = []


@rule(
    "art7.not-announced",
    article="7",
    severity=Severity.HIGH,
    scope=Scope.AFFILIATE,
    title="Shared with an affiliate before any announcement",
)
def not_announced(ctx: Context) -> Breach | None:
    """Personal data is shared with an affiliate that has no ``announcement``, or before
    the announcement's ``announced_on`` day.

    Lawful near-miss: sharing on the ``announced_on`` day itself; data that is not
    personal.
    """
    if not ctx.personal or ctx.recipient is None:
        return None
    announcement = ctx.recipient.announcement
    if announcement is not None and announcement.announced_on <= ctx.day:
        return None
    why = (
        "it has no public announcement"
        if announcement is None
        else f"it was announced only on {announcement.announced_on}"
    )
    return Breach(
        tuple(ctx.event.categories),
        f"Personal data was shared with affiliate {ctx.event.recipient} on {ctx.day}, but {why} "
        "(Art. 7 (1)).",
        {
            "day": ctx.day_text,
            "announced_on": announcement.announced_on.isoformat() if announcement else None,
        },
    )


@rule(
    "art7.category-not-announced",
    article="7",
    severity=Severity.MEDIUM,
    scope=Scope.AFFILIATE,
    title="Category not in the affiliate announcement",
)
def category_not_announced(ctx: Context) -> Breach | None:
    """An affiliate receives personal data of a category its announcement does not list
    (a listed prefix covers its categories).

    Lawful near-miss: ``activity.viewing_history`` when the announcement lists
    ``activity``.
    """
    if not ctx.personal or ctx.recipient is None or ctx.recipient.announcement is None:
        return None
    announcement = ctx.recipient.announcement
    missing = announcement.category_set.missing(ctx.event.categories)
    if not missing:
        return None
    return Breach(
        tuple(missing),
        f"Affiliate {ctx.event.recipient} received {', '.join(missing)}, which the announcement "
        "does not list (Art. 7 (2)).",
        {"announced_categories": list(announcement.categories), "not_announced": missing},
    )


@rule(
    "art7.purpose-not-announced",
    article="7",
    severity=Severity.MEDIUM,
    scope=Scope.AFFILIATE,
    title="Purpose not in the affiliate announcement",
)
def purpose_not_announced(ctx: Context) -> Breach | None:
    """An affiliate receives personal data for a purpose that is not among the
    announcement's ``purposes``.
    """
    if not ctx.personal or ctx.recipient is None or ctx.recipient.announcement is None:
        return None
    announcement = ctx.recipient.announcement
    if ctx.event.purpose in announcement.purposes:
        return None
    return Breach(
        tuple(ctx.event.categories),
        f"Personal data was shared with affiliate {ctx.event.recipient} for purpose "
        f"{ctx.event.purpose}, which the announcement does not list (Art. 7 (2)).",
        {"purpose": ctx.event.purpose, "announced_purposes": list(announcement.purposes)},
    )
