"""Characters that break lines or hide text, found and shown the same way everywhere.

"Hidden" here means the Unicode categories Cc (control: the C0 set with tab, line
feed and carriage return, DEL, and the C1 set with NEL), Cf (format: bidi overrides
and isolates U+202A-202E and U+2066-2069, zero-width characters, soft hyphen...),
Zl and Zp (U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR) and Cs (a lone
surrogate, which no UTF-8 text can hold). A line break among them forges a line in
a text made of lines; a bidi override shows text in another order than it is read;
XML 1.0 cannot hold most C0 characters at all.

The policy loader refuses them in every policy string (:func:`first_hidden`);
notifications show them as escapes (:func:`visible`).
"""

from __future__ import annotations

import unicodedata

__all__ = ["HIDDEN_CATEGORIES", "codepoint", "first_hidden", "is_hidden", "visible"]

#: The Unicode categories of characters that break lines or hide text.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_hidden(char: str) -> bool:
    """True for a character of :data:`HIDDEN_CATEGORIES`."""
    return unicodedata.category(char) in HIDDEN_CATEGORIES


def first_hidden(text: str) -> str | None:
    """The first hidden character of ``text``, or None.

    >>> first_hidden("Sales\u202e"), first_hidden("営業部")
    ('\u202e', None)
    """
    if text.isprintable():  # the common case, checked in C
        return None
    return next((c for c in text if is_hidden(c)), None)


def codepoint(char: str) -> str:
    """How a message names a character without printing it: ``U+202E``.

    >>> codepoint("\\n")
    'U+000A'
    """
    return f"U+{ord(char):04X}"


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str) -> str:
    r"""``text`` with every hidden character written as an escape (``\n``, ``\u202e``).

    >>> visible("e-1\nalert_id: forged\u202e")
    'e-1\\nalert_id: forged\\u202e'
    """
    if text.isprintable():
        return text
    return "".join(_escape(c) if is_hidden(c) else c for c in text)
