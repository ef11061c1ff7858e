"""Validated events in a compact form that crosses a pipe cheaply, and back.

An embedded run decodes and validates its events in a process of its own
(:mod:`lineage.decode_process`) and hands the judging process what validation made of
each. Pickling a pydantic model costs more than validating the JSON again; a tuple of
plain values that ``marshal`` carries costs a fraction of it, and :func:`unpack` makes
the very model :func:`~lineage.schemas.decode_event` made: the same field values and
types (pydantic's own ``TzInfo`` on the time), the same fields set. The judging
process takes an access event without the model (:func:`unpack_judged`). No
validation runs on the way back: :func:`pack` takes only events that were validated.

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
from lineage.schemas.judged import Access, model_of
from lineage.schemas.types import Action, ConsentStatus, ExceptionKind, Form, LegalBasis
from lineage.schemas.zones import ZONES, zone_of

__all__ = ["ACCESS_FIELDS", "CONSENT_FIELDS", "Packed", "pack", "unpack", "unpack_judged"]

#: What :func:`pack` makes: (0 for access or 1 for consent, the fields' values in the
#: order of :data:`ACCESS_FIELDS` or :data:`CONSENT_FIELDS`, the fields set as bits in
#: that order). A tuple: ``marshal`` reads one in half the time of a dict by name.
Packed = tuple[int, tuple[Any, ...], int]

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

_ACTION = cast(dict[str, Action], Action._value2member_map_)
_FORM = cast(dict[str, Form], Form._value2member_map_)
_BASIS = cast(dict[str, LegalBasis], LegalBasis._value2member_map_)
_STATUS = ConsentStatus._value2member_map_
_EXCEPTION = ExceptionKind._value2member_map_
_new = object.__new__


#: Each field's bit, by the order of its model's fields.
_ACCESS_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(ACCESS_FIELDS)}
_CONSENT_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(CONSENT_FIELDS)}
#: Each model's combinations of fields set met so far, by their bits (few occur; at
#: most one per combination of the optional fields).
_ACCESS_SETS: dict[int, frozenset[str]] = {}
_CONSENT_SETS: dict[int, frozenset[str]] = {}


def _bits(fields_set: set[str], bit: dict[str, int]) -> int:
    """The fields set as bits: a lookup a field, compiled (a frozenset of them as a
    cache's key took twice as long to make and hash)."""
    bits = 0
    for name in fields_set:
        bits |= bit[name]
    return bits


def _names(bits: int, sets: dict[int, frozenset[str]], order: tuple[str, ...]) -> frozenset[str]:
    """The fields set that ``bits`` stands for, shared (few combinations occur; each is
    made once): a model takes a ``set`` of its own, as validation gives each."""
    names = sets.get(bits)
    if names is None:
        names = sets[bits] = frozenset(n for i, n in enumerate(order) if bits >> i & 1)
    return names


def _time(moment: datetime) -> tuple[bytes, int]:
    """The time as (the 10 bytes ``datetime`` pickles itself as, its UTC offset in
    seconds): what :func:`_moment` makes again, with the zone of that offset."""
    zone = moment.tzinfo
    assert zone is not None, "a validated event time has its zone"
    # The zone's own utcoffset, as datetime.utcoffset() calls it: called through the
    # datetime, the call into pydantic's TzInfo took a quarter of packing an event.
    offset = zone.utcoffset(moment)
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
    tuples and dicts of them), in a tuple in the order of the model's fields."""
    values = event.__dict__
    if isinstance(event, ConsentEvent):
        # An enum member's _value_ is a plain attribute; .value is a descriptor call.
        return (
            1,
            (
                values["type"],
                values["schema_version"],
                values["event_id"],
                _time(values["occurred_at"]),
                values["subject"],
                values["recipient"],
                values["purposes"],
                values["status"]._value_,
                values["reference"],
            ),
            _bits(event.__pydantic_fields_set__, _CONSENT_BIT),
        )
    basis: LegalBasis | None = values["legal_basis"]
    pseudo: Pseudonymization | None = values["pseudonymization"]
    claim: ExceptionClaim | None = values["exception"]
    return (
        0,
        (
            values["type"],
            values["schema_version"],
            values["event_id"],
            _time(values["occurred_at"]),
            values["source"],
            values["action"]._value_,
            values["subject"],
            values["categories"],
            values["form"]._value_,
            None if pseudo is None else (pseudo.method, pseudo.keyed),
            values["purpose"],
            values["recipient"],
            values["via"],
            None if basis is None else basis._value_,
            None
            if claim is None
            else (claim.kind._value_, claim.reference, "reference" in claim.model_fields_set),
            values["encrypted_in_transit"],
            values["attributes"],
        ),
        _bits(event.__pydantic_fields_set__, _ACCESS_BIT),
    )


def unpack(packed: Packed) -> AccessEvent | ConsentEvent:
    """The model :func:`pack` was given, made again without validating."""
    kind, values, bits = packed
    return model_of(_access(values, bits)) if kind == 0 else _consent(values, bits)


def unpack_judged(packed: Packed) -> Access | ConsentEvent:
    """What :func:`unpack` makes, an access event as the engine judges it
    (:class:`~lineage.schemas.judged.Access`): the same values, without the model."""
    kind, values, bits = packed
    return _access(values, bits) if kind == 0 else _consent(values, bits)


def _consent(packed_values: tuple[Any, ...], bits: int) -> ConsentEvent:
    values = dict(zip(CONSENT_FIELDS, packed_values, strict=True))
    values["occurred_at"] = _moment(values["occurred_at"])
    values["status"] = _STATUS[values["status"]]
    fields_set = set(_names(bits, _CONSENT_SETS, CONSENT_FIELDS))
    consent: ConsentEvent = _model(ConsentEvent, values, fields_set)
    return consent


def _pseudonymization(packed: tuple[str, bool] | None) -> Pseudonymization | None:
    if packed is None:
        return None
    pseudo: Pseudonymization = _model(
        Pseudonymization, {"method": packed[0], "keyed": packed[1]}, {"method", "keyed"}
    )
    return pseudo


def _claim(packed: tuple[str, str, bool] | None) -> ExceptionClaim | None:
    if packed is None:
        return None
    claim: ExceptionClaim = _model(
        ExceptionClaim,
        {"kind": _EXCEPTION[packed[0]], "reference": packed[1]},
        {"kind", "reference"} if packed[2] else {"kind"},
    )
    return claim


def _access(values: tuple[Any, ...], bits: int) -> Access:
    (
        _,
        _,
        event_id,
        occurred_at,
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
    ) = values
    return Access(
        event_id,
        _moment(occurred_at),
        source,
        _ACTION[action],
        subject,
        categories,
        _FORM[form],
        _pseudonymization(pseudo),
        purpose,
        recipient,
        via,
        None if basis is None else _BASIS[basis],
        _claim(claim),
        encrypted,
        attributes,
        _names(bits, _ACCESS_SETS, ACCESS_FIELDS),
    )
