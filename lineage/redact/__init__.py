"""Find raw personal data in an event and mask it before anything is stored or forwarded.

The monitoring stream must not leak what it watches (``art6.raw-personal-data``).
A producer may put an e-mail address into ``subject``, a card number into
``attributes``, a phone number into ``recipient`` or a My Number anywhere; the
monitor then raises the finding and replaces each value with a keyed token
``[redacted:<kind>:<hmac>]``.

- :mod:`lineage.redact.fold`: the text as the detectors read it, every disguise of
  a character undone (full-width and kanji digits, format characters, odd spaces and
  dashes, JSON and percent escapes), with where each character came from;
- :mod:`lineage.redact.find`: the detectors, each anchored and linear, confirmed by
  python-stdnum (check digits) and phonenumbers (libphonenumber);
- :mod:`lineage.redact.redactor`: the :class:`Redactor`, its tokens, and what it does
  with an event.

What is detected, how, and what is not: ``docs/redaction.md``.
"""

from lineage.redact.find import KINDS
from lineage.redact.redactor import (
    KIND_CATEGORY,
    RawValue,
    Redactor,
    may_hold_raw_values,
    raw_facts,
)

__all__ = [
    "KINDS",
    "KIND_CATEGORY",
    "RawValue",
    "Redactor",
    "may_hold_raw_values",
    "raw_facts",
]
