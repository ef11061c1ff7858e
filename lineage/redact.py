"""Find raw personal data in an event and mask it before anything is stored or forwarded.

The monitoring stream must not leak what it watches (``art6.raw-personal-data``).
A producer may put an e-mail address into ``subject`` or a card number into
``attributes``; the monitor then raises the finding and replaces each value with
a token ``[redacted:<kind>:<hmac>]``. The token is keyed (HMAC-SHA256), so equal
values give equal tokens within a deployment (consents still match their
subject) while nobody without the key can test a guess against it.

>>> r = Redactor(key=b"k" * 32)
>>> r.scan_text("mail taro@example.jp now")
[('email', 'taro@example.jp')]
>>> r.mask("mail taro@example.jp now").startswith("mail [redacted:email:")
True
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

from schemas import AccessEvent, ConsentEvent

__all__ = ["KIND_CATEGORY", "RawValue", "Redactor", "may_hold_raw_values", "raw_facts"]

_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_DIGITS = r"(?<![\w.+])\+?\(?\d[\d \t().-]{7,22}\d(?![\w])"
_CANDIDATE = re.compile(f"(?P<email>{_EMAIL})|(?P<digits>{_DIGITS})")

#: The category each kind of raw value belongs to (for the alert's ``categories``).
KIND_CATEGORY = {
    "email": "contact.email",
    "phone": "contact.phone",
    "card": "financial.credit_card",
}

RawValue = tuple[str, str]  # (kind, the matched text)


def raw_facts(found: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """(kinds, fields) of what :meth:`Redactor.scan_event` found, sorted, for an alert."""
    kinds = sorted({kind for kinds in found.values() for kind in kinds})
    fields = sorted(path.removesuffix("#key") for path in found)
    return kinds, fields


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _classify_digits(text: str) -> str | None:
    digits = "".join(ch for ch in text if ch.isdigit())
    n = len(digits)
    # Card numbers: 13-19 digits, issuer prefixes 2-6 (Visa, Mastercard, Amex, JCB, ...), Luhn.
    if 13 <= n <= 19 and digits[0] in "23456" and _luhn(digits):
        return "card"
    # Phone numbers: 10-15 digits written as a phone is written: trunk prefix 0 or '+country'.
    stripped = text.lstrip("(")
    if 10 <= n <= 15 and (stripped.startswith("+") or stripped.startswith("0")):
        return "phone"
    return None


class Redactor:
    """Scans text for e-mail addresses, phone and card numbers, and masks them.

    ``key`` keys the tokens; without one a random key is drawn, so tokens are
    consistent within the process and unlinkable across runs.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(32)

    def scan_text(self, text: str) -> list[RawValue]:
        """Every raw value in ``text``, as (kind, value)."""
        found: list[RawValue] = []
        for match in _CANDIDATE.finditer(text):
            if match.lastgroup == "email":
                found.append(("email", match.group()))
            else:
                kind = _classify_digits(match.group())
                if kind is not None:
                    found.append((kind, match.group()))
        return found

    def token(self, kind: str, value: str) -> str:
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:12]
        return f"[redacted:{kind}:{digest}]"

    def mask(self, text: str) -> str:
        """``text`` with every raw value replaced by its token."""
        out = text
        for kind, value in self.scan_text(text):
            out = out.replace(value, self.token(kind, value))
        return out

    # -- events ------------------------------------------------------------------------------

    def scan_event(
        self, event: AccessEvent | ConsentEvent, raw: bytes | None = None
    ) -> tuple[AccessEvent | ConsentEvent, dict[str, list[str]]]:
        """Return the event with raw values masked, and {field: [kinds]} of what was found.

        Only the free-text fields can hold raw values; ids, enums and categories are
        constrained by the schema. Given the message's ``raw`` bytes, the common case
        (nothing that could be a raw value anywhere in them) costs a byte scan.
        """
        if raw is not None and not may_hold_raw_values(raw):
            return event, {}
        if not _CANDIDATE.search(_quick_text(event)):
            return event, {}
        texts = _free_text(event)
        found: dict[str, list[str]] = {}
        masked: dict[str, str] = {}
        for path, text in texts.items():
            values = self.scan_text(text)
            if values:
                found[path] = sorted({kind for kind, _ in values})
                masked[path] = self.mask(text)
        if not found:
            return event, {}
        return _apply(event, masked), found


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_SEPARATORS = b" \t().+-"


def may_hold_raw_values(raw: bytes) -> bool:
    """False only when no e-mail, phone or card number can be in the message.

    A superset of what :meth:`Redactor.scan_text` finds: every e-mail has an '@', every
    phone or card number is ten or more digits with only separators between them
    (JSON escapes such as '\\u0040' might hide either, so they take the full scan).
    """
    if b"@" in raw or b"\\u" in raw:
        return True
    return b"0000000000" in raw.translate(_DIGITS_AS_ZERO, _SEPARATORS)


def _quick_text(event: AccessEvent | ConsentEvent) -> str:
    """All free text of an event in one string, for the one search of the common case."""
    parts = [event.event_id, event.subject or ""]
    if isinstance(event, ConsentEvent):
        parts.append(event.reference or "")
        return "\x1f".join(parts)
    if event.attributes:
        parts.extend(event.attributes)
        parts.extend(str(v) for v in event.attributes.values() if isinstance(v, str | int))
    if event.pseudonymization is not None:
        parts.append(event.pseudonymization.method)
    if event.exception is not None:
        parts.append(event.exception.reference)
    return "\x1f".join(parts)


def _free_text(event: AccessEvent | ConsentEvent) -> dict[str, str]:
    texts: dict[str, str] = {"event_id": event.event_id}
    if event.subject is not None:
        texts["subject"] = event.subject
    if isinstance(event, ConsentEvent):
        if event.reference:
            texts["reference"] = event.reference
        return texts
    if event.pseudonymization is not None:
        texts["pseudonymization.method"] = event.pseudonymization.method
    if event.exception is not None and event.exception.reference:
        texts["exception.reference"] = event.exception.reference
    for key, value in event.attributes.items():
        texts[f"attributes.{key}#key"] = key
        if isinstance(value, str):
            texts[f"attributes.{key}"] = value
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**9:
            texts[f"attributes.{key}"] = str(value)
    return texts


def _apply(event: AccessEvent | ConsentEvent, masked: dict[str, str]) -> AccessEvent | ConsentEvent:
    update: dict[str, Any] = {}
    for field in ("event_id", "subject", "reference"):
        if field in masked:
            update[field] = masked[field]
    if isinstance(event, AccessEvent):
        if "pseudonymization.method" in masked and event.pseudonymization is not None:
            update["pseudonymization"] = event.pseudonymization.model_copy(
                update={"method": masked["pseudonymization.method"]}
            )
        if "exception.reference" in masked and event.exception is not None:
            update["exception"] = event.exception.model_copy(
                update={"reference": masked["exception.reference"]}
            )
        if any(path.startswith("attributes.") for path in masked):
            attributes: dict[str, Any] = {}
            for key, value in event.attributes.items():
                new_key = masked.get(f"attributes.{key}#key", key)
                attributes[new_key] = masked.get(f"attributes.{key}", value)
            update["attributes"] = attributes
    return event.model_copy(update=update)
