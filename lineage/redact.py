"""Find raw personal data in an event and mask it before anything is stored or forwarded.

The monitoring stream must not leak what it watches (``art6.raw-personal-data``).
A producer may put an e-mail address into ``subject``, a card number into
``attributes`` or a phone number into ``recipient``; the monitor then raises the
finding and replaces each value with a token ``[redacted:<kind>:<hmac>]``. The
token is keyed (HMAC-SHA256), so equal values give equal tokens within a
deployment (consents still match their subject) while nobody without the key can
test a guess against it.

Values are found in ASCII, in full-width forms (``０９０－８７６５－４３２１``,
``ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐ``) and in other scripts' digits, and in
international form (``+81 90 8765 4321``). Every scan is linear in the text: an
e-mail is looked for around each ``@`` with bounded local part and domain, and a
run of digits is read once, so a megabyte of hostile text costs milliseconds, not
minutes.

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
import unicodedata
from typing import Any

from lineage.schemas import AccessEvent, ConsentEvent

__all__ = [
    "KIND_CATEGORY",
    "RawValue",
    "Redactor",
    "may_hold_raw_values",
    "raw_facts",
]

#: The category each kind of raw value belongs to (for the alert's ``categories``).
KIND_CATEGORY = {
    "email": "contact.email",
    "phone": "contact.phone",
    "card": "financial.credit_card",
}

RawValue = tuple[str, str]  # (kind, the matched text as written)

# Full-width ASCII forms, dashes and the ideographic space, each to one ASCII character:
# one character for one, so positions in the folded text are positions in the original.
_FOLD = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
_FOLD.update(
    {
        0x3000: ord(" "),  # ideographic space
        0x2010: ord("-"),  # hyphen
        0x2011: ord("-"),  # non-breaking hyphen
        0x2012: ord("-"),  # figure dash
        0x2013: ord("-"),  # en dash
        0x2014: ord("-"),  # em dash
        0x2015: ord("-"),  # horizontal bar
        0x2212: ord("-"),  # minus sign
        0x30FC: ord("-"),  # katakana prolonged sound mark, written for a dash in numbers
        0xFF70: ord("-"),  # half-width prolonged sound mark
        0x2024: ord("."),  # one dot leader
        0x3002: ord("."),  # ideographic full stop
        0xFE52: ord("."),  # small full stop
        0xFE6B: ord("@"),  # small commercial at
    }
)

_AT = re.compile(r"@")
_LOCAL_CHAR = re.compile(r"[\w.%+\-']")
_DOMAIN = re.compile(r"[\w\-]+(?:\.[\w\-]+)*", re.UNICODE)
_TLD = re.compile(r"[^\W\d_]{2,}$")
_MAX_LOCAL = 64
_MAX_DOMAIN = 253
# A run of digits and the separators people write between them. Bounded: a run longer
# than any phone or card number is read once and judged by its digit groups.
_DIGIT_RUN = re.compile(r"\+?\(?\d[\d \t().\-]*\d|\d")
_DIGITS_MIN, _DIGITS_MAX = 10, 19


def raw_facts(found: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """(kinds, fields) of what :meth:`Redactor.scan_event` found, sorted, for an alert."""
    kinds = sorted({kind for kinds in found.values() for kind in kinds})
    fields = sorted(path.removesuffix("#key") for path in found)
    return kinds, fields


def _luhn(values: list[int]) -> bool:
    total = 0
    for i, d in enumerate(reversed(values)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _digit_values(text: str) -> list[int]:
    return [unicodedata.decimal(ch) for ch in text if ch.isdecimal()]


def _classify_digits(text: str) -> str | None:
    """'card', 'phone' or None for a run of digits as written (already folded)."""
    values = _digit_values(text)
    n = len(values)
    # Card numbers: 13-19 digits, issuer prefixes 2-6 (Visa, Mastercard, Amex, JCB, ...), Luhn.
    if 13 <= n <= 19 and 2 <= values[0] <= 6 and _luhn(values):
        return "card"
    # Phone numbers: 10-15 digits written as a phone is written: trunk prefix 0 or '+country'.
    stripped = text.lstrip("(")
    if 10 <= n <= 15 and (stripped.startswith("+") or values[0] == 0):
        return "phone"
    return None


def _search_run(folded: str, start: int, end: int) -> list[tuple[int, int, str]]:
    """The numbers inside a run of digits and separators that is not one number itself.

    The run is cut into its digit groups, and from each group on, the longest stretch
    of consecutive groups that reads as a phone or card number is taken; the search
    goes on after it. Linear in the run: a stretch holds at most 19 digits, so each
    group starts a bounded number of tries, and prefix sums make each Luhn check O(1).
    """
    run = folded[start:end]
    groups = [(m.start(), m.end()) for m in re.finditer(r"\d+", run)]
    values = [unicodedata.decimal(ch) for ch in run if ch.isdecimal()]
    # first[g]: index in ``values`` of group g's first digit.
    first = []
    k = 0
    for lo, hi in groups:
        first.append(k)
        k += hi - lo
    first.append(k)
    # Luhn by prefix sums: plain[p][k] and doubled[p][k] sum the digits before k whose
    # index has parity p, as they are and as Luhn doubles them.
    plain = ([0], [0])
    doubled = ([0], [0])
    for index, v in enumerate(values):
        d = v * 2 - 9 if v > 4 else v * 2
        for parity in (0, 1):
            mine = index % 2 == parity
            plain[parity].append(plain[parity][-1] + (v if mine else 0))
            doubled[parity].append(doubled[parity][-1] + (d if mine else 0))

    def luhn(a: int, b: int) -> bool:  # digits a..b-1
        last = (b - 1) % 2  # the last digit is not doubled, nor any of its parity
        kept = plain[last][b] - plain[last][a]
        twice = doubled[1 - last][b] - doubled[1 - last][a]
        return (kept + twice) % 10 == 0

    found: list[tuple[int, int, str]] = []
    i = 0
    while i < len(groups):
        lo = start + groups[i][0]
        while lo > start and folded[lo - 1] in "+(":
            lo -= 1
        lead = values[first[i]]
        international = folded[lo] == "+"
        hit: tuple[int, str] | None = None
        if lead == 0 or international or 2 <= lead <= 6:
            for j in range(i, len(groups)):
                n = first[j + 1] - first[i]
                if n > _DIGITS_MAX:
                    break
                if n < _DIGITS_MIN:
                    continue
                if n >= 13 and 2 <= lead <= 6 and luhn(first[i], first[j + 1]):
                    hit = (j, "card")
                elif n <= 15 and (lead == 0 or international):
                    hit = (j, "phone")
        if hit is None:
            i += 1
            continue
        j, kind = hit
        found.append((lo, start + groups[j][1], kind))
        i = j + 1
    return found


def _unescape(text: str) -> tuple[str, list[int] | None]:
    """``text`` with JSON ``\\uXXXX`` escapes decoded, and where each character came from.

    A dead letter keeps text that was never parsed: an address spelt with escapes
    (``hanako\\u0040example.jp``) is still an address. Returns (text, None) when
    there is nothing to decode; else the decoded text and, for each of its
    characters (and one past the end), its index in ``text``.
    """
    if "\\u" not in text:
        return text, None
    out: list[str] = []
    where: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 5 < n and text[i + 1] == "u":
            code = text[i + 2 : i + 6]
            if len(code) == 4 and all(c in "0123456789abcdefABCDEF" for c in code):
                out.append(chr(int(code, 16)))
                where.append(i)
                i += 6
                continue
        out.append(ch)
        where.append(i)
        i += 1
    where.append(n)
    return "".join(out), where


class Redactor:
    """Scans text for e-mail addresses, phone and card numbers, and masks them.

    ``key`` keys the tokens; without one a random key is drawn, so tokens are
    consistent within the process and unlinkable across runs.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(32)

    # -- text ------------------------------------------------------------------------------------

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, kind) of every raw value in ``text``, in order, not overlapping."""
        decoded, where = _unescape(text)
        folded = decoded.translate(_FOLD)
        found = self._emails(folded) + self._numbers(folded)
        if not found:
            return found
        found.sort()
        out = [found[0]]
        for span in found[1:]:
            if span[0] >= out[-1][1]:
                out.append(span)
        if where is not None:
            out = [(where[lo], where[hi], kind) for lo, hi, kind in out]
        return out

    @staticmethod
    def _emails(folded: str) -> list[tuple[int, int, str]]:
        found = []
        n = len(folded)
        for at in _AT.finditer(folded):
            i = at.start()
            lo = i
            while lo > 0 and i - lo < _MAX_LOCAL and _LOCAL_CHAR.match(folded, lo - 1):
                lo -= 1
            while lo < i and folded[lo] == ".":
                lo += 1  # a local part does not start with a dot
            if lo == i:
                continue
            domain = _DOMAIN.match(folded, i + 1, min(n, i + 1 + _MAX_DOMAIN))
            if domain is None:
                continue
            text = domain.group()
            last_dot = text.rfind(".")
            if last_dot < 1 or not _TLD.search(text[last_dot + 1 :]):
                continue
            found.append((lo, domain.end(), "email"))
        return found

    @staticmethod
    def _numbers(folded: str) -> list[tuple[int, int, str]]:
        found = []
        for run in _DIGIT_RUN.finditer(folded):
            start, end = run.span()
            if start > 0 and (folded[start - 1].isalnum() or folded[start - 1] in "_."):
                continue  # part of a word or a decimal: not a number of its own
            if end < len(folded) and (folded[end].isalnum() or folded[end] == "_"):
                continue
            text = run.group()
            digits = sum(ch.isdecimal() for ch in text)
            if digits < _DIGITS_MIN:
                continue
            if digits <= _DIGITS_MAX:
                kind = _classify_digits(text)
                if kind is not None:
                    found.append((start, end, kind))
                    continue
            found.extend(_search_run(folded, start, end))
        return found

    def scan_text(self, text: str) -> list[RawValue]:
        """Every raw value in ``text``, as (kind, value as written)."""
        return [(kind, text[lo:hi]) for lo, hi, kind in self.spans(text)]

    def token(self, kind: str, value: str) -> str:
        """The token that stands for ``value`` (its folded form: full-width and ASCII
        spellings of one address give one token)."""
        canonical = value.translate(_FOLD)
        digest = hmac.new(self._key, canonical.encode(), hashlib.sha256).hexdigest()[:12]
        return f"[redacted:{kind}:{digest}]"

    def mask(self, text: str) -> str:
        """``text`` with every raw value replaced by its token."""
        spans = self.spans(text)
        if not spans:
            return text
        parts = []
        last = 0
        for lo, hi, kind in spans:
            parts.append(text[last:lo])
            parts.append(self.token(kind, text[lo:hi]))
            last = hi
        parts.append(text[last:])
        return "".join(parts)

    # -- events ------------------------------------------------------------------------------

    def _masked_path(self, path: str) -> str:
        """A field's path as an alert may name it: an attribute's key is data too."""
        if not path.startswith("attributes."):
            return path
        key = path.removeprefix("attributes.")
        suffix = "#key" if key.endswith("#key") else ""
        return f"attributes.{self.mask(key.removesuffix('#key'))}{suffix}"

    def scan_event(
        self, event: AccessEvent | ConsentEvent, raw: bytes | None = None
    ) -> tuple[AccessEvent | ConsentEvent, dict[str, list[str]]]:
        """Return the event with raw values masked, and {field: [kinds]} of what was found.

        Every text an event carries is looked at: ids (source, recipient, via, purpose,
        categories), subject, references, attribute keys and values. Given the
        message's ``raw`` bytes, the common case (nothing that could be a raw value
        anywhere in them) costs one byte scan.
        """
        if raw is not None and not may_hold_raw_values(raw):
            return event, {}
        texts = _texts(event)
        found: dict[str, list[str]] = {}
        masked: dict[str, str] = {}
        for path, text in texts.items():
            spans = self.spans(text)
            if spans:
                masked[path] = self.mask(text)
                found[self._masked_path(path)] = sorted({kind for _, _, kind in spans})
        if not found:
            return event, {}
        return _apply(event, masked), found


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_SEPARATORS = b" \t().+-"


def may_hold_raw_values(raw: bytes) -> bool:
    """False only when no e-mail, phone or card number can be in the message.

    A superset of what :meth:`Redactor.spans` finds: every e-mail has an '@', every
    phone or card number is ten or more ASCII digits with only separators between
    them; anything else that could spell one (full-width forms, other scripts'
    digits, JSON escapes such as '\\u0040') is non-ASCII or escaped, and takes the
    full scan.
    """
    if b"@" in raw or b"\\u" in raw or not raw.isascii():
        return True
    return b"0000000000" in raw.translate(_DIGITS_AS_ZERO, _SEPARATORS)


def _texts(event: AccessEvent | ConsentEvent) -> dict[str, str]:
    """Every text of an event by its path (``attributes.<key>#key`` for a key)."""
    texts: dict[str, str] = {"event_id": event.event_id}
    if event.subject is not None:
        texts["subject"] = event.subject
    if isinstance(event, ConsentEvent):
        texts["recipient"] = event.recipient
        if event.reference:
            texts["reference"] = event.reference
        for i, purpose in enumerate(event.purposes or ()):
            texts[f"purposes[{i}]"] = purpose
        return texts
    texts["source"] = event.source
    texts["purpose"] = event.purpose
    if event.recipient is not None:
        texts["recipient"] = event.recipient
    if event.via is not None:
        texts["via"] = event.via
    for i, category in enumerate(event.categories):
        texts[f"categories[{i}]"] = category
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
    for field in ("event_id", "subject", "reference", "source", "purpose", "recipient", "via"):
        if field in masked:
            update[field] = masked[field]
    if isinstance(event, ConsentEvent):
        if event.purposes is not None and any(p.startswith("purposes[") for p in masked):
            update["purposes"] = [
                masked.get(f"purposes[{i}]", p) for i, p in enumerate(event.purposes)
            ]
        return event.model_copy(update=update)
    if any(p.startswith("categories[") for p in masked):
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
    if any(path.startswith("attributes.") for path in masked):
        attributes: dict[str, Any] = {}
        for key, value in event.attributes.items():
            new_key = masked.get(f"attributes.{key}#key", key)
            attributes[new_key] = masked.get(f"attributes.{key}", value)
        update["attributes"] = attributes
    return event.model_copy(update=update)
