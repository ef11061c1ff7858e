"""privacy-lineage: the pure core of the runtime privacy data-flow monitor.

Policy-as-code, the rule catalogue (Articles 6, 7, 9, 10), the engine that turns
one event plus state into alerts and graph updates, and the lineage graph. No
Kafka and no I/O beyond the files it is handed; ``streams`` puts it on Kafka.
"""

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
