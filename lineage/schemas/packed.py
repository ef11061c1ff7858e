"""Validated events in a compact form that crosses a pipe cheaply, and back.

An embedded run decodes and validates its events in a process of its own
(:mod:`lineage.decode_process`) and hands the judging process what validation made of
each. Pickling a pydantic model costs more than validating the JSON again; a dict of
plain values that ``marshal`` carries costs about half of it, read and made back into
the model, and :func:`unpack` makes the very model :func:`~lineage.schemas.decode_event`
made: the same field values and types (pydantic's own ``TzInfo`` on the time), the
same fields set. No validation runs on the way back: :func:`pack` takes only events
that were validated.

>>> from lineage.schemas import decode_event
>>> event = decode_event(b'{"event_id": "e1", "occurred_at": "2026-04-01T10:00:00+09:00",'
...     b' "source": "crm", "action": "use", "categories": ["contact.email"],'
...     b' "purpose": "support"}')
>>> unpack(pack(event)) == event
True
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any, cast

from pydantic import BaseModel

from lineage.schemas.events import AccessEvent, ConsentEvent, ExceptionClaim, Pseudonymization
from lineage.schemas.types import Action, ConsentStatus, ExceptionKind, Form, LegalBasis
from lineage.schemas.zones import ZONES, zone_of

__all__ = ["ACCESS_FIELDS", "CONSENT_FIELDS", "Packed", "pack", "unpack"]

#: What :func:`pack` makes: (0 for access or 1 for consent, the fields' values by name,
#: the fields set as bits in the order of :data:`ACCESS_FIELDS` or :data:`CONSENT_FIELDS`).
#: By name: marshal writes each name once a message and refers back to it after, and
#: the dict it makes becomes the model's as it is.
Packed = tuple[int, dict[str, Any], int]

#: The fields of each model, in the order their values are packed. A field added to a
#: model must be added here too (``tests/test_packed.py`` checks).
ACCESS_FIELDS: tuple[str, ...] = (
    "type",
    "schema_version",
    "event_id",
    "occurred_at",
    "source",
    "action",
    "subject",
    "categories",
    "form",
    "pseudonymization",
    "purpose",
    "recipient",
    "via",
    "legal_basis",
    "exception",
    "encrypted_in_transit",
    "attributes",
)
CONSENT_FIELDS: tuple[str, ...] = (
    "type",
    "schema_version",
    "event_id",
    "occurred_at",
    "subject",
    "recipient",
    "purposes",
    "status",
    "reference",
)

_ACTION = Action._value2member_map_
_FORM = Form._value2member_map_
_BASIS = LegalBasis._value2member_map_
_STATUS = ConsentStatus._value2member_map_
_EXCEPTION = ExceptionKind._value2member_map_
_new = object.__new__


_BIT: dict[tuple[str, ...], dict[str, int]] = {
    order: {name: 1 << i for i, name in enumerate(order)}
    for order in (ACCESS_FIELDS, CONSENT_FIELDS)
}
#: Each model's combinations of fields set met so far, and their bits (few occur; at
#: most one per combination of the optional fields).
_ACCESS_BITS: dict[frozenset[str], int] = {}
_CONSENT_BITS: dict[frozenset[str], int] = {}
_ACCESS_SETS: dict[int, frozenset[str]] = {}
_CONSENT_SETS: dict[int, frozenset[str]] = {}


def _bits(fields_set: set[str], known: dict[frozenset[str], int], order: tuple[str, ...]) -> int:
    key = frozenset(fields_set)
    bits = known.get(key)
    if bits is None:
        bit = _BIT[order]
        bits = known[key] = sum(bit[name] for name in fields_set)
    return bits


def _names(bits: int, sets: dict[int, frozenset[str]], order: tuple[str, ...]) -> set[str]:
    """The fields set that ``bits`` stands for: a set of its own per model, as
    validation gives each (few combinations occur; each is made once)."""
    names = sets.get(bits)
    if names is None:
        names = sets[bits] = frozenset(n for i, n in enumerate(order) if bits >> i & 1)
    return set(names)


def _time(moment: datetime) -> tuple[bytes, int]:
    """The time as (the 10 bytes ``datetime`` pickles itself as, its UTC offset in
    seconds): what :func:`_moment` makes again, with the zone of that offset."""
    offset = moment.utcoffset()
    assert offset is not None, "a validated event time has its offset"
    reduced = cast(tuple[Any, tuple[bytes, Any]], moment.__reduce__())
    state = reduced[1][0]
    return state, offset.days * 86_400 + offset.seconds


#: ``datetime`` called as unpickling calls it: the bytes :func:`_time` took, and a zone.
_from_state = cast(Callable[[bytes, tzinfo], datetime], datetime)


def _moment(parts: tuple[bytes, int]) -> datetime:
    state, offset = parts
    zone = ZONES.get(offset)
    if zone is None:
        zone = zone_of(offset)
    return _from_state(state, zone)


_base = BaseModel.__dict__
_set_dict = _base["__dict__"].__set__
_set_fields = _base["__pydantic_fields_set__"].__set__
_set_extra = _base["__pydantic_extra__"].__set__
_set_private = _base["__pydantic_private__"].__set__


def _model(cls: type[Any], values: dict[str, Any], fields_set: set[str]) -> Any:
    """An instance of ``cls`` with these values, as validation leaves one."""
    instance = _new(cls)
    _set_dict(instance, values)
    _set_fields(instance, fields_set)
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


def pack(event: AccessEvent | ConsentEvent) -> Packed:
    """A validated event as plain values (str, int, float, bool, None, bytes, and lists,
    tuples and dicts of them), in a dict in the order of the model's fields."""
    values = dict(event.__dict__)
    values["occurred_at"] = _time(values["occurred_at"])
    # An enum member's _value_ is a plain attribute; .value is a descriptor call.
    if isinstance(event, ConsentEvent):
        values["status"] = values["status"]._value_
        return 1, values, _bits(event.model_fields_set, _CONSENT_BITS, CONSENT_FIELDS)
    values["action"] = values["action"]._value_
    values["form"] = values["form"]._value_
    basis: LegalBasis | None = values["legal_basis"]
    if basis is not None:
        values["legal_basis"] = basis._value_
    pseudo: Pseudonymization | None = values["pseudonymization"]
    if pseudo is not None:
        values["pseudonymization"] = (pseudo.method, pseudo.keyed)
    claim: ExceptionClaim | None = values["exception"]
    if claim is not None:
        values["exception"] = (
            claim.kind._value_,
            claim.reference,
            "reference" in claim.model_fields_set,
        )
    return 0, values, _bits(event.model_fields_set, _ACCESS_BITS, ACCESS_FIELDS)


def unpack(packed: Packed) -> AccessEvent | ConsentEvent:
    """The model :func:`pack` was given, made again without validating (``packed`` is
    taken over: its dict becomes the model's)."""
    kind, values, bits = packed
    values["occurred_at"] = _moment(values["occurred_at"])
    if kind == 1:
        values["status"] = _STATUS[values["status"]]
        consent: ConsentEvent = _model(
            ConsentEvent, values, _names(bits, _CONSENT_SETS, CONSENT_FIELDS)
        )
        return consent
    values["action"] = _ACTION[values["action"]]
    values["form"] = _FORM[values["form"]]
    basis = values["legal_basis"]
    if basis is not None:
        values["legal_basis"] = _BASIS[basis]
    pseudo = values["pseudonymization"]
    if pseudo is not None:
        values["pseudonymization"] = _model(
            Pseudonymization, {"method": pseudo[0], "keyed": pseudo[1]}, {"method", "keyed"}
        )
    claim = values["exception"]
    if claim is not None:
        values["exception"] = _model(
            ExceptionClaim,
            {"kind": _EXCEPTION[claim[0]], "reference": claim[1]},
            {"kind", "reference"} if claim[2] else {"kind"},
        )
    event: AccessEvent = _model(AccessEvent, values, _names(bits, _ACCESS_SETS, ACCESS_FIELDS))
    return event
