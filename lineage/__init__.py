"""privacy-lineage: a runtime privacy data-flow monitor.

The core is pure: policy-as-code (:mod:`lineage.policy`), the rule catalogue
(:mod:`lineage.rules`), the engine that turns one event plus state into alerts and graph
updates (:mod:`lineage.engine`), the lineage graph and its exports. The event and output
models are :mod:`lineage.schemas`; services send events with :mod:`lineage.emitter`. The
stream processors on Kafka are :mod:`streams` (the ``worker`` extra) and the
command line :mod:`lineage.cli`; the core imports neither.

The names below are loaded on first use, so ``from lineage.emitter import Emitter`` in a
service does not load the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lineage.compiled import choose

choose()  # the engine compiled or interpreted, before any of it is imported

if TYPE_CHECKING:
    from lineage.engine import Engine, Outcome, alert_id, incident_id
    from lineage.errors import LineageError, PolicyError, RunError
    from lineage.policy import DEFAULT_POLICY, Policy, load_policy
    from lineage.state import State

__all__ = [
    "DEFAULT_POLICY",
    "Engine",
    "LineageError",
    "Outcome",
    "Policy",
    "PolicyError",
    "RunError",
    "State",
    "alert_id",
    "incident_id",
    "load_policy",
]

__version__ = "0.1.0"

_HOMES = {
    "Engine": "lineage.engine",
    "Outcome": "lineage.engine",
    "alert_id": "lineage.engine",
    "incident_id": "lineage.engine",
    "LineageError": "lineage.errors",
    "PolicyError": "lineage.errors",
    "RunError": "lineage.errors",
    "DEFAULT_POLICY": "lineage.policy",
    "Policy": "lineage.policy",
    "load_policy": "lineage.policy",
    "State": "lineage.state",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'lineage' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
