"""The rule catalogue: Articles 2, 3, 6, 7, 8, 9 and 10 of the seed policy, and APPI Art. 28.

Importing this package registers every rule in :data:`CATALOGUE`, in the order alerts
of one event are raised: the articles of v1 first (6, 7, 9, 10), then those of v1.1.
"""

from lineage.rules import appi28, art2, art3, art6, art7, art8, art9, art10
from lineage.rules.base import CATALOGUE, Breach, Context, RuleSpec, Scope, is_personal, rule

__all__ = ["CATALOGUE", "Breach", "Context", "RuleSpec", "Scope", "is_personal", "rule"]

_ORDER = [m.__name__ for m in (art6, art7, art9, art10, art2, art3, art8, appi28)]
_registered = list(CATALOGUE)
_ordered = sorted(
    CATALOGUE.values(),
    key=lambda spec: (_ORDER.index(spec.fn.__module__), _registered.index(spec.id)),
)
CATALOGUE.clear()
CATALOGUE.update((spec.id, spec) for spec in _ordered)
