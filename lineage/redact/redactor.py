"""The redactor: raw personal data in events and texts, replaced by keyed tokens.

:meth:`Redactor.spans` finds every raw value in a text (:func:`~lineage.redact.fold.fold`
undoes disguises, :func:`~lineage.redact.find.find_all` finds and confirms), and
:meth:`Redactor.mask` replaces each with ``[redacted:<kind>:<hmac>]``. The token is
HMAC-SHA256 of the value's canonical form under the deployment's key: one value
written many ways (``TARO@EXAMPLE.JP`` and ``taro@example.jp``; ``090-1234-5678``
and ``+81 90 1234 5678``) gets one token, so consents still match their subject,
while nobody without the key can test a guess against it.

:meth:`Redactor.scan_event` looks at every text an event carries and returns the
event masked and what was found where, for ``art6.raw-personal-data``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

from lineage.redact.find import find_all
from lineage.redact.fold import fold
from lineage.redact.screen import may_hold_raw_values
from lineage.schemas import AccessEvent, ConsentEvent

__all__ = ["KIND_CATEGORY", "RawValue", "Redactor", "may_hold_raw_values", "raw_facts"]

#: The category each kind of raw value belongs to (for the alert's ``categories``).
KIND_CATEGORY = {
    "email": "contact.email",
    "phone": "contact.phone",
    "card": "financial.credit_card",
    "iban": "financial.bank_account",
    "my_number": "identity.my_number",
    "corporate_number": "identity.corporate_number",
    "passport": "identity.passport",
    "postal_code": "contact.postal_code",
}

RawValue = tuple[str, str]  # (kind, the matched text as written)
#: Where a text is in an event: a field's path, or an attribute's (key, is its key).
TextPath = str | tuple[str, bool]

# What an attribute key may be shown as in a field path: a plain name.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}")


def raw_facts(found: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """(kinds, fields) of what :meth:`Redactor.scan_event` found, sorted, for an alert."""
    kinds = sorted({kind for kinds in found.values() for kind in kinds})
    fields = sorted(path.removesuffix("#key") for path in found)
    return kinds, fields


def _may_hold(text: str) -> bool:
    """:func:`may_hold_raw_values` for one text."""
    if not text.isascii():
        return True
    return may_hold_raw_values(text.encode())


class Redactor:
    """Finds raw personal data in texts and events, and masks it with keyed tokens.

    ``key`` keys the tokens; without one a random key is drawn, so tokens are
    consistent within the process and unlinkable across runs.

    >>> r = Redactor(key=b"k" * 32)
    >>> r.scan_text("mail taro@example.jp now")
    [('email', 'taro@example.jp')]
    >>> r.mask("mail TARO@EXAMPLE.JP") == r.mask("mail taro@example.jp")
    True
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(32)

    # -- text ------------------------------------------------------------------------------------

    def _found(
        self, text: str, context: str = "", integer: bool = False
    ) -> list[tuple[int, int, str, str]]:
        """(start, end, kind, canonical) of every raw value in ``text``, in order."""
        if not _may_hold(text) and not context:
            return []
        folded = fold(text)
        found = find_all(folded.text, context=context, integer=integer)
        if folded.starts is None:
            return found
        return [(*folded.span(lo, hi), kind, canonical) for lo, hi, kind, canonical in found]

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, kind) of every raw value in ``text``, in order, not overlapping."""
        return [(lo, hi, kind) for lo, hi, kind, _ in self._found(text)]

    def scan_text(self, text: str) -> list[RawValue]:
        """Every raw value in ``text``, as (kind, value as written)."""
        return [(kind, text[lo:hi]) for lo, hi, kind, _ in self._found(text)]

    def _token(self, kind: str, canonical: str) -> str:
        digest = hmac.new(self._key, canonical.encode(), hashlib.sha256).hexdigest()[:12]
        return f"[redacted:{kind}:{digest}]"

    def token(self, kind: str, value: str) -> str:
        """The token that stands for ``value`` (as written), of ``kind``."""
        for _, _, found_kind, canonical in self._found(value):
            if found_kind == kind:
                return self._token(kind, canonical)
        return self._token(kind, fold(value).text)

    def mask(self, text: str, *, context: str = "", integer: bool = False) -> str:
        """``text`` with every raw value replaced by its token."""
        return self._masked(text, self._found(text, context, integer))

    def _masked(self, text: str, found: list[tuple[int, int, str, str]]) -> str:
        if not found:
            return text
        parts = []
        last = 0
        for lo, hi, kind, canonical in found:
            parts.append(text[last:lo])
            parts.append(self._token(kind, canonical))
            last = hi
        parts.append(text[last:])
        return "".join(parts)

    # -- events ------------------------------------------------------------------------------

    def field_path(self, path: TextPath) -> str:
        """A text's path as an alert may name it: ``attributes.<key>`` for an attribute's
        value, ``attributes.<key>#key`` for its key. An attribute key is data too, and is
        shown only when it is a plain name holding no raw value (else as a token); a
        plain name holds no ``#``, so no key shown is another's value."""
        if isinstance(path, str):
            return path
        key, is_key = path
        if not (_PLAIN_KEY.fullmatch(key) and not self._found(key)):
            key = self._token("key", key)
        return f"attributes.{key}#key" if is_key else f"attributes.{key}"

    def scan_event(
        self, event: AccessEvent | ConsentEvent, raw: bytes | None = None
    ) -> tuple[AccessEvent | ConsentEvent, dict[str, list[str]]]:
        """Return the event with raw values masked, and {field: [kinds]} of what was found.

        Every text an event carries is looked at: ids (source, recipient, via, purpose,
        categories), subject, references, attribute keys and values (a value with its
        key as context: ``postal_code: 123-4567``). Given the message's ``raw`` bytes,
        the common case (nothing that could be a raw value anywhere in them) costs one
        byte scan.
        """
        if raw is not None and not may_hold_raw_values(raw):
            return event, {}
        found: dict[str, list[str]] = {}
        masked: dict[TextPath, str] = {}
        for path, text, context, integer in _texts(event):
            spans = self._found(text, context, integer)
            if spans:
                masked[path] = self._masked(text, spans)
                found[self.field_path(path)] = sorted({kind for _, _, kind, _ in spans})
        if not found:
            return event, {}
        return _apply(event, masked), found


def _texts(event: AccessEvent | ConsentEvent) -> list[tuple[TextPath, str, str, bool]]:
    """Every text of an event: (path, text, context, is an integer's digits). An
    attribute's texts have the path (its key, whether the text is the key): a key may be
    any text, so no path written out could tell key ``k#key`` from the key of ``k``."""
    texts: list[tuple[TextPath, str, str, bool]] = [("event_id", event.event_id, "", False)]
    if event.subject is not None:
        texts.append(("subject", event.subject, "", False))
    if isinstance(event, ConsentEvent):
        texts.append(("recipient", event.recipient, "", False))
        if event.reference:
            texts.append(("reference", event.reference, "", False))
        for i, purpose in enumerate(event.purposes or ()):
            texts.append((f"purposes[{i}]", purpose, "", False))
        return texts
    texts.append(("source", event.source, "", False))
    texts.append(("purpose", event.purpose, "", False))
    if event.recipient is not None:
        texts.append(("recipient", event.recipient, "", False))
    if event.via is not None:
        texts.append(("via", event.via, "", False))
    for i, category in enumerate(event.categories):
        texts.append((f"categories[{i}]", category, "", False))
    if event.pseudonymization is not None:
        texts.append(("pseudonymization.method", event.pseudonymization.method, "", False))
    if event.exception is not None and event.exception.reference:
        texts.append(("exception.reference", event.exception.reference, "", False))
    for key, value in event.attributes.items():
        texts.append(((key, True), key, "", False))
        if isinstance(value, str):
            texts.append(((key, False), value, key, False))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**9:
            texts.append(((key, False), str(value), key, True))
    return texts


def _apply(
    event: AccessEvent | ConsentEvent, masked: dict[TextPath, str]
) -> AccessEvent | ConsentEvent:
    update: dict[str, Any] = {}
    for field in ("event_id", "subject", "reference", "source", "purpose", "recipient", "via"):
        if field in masked:
            update[field] = masked[field]
    if isinstance(event, ConsentEvent):
        if event.purposes is not None and any(
            isinstance(p, str) and p.startswith("purposes[") for p in masked
        ):
            update["purposes"] = [
                masked.get(f"purposes[{i}]", p) for i, p in enumerate(event.purposes)
            ]
        return event.model_copy(update=update)
    if any(isinstance(p, str) and p.startswith("categories[") for p in masked):
        update["categories"] = [
            masked.get(f"categories[{i}]", c) for i, c in enumerate(event.categories)
        ]
    if "pseudonymization.method" in masked and event.pseudonymization is not None:
        update["pseudonymization"] = event.pseudonymization.model_copy(
            update={"method": masked["pseudonymization.method"]}
        )
    if "exception.reference" in masked and event.exception is not None:
        update["exception"] = event.exception.model_copy(
            update={"reference": masked["exception.reference"]}
        )
    if any(isinstance(path, tuple) for path in masked):
        attributes: dict[str, Any] = {}
        for key, value in event.attributes.items():
            new_key = masked.get((key, True), key)
            attributes[new_key] = masked.get((key, False), value)
        update["attributes"] = attributes
    return event.model_copy(update=update)
