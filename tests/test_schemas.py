"""Input events are strict: every kind of bad input is refused with the field named."""

from __future__ import annotations

import orjson
import pytest

from lineage.schemas import MAX_EVENT_BYTES, AccessEvent, ConsentEvent, EventRejected, decode_event
from lineage.schemas.generate import main as generate
from tests.helpers import access as transfer
from tests.helpers import consent


def access(**fields: object) -> dict[str, object]:
    """A valid transfer, changed as a test says."""
    return transfer(**{"recipient": "payco", **fields})


def reject(event: object) -> EventRejected:
    raw = event if isinstance(event, bytes) else orjson.dumps(event)
    with pytest.raises(EventRejected) as caught:
        decode_event(raw)
    return caught.value


def test_defaults_of_an_access_event_and_a_consent_event() -> None:
    event = decode_event(orjson.dumps(access()))
    assert isinstance(event, AccessEvent)
    assert (event.type, event.schema_version, event.form.value) == ("access", "1", "identified")
    assert isinstance(decode_event(orjson.dumps(consent())), ConsentEvent)


@pytest.mark.parametrize(
    ("event", "kind", "field"),
    [
        (b"{not json", "not_json", None),
        (b"[1, 2]", "wrong_type", None),
        ({k: v for k, v in access().items() if k != "occurred_at"}, "missing_field", "occurred_at"),
        (access(encrypted_in_transit="false"), "wrong_type", "encrypted_in_transit"),
        (access(action="xfer"), "unknown_value", "action"),
        (access(schema_version="2"), "unknown_schema_version", "schema_version"),
        (access(occurred_at="2026-11-20T10:00:00"), "bad_timestamp", "occurred_at"),
        (access(occurred_at=1732060800), "bad_timestamp", "occurred_at"),
        (access(subject="x" * 129), "oversized", "subject"),
        (access(attributes={f"k{i}": i for i in range(33)}), "oversized", "attributes"),
        (access(attributes={"nested": {"a": 1}}), "wrong_type", "attributes.nested"),
        (access(colour="red"), "unknown_field", "colour"),
        (access(recipient=None), "bad_value", "recipient"),
        (access(form="pseudonymized"), "bad_value", "pseudonymization"),
        (consent(status="maybe"), "unknown_value", "status"),
    ],
)
def test_bad_input_is_refused_naming_the_field(event: object, kind: str, field: str | None) -> None:
    rejected = reject(event)
    assert (rejected.kind, rejected.field) == (kind, field)
    if field:
        assert field.split(".")[0] in rejected.reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            "2026-11-20T10:00:00",
            "occurred_at: '2026-11-20T10:00:00' is not an RFC 3339 timestamp with an offset "
            "(years 1000-9998)",
        ),
        (
            "2026-11-20T24:00:00+09:00",
            "occurred_at: '2026-11-20T24:00:00+09:00' is not an RFC 3339 timestamp with an "
            "offset (years 1000-9998)",
        ),
        (
            "2026-02-30T10:00:00+09:00",
            "occurred_at: '2026-02-30T10:00:00+09:00' is not an RFC 3339 timestamp with an "
            "offset (years 1000-9998)",
        ),
        (1732060800, "occurred_at: 1732060800 is not an RFC 3339 timestamp with an offset "
         "(years 1000-9998)"),
    ],
)  # fmt: skip
def test_a_bad_timestamp_is_refused_as_one_whichever_check_refuses_it(
    value: object, reason: str
) -> None:
    """The type, the RFC 3339 pattern and the calendar are three checks in pydantic-core,
    each with its own error type: a producer reads one reason for all three."""
    for event in (access(occurred_at=value), consent(occurred_at=value)):
        rejected = reject(event)
        assert (rejected.kind, rejected.field) == ("bad_timestamp", "occurred_at")
        assert rejected.reason.endswith(f"': {reason}")


@pytest.mark.parametrize("year", [1000, 8999, 9000, 9009, 9019, 9899, 9989, 9990, 9998])
def test_every_year_of_the_contract_is_taken(year: int) -> None:
    # The contract says years 1000 to 9998; the pattern once refused those ending in 9
    # after 9000.
    at = f"{year}-06-15T12:00:00+09:00"
    for event in (access(occurred_at=at), consent(occurred_at=at)):
        assert decode_event(orjson.dumps(event)).occurred_at.year == year


@pytest.mark.parametrize("year", ["0999", "9999"])
def test_a_year_outside_the_contract_is_refused(year: str) -> None:
    rejected = reject(access(occurred_at=f"{year}-06-15T12:00:00+09:00"))
    assert (rejected.kind, rejected.field) == ("bad_timestamp", "occurred_at")


def test_an_oversized_message_is_refused_before_parsing() -> None:
    rejected = reject(b"{" + b" " * MAX_EVENT_BYTES + b"}")
    assert rejected.kind == "oversized"


def test_a_reason_never_repeats_personal_data() -> None:
    for event in (
        access(occurred_at="090-1234-5678"),
        access(action="taro@example.jp"),
        access(notes="hanako@example.jp"),
    ):
        rejected = reject(event)
        assert "@example.jp" not in rejected.reason and "090-1234-5678" not in rejected.reason


def test_consent_text_inside_an_attribute_does_not_make_a_consent_event() -> None:
    event = decode_event(orjson.dumps(access(attributes={"note": '"type":"consent"'})))
    assert isinstance(event, AccessEvent)


def test_the_committed_json_schemas_are_current() -> None:
    assert generate(["--check"]) == 0
