"""Events packed to cross a pipe come back as the very models validation made."""

from __future__ import annotations

import marshal
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from lineage.demo import generate_day
from lineage.schemas import AccessEvent, ConsentEvent, EventRejected, decode_event
from lineage.schemas.judged import Access, judged, model_of
from lineage.schemas.packed import ACCESS_FIELDS, CONSENT_FIELDS, pack, unpack, unpack_judged
from tests.helpers import access, consent

EVENTS: list[dict[str, Any]] = [
    access(recipient="researchers"),
    access(type="access", schema_version="1", action="use", recipient=None, subject=None),
    access(
        event_id="e-full",
        occurred_at="2025-06-01T23:59:59.123456789Z",
        via="adco",
        recipient="researchers",
        form="pseudonymized",
        pseudonymization={"method": "hmac-sha256", "keyed": True},
        legal_basis="exception",
        exception={"kind": "legal_requirement", "reference": "case 12"},
        encrypted_in_transit=False,
        attributes={"s": "text", "i": 7, "big": 2**62, "f": 1.5, "b": False, "n": None},
    ),
    access(
        occurred_at="1999-12-31T10:00:00-03:30",
        legal_basis="consent",
        recipient="adco",
        exception={"kind": "emergency"},
        form="aggregated",
    ),
    access(
        occurred_at="2025-06-01t12:00:00.5+14:00", categories=["a", "b.c", "b.c"], action="collect"
    ),
    consent(),
    consent(recipient="*", purposes=["research", "ads"], status="withdrawn", reference="r-9"),
    consent(schema_version="1", purposes=None, reference=None),
]


def same(a: BaseModel | None, b: BaseModel | None) -> None:
    """``a`` and ``b`` are equal field by field, each of the same type, with the same
    fields set and the same time zone object type."""
    assert type(a) is type(b)
    if a is None or b is None:
        return
    assert a.model_fields_set == b.model_fields_set
    assert type(a.model_fields_set) is set
    assert a.__pydantic_extra__ == b.__pydantic_extra__
    assert a.__pydantic_private__ == b.__pydantic_private__
    for name in type(a).model_fields:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, BaseModel):
            same(x, y)
            continue
        assert type(x) is type(y), name
        assert x == y, name
        if name == "occurred_at":
            assert type(x.tzinfo) is type(y.tzinfo)
            assert x.utcoffset() == y.utcoffset() and x.isoformat() == y.isoformat()
        if isinstance(x, dict):
            assert [(k, type(v)) for k, v in x.items()] == [(k, type(v)) for k, v in y.items()]
    assert a.model_dump_json() == b.model_dump_json()
    assert a == b


def crossed(event: AccessEvent | ConsentEvent) -> AccessEvent | ConsentEvent:
    """The event as the run gets it: packed, through marshal, unpacked."""
    return unpack(marshal.loads(marshal.dumps(pack(event))))


def test_the_packed_fields_are_the_models_fields() -> None:
    # A field added to a model and not to the packed form would be lost on the way.
    assert tuple(AccessEvent.model_fields) == ACCESS_FIELDS
    assert tuple(ConsentEvent.model_fields) == CONSENT_FIELDS


@pytest.mark.parametrize("fields", EVENTS, ids=lambda f: f["event_id"] + str(len(f)))
def test_an_event_unpacked_is_the_model_validation_made(fields: dict[str, Any]) -> None:
    event = decode_event(orjson.dumps(fields))
    same(crossed(event), event)


def test_numbers_beyond_64_bits_come_back_the_same() -> None:
    line = (
        b'{"event_id": "e-big", "occurred_at": "2025-06-01T12:00:00+09:00", "source": "shop",'
        b' "action": "use", "categories": ["identity.name"], "purpose": "billing",'
        b' "attributes": {"big": 123456789012345678901234567890, "neg": -1e300}}'
    )
    event = decode_event(line)
    same(crossed(event), event)


def test_every_event_of_a_day_comes_back_the_same() -> None:
    checked = 0
    for line in generate_day(events=3_000, seed=5):
        try:
            event = decode_event(line)
        except EventRejected:
            continue
        same(crossed(event), event)
        checked += 1
    assert checked > 2_900


@pytest.mark.parametrize("fields", EVENTS, ids=lambda f: f["event_id"] + str(len(f)))
def test_an_access_event_as_judged_holds_the_models_values(fields: dict[str, Any]) -> None:
    event = decode_event(orjson.dumps(fields))
    taken = unpack_judged(marshal.loads(marshal.dumps(pack(event))))
    if isinstance(event, ConsentEvent):
        same(taken, event)  # type: ignore[arg-type]
        return
    assert isinstance(taken, Access)
    for made in (taken, judged(event)):
        for name in ACCESS_FIELDS:
            got, want = getattr(made, name), getattr(event, name)
            assert type(got) is type(want) and got == want, name
        assert made.fields_set == event.model_fields_set
        assert made.occurred_at.isoformat() == event.occurred_at.isoformat()
        same(model_of(made), event)
