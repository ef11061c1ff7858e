"""What judging needs of a valid event besides the model: the raw personal data it
holds, masked, and a digest of its content for dedup.

Apart from the engine so that a process that only decodes and scans
(:mod:`lineage.decode_process`) does not import the rules and the policy.
"""

from __future__ import annotations

import hashlib

import orjson

from lineage.redact import Redactor
from lineage.schemas import AccessEvent, ConsentEvent
from lineage.schemas.judged import Access

__all__ = ["Scanned", "fingerprint", "scan"]

#: (the event redacted, what was found where, a digest of its content). An access event
#: decoded in another process comes as the engine judges it (:class:`Access`).
Scanned = tuple[Access | AccessEvent | ConsentEvent, dict[str, list[str]], str]


def scan(
    redactor: Redactor, event: AccessEvent | ConsentEvent, raw: bytes | None = None
) -> Scanned:
    """The event redacted, what was found where, and the digest of its content."""
    event, raw_findings = redactor.scan_event(event, raw)
    return event, raw_findings, fingerprint(event, raw, bool(raw_findings))


def fingerprint(event: AccessEvent | ConsentEvent, raw: bytes | None, has_raw_data: bool) -> str:
    """A digest of an event's content, whatever the order of its keys.

    Taken of the message itself when it holds no raw personal data, else of the event
    as redacted: the digest stored for dedup never stands for a raw value.
    """
    if raw is None or has_raw_data:
        content = event.model_dump_json().encode()
    else:
        content = orjson.dumps(orjson.loads(raw), option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(content, digest_size=8).hexdigest()
