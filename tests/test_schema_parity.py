"""The JSON Schemas for other languages refuse exactly what the monitor refuses.

Hypothesis builds events (valid ones, then broken in one or more places: a field
dropped, added, retyped or given a near-miss value) and each goes to both sides: the
runtime's ``decode_event`` and a JSON Schema validator on ``schemas/*.schema.json``
(access or consent, as the monitor tells them apart). The two must agree on every one.

The validator asserts ``format`` (RFC 3339 ``date-time``), as the schemas' ``$comment``
asks, and reads ``pattern`` as ECMA-262 does: ``$`` is the end of the input (Python's
``re`` also lets it match before a final newline). Events stay under the size limit,
which a schema cannot state (it says so in its ``$comment``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from lineage.schemas import MAX_EVENT_BYTES, EventRejected, decode_event

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if isinstance(instance, str) and not re.search(_ecma(pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _ecma(pattern: str) -> str:
    return (
        pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern
    )


EcmaValidator = jsonschema.validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def _validator(name: str) -> Any:
    schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return EcmaValidator(schema, format_checker=FormatChecker())


ACCESS = _validator("access-event.schema.json")
CONSENT = _validator("consent-event.schema.json")


def schema_accepts(event: Any) -> bool:
    return bool(ACCESS.is_valid(event) or CONSENT.is_valid(event))


def runtime_accepts(raw: bytes) -> bool:
    try:
        decode_event(raw)
    except EventRejected:
        return False
    return True


# -- values ---------------------------------------------------------------------------------

IDS = st.sampled_from(["crm", "shop", "payco", "market-research", "a", "x.y_z-1", "0abc"])
CATEGORIES = st.sampled_from(["contact.email", "identity.name", "a.b.c.d", "x", "device_id"])
NEAR_IDS = st.sampled_from(
    ["", "CRM", "crm\n", " crm", "-crm", "a" * 64, "a" * 65, "crm!", "ｃｒｍ", "*", "a..b"]
)
NEAR_CATEGORIES = st.sampled_from(
    ["", "Contact.email", "contact.", ".email", "a.b.c.d.e", "a" * 32, "a" * 33, "c\n", "a b"]
)
TIMESTAMPS = st.sampled_from(
    [
        "2026-04-01T10:00:00+09:00",
        "2026-04-01T01:00:00Z",
        "2026-04-01t01:00:00z",
        "2026-04-01T01:00:00.5Z",
        "2026-04-01T01:00:00.123456789-05:30",
        "2024-02-29T23:59:59+00:00",
        "1000-01-01T00:00:00+23:59",
        "9998-12-31T23:59:59-23:59",
        "9019-06-15T12:00:00+09:00",
        "9989-01-01T00:00:00Z",
    ]
)
NEAR_TIMESTAMPS = st.sampled_from(
    [
        "2026-04-01 10:00:00+09:00",
        "2026-04-01T10:00+09:00",
        "2026-04-01T10:00:00",
        "2026-04-01T10:00:00+0900",
        "2026-04-01T10:00:00+09",
        "2026-04-01T24:00:00Z",
        "2026-04-01T10:60:00Z",
        "2026-04-01T10:00:60Z",
        "2026-02-30T10:00:00Z",
        "2025-02-29T10:00:00Z",
        "2026-13-01T10:00:00Z",
        "2026-04-01T10:00:00+24:00",
        "2026-04-01T10:00:00.Z",
        "2026-04-01T10:00:00Z\n",
        "0001-01-01T00:00:00+09:00",
        "9999-12-31T23:59:59-01:00",
        "20260401T100000Z",
        "",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
TEXTS = st.text(max_size=300) | st.sampled_from(["", "x" * 64, "x" * 65, "x" * 128, "x" * 129])


@st.composite
def access_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=64)),
        "occurred_at": draw(TIMESTAMPS),
        "source": draw(IDS),
        "action": draw(st.sampled_from(["collect", "use", "transfer", "delete"])),
        "categories": draw(st.lists(CATEGORIES, min_size=1, max_size=4)),
        "purpose": draw(IDS),
    }
    if event["action"] == "transfer" or draw(st.booleans()):
        event["recipient"] = draw(IDS)
    optional = {
        "type": st.just("access"),
        "schema_version": st.just("1"),
        "subject": st.text(min_size=1, max_size=128) | st.none(),
        "form": st.sampled_from(["identified", "anonymized", "aggregated"]),
        "via": IDS,
        "legal_basis": st.sampled_from(
            ["consent", "outsourcing", "joint_use", "exception", "none"]
        ),
        "exception": st.fixed_dictionaries(
            {"kind": st.sampled_from(["legal_action", "emergency"])},
            optional={"reference": st.text(max_size=256)},
        ),
        "encrypted_in_transit": st.booleans() | st.none(),
        "attributes": st.dictionaries(
            st.text(min_size=1, max_size=64),
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=1024),
            max_size=32,
        ),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            event[name] = draw(strategy)
    if draw(st.booleans()):
        event["form"] = "pseudonymized"
        event["pseudonymization"] = {"method": "hmac-sha256", "keyed": draw(st.booleans())}
    return event


@st.composite
def consent_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "consent",
        "event_id": draw(st.text(min_size=1, max_size=64)),
        "occurred_at": draw(TIMESTAMPS),
        "subject": draw(st.text(min_size=1, max_size=128)),
        "recipient": draw(IDS | st.just("*")),
        "status": draw(st.sampled_from(["granted", "withdrawn"])),
    }
    if draw(st.booleans()):
        event["purposes"] = draw(st.lists(IDS, max_size=4) | st.none())
    if draw(st.booleans()):
        event["reference"] = draw(st.text(max_size=256) | st.none())
    if draw(st.booleans()):
        event["schema_version"] = "1"
    return event


FIELDS = [
    "type", "schema_version", "event_id", "occurred_at", "source", "action", "subject",
    "categories", "form", "pseudonymization", "purpose", "recipient", "via", "legal_basis",
    "exception", "encrypted_in_transit", "attributes", "purposes", "status", "reference",
    "colour",
]  # fmt: skip


@st.composite
def broken(draw: st.DrawFn, base: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A valid event, then up to three changes, each likely to matter to one side."""
    event = draw(base)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        field = draw(st.sampled_from(FIELDS))
        change = draw(st.sampled_from(["drop", "json", "text", "near"]))
        if change == "drop":
            event.pop(field, None)
        elif change == "json":
            event[field] = draw(JSON_VALUES)
        elif change == "text":
            event[field] = draw(TEXTS)
        elif field in ("occurred_at",):
            event[field] = draw(NEAR_TIMESTAMPS)
        elif field == "categories":
            event[field] = draw(st.lists(NEAR_CATEGORIES | CATEGORIES, max_size=65))
        elif field == "purposes":
            event[field] = draw(st.lists(NEAR_IDS | IDS, max_size=65) | st.none())
        elif field == "pseudonymization":
            event[field] = draw(
                st.fixed_dictionaries({}, optional={"method": TEXTS, "keyed": JSON_VALUES})
            )
        elif field == "exception":
            event[field] = draw(
                st.fixed_dictionaries({}, optional={"kind": TEXTS, "reference": TEXTS})
            )
        elif field == "attributes":
            event[field] = draw(st.dictionaries(TEXTS, JSON_VALUES, max_size=34))
        elif field == "type":
            event[field] = draw(st.sampled_from(["access", "consent", "Access", None]))
        else:
            event[field] = draw(NEAR_IDS)
    return event


EVENTS = broken(access_events()) | broken(consent_events())


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS)
def test_the_json_schemas_accept_exactly_what_the_monitor_accepts(event: dict[str, Any]) -> None:
    raw = json.dumps(event, ensure_ascii=False, allow_nan=False).encode()
    if len(raw) > MAX_EVENT_BYTES:
        return  # the size limit is stated in the schemas' $comment, not checkable there
    assert runtime_accepts(raw) == schema_accepts(json.loads(raw)), raw.decode()


def test_the_generators_reach_both_answers() -> None:
    # The property above means something only if both sides say yes and no often.
    seen = {True: 0, False: 0}

    @settings(max_examples=300, deadline=None, database=None)
    @given(EVENTS)
    def count(event: dict[str, Any]) -> None:
        seen[runtime_accepts(json.dumps(event).encode())] += 1

    count()
    assert seen[True] > 30 and seen[False] > 30, seen


def test_a_transfer_without_a_recipient_is_refused_by_both() -> None:
    event = {
        "event_id": "e",
        "occurred_at": "2026-04-01T10:00:00+09:00",
        "source": "crm",
        "action": "transfer",
        "categories": ["contact.email"],
        "purpose": "support",
    }
    assert not runtime_accepts(orjson.dumps(event))
    assert not schema_accepts(event)
    assert runtime_accepts(orjson.dumps({**event, "recipient": "payco"}))
    assert schema_accepts({**event, "recipient": "payco"})
