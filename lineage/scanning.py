"""What judging needs of a valid event besides the model: the raw personal data it
holds, masked, and a digest of its content for dedup.

Apart from the engine so that a process that only decodes and scans
(:mod:`lineage.decode_process`) does not import the rules and the policy.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from lineage.redact import Redactor, may_hold_raw_values
from lineage.schemas import AccessEvent, ConsentEvent
from lineage.schemas.judged import Access
from lineage.schemas.packed import Packed
from lineage.schemas.plain import pack_plain

__all__ = ["Scanned", "digest_of", "fingerprint", "plain_verdict", "scan"]

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
        return hashlib.blake2b(event.model_dump_json().encode(), digest_size=8).hexdigest()
    return digest_of(orjson.loads(raw))


def digest_of(parsed: Any) -> str:
    """:func:`fingerprint` of a message without raw personal data, from the message
    already parsed by ``orjson``."""
    content = orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(content, digest_size=8).hexdigest()


def plain_verdict(raw: bytes) -> tuple[str, Packed] | None:
    """(its content's digest, the packed event) of a message holding no raw personal
    data whose shape :func:`~lineage.schemas.plain.pack_plain` takes, without the
    models: what ``fingerprint`` and ``pack`` make of the model
    :func:`~lineage.schemas.decode_event` makes. Else None: the models decide it.

    The scan for raw values needs no key, so any :class:`Redactor` finds none where
    this finds none."""
    if may_hold_raw_values(raw):
        return None
    plain = pack_plain(raw)
    if plain is None:
        return None
    return digest_of(plain[0]), plain[1]
