"""Event, consent, alert, incident and dead-letter models of the privacy-lineage contract.

Depends on nothing of ours. JSON Schema files generated from these models stand
beside this module for producers in other languages (``python -m lineage.schemas.generate``).
"""

from lineage.schemas.errors import EventRejected, SchemaError
from lineage.schemas.events import (
    MAX_EVENT_BYTES,
    AccessEvent,
    ConsentEvent,
    Event,
    ExceptionClaim,
    Pseudonymization,
    decode_event,
)
from lineage.schemas.outputs import Alert, DeadLetter, Incident, ProvisionRecord, SubjectLineage
from lineage.schemas.types import (
    Action,
    ConsentStatus,
    ExceptionKind,
    Form,
    LegalBasis,
    RecipientKind,
    Severity,
)

__all__ = [
    "MAX_EVENT_BYTES",
    "AccessEvent",
    "Action",
    "Alert",
    "ConsentEvent",
    "ConsentStatus",
    "DeadLetter",
    "Event",
    "EventRejected",
    "ExceptionClaim",
    "ExceptionKind",
    "Form",
    "Incident",
    "LegalBasis",
    "ProvisionRecord",
    "Pseudonymization",
    "RecipientKind",
    "SchemaError",
    "Severity",
    "SubjectLineage",
    "decode_event",
]
