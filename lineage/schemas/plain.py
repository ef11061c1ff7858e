"""The common access event decoded and packed without pydantic, exactly as the models would.

An access event goes through :func:`~lineage.schemas.decode_event` (pydantic's strict
validation of the JSON), then :func:`~lineage.schemas.packed.pack`, and its digest is
taken of the message parsed once more (:func:`lineage.scanning.fingerprint`): about
6 µs an event, of which pydantic's own work is most. :func:`pack_plain` parses the
message once, with ``orjson``, checks the parsed value with the contract's own rules
and packs it, in about 2.5 µs; the digest is then taken of the same parsed value.

It takes only what it can judge exactly as the models do, and declines (None) all
else, which then takes the models' way as before: a consent event, a message that is
not JSON or not an object, any field missing, unknown, of the wrong type or out of
its bounds, a time it does not read whole (a fraction of more than six digits, a
lower-case ``t`` or ``z``, a date no calendar has), and an attribute that is a
fraction (``orjson`` reads an integer too large for 64 bits as a float, where
pydantic keeps the integer). Declining costs the parse; a message taken gives the
packed event :func:`~lineage.schemas.packed.pack` makes of the model
``decode_event`` makes, field for field, with the same fields set
(``tests/test_plain.py`` compares the two over generated messages and the benchmark
days).

Compiled (:mod:`lineage.compiled`): it runs for nearly every message of a run's
decoding process and of a worker's.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from lineage.schemas.events import MAX_EVENT_BYTES
from lineage.schemas.packed import ACCESS_FIELDS, Packed
from lineage.schemas.types import (
    ATTRIBUTE_KEY_MOST,
    ATTRIBUTE_VALUE_MOST,
    ATTRIBUTES_MOST,
    CATEGORIES_MOST,
    CATEGORY_PATTERN,
    EVENT_ID_MOST,
    ID_PATTERN,
    METHOD_MOST,
    SHORT_TEXT_MOST,
    SUBJECT_MOST,
    Action,
    ExceptionKind,
    Form,
    LegalBasis,
)

__all__ = ["pack_plain"]

_ID = re.compile(ID_PATTERN)
_CATEGORY = re.compile(CATEGORY_PATTERN)
_DAYS: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_SCALE: Final = (1, 100_000, 10_000, 1_000, 100, 10, 1)
# The bytes of an event time's layout (constants, which mypyc writes into the code).
_DASH: Final = 45  # -
_T: Final = 84
_COLON: Final = 58
_DOT: Final = 46
_Z: Final = 90
_PLUS: Final = 43
_MINUS: Final = 45
_ZERO: Final = 48
_NINE: Final = 57

# The contract's bounds (lineage.schemas.types), as statics of the compiled module.
_EVENT_ID_MOST: Final = EVENT_ID_MOST
_SUBJECT_MOST: Final = SUBJECT_MOST
_SHORT_TEXT_MOST: Final = SHORT_TEXT_MOST
_ATTRIBUTE_KEY_MOST: Final = ATTRIBUTE_KEY_MOST
_ATTRIBUTE_VALUE_MOST: Final = ATTRIBUTE_VALUE_MOST
_METHOD_MOST: Final = METHOD_MOST
_CATEGORIES_MOST: Final = CATEGORIES_MOST
_ATTRIBUTES_MOST: Final = ATTRIBUTES_MOST

#: Each value the contract allows, to itself: the value a message names is packed as
#: this one object (:data:`_IDS`).
_ACTIONS: dict[str, str] = {member.value: member.value for member in Action}
_FORMS: dict[str, str] = {member.value: member.value for member in Form}
_BASES: dict[str, str] = {member.value: member.value for member in LegalBasis}
_EXCEPTIONS = frozenset(member.value for member in ExceptionKind)

#: Each field of an access event's bit in the fields set, as packed.
_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(ACCESS_FIELDS)}
_TYPE = _BIT["type"]
_SCHEMA_VERSION = _BIT["schema_version"]
_EVENT_ID = _BIT["event_id"]
_OCCURRED_AT = _BIT["occurred_at"]
_SOURCE = _BIT["source"]
_ACTION = _BIT["action"]
_CATEGORIES = _BIT["categories"]
_PSEUDONYMIZATION = _BIT["pseudonymization"]
_PURPOSE = _BIT["purpose"]
_EXCEPTION = _BIT["exception"]
_ATTRIBUTES = _BIT["attributes"]
_REQUIRED = _EVENT_ID | _OCCURRED_AT | _SOURCE | _ACTION | _CATEGORIES | _PURPOSE

#: The ids and categories checked so far, each to itself when it matched, else to "":
#: ids come from a small vocabulary, so a pattern runs about once an id. Emptied when it
#: reaches :data:`_KEEP` entries, so that a stream of ever new ids cannot grow it.
#:
#: A message's id is packed as the object kept here, not the one its parse made: the
#: ``marshal`` of a batch of verdicts (:mod:`lineage.decode_process`) then writes each
#: id once and refers back to it, and the judging process that loads the batch gets
#: one object an id, whose hash is made once: about a microsecond less an event to
#: load and free, for a little more to write.
_IDS: dict[str, str] = {}
_CATEGORIES_SEEN: dict[str, str] = {}
#: The minutes of event times read so far ("YYYY-MM-DDTHH:MM"): the first six bytes of
#: the packed time, or b"" for a minute the models refuse. Emptied as the two above.
_MINUTES: dict[str, bytes] = {}
_KEEP = 4_096


def pack_plain(raw: bytes) -> tuple[Any, Packed] | None:
    """(the message parsed, the packed access event) when ``raw`` is an access event of
    a shape taken here, else None: the models decide that message."""
    if len(raw) > MAX_EVENT_BYTES:
        return None
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    bits = 0
    for name in parsed:
        bit = _BIT.get(name, 0)
        if not bit:
            return None
        bits |= bit
    if bits & _REQUIRED != _REQUIRED:
        return None
    values = _values(parsed, bits)
    if values is None:
        return None
    return parsed, (0, values, bits)


def _values(event: dict[str, Any], bits: int) -> tuple[Any, ...] | None:
    """The packed fields of ``event`` (all its names known, the required ones there), or
    None when any field is one the models would refuse or this does not read."""
    if bits & _TYPE and event["type"] != "access":
        return None
    if bits & _SCHEMA_VERSION and event["schema_version"] != "1":
        return None
    event_id = event["event_id"]
    if not isinstance(event_id, str) or not 0 < len(event_id) <= _EVENT_ID_MOST:
        return None
    time = event["occurred_at"]
    if not isinstance(time, str):
        return None
    moment = _moment(time)
    if moment is None:
        return None
    source = _id(event["source"])
    purpose = _id(event["purpose"])
    if source is None or purpose is None:
        return None
    action = _known(event["action"], _ACTIONS)
    if action is None:
        return None
    categories = event["categories"]
    if not isinstance(categories, list) or not 0 < len(categories) <= _CATEGORIES_MOST:
        return None
    for at, given in enumerate(categories):
        category = _category(given)
        if category is None:
            return None
        categories[at] = category  # the same text: the digest, made of it too, is the same
    subject = event.get("subject")
    if subject is not None and (
        not isinstance(subject, str) or not 0 < len(subject) <= _SUBJECT_MOST
    ):
        return None
    form = _known(event.get("form", "identified"), _FORMS)
    if form is None:
        return None
    recipient = event.get("recipient")
    if recipient is not None:
        recipient = _id(recipient)
        if recipient is None:
            return None
    via = event.get("via")
    if via is not None:
        via = _id(via)
        if via is None:
            return None
    basis = event.get("legal_basis")
    if basis is not None:
        basis = _known(basis, _BASES)
        if basis is None:
            return None
    encrypted = event.get("encrypted_in_transit")
    if encrypted is not None and not isinstance(encrypted, bool):
        return None
    pseudo: tuple[str, bool] | None = None
    if bits & _PSEUDONYMIZATION:
        pseudo = _pseudonymization(event["pseudonymization"])
        if pseudo is None and event["pseudonymization"] is not None:
            return None
    claim: tuple[str, str, bool] | None = None
    if bits & _EXCEPTION:
        claim = _claim(event["exception"])
        if claim is None and event["exception"] is not None:
            return None
    attributes: dict[str, Any] = {}
    if bits & _ATTRIBUTES:
        given = event["attributes"]
        if not isinstance(given, dict) or not _plain_attributes(given):
            return None
        attributes = given
    # The model's own checks (AccessEvent._required_together).
    if action == "transfer" and recipient is None:
        return None
    if form == "pseudonymized" and pseudo is None:
        return None
    return (
        "access",
        "1",
        event_id,
        moment,
        source,
        action,
        subject,
        categories,
        form,
        pseudo,
        purpose,
        recipient,
        via,
        basis,
        claim,
        encrypted,
        attributes,
    )


def _known(value: object, allowed: dict[str, str]) -> str | None:
    """``value`` as kept in ``allowed`` when it is a text there, else None."""
    return allowed.get(value) if isinstance(value, str) else None


def _id(value: object) -> str | None:
    return _matches(value, _ID, _IDS)


def _category(value: object) -> str | None:
    return _matches(value, _CATEGORY, _CATEGORIES_SEEN)


def _matches(value: object, pattern: re.Pattern[str], seen: dict[str, str]) -> str | None:
    """``value`` as kept in ``seen`` when it is a text that ``pattern`` matches whole,
    else None."""
    if not isinstance(value, str):
        return None
    known = seen.get(value)
    if known is None:
        if len(seen) >= _KEEP:
            seen.clear()
        known = seen[value] = value if pattern.fullmatch(value) is not None else ""
    return known or None


def _moment(text: str) -> tuple[bytes, int] | None:
    """The time as :func:`~lineage.schemas.packed.pack` packs it (the 10 bytes a
    ``datetime`` pickles itself as, and its UTC offset in seconds), or None when the
    models would refuse it or it has a layout not taken here: RFC 3339 with an
    upper-case ``T``, seconds, at most six digits of fraction, and ``Z`` or an offset.
    Read a byte at a time, compiled: a pattern with groups and ``int()`` of each took
    ten times as long. The minute it opens with ("YYYY-MM-DDTHH:MM") is read once
    (:data:`_MINUTES`): the events of a minute share it, and reading it was half the
    time."""
    data = text.encode()
    size = len(data)
    if size != len(text) or not 20 <= size <= 32:  # not ASCII, or not of this length
        return None
    opening = text[:16]
    head = _MINUTES.get(opening)
    if head is None:
        head = _minute(data)
        if len(_MINUTES) >= _KEEP:
            _MINUTES.clear()
        _MINUTES[opening] = head
    if not head or data[16] != _COLON:
        return None
    second = _number(data, 17, 19)
    if not 0 <= second <= 59:
        return None
    at = 19
    micro = 0
    if data[at] == _DOT:
        end = at + 1
        while end < size and end - at <= 6 and _ZERO <= data[end] <= _NINE:
            end += 1
        if end == at + 1 or (end < size and _ZERO <= data[end] <= _NINE):
            return None  # no digits, or more than six
        micro = _number(data, at + 1, end) * _SCALE[end - at - 1]
        at = end
    if size - at == 1:
        if data[at] != _Z:
            return None
        offset = 0
    elif size - at == 6 and data[at + 3] == _COLON:
        sign = data[at]
        hours = _number(data, at + 1, at + 3)
        minutes = _number(data, at + 4, at + 6)
        if (sign != _PLUS and sign != _MINUS) or not 0 <= hours <= 23 or not 0 <= minutes <= 59:
            return None
        offset = hours * 3_600 + minutes * 60
        if sign == _MINUS:
            offset = -offset
    else:
        return None
    return head + bytes((second, micro >> 16, micro >> 8 & 255, micro & 255)), offset


def _minute(data: bytes) -> bytes:
    """The first six bytes of :func:`_moment`'s state, from the minute ``data`` opens
    with, or b"" when the models would refuse it."""
    if data[4] != _DASH or data[7] != _DASH or data[10] != _T or data[13] != _COLON:
        return b""
    year = _number(data, 0, 4)
    month = _number(data, 5, 7)
    day = _number(data, 8, 10)
    hour = _number(data, 11, 13)
    minute = _number(data, 14, 16)
    if not 1000 <= year <= 9998 or not 1 <= month <= 12 or day < 1:  # the contract's years
        return b""
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day > _DAYS[month] + (1 if leap else 0):
        return b""
    if not 0 <= hour <= 23 or not 0 <= minute <= 59:
        return b""
    return bytes((year >> 8, year & 255, month, day, hour, minute))


def _number(data: bytes, start: int, end: int) -> int:
    """The number the ASCII digits ``data[start:end]`` write, or -1 if any is not one."""
    number = 0
    for at in range(start, end):
        digit = data[at] - _ZERO
        if not 0 <= digit <= 9:
            return -1
        number = number * 10 + digit
    return number


def _pseudonymization(value: object) -> tuple[str, bool] | None:
    if not isinstance(value, dict):
        return None
    given: dict[str, Any] = value
    if len(given) != 2:
        return None
    method = given.get("method")
    keyed = given.get("keyed")
    if (
        not isinstance(method, str)
        or not 0 < len(method) <= _METHOD_MOST
        or not isinstance(keyed, bool)
    ):
        return None
    return method, keyed


def _claim(value: object) -> tuple[str, str, bool] | None:
    if not isinstance(value, dict):
        return None
    given: dict[str, Any] = value
    kind = given.get("kind")
    if not isinstance(kind, str) or kind not in _EXCEPTIONS:
        return None
    if len(given) == 1:
        return kind, "", False
    reference = given.get("reference")
    if len(given) != 2 or not isinstance(reference, str) or len(reference) > _SHORT_TEXT_MOST:
        return None
    return kind, reference, True


def _plain_attributes(given: dict[str, Any]) -> bool:
    """Whether the models take these attributes as they are: few enough, each key and
    each text short enough, each other value an integer, a boolean or null (a fraction
    is left to the models: it may be an integer ``orjson`` read as a float)."""
    if len(given) > _ATTRIBUTES_MOST:
        return False
    for key, value in given.items():
        if not 0 < len(key) <= _ATTRIBUTE_KEY_MOST:
            return False
        if isinstance(value, str):
            if len(value) > _ATTRIBUTE_VALUE_MOST:
                return False
        elif not isinstance(value, int) and value is not None:  # int: bool too
            return False
    return True
