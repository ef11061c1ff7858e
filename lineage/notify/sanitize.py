"""What a notification may show of a record: no subject, no forged lines, no mentions.

Alerts and incidents carry text that producers wrote (``event_id``, ``source``,
categories, ...) or that rules built from it (``message``). Notifications land in
chat channels, mailboxes and SIEMs, so three rules hold for every one of them
(Slack, Teams, e-mail, webhooks, CEF), whatever the record holds:

1. **No subject.** :func:`without_subject` drops the ``subject`` field and replaces
   its value wherever it occurs in the record's other text (``message``, ids,
   evidence, ...) by ``[subject]``: the alert id leads to the full record in the
   audit trail. Fields the monitor itself fills from closed vocabularies or hashes
   (:data:`OWN_FIELDS`: ``alert_id``, ``rule``, ``severity``, times, ...) are left
   as they are, so that receivers can still deduplicate on ``alert_id``. A subject
   shorter than :data:`MIN_SUBJECT` characters is not searched for: it would mask
   unrelated text, and says little about anyone.
2. **No forged lines, no hidden text.** :func:`~lineage.characters.visible` writes
   every control or format character (:mod:`lineage.characters`: line feeds,
   carriage returns, NEL, U+2028/2029, escape sequences, bidi overrides, zero-width
   characters) as a backslash escape such as ``\\n`` or ``\\u202e``. A newline in
   ``event_id`` cannot start a line of its own in a body; the only line breaks are
   those the templates put between facts.
3. **No mentions.** :func:`no_mentions` puts a ZERO WIDTH SPACE (U+200B) after every
   ``@`` and ``<``: ``@everyone``, ``@here``, ``@channel``, ``<@U123>``, ``<@&role>``,
   ``<!channel>``, ``<!here>``, ``<#C1>`` and Teams' ``<at>`` then read the same but
   notify no one, in every chat apprise speaks to (the same device Discord's own
   clients use to escape a mention). It is channel-independent: apprise escapes
   ``<``, ``>`` and ``&`` per service where a service needs it (Slack's plain text).

:func:`for_people` applies rules 2 and 3 to one value; :mod:`lineage.notify.text`
uses it for every field it shows. CEF applies rule 2 with its own escapes for line
breaks (:mod:`lineage.notify.cef`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lineage.characters import visible

__all__ = [
    "MIN_SUBJECT",
    "OWN_FIELDS",
    "SUBJECT_MASK",
    "for_people",
    "no_mentions",
    "without_subject",
]

#: What stands where the subject's value was.
SUBJECT_MASK = "[subject]"
#: A subject shorter than this is not searched for in other fields.
MIN_SUBJECT = 3
#: Fields the monitor fills itself (hashes, closed vocabularies, times, counts): never
#: searched for the subject, so that ``alert_id`` stays a key receivers can rely on.
OWN_FIELDS = frozenset(
    {
        "alert_id",
        "incident_id",
        "rule",
        "article",
        "severity",
        "status",
        "occurred_at",
        "first_seen",
        "last_seen",
        "count",
        "policy_version",
        "recipient_kind",
    }
)

_ZWSP = "\u200b"


def no_mentions(text: str) -> str:
    """``text`` with a zero-width space after every ``@`` and ``<``: no chat mention.

    >>> no_mentions("ping @here and <!channel>") == "ping @\\u200bhere and <\\u200b!channel>"
    True
    """
    return text.replace("@", "@" + _ZWSP).replace("<", "<" + _ZWSP)


def for_people(value: Any) -> str:
    """One value as it may appear in a title or body for people: visible and inert."""
    return no_mentions(visible(str(value)))


def without_subject(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` without its ``subject``, whose value is masked elsewhere.

    >>> without_subject({"subject": "u-42", "message": "u-42 paid", "alert_id": "a"})
    {'message': '[subject] paid', 'alert_id': 'a'}
    """
    subject = record.get("subject")
    out = {key: value for key, value in record.items() if key != "subject"}
    if not isinstance(subject, str) or len(subject) < MIN_SUBJECT:
        return out
    return {
        key: value if key in OWN_FIELDS else _masked(value, subject) for key, value in out.items()
    }


def _masked(value: Any, subject: str) -> Any:
    if isinstance(value, str):
        return value.replace(subject, SUBJECT_MASK)
    if isinstance(value, Mapping):
        return {_masked(k, subject): _masked(v, subject) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v, subject) for v in value]
    return value
