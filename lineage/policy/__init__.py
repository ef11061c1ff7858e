"""Policy-as-code: the YAML of docs/contract.md loaded into frozen, checked models."""

from lineage.policy.loader import DEFAULT_POLICY, lint_policy, load_policy, load_policy_text
from lineage.policy.model import (
    Agreement,
    Announcement,
    CategorySet,
    Conditions,
    Policy,
    Recipient,
    Supervision,
)

__all__ = [
    "DEFAULT_POLICY",
    "Agreement",
    "Announcement",
    "CategorySet",
    "Conditions",
    "Policy",
    "Recipient",
    "Supervision",
    "lint_policy",
    "load_policy",
    "load_policy_text",
]
