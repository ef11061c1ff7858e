"""Input events (docs/contract.md): access events and consent events, strictly validated.

Strict means: unknown fields, unknown ``schema_version``, unknown enum values,
timestamps without an offset, wrong JSON types and oversized fields are all
rejected with a message that names the field. Nothing is coerced ("false" is
not ``false``), because a monitor that guesses lets breaches through.

>>> event = decode_event(b'{"event_id": "e1", "occurred_at": "2026-04-01T10:00:00+09:00",'
...     b' "source": "crm", "action": "use", "categories": ["contact.email"],'
...     b' "purpose": "support"}')
>>> event.type, event.form.value
('access', 'identified')
"""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from lineage.schemas.errors import EventRejected
from lineage.schemas.types import (
    ATTRIBUTES_MOST,
    CATEGORIES_MOST,
    METHOD_MOST,
    TIMESTAMP_NOT_RFC3339,
    TIMESTAMP_NOT_STRING,
    Action,
    AttributeKey,
    AttributeValue,
    CategoryId,
    ConsentStatus,
    EventId,
    ExceptionKind,
    Form,
    LegalBasis,
    PurposeId,
    RecipientId,
    ShortText,
    SubjectRef,
    SystemId,
    Timestamp,
)

__all__ = [
    "MAX_EVENT_BYTES",
    "AccessEvent",
    "ConsentEvent",
    "Event",
    "ExceptionClaim",
    "Pseudonymization",
    "decode_event",
]

#: A message larger than this is rejected before it is parsed.
MAX_EVENT_BYTES = 64 * 1024

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=False)


class Pseudonymization(BaseModel):
    """How a pseudonymized value was derived; ``keyed`` decides whether it is personal data."""

    model_config = _STRICT

    method: str = Field(
        min_length=1,
        max_length=METHOD_MOST,
        description="e.g. 'hmac-sha256' (keyed) or 'sha256' (unkeyed)",
    )
    keyed: bool = Field(description="true when a secret key went into the derivation")


class ExceptionClaim(BaseModel):
    """A permitted exception to consent (policy Art. 9 (2)-(5)) and its evidence."""

    model_config = _STRICT

    kind: ExceptionKind = Field(description="which exception of Art. 9 is claimed")
    reference: ShortText = Field(
        default="", description="case, request or order number that evidences the exception"
    )


#: What the model's own checks (``_required_together``) say, for the JSON Schema.
_REQUIRED_TOGETHER: list[JsonValue] = [
    {
        "if": {"properties": {"action": {"const": "transfer"}}, "required": ["action"]},
        "then": {"required": ["recipient"], "properties": {"recipient": {"type": "string"}}},
    },
    {
        "if": {"properties": {"form": {"const": "pseudonymized"}}, "required": ["form"]},
        "then": {
            "required": ["pseudonymization"],
            "properties": {"pseudonymization": {"type": "object"}},
        },
    },
]
_LIMITS = (
    f"Beyond this schema: a message over {64 * 1024} bytes is refused before it is "
    "parsed, and validators must assert format date-time (RFC 3339), as the monitor does."
)


class AccessEvent(BaseModel):
    """A system collected, used, transferred or deleted personal data."""

    model_config = ConfigDict(
        **_STRICT, json_schema_extra={"allOf": _REQUIRED_TOGETHER, "$comment": _LIMITS}
    )

    type: Literal["access"] = Field(default="access", description="event type; absent = access")
    schema_version: Literal["1"] = Field(default="1", description="contract version")
    event_id: EventId = Field(description="producer-assigned unique id; the idempotency key")
    occurred_at: Timestamp = Field(description="event time, RFC 3339 with offset")
    source: SystemId = Field(description="the internal system that acted")
    action: Action = Field(description="what the source did")
    subject: SubjectRef | None = Field(
        default=None, description="pseudonymous data-subject reference; absent for aggregates"
    )
    categories: list[CategoryId] = Field(
        min_length=1, max_length=CATEGORIES_MOST, description="categories of personal data involved"
    )
    form: Form = Field(default=Form.IDENTIFIED, description="how identifiable the data was")
    pseudonymization: Pseudonymization | None = Field(
        default=None, description="required when form is pseudonymized"
    )
    purpose: PurposeId = Field(description="purpose of use declared in the policy (Art. 3)")
    recipient: RecipientId | None = Field(
        default=None, description="who received the data; required for transfers"
    )
    via: RecipientId | None = Field(
        default=None, description="onward transfer: the recipient that passed the data on"
    )
    legal_basis: LegalBasis | None = Field(
        default=None, description="the legal basis the producer claims"
    )
    exception: ExceptionClaim | None = Field(
        default=None, description="the exception claimed when legal_basis is 'exception'"
    )
    encrypted_in_transit: bool | None = Field(
        default=None, description="false on a transfer of personal data is an Art. 6 finding"
    )
    attributes: dict[AttributeKey, AttributeValue] = Field(
        default_factory=dict,
        max_length=ATTRIBUTES_MOST,
        description="free scalar context; scanned for raw PD",
    )

    @model_validator(mode="after")
    def _required_together(self) -> AccessEvent:
        if self.action is Action.TRANSFER and self.recipient is None:
            raise ValueError("recipient: required when action is 'transfer'")
        if self.form is Form.PSEUDONYMIZED and self.pseudonymization is None:
            raise ValueError("pseudonymization: required when form is 'pseudonymized'")
        return self


class ConsentEvent(BaseModel):
    """A data subject granted or withdrew consent to disclosure (policy Art. 9)."""

    model_config = ConfigDict(**_STRICT, json_schema_extra={"$comment": _LIMITS})

    type: Literal["consent"] = Field(description="event type")
    schema_version: Literal["1"] = Field(default="1", description="contract version")
    event_id: EventId = Field(description="producer-assigned unique id; the idempotency key")
    occurred_at: Timestamp = Field(description="when the decision was made, RFC 3339")
    subject: SubjectRef = Field(description="pseudonymous data-subject reference")
    recipient: RecipientId | Literal["*"] = Field(description="recipient covered, or '*' for all")
    purposes: list[PurposeId] | None = Field(
        default=None, max_length=64, description="purposes covered; absent = all purposes"
    )
    status: ConsentStatus = Field(description="granted or withdrawn")
    reference: ShortText | None = Field(
        default=None, description="consent record id in the consent platform"
    )


Event = AccessEvent | ConsentEvent

_CONSENT_MARK = re.compile(rb'"type"\s*:\s*"consent"')


def decode_event(raw: bytes | str) -> AccessEvent | ConsentEvent:
    """Parse and validate one JSON event; raise :class:`EventRejected` naming the field."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_EVENT_BYTES:
        raise EventRejected(
            f"oversized: {len(data)} bytes, the limit is {MAX_EVENT_BYTES}",
            field=None,
            kind="oversized",
        )
    # Access events are the bulk of the stream: try them first, and take the consent
    # model only when the message says it is one (a search for its "type" key, then the model's own
    # strict check of ``type``).
    model: type[AccessEvent] | type[ConsentEvent] = (
        ConsentEvent if data.find(b'"type"') >= 0 and _CONSENT_MARK.search(data) else AccessEvent
    )
    try:
        # The validator itself: model_validate_json's wrapper costs a tenth of the call.
        event: AccessEvent | ConsentEvent = model.__pydantic_validator__.validate_json(data)
        return event
    except ValidationError as exc:
        if model is ConsentEvent and any(err["loc"] == ("type",) for err in exc.errors()):
            # The mark stood in a nested value (say an attribute); the message is no consent.
            try:
                return AccessEvent.model_validate_json(data)
            except ValidationError as access_exc:
                raise _rejection(access_exc, data) from None
        raise _rejection(exc, data) from None


def _rejection(exc: ValidationError, data: bytes) -> EventRejected:
    errors = exc.errors(include_url=False, include_input=True)
    first = errors[0]
    if first["type"] == "json_invalid":
        return EventRejected(f"not JSON: {first['msg']}", field=None, kind="not_json")
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        got = type(parsed).__name__ if parsed is not None else "null"
        return EventRejected(
            f"not a JSON object: the message is a {got}", field=None, kind="wrong_type"
        )
    event_id = parsed.get("event_id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 64 or _looks_personal(event_id):
        event_id = None
    reasons: list[tuple[str | None, str, str]] = []
    for err in errors:
        described = _describe(err)
        if all(described[0] != seen[0] for seen in reasons):  # one reason per field
            reasons.append(described)
    more = f" (and {len(reasons) - 5} more)" if len(reasons) > 5 else ""
    reasons = reasons[:5]
    field, kind = reasons[0][0], reasons[0][1]
    text = "; ".join(f"{name}: {msg}" if name else msg for name, _, msg in reasons) + more
    return EventRejected(text, field=field, kind=kind, event_id=event_id)


_UNION_TAGS = {"str", "int", "float", "bool", "none", "constrained-str"}

_KIND_BY_TYPE = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
    "literal_error": "unknown_value",
    "enum": "unknown_value",
    "string_pattern_mismatch": "bad_value",
    "string_too_long": "oversized",
    "too_long": "oversized",
    "timezone_aware": "bad_timestamp",
    TIMESTAMP_NOT_RFC3339: "bad_timestamp",
    TIMESTAMP_NOT_STRING: "bad_timestamp",
    "datetime_parsing": "bad_timestamp",
    "datetime_type": "bad_timestamp",
    "datetime_from_date_parsing": "bad_timestamp",
    "value_error": "bad_value",
}


def _describe(err: ErrorDetails) -> tuple[str | None, str, str]:
    loc = [str(part) for part in err["loc"] if not str(part).startswith("function-")]
    # Unions and tagged models add their own names to the location; keep the field path.
    loc = [p for p in loc if p not in _UNION_TAGS and not p.startswith("literal[")]
    field = ".".join(loc) or None
    etype = err["type"]
    kind = _KIND_BY_TYPE.get(etype, "wrong_type")
    value = err.get("input")
    if etype == "missing":
        return field, kind, "required field is missing"
    if etype == "extra_forbidden":
        return field, kind, "unknown field (not in schema_version 1)"
    if field == "schema_version" and etype == "literal_error":
        return (
            field,
            "unknown_schema_version",
            (f"unknown schema_version {_safe(value)}; this monitor reads version '1'"),
        )
    if field == "type" and etype == "literal_error":
        return field, kind, f"unknown event type {_safe(value)}; expected 'access' or 'consent'"
    if loc[:1] == ["attributes"] and etype in _SCALAR_ERRORS:
        return field, kind, f"attribute values must be scalars (got {_safe(value)})"
    if kind == "bad_timestamp":
        return (
            field,
            kind,
            f"{_safe(value)} is not an RFC 3339 timestamp with an offset (years 1000-9998)",
        )
    if kind == "oversized":
        size = len(value) if isinstance(value, str | list | dict) else "?"
        return field, kind, f"too long ({size}); {err['msg'].lower()}"
    if etype == "value_error":
        # Our own model checks phrase their message as "field: what is wrong".
        msg = str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
        name, _, rest = msg.partition(": ")
        return (name or field), kind, rest or msg
    return field, kind, f"{err['msg']} (got {_safe(value)})"


_SCALAR_ERRORS = {"string_type", "int_type", "float_type", "bool_type", "none_required"}
# Full-width forms fold to ASCII (one character for one) before the checks below.
_FOLD = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_EMAIL_HINT = re.compile(r"@|\\u0040", re.IGNORECASE)
_DIGIT_RUN = re.compile(r"\d[\d\s().+\-]{4,}\d")
_TIMESTAMP_SHAPE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T t_]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?([Zz]|[+-]\d{2}:?\d{2})?$"
)


def _looks_personal(text: str) -> bool:
    """A cautious guess, erring on the side of withholding: anything with an '@' or a run
    of six or more digits may be an e-mail address, phone or card number."""
    folded = text.translate(_FOLD)
    if _EMAIL_HINT.search(folded):
        return True
    return bool(_DIGIT_RUN.search(folded)) and not _TIMESTAMP_SHAPE.match(folded.strip())


def _safe(value: Any) -> str:
    """Render a rejected value for a reason without leaking what the monitor watches."""
    if isinstance(value, str):
        if _looks_personal(value):
            return "a value that looks like personal data (withheld)"
        return repr(value[:40] + ("..." if len(value) > 40 else ""))
    if isinstance(value, bool | int | float) or value is None:
        return "null" if value is None else repr(value)
    return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
