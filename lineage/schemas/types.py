"""Reusable constrained types and closed vocabularies of the contract (docs/contract.md).

Each validator is a plain function, tested on its own; the ``Annotated`` aliases
bind them to pydantic so every model spells a field the same way.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = [
    "ATTRIBUTES_MOST",
    "ATTRIBUTE_KEY_MOST",
    "ATTRIBUTE_VALUE_MOST",
    "CATEGORIES_MOST",
    "CATEGORY_PATTERN",
    "EVENT_ID_MOST",
    "ID_PATTERN",
    "METHOD_MOST",
    "RFC3339_PATTERN",
    "SHORT_TEXT_MOST",
    "SUBJECT_MOST",
    "TIMESTAMP_NOT_RFC3339",
    "TIMESTAMP_NOT_STRING",
    "Action",
    "CategoryId",
    "ConsentStatus",
    "EventId",
    "ExceptionKind",
    "Form",
    "LegalBasis",
    "PurposeId",
    "RecipientId",
    "RecipientKind",
    "Severity",
    "SubjectRef",
    "SystemId",
    "Timestamp",
    "validate_category_id",
]

#: A system, recipient or purpose id: lower-case, starts with a letter or digit.
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}(\.[a-z0-9][a-z0-9_-]{0,31}){0,3}$"
_CATEGORY_RE = re.compile(CATEGORY_PATTERN)


def validate_category_id(value: str) -> str:
    """A category id is dotted lower-case words, e.g. ``contact.email``.

    >>> validate_category_id("contact.email")
    'contact.email'
    """
    if not _CATEGORY_RE.match(value):
        raise ValueError(
            f"category {value[:40]!r} is not a dotted lower-case id like 'contact.email'"
        )
    return value


#: An RFC 3339 date-time with its offset (section 5.6): a ``T`` (or ``t``) between date
#: and time, seconds always, any fraction, ``Z`` or ``+hh:mm``. Years 1000 to 9998, so
#: that every such time has a date in every time zone (year 0001 at +09:00 has none).
RFC3339_PATTERN = (
    r"^(1[0-9]{3}|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    r"-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]"
    r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)


class _RFC3339:
    """Checks a timestamp string as RFC 3339 before pydantic parses it (pydantic also
    takes a space for the ``T``, no seconds, ``+0900``); the calendar (30 February, hour
    24) is pydantic's to refuse.

    All three steps are pydantic-core's own (a string, the pattern, the parse): no
    Python call per event. Each step's error keeps its own type, which
    :mod:`lineage.schemas.events` reports as a bad timestamp.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.chain_schema(
            [
                core_schema.custom_error_schema(
                    core_schema.str_schema(strict=True),
                    custom_error_type=TIMESTAMP_NOT_STRING,
                    custom_error_message="an RFC 3339 timestamp is a JSON string",
                ),
                core_schema.custom_error_schema(
                    core_schema.str_schema(pattern=RFC3339_PATTERN),
                    custom_error_type=TIMESTAMP_NOT_RFC3339,
                    custom_error_message="not an RFC 3339 timestamp with an offset",
                ),
                core_schema.datetime_schema(tz_constraint="aware", strict=False),
            ]
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN}


#: The error types of a timestamp that is no string, and of one that is not RFC 3339.
TIMESTAMP_NOT_STRING = "rfc3339_type"
TIMESTAMP_NOT_RFC3339 = "rfc3339_parsing"

#: An event's time: RFC 3339 with an offset, the same in the JSON Schema (``pattern``
#: and ``format``) as at run time.
Timestamp = Annotated[AwareDatetime, _RFC3339]
SystemId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
RecipientId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
PurposeId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
#: The language of :func:`validate_category_id`, checked in pydantic-core (the hot path).
CategoryId = Annotated[str, StringConstraints(pattern=CATEGORY_PATTERN)]
#: The contract's bounds on an event's texts and lists, named once: the models'
#: constraints and the checks without them (:mod:`lineage.schemas.plain`) both read
#: these.
EVENT_ID_MOST = 64
SUBJECT_MOST = 128
SHORT_TEXT_MOST = 256
ATTRIBUTE_KEY_MOST = 64
ATTRIBUTE_VALUE_MOST = 1024
METHOD_MOST = 64
CATEGORIES_MOST = 64
ATTRIBUTES_MOST = 32
EventId = Annotated[str, StringConstraints(min_length=1, max_length=EVENT_ID_MOST)]
SubjectRef = Annotated[str, StringConstraints(min_length=1, max_length=SUBJECT_MOST)]
ShortText = Annotated[str, StringConstraints(max_length=SHORT_TEXT_MOST)]
AttributeKey = Annotated[str, StringConstraints(min_length=1, max_length=ATTRIBUTE_KEY_MOST)]
AttributeValue = Annotated[
    Annotated[str, StringConstraints(max_length=ATTRIBUTE_VALUE_MOST)] | int | float | bool | None,
    Field(union_mode="left_to_right"),
]


class Action(StrEnum):
    """What the source did with the data."""

    COLLECT = "collect"
    USE = "use"
    TRANSFER = "transfer"
    DELETE = "delete"


class Form(StrEnum):
    """How identifiable the data was when it moved."""

    IDENTIFIED = "identified"
    PSEUDONYMIZED = "pseudonymized"
    ANONYMIZED = "anonymized"
    AGGREGATED = "aggregated"


class LegalBasis(StrEnum):
    """The legal basis a producer claims for a flow."""

    CONSENT = "consent"
    OUTSOURCING = "outsourcing"
    JOINT_USE = "joint_use"
    EXCEPTION = "exception"
    NONE = "none"


class ExceptionKind(StrEnum):
    """The exceptions of policy Art. 9 (2)-(5)."""

    LEGAL_ACTION = "legal_action"
    EMERGENCY = "emergency"
    BUSINESS_TRANSFER = "business_transfer"
    LEGAL_REQUIREMENT = "legal_requirement"


class ConsentStatus(StrEnum):
    """A data subject's consent decision."""

    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class RecipientKind(StrEnum):
    """What a recipient is to the company; decides which articles apply."""

    OUTSOURCER = "outsourcer"
    AFFILIATE = "affiliate"
    AD_PROVIDER = "ad_provider"
    INFO_MODULE = "info_module"
    THIRD_PARTY = "third_party"
    AUTHORITY = "authority"


#: Each recipient kind (and "unknown", a recipient the policy does not name) as people
#: read it, in graphs and reports.
KIND_LABELS = {
    "outsourcer": "Outsourcer",
    "affiliate": "Affiliate",
    "ad_provider": "Ad provider",
    "info_module": "Info-gathering module",
    "third_party": "Third party",
    "authority": "Authority",
    "unknown": "Unknown recipient",
}


class Severity(StrEnum):
    """Alert severity, ordered from most to least urgent by :attr:`rank`."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """4 for critical down to 1 for low, so ``a.rank >= b.rank`` reads 'at or above'."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.CRITICAL: 4,
    Severity.HIGH: 3,
    Severity.MEDIUM: 2,
    Severity.LOW: 1,
}
