"""Article 8: information gathering modules.

The providers of information gathering modules collect User Information but nothing
that identifies the user: no directly identifying category, no identified data.
"""

from __future__ import annotations

from lineage.rules.base import Breach, Context, Scope, rule
from lineage.schemas import Form, Severity

__all__: list[str] = []

_NOT_PERSONAL_FORMS = (Form.ANONYMIZED, Form.AGGREGATED)


@rule(
    "art8.identifying",
    article="8",
    severity=Severity.HIGH,
    scope=Scope.INFO_MODULE,
    title="An information module received identifying data",
)
def identifying(ctx: Context) -> Breach | None:
    """An information gathering module (``info_module``) receives a category the policy
    marks ``identifying: direct``, or any data in ``identified`` form.

    Lawful near-miss: a keyed pseudonym of activity and device data; aggregated or
    anonymized data, even of a directly identifying category.
    """
    event = ctx.event
    if event.form in _NOT_PERSONAL_FORMS:
        return None  # statistics identify nobody
    direct = [
        c
        for c in event.categories
        if (category := ctx.policy.categories.get(c)) is not None
        and category.identifying == "direct"
    ]
    identified = event.form is Form.IDENTIFIED
    if not direct and not identified:
        return None
    what = f"directly identifying {', '.join(direct)}" if direct else "data in identified form"
    return Breach(
        tuple(direct or event.categories),
        f"Information module {event.recipient} received {what}; such modules may collect "
        "nothing that identifies the user (Art. 8).",
        {"direct_categories": direct, "form": event.form.value},
    )
