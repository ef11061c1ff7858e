"""The way without the models judges exactly as they do, or leaves the message to them.

:func:`lineage.scanning.plain_verdict` decodes the common access event with ``orjson``
and the contract's own checks, written out. Each test here holds it against the way
through the models (:func:`decode_event`, the scan for raw values, ``fingerprint`` and
``pack``): whatever it takes, it must pack as they do, with the same digest; whatever
they refuse, it must not take.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lineage.demo import generate_day
from lineage.redact import Redactor
from lineage.scanning import digest_of, fingerprint, plain_verdict
from lineage.schemas import decode_event
from lineage.schemas.packed import Packed, pack
from lineage.schemas.plain import pack_plain
from tests.helpers import access, consent

REDACTOR = Redactor(b"k" * 32)


def by_the_models(raw: bytes) -> tuple[str, Packed] | None:
    """What the way through the models makes of ``raw``: None for a message they refuse
    or one that holds raw personal data."""
    try:
        event = decode_event(raw)
    except Exception:
        return None
    event, found = REDACTOR.scan_event(event, raw)
    if found:
        return None
    return fingerprint(event, raw, False), pack(event)


def agrees(raw: bytes) -> bool:
    """The way without the models either leaves ``raw`` to them or makes what they
    make; True when it packed the message (whether or not it may hold raw values)."""
    verdict = plain_verdict(raw)
    if verdict is not None:
        assert verdict == by_the_models(raw), raw
    plain = pack_plain(raw)
    if plain is None:
        assert verdict is None
        return False
    event = decode_event(raw)  # raises if the models refuse what was taken
    assert plain[1] == pack(event), raw
    assert digest_of(plain[0]) == fingerprint(event, raw, False)
    return True


def test_it_takes_the_common_access_events_of_a_day_and_packs_them_as_the_models() -> None:
    taken = access_events = 0
    for raw in generate_day(seed=11, events=3_000, malformed=200):
        taken += plain_verdict(raw) is not None and agrees(raw)
        model = by_the_models(raw)
        access_events += model is not None and model[1][0] == 0
    assert access_events > 2_000
    assert taken == access_events


def ok(**fields: Any) -> dict[str, Any]:
    """A valid access event (tests.helpers' is a transfer without a recipient)."""
    return access(**{"recipient": "researchers", **fields})


FULL: dict[str, Any] = ok(
    type="access",
    schema_version="1",
    event_id="e-full",
    occurred_at="2025-06-01T23:59:59.123456+09:00",
    via="adco",
    recipient="researchers",
    form="pseudonymized",
    pseudonymization={"method": "hmac-sha256", "keyed": True},
    legal_basis="exception",
    exception={"kind": "legal_requirement", "reference": "case 12"},
    encrypted_in_transit=False,
    attributes={"s": "text", "i": 7, "big": 2**62, "b": False, "n": None},
)


@pytest.mark.parametrize(
    "event",
    [
        ok(),
        FULL,
        ok(subject=None, action="use", encrypted_in_transit=None),
        {**ok(action="use"), "subject": None, "recipient": None, "via": None},
        {**ok(), "legal_basis": None},
        {**ok(), "pseudonymization": None, "exception": None, "encrypted_in_transit": None},
        ok(exception={"kind": "emergency"}, legal_basis="exception"),
        ok(exception={"kind": "emergency", "reference": ""}),
        ok(form="aggregated", categories=["a", "b.c", "b.c"], action="collect"),
        ok(attributes={}),
        ok(attributes={"k" * 64: "v" * 1024, "t": True, "neg": -(2**63)}),
        ok(attributes={str(i): i for i in range(32)}),
        ok(event_id="x" * 64, subject="s" * 128, source="a" * 64),
    ],
)
def test_it_takes_each_field_as_the_models_do(event: dict[str, Any]) -> None:
    raw = json.dumps(event).encode()
    assert agrees(raw)


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (consent(), "a consent event"),
        (ok(type="consent"), "a consent event's type"),
        (ok(type="other"), "an unknown type"),
        (ok(schema_version="2"), "an unknown version"),
        (ok(schema_version=1), "a version as a number"),
        ({**ok(), "extra": 1}, "an unknown field"),
        ({k: v for k, v in ok().items() if k != "purpose"}, "a field missing"),
        (ok(event_id=""), "an empty event id"),
        (ok(event_id="x" * 65), "an event id too long"),
        (ok(event_id=1), "an event id as a number"),
        (ok(subject=""), "an empty subject"),
        (ok(subject="s" * 129), "a subject too long"),
        (ok(source="Shop"), "an id in capitals"),
        (ok(source="shop\n"), "an id with a line end"),
        (ok(source="-shop"), "an id starting with a dash"),
        (ok(source="a" * 65), "an id too long"),
        (ok(categories=[]), "no category"),
        (ok(categories=["x"] * 65), "too many categories"),
        (ok(categories=["Contact.email"]), "a category in capitals"),
        (ok(categories=["a.b.c.d.e"]), "a category five deep"),
        (ok(categories="contact.email"), "categories as a text"),
        (ok(action="share"), "an unknown action"),
        (ok(form="identifiable"), "an unknown form"),
        ({**ok(), "form": None}, "a form of null"),
        (ok(form="pseudonymized"), "no pseudonymization with its form"),
        ({**ok(action="transfer"), "recipient": None}, "a transfer without a recipient"),
        (ok(pseudonymization={"method": "sha256"}), "a pseudonymization without keyed"),
        (ok(pseudonymization={"method": "", "keyed": True}), "an empty method"),
        (ok(pseudonymization={"method": "m", "keyed": 1}), "keyed as a number"),
        (ok(pseudonymization={"method": "m", "keyed": True, "x": 1}), "a field too many"),
        (ok(exception={"kind": "whim"}), "an unknown exception"),
        (ok(exception={"kind": "emergency", "reference": None}), "a reference of null"),
        (ok(exception={"kind": "emergency", "reference": "r" * 257}), "a long reference"),
        (ok(legal_basis="contract"), "an unknown legal basis"),
        (ok(encrypted_in_transit="true"), "a boolean as a text"),
        (ok(encrypted_in_transit=1), "a boolean as a number"),
        ({**ok(), "attributes": None}, "attributes of null"),
        (ok(attributes={"": 1}), "an empty attribute key"),
        (ok(attributes={"k" * 65: 1}), "an attribute key too long"),
        (ok(attributes={"k": "v" * 1025}), "an attribute value too long"),
        (ok(attributes={"k": [1]}), "an attribute value as a list"),
        (ok(attributes={"k": {"a": 1}}), "an attribute value as an object"),
        (ok(attributes={str(i): i for i in range(33)}), "too many attributes"),
        (ok(attributes={"f": 1.5}), "a fraction, left to the models"),
        (ok(attributes={"big": 2**70}), "an integer past 64 bits"),
    ],
)
def test_it_leaves_to_the_models_what_it_does_not_take(event: dict[str, Any], why: str) -> None:
    raw = json.dumps(event).encode()
    assert not agrees(raw), why


def test_an_integer_past_64_bits_that_orjson_reads_as_a_float_is_left_to_the_models() -> None:
    raw = json.dumps(ok(attributes={"big": 2**70})).encode()
    assert pack_plain(raw) is None
    model = by_the_models(raw)
    assert model is not None
    assert model[1][1][-1] == {"big": 2**70}


def test_a_message_holding_a_raw_value_is_left_to_the_models() -> None:
    raw = json.dumps(ok(subject="taro@example.com")).encode()
    assert pack_plain(raw) is not None
    assert plain_verdict(raw) is None


@pytest.mark.parametrize(
    "time",
    [
        "2025-06-01T12:00:00Z",
        "2025-06-01T12:00:00+00:00",
        "2025-06-01T12:00:00-00:00",
        "2025-06-01T23:59:59+23:59",
        "2025-06-01T00:00:00-23:59",
        "2025-06-01T12:00:00.5+09:00",
        "2025-06-01T12:00:00.000001Z",
        "2025-06-01T12:00:00.123456Z",
        "2025-06-01T12:00:00.1234567Z",
        "2025-06-01T12:00:00.999999999Z",
        "2025-06-01t12:00:00Z",
        "2025-06-01T12:00:00z",
        "2025-06-01 12:00:00Z",
        "2025-06-01T12:00Z",
        "2025-06-01T12:00:00",
        "2025-06-01T12:00:00+0900",
        "2025-06-01T12:00:00+09",
        "2025-06-01T12:00:00.Z",
        "2024-02-29T12:00:00Z",
        "2025-02-29T12:00:00Z",
        "2000-02-29T12:00:00Z",
        "1900-02-29T12:00:00Z",
        "2025-04-31T12:00:00Z",
        "2025-12-31T12:00:00Z",
        "2025-13-01T12:00:00Z",
        "2025-00-01T12:00:00Z",
        "2025-01-00T12:00:00Z",
        "2025-06-01T24:00:00Z",
        "2025-06-01T12:60:00Z",
        "2025-06-01T12:00:60Z",
        "2025-06-01T12:00:00+24:00",
        "2025-06-01T12:00:00+09:60",
        "1000-01-01T00:00:00Z",
        "0999-12-31T23:59:59Z",
        "8999-12-31T23:59:59Z",
        "9000-01-01T00:00:00Z",
        "9019-01-01T00:00:00Z",
        "9998-01-01T00:00:00Z",
        "9999-01-01T00:00:00Z",
        "２025-06-01T12:00:00Z",
        "2025-06-01T12:00:00.１Z",
        "2025-06-01T12:00:00+09:00 ",
        "+2025-06-01T12:00:00Z",
    ],
)
def test_an_event_time_is_taken_as_the_models_take_it(time: str) -> None:
    agrees(json.dumps(ok(occurred_at=time)).encode())


def test_the_ids_of_a_batch_are_written_once_and_loaded_as_one_object() -> None:
    """Two messages naming the same ids pack them as one object each, so that a batch's
    ``marshal`` writes each once and loading it makes one object of each."""
    import marshal

    first = pack_plain(json.dumps(ok(event_id="e-1")).encode())
    second = pack_plain(json.dumps(ok(event_id="e-2")).encode())
    assert first is not None and second is not None
    a, b = first[1][1], second[1][1]
    for at in (4, 5, 7, 8, 10, 11):  # source, action, categories, form, purpose, recipient
        assert a[at] == b[at]
    for at in (4, 5, 8, 10, 11):
        assert a[at] is b[at]
    assert a[7][0] is b[7][0]
    loaded_a, loaded_b = marshal.loads(marshal.dumps([a, b]))
    assert loaded_a[4] is loaded_b[4] and loaded_a[7][0] is loaded_b[7][0]
    assert loaded_a == a and loaded_b == b


def test_a_minute_read_once_serves_every_time_within_it() -> None:
    """The minute a time opens with is read once and kept, refused or not: the times
    that share it are still each taken, or refused, as the models take them."""
    from lineage.schemas import plain

    plain._MINUTES.clear()
    times = (
        "2025-06-01T12:00:00Z",
        "2025-06-01T12:00:59.5+09:00",
        "2025-06-01T12:00:60Z",
        "2025-06-01T12:00:00.1234567Z",
        "2025-06-01T12:00:00+0900",
        "2025-06-01T12:00+09:00",
        "2025-02-29T12:00:00Z",
        "2025-02-29T12:00:01Z",
    )
    taken = [agrees(json.dumps(ok(occurred_at=time)).encode()) for time in times]
    assert taken == [True, True, False, False, False, False, False, False]
    minutes = dict(plain._MINUTES)
    assert minutes == {
        "2025-06-01T12:00": bytes((2025 >> 8, 2025 & 255, 6, 1, 12, 0)),
        "2025-02-29T12:00": b"",
    }


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id": "e-1", "event_id": "e-2", "occurred_at": "2025-06-01T12:00:00Z",'
        b' "source": "shop", "action": "use", "categories": ["a"], "purpose": "p"}',
        b'{"event_id":"e-1","occurred_at":"2025-06-01T12:00:00Z","source":"shop",'
        b'"action":"use","categories":["a"],"purpose":"p","attributes":{"k":1,"k":"2"}}',
        b' {"event_id":"e-1","occurred_at":"2025-06-01T12:00:00Z","source":"shop",'
        b'"action":"use","categories":["a"],"purpose":"p"}\t',
        b'{"event_id":"e-\\u00e9","occurred_at":"2025-06-01T12:00:00Z","source":"sh\\u006fp",'
        b'"action":"use","categories":["a"],"purpose":"p"}',
        b'{"event_id":"e-1","occurred_at":"2025-06-01T12:00:00Z","source":"shop",'
        b'"action":"use","categories":["a"],"purpose":"p",}',
        b'{"event_id":"e-\xff","occurred_at":"2025-06-01T12:00:00Z","source":"shop",'
        b'"action":"use","categories":["a"],"purpose":"p"}',
        b'{"event_id":"e-\\ud800","occurred_at":"2025-06-01T12:00:00Z","source":"shop",'
        b'"action":"use","categories":["a"],"purpose":"p"}',
        b'\xef\xbb\xbf{"event_id":"e-1","occurred_at":"2025-06-01T12:00:00Z","source":"shop",'
        b'"action":"use","categories":["a"],"purpose":"p"}',
        b'{"event_id":"e-1","occurred_at":"2025-06-01T12:00:00Z","source":"shop",'
        b'"action":"use","categories":["a"],"purpose":"p","attributes":{"n":NaN}}',
        b"[]",
        b"null",
        b"",
    ],
)
def test_json_it_reads_as_the_models_read_it(raw: bytes) -> None:
    agrees(raw)


def test_a_message_over_the_limit_is_left_to_the_models() -> None:
    raw = json.dumps(ok()).encode()
    assert pack_plain(raw[:-1] + b" " * (64 * 1024) + b"}") is None


# Values near the contract's bounds, valid and not, for each field.
_TEXTS = st.sampled_from(
    ["", "a", "shop", "Shop", "shop\n", "a.b", "a..b", "-a", "x" * 64, "x" * 65, "é", "0"]
)
_IDS = st.one_of(_TEXTS, st.text(max_size=70), st.integers(), st.none(), st.booleans())
_TIMES = st.one_of(
    st.sampled_from(["2025-06-01T12:00:00Z", "2024-02-29T23:59:59.5+09:00"]),
    st.builds(
        "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
        st.integers(990, 10_000),
        st.integers(0, 13),
        st.integers(0, 32),
        st.sampled_from(["T", "t", " "]),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.sampled_from(["", ".", ".5", ".123456", ".1234567", ".000000001"]),
        st.sampled_from(["Z", "z", "+00:00", "-00:00", "+09:00", "-23:59", "+24:00", "+0900", ""]),
    ),
    st.text(max_size=40),
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from(["access", "consent", "Access", 1]),
    "schema_version": st.sampled_from(["1", "2", 1]),
    "event_id": _IDS,
    "occurred_at": _TIMES,
    "source": _IDS,
    "action": st.sampled_from(["collect", "use", "transfer", "delete", "share", 1, None]),
    "subject": _IDS,
    "categories": st.one_of(
        st.lists(st.sampled_from(["a", "a.b", "A.b", "a.b.c.d", "a.b.c.d.e", "", 1]), max_size=4),
        st.lists(st.just("a"), min_size=63, max_size=66),
        _IDS,
    ),
    "form": st.sampled_from(["identified", "pseudonymized", "anonymized", "aggregated", "x"]),
    "pseudonymization": st.one_of(
        st.none(),
        st.fixed_dictionaries({"method": _IDS, "keyed": st.one_of(st.booleans(), st.none())}),
        st.dictionaries(st.sampled_from(["method", "keyed", "x"]), _SCALARS, max_size=3),
    ),
    "purpose": _IDS,
    "recipient": _IDS,
    "via": _IDS,
    "legal_basis": st.sampled_from(["consent", "outsourcing", "exception", "none", "x", None]),
    "exception": st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["kind", "reference", "x"]),
            st.one_of(st.sampled_from(["emergency", "legal_action", "whim"]), _SCALARS),
            max_size=3,
        ),
    ),
    "encrypted_in_transit": st.sampled_from([True, False, None, "true", 0, 1]),
    "attributes": st.one_of(
        st.dictionaries(st.text(max_size=66), _SCALARS, max_size=34),
        st.none(),
        st.lists(_SCALARS, max_size=2),
    ),
}


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """An access event with some fields replaced by values near their bounds, some left
    out and perhaps one unknown, written as JSON in one of several ways."""
    event = ok(recipient="researchers", via="adco")
    for name in draw(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=4, unique=True)):
        event[name] = draw(_FIELDS[name])
    for name in draw(st.lists(st.sampled_from(sorted(event)), max_size=2, unique=True)):
        del event[name]
    if draw(st.booleans()) and draw(st.booleans()):
        event[draw(st.text(max_size=8))] = draw(_SCALARS)
    return json.dumps(
        event, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 1]))
    ).encode()


@settings(max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
@example(json.dumps(ok(occurred_at="2024-02-29T12:00:00Z")).encode())
def test_whatever_it_takes_it_packs_as_the_models(raw: bytes) -> None:
    agrees(raw)


@settings(max_examples=500, deadline=None)
@given(messages(), st.integers(min_value=0), st.binary(min_size=1, max_size=3))
def test_a_message_broken_anywhere_is_taken_only_as_the_models_take_it(
    raw: bytes, at: int, bytes_: bytes
) -> None:
    at %= len(raw)
    agrees(raw[:at] + bytes_ + raw[at + len(bytes_) :])


def test_the_generated_messages_are_often_taken() -> None:
    """The property above proves something only if the generated messages include many
    that the way without the models takes."""
    taken = 0

    @settings(max_examples=300, deadline=None, database=None)
    @given(messages())
    def count(raw: bytes) -> None:
        nonlocal taken
        taken += agrees(raw)

    count()
    assert taken >= 30
