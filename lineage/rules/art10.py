"""Article 10: targeted advertising.

Ad providers get only activity history and device information, in a form that
identifies nobody, under conditions that limit its use to targeted advertising
and bind onward recipients too (Art. 10 (2), (4)); activity history is kept
only as long as necessary (Art. 10 (3)).
"""

from __future__ import annotations

from datetime import date, datetime

from lineage.policy.model import CategorySet
from lineage.rules.base import Breach, Context, Scope, rule
from lineage.schemas import Action, Form, Severity

__all__ = ["ALLOWED_FOR_ADS", "collected_on"]

#: What Art. 10 (1) lets ad providers receive: activity history and device information.
ALLOWED_FOR_ADS = CategorySet(["activity", "device"])
_NOT_PERSONAL_FORMS = (Form.ANONYMIZED, Form.AGGREGATED)


def _to_ad_provider_in_person_form(ctx: Context) -> bool:
    # Statistics (aggregated, anonymized) may go to third parties under Art. 3; the
    # conditions of Art. 10 govern activity data about individual users.
    return ctx.recipient is not None and ctx.event.form not in _NOT_PERSONAL_FORMS


@rule(
    "art10.category",
    article="10",
    severity=Severity.HIGH,
    scope=Scope.AD_PROVIDER,
    title="Ad provider received a category beyond activity and device data",
)
def category(ctx: Context) -> Breach | None:
    """An ad provider receives data about individual users (any form but ``anonymized`` or
    ``aggregated``) of a category other than activity history (``activity.*``) and device
    information (``device.*``).

    Lawful near-miss: aggregated or anonymized statistics, which Art. 10 does not govern.
    """
    if not _to_ad_provider_in_person_form(ctx):
        return None
    beyond = ALLOWED_FOR_ADS.missing(ctx.event.categories)
    if not beyond:
        return None
    return Breach(
        tuple(beyond),
        f"Ad provider {ctx.event.recipient} received {', '.join(beyond)}; only activity history "
        "and device information may go to ad providers (Art. 10 (1)-(2)).",
        {"beyond_allowed": beyond, "allowed": ["activity.*", "device.*"]},
    )


@rule(
    "art10.identifiable",
    article="10",
    severity=Severity.CRITICAL,
    scope=Scope.AD_PROVIDER,
    title="Ad provider received identifiable data",
)
def identifiable(ctx: Context) -> Breach | None:
    """An ad provider receives personal data: ``identified``, or pseudonymized without a
    key.

    Lawful near-miss: a keyed pseudonym (``hmac-sha256``, ``keyed: true``) of activity
    and device data.
    """
    if not ctx.personal:
        return None
    event = ctx.event
    how = "identified" if event.form is Form.IDENTIFIED else "pseudonymized without a key"
    return Breach(
        tuple(event.categories),
        f"Ad provider {event.recipient} received data that is {how}; it may receive only data "
        "that identifies nobody (Art. 10 (2)).",
        {
            "form": event.form.value,
            "pseudonymization": event.pseudonymization.model_dump()
            if event.pseudonymization
            else None,
        },
    )


@rule(
    "art10.no-conditions",
    article="10",
    severity=Severity.HIGH,
    scope=Scope.AD_PROVIDER,
    title="Ad provider without conditions in force",
)
def no_conditions(ctx: Context) -> Breach | None:
    """An ad provider receives data about individual users but has accepted no
    ``conditions``, or its ``conditions.since`` is after the event's day.

    Lawful near-miss: a flow on the ``since`` day itself.
    """
    if not _to_ad_provider_in_person_form(ctx):
        return None
    assert ctx.recipient is not None
    conditions = ctx.recipient.conditions
    if conditions is not None and conditions.since <= ctx.day:
        return None
    why = (
        "it has accepted no conditions"
        if conditions is None
        else f"its conditions apply only from {conditions.since}"
    )
    return Breach(
        tuple(ctx.event.categories),
        f"Activity data went to ad provider {ctx.event.recipient} on {ctx.day}, but {why} "
        "(Art. 10 (4)).",
        {
            "day": ctx.day_text,
            "conditions_since": conditions.since.isoformat() if conditions else None,
        },
    )


@rule(
    "art10.purpose",
    article="10",
    severity=Severity.MEDIUM,
    scope=Scope.AD_PROVIDER,
    title="Ad provider data for a purpose beyond its conditions",
)
def purpose(ctx: Context) -> Breach | None:
    """An ad provider with conditions receives data about individual users for a purpose
    not in its ``conditions.use_limited_to``.
    """
    if not _to_ad_provider_in_person_form(ctx):
        return None
    assert ctx.recipient is not None
    conditions = ctx.recipient.conditions
    if conditions is None or ctx.event.purpose in conditions.use_limited_to:
        return None
    return Breach(
        tuple(ctx.event.categories),
        f"Ad provider {ctx.event.recipient} received data for {ctx.event.purpose}; its "
        f"conditions limit use to {', '.join(conditions.use_limited_to)} (Art. 10 (4) (ii)).",
        {"purpose": ctx.event.purpose, "use_limited_to": list(conditions.use_limited_to)},
    )


@rule(
    "art10.onward",
    article="10",
    severity=Severity.HIGH,
    scope=Scope.VIA_AD_PROVIDER,
    title="Ad provider passed data on without the same conditions",
)
def onward(ctx: Context) -> Breach | None:
    """An ad provider (the event's ``via``) passes data about individual users on to a
    recipient not in its ``onward`` list, or its conditions do not bind onward
    recipients (no ``conditions``, or ``binds_onward: false``).

    Lawful near-miss: a listed onward recipient of a provider whose conditions say
    ``binds_onward: true``.
    """
    if ctx.via is None or ctx.event.form in _NOT_PERSONAL_FORMS:
        return None
    event = ctx.event
    conditions = ctx.via.conditions
    if event.recipient not in ctx.via.onward:
        why = f"{event.recipient} is not among the recipients it may pass data on to"
    elif conditions is None or not conditions.binds_onward:
        why = f"it does not bind {event.recipient} to the same conditions"
    else:
        return None
    return Breach(
        tuple(event.categories),
        f"Ad provider {event.via} passed activity data on to {event.recipient}, but {why} "
        "(Art. 10 (4) (iii)).",
        {
            "via": event.via,
            "allowed_onward": list(ctx.via.onward),
            "binds_onward": conditions.binds_onward if conditions else None,
        },
    )


_PAST = {Action.TRANSFER: "transferred", Action.USE: "used"}
_RETAINED_ACTIONS = (Action.TRANSFER, Action.USE)


def collected_on(ctx: Context) -> date | None:
    """When the data was collected, if the event says (``attributes.collected_at``/``_on``)."""
    for key in ("collected_at", "collected_on"):
        value = ctx.event.attributes.get(key)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            if moment.tzinfo is None:
                return moment.date()
            return ctx.policy.day_of(moment)
    return None


@rule(
    "art10.retention",
    article="10",
    severity=Severity.MEDIUM,
    scope=Scope.ANY,
    title="Activity history kept beyond its retention period",
)
def retention(ctx: Context) -> Breach | None:
    """Personal data is used or transferred more days after its collection than
    ``retention_days`` allows for its category (the longest matching entry wins). Judged
    only when the event says when the data was collected: ``attributes.collected_at``
    (RFC 3339) or ``attributes.collected_on`` (a date), as days on the policy's calendar.

    Lawful near-miss: data exactly ``retention_days`` old; an event that does not say
    when its data was collected.
    """
    event = ctx.event
    attributes = event.attributes
    if "collected_at" not in attributes and "collected_on" not in attributes:
        return None  # the common case: nothing says when the data was collected
    if not ctx.policy.retention_days:
        return None
    if event.action not in _RETAINED_ACTIONS or event.form in _NOT_PERSONAL_FORMS:
        return None
    collected = collected_on(ctx)
    if collected is None:
        return None
    age = (ctx.day - collected).days
    overdue = []
    limits = {}
    for cat in event.categories:
        days = ctx.policy.retention_for(cat)
        if days is not None and age > days:
            overdue.append(cat)
            limits[cat] = days
    if not overdue:
        return None
    return Breach(
        tuple(overdue),
        f"{event.source} {_PAST[event.action]} {', '.join(overdue)} {age} days after "
        "collection, beyond the retention period (Art. 10 (3)).",
        {"collected_on": collected.isoformat(), "age_days": age, "retention_days": limits},
    )
