"""The policy as frozen models (docs/contract.md), with the lookups the rules need.

A policy is loaded once (:func:`lineage.policy.load_policy`) and then only read,
by every rule for every event, so the answers the rules ask for ("is this
agreement in force on that day", "does this list cover that category") are
methods here, computed from precomputed sets.
"""

from __future__ import annotations

import functools
from datetime import date, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from lineage.schemas.types import ID_PATTERN, ExceptionKind, RecipientKind

__all__ = [
    "Agreement",
    "Announcement",
    "Category",
    "CategorySet",
    "Conditions",
    "Policy",
    "PolicyMeta",
    "Purpose",
    "Recipient",
    "Supervision",
    "System",
]

_FROZEN = ConfigDict(extra="forbid", frozen=True)

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
CategoryRef = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,127}$")]
Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


class CategorySet:
    """A list of category ids or prefixes; ``activity`` covers ``activity.*``.

    >>> "activity.ip_address" in CategorySet(["activity", "device.id"])
    True
    >>> "activityx" in CategorySet(["activity"])
    False
    """

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, entries: list[str] | tuple[str, ...]) -> None:
        self._exact = frozenset(entries)
        self._prefixes = tuple(entry + "." for entry in entries)

    def __contains__(self, category: object) -> bool:
        return isinstance(category, str) and (
            category in self._exact or category.startswith(self._prefixes)
        )

    def missing(self, categories: list[str]) -> list[str]:
        """The categories this set does not cover, in the order given."""
        return [c for c in categories if c not in self]


Country = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]

#: Countries the PPC recognises as having an equivalent system (APPI Art. 28 (1)):
#: the member states of the European Economic Area and the United Kingdom.
EEA_AND_UK = (
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IS", "IE",
    "IT", "LV", "LI", "LT", "LU", "MT", "NL", "NO", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
    "GB",
)  # fmt: skip


class PolicyMeta(BaseModel):
    """Which policy this is, the calendar its dates are read in, and where home is."""

    model_config = _FROZEN

    name: Text = Field(description="the policy's name")
    version: Text = Field(description="the version alerts are judged against")
    effective_on: date = Field(description="the day the policy took effect")
    timezone: str = Field(
        default="Asia/Tokyo",
        description="IANA zone whose calendar the policy's dates use (default Japan)",
    )
    home_country: Country = Field(
        default="JP", description="the company's country (ISO 3166 alpha-2; APPI Art. 28)"
    )
    adequate_countries: list[Country] = Field(
        default_factory=lambda: list(EEA_AND_UK),
        description="countries the PPC recognises (default: the EEA and GB; APPI Art. 28)",
    )
    records_retention_days: int = Field(
        default=1095, gt=0, description="how long provision records are kept (APPI Art. 29 (2))"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # Refused here, not at the first event: every date of the policy is read in it.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name like 'Asia/Tokyo')"
            ) from None
        return value


class Category(BaseModel):
    """A category of personal data (Art. 2)."""

    model_config = _FROZEN

    label: Text = Field(description="human label")
    identifying: Literal["direct", "indirect", "none"] = Field(
        description="whether the category identifies a person by itself"
    )


class Purpose(BaseModel):
    """A purpose of use (Art. 3) and the categories it may use."""

    model_config = _FROZEN

    label: Text = Field(description="human label")
    categories: list[CategoryRef] = Field(description="category ids or prefixes it may use")


class Agreement(BaseModel):
    """A confidentiality agreement with an outsourcer (Art. 6 (2))."""

    model_config = _FROZEN

    id: Text = Field(description="agreement reference")
    signed_on: date = Field(description="first day in force")
    expires_on: date | None = Field(default=None, description="last day in force; none = open")
    conforms_to_policy: bool = Field(description="whether its terms conform to the policy")
    categories: list[CategoryRef] = Field(description="categories it covers (ids or prefixes)")
    purposes: list[Id] = Field(description="purposes it covers")

    def in_force(self, day: date) -> bool:
        """Signed on or before ``day`` and not expired by then."""
        return self.signed_on <= day and (self.expires_on is None or day <= self.expires_on)

    @functools.cached_property
    def category_set(self) -> CategorySet:
        return CategorySet(self.categories)


class Supervision(BaseModel):
    """How the company supervises an outsourcer (Art. 6 (2))."""

    model_config = _FROZEN

    last_audit_on: date | None = Field(default=None, description="the last audit; none = never")
    interval_days: int = Field(gt=0, description="an audit is due this many days after the last")


class Announcement(BaseModel):
    """The public announcement that makes sharing with an affiliate lawful (Art. 7)."""

    model_config = _FROZEN

    announced_on: date = Field(description="published on; no sharing before")
    purpose: Text = Field(description="the announced purpose, as published")
    purposes: list[Id] = Field(min_length=1, description="the announced purposes as purpose ids")
    categories: list[CategoryRef] = Field(min_length=1, description="the announced categories")
    manager: Text = Field(description="the person in charge of managing the personal data")

    @functools.cached_property
    def category_set(self) -> CategorySet:
        return CategorySet(self.categories)


class Conditions(BaseModel):
    """The conditions an ad provider accepted (Art. 10 (4))."""

    model_config = _FROZEN

    since: date = Field(description="in force from this day")
    use_limited_to: list[Id] = Field(min_length=1, description="the purposes it may use data for")
    binds_onward: bool = Field(description="whether it imposes the same conditions onward")


class Recipient(BaseModel):
    """Someone outside the source system who may receive personal data."""

    model_config = _FROZEN

    name: Text = Field(description="the recipient's name (for affiliates: the partner's name)")
    kind: RecipientKind = Field(description="decides which articles apply")
    country: Country | None = Field(
        default=None, description="ISO 3166 alpha-2; when omitted (v1 files) JP, with a warning"
    )
    equivalent_system: bool = Field(
        default=False,
        description="abroad, keeps a system meeting the PPC's standards (APPI Art. 28 (1))",
    )
    example: bool = Field(
        default=False, description="marks a placeholder entry a deployment must replace"
    )
    agreements: list[Agreement] = Field(default_factory=list, description="Art. 6 (2)")
    supervision: Supervision | None = Field(default=None, description="Art. 6 (2)")
    announcement: Announcement | None = Field(default=None, description="Art. 7")
    conditions: Conditions | None = Field(default=None, description="Art. 10 (4)")
    onward: list[Id] = Field(default_factory=list, description="who it may pass data on to")

    def agreements_in_force(self, day: date) -> list[Agreement]:
        """Agreements in force on ``day`` that conform to the policy."""
        return [a for a in self.agreements if a.conforms_to_policy and a.in_force(day)]

    @property
    def country_code(self) -> str:
        """The recipient's country (JP when a v1 file left it out)."""
        return self.country or "JP"


class System(BaseModel):
    """An internal system (extension): a transfer to it is no disclosure."""

    model_config = _FROZEN

    label: Text = Field(description="human label")


class Policy(BaseModel):
    """One privacy policy: its categories, purposes, recipients and the dates that make flows
    lawful."""

    model_config = _FROZEN

    policy: PolicyMeta = Field(description="name, version, effective date")
    categories: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]*$")], Category]
    purposes: dict[Id, Purpose] = Field(description="purposes of use (Art. 3)")
    retention_days: dict[CategoryRef, Annotated[int, Field(gt=0)]] = Field(
        default_factory=dict, description="category id or prefix -> days (Art. 10 (3))"
    )
    recipients: dict[Id, Recipient] = Field(default_factory=dict)
    systems: dict[Id, System] = Field(
        default_factory=dict, description="internal systems (extension): not disclosures"
    )
    exceptions: list[ExceptionKind] = Field(
        default_factory=lambda: list(ExceptionKind),
        description="exceptions to consent the policy lists (Art. 9 (2)-(5); extension)",
    )

    @property
    def version(self) -> str:
        return self.policy.version

    @functools.cached_property
    def _adequate(self) -> frozenset[str]:
        return frozenset(self.policy.adequate_countries)

    def abroad(self, recipient: Recipient) -> bool:
        """The recipient is outside the home country (a provision abroad, APPI Art. 28)."""
        return recipient.country_code != self.policy.home_country

    def foreign_without_basis(self, recipient: Recipient) -> bool:
        """Abroad, in no adequate country, and with no equivalent system: what needs the
        subject's consent (APPI Art. 28 (1))."""
        return (
            self.abroad(recipient)
            and recipient.country_code not in self._adequate
            and not recipient.equivalent_system
        )

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.policy.timezone)

    def day_of(self, moment: datetime) -> date:
        """The calendar day of ``moment`` in the policy's zone: the day its dates speak of."""
        return moment.astimezone(self.zone).date()

    @functools.cached_property
    def _retention(self) -> tuple[tuple[str, int], ...]:
        # Longest entry first, so 'activity.ip_address' beats 'activity'.
        return tuple(sorted(self.retention_days.items(), key=lambda kv: -len(kv[0])))

    def retention_for(self, category: str) -> int | None:
        """Days a category may be kept after collection, or None when the policy sets none."""
        for entry, days in self._retention:
            if category == entry or category.startswith(entry + "."):
                return days
        return None

    @functools.cached_property
    def _purpose_sets(self) -> dict[str, CategorySet]:
        return {pid: CategorySet(p.categories) for pid, p in self.purposes.items()}

    def purpose_categories(self, purpose: str) -> CategorySet:
        """The categories a declared purpose may use (Art. 3)."""
        return self._purpose_sets[purpose]

    def is_category_known(self, category: str) -> bool:
        return category in self.categories

    def expand(self, entry: str) -> list[str]:
        """The policy's categories that an id or prefix covers (empty: a dangling reference)."""
        return [c for c in self.categories if c == entry or c.startswith(entry + ".")]
