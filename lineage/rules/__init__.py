"""The rule catalogue: Articles 6, 7, 9 and 10 of the seed policy (shared/RULES.md).

Importing this package registers every rule in :data:`CATALOGUE`.
"""

from lineage.rules import art6, art7, art9, art10
from lineage.rules.base import CATALOGUE, Breach, Context, RuleSpec, Scope, is_personal, rule

__all__ = ["CATALOGUE", "Breach", "Context", "RuleSpec", "Scope", "is_personal", "rule"]

_ = (art6, art7, art9, art10)  # imported for their registrations
