"""The custom OpenLineage facets of privacy-lineage (``openlineage-python`` classes).

Their JSON Schema is ``schemas/openlineage/privacy-lineage-facets.json``; a test checks
every facet the export writes against it. Imported only with ``openlineage-python``.
"""

from __future__ import annotations

import attr
from openlineage.client.generated.base import DatasetFacet, JobFacet

__all__ = ["FACET_SCHEMA_URL", "PrivacyFlowJobFacet", "PrivacyNodeDatasetFacet"]

FACET_SCHEMA_URL = (
    "https://privacy-lineage.invalid/schemas/openlineage/1-0-0/privacy-lineage-facets.json"
)


@attr.define(kw_only=True)
class PrivacyFlowJobFacet(JobFacet):
    """What personal data went over one flow, why, on what basis, and what broke the policy."""

    relation: str  # "flow": a system passed the data on; "onward": a recipient did
    categories: list[str]
    purposes: list[str]
    legalBases: list[str]  # OpenLineage facets are camelCase
    forms: list[str]
    actions: list[str]
    events: int
    personalEvents: int
    firstSeen: str
    lastSeen: str
    breachEvents: int
    breaches: dict[str, int]  # article -> events that broke it
    rules: dict[str, int]  # rule id -> events that broke it
    policyName: str
    policyVersion: str

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_URL}#/$defs/PrivacyFlowJobFacet"


@attr.define(kw_only=True)
class PrivacyNodeDatasetFacet(DatasetFacet):
    """What a system or recipient is to the company, and where it is."""

    label: str
    role: str  # "system", or the recipient's kind: outsourcer, affiliate, ad_provider, ...
    country: str  # ISO 3166-1 alpha-2; "" when unknown
    abroad: bool  # outside the policy's home country (APPI Art. 28)

    @staticmethod
    def _get_schema() -> str:
        return f"{FACET_SCHEMA_URL}#/$defs/PrivacyNodeDatasetFacet"
