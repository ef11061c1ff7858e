"""Whether a message may hold raw personal data at all: the screen every message passes
before the full scan (:meth:`~lineage.redact.Redactor.spans`), which only the few it
lets through take.

Compiled (:mod:`lineage.compiled`): it runs for every message of a run's decoding
process and of a worker's. Most of its time is the byte translations and searches in
C that it calls; compiled, the steps between them cost about a twentieth less.
"""

from __future__ import annotations

import re

from lineage.redact.find import base64_emails

__all__ = ["may_hold_raw_values"]


def _table(*groups: tuple[bytes, bytes]) -> bytes:
    """A translation table: each byte of a group's first to its second, all else to '.'."""
    table = bytearray(b"." * 256)
    for chars, to in groups:
        for ch in chars:
            table[ch] = to[0]
    return bytes(table)


_DIGITS = b"0123456789"
_UPPER = bytes(range(ord("A"), ord("Z") + 1))
_LOWER = bytes(range(ord("a"), ord("z") + 1))


def _identity(*groups: tuple[bytes, bytes]) -> bytes:
    """A translation table: each byte of a group's first to its second, all else kept."""
    table = bytearray(range(256))
    for chars, to in groups:
        for ch in chars:
            table[ch] = to[0]
    return bytes(table)


# Digits as '0', capitals as 'U', and as '!' every byte that only an escaped or
# disguised value needs: '@', '%' (a percent escape), '\' (a JSON escape such as
# '\u0040') and every non-ASCII byte (full-width forms, other scripts' digits, format
# characters). The separators people write between digit groups are dropped: ten '0's
# are a number's digits, 'UU' and seven '0's a passport's.
_SHAPES = _identity((_DIGITS, b"0"), (_UPPER, b"U"), (b"@%\\" + bytes(range(128, 256)), b"!"))
_SEPARATORS = b" \t().+-/_"
# Three words as one: "at" before a closing bracket or a blank (a spelt-out at sign:
# "[at]", "(AT)", "<at >") and "zip" both read "at]", "post" reads "]ost". The few
# messages that hold either are looked at again, lower-cased, for the words themselves.
_WORDS = _identity(
    *((bytes([c]), bytes([c + 32])) for c in _UPPER),
    (b"azAZ", b"a"),
    (b"tiTI", b"t"),
    (b"])}> \tpP", b"]"),
)
_AT_WORD = re.compile(rb"at ?[\])}>]")
_POSTAL_WORD = re.compile(rb"(?:zip|postal|post ?code)[^0-9]{0,16}[0-9]{3}-?[0-9]{4}")
# The base64 alphabet as 'A': base64 of an address is a run of 18 or more (find.py).
_BASE64_AS_A = _table((_DIGITS + _UPPER + _LOWER + b"+/", b"A"))
_BASE64_RUN = b"A" * 18
# The URL-safe alphabet ('-' and '_' too) as 'A', every other byte as ' ': an address's
# URL-safe base64 may have a '-' or '_' in every stretch of 18 of the standard alphabet.
_URLSAFE_ALPHABET = _DIGITS + _UPPER + _LOWER + b"+/-_"
_URLSAFE_AS_A = bytes(ord("A") if c in _URLSAFE_ALPHABET else ord(" ") for c in range(256))
#: Runs of the URL-safe alphabet found to hold no run of the standard one and to be no
#: address's base64, so that the words a fleet's events repeat (``encrypted_in_transit``)
#: are decoded once; emptied when full.
_CLEAN_RUNS: dict[bytes, None] = {}
_CLEAN_RUNS_MOST = 4096
#: The longest run remembered as clean (an id, a word), so the memory stays small.
_CLEAN_RUN_LONGEST = 128


def may_hold_raw_values(raw: bytes) -> bool:
    """False only when no raw value can be in the message.

    A superset of what :meth:`Redactor.spans` finds: an e-mail has an '@', a percent
    escape (``%40``), a spelt-out at sign (``[at]``) or is base64 (a run of 18 or more
    of its alphabet, or a run of the URL-safe alphabet that decodes to an address); a
    number is ten or more ASCII digits with only separators between them, a passport
    number two capitals and seven digits, a postal code seven digits after its word;
    anything written with other characters (full-width forms, other scripts' digits,
    format characters) is non-ASCII, and a JSON escape ('\\u0040') or a percent escape
    is escaped: those take the full scan.

    This runs on every message: three byte translations and six searches, all in C
    (``find``, not ``in``: ``in`` first tries its operand as an integer, and the
    error it clears costs as much as the search). Each run of 18 or more of the
    URL-safe alphabet then costs a dict lookup, and a run not seen before is decoded
    (:func:`_may_be_base64_address`).
    """
    shapes = raw.translate(_SHAPES, _SEPARATORS)
    if shapes.find(b"!") >= 0 or shapes.find(b"0000000000") >= 0 or shapes.find(b"UU0000000") >= 0:
        return True
    words = raw.translate(_WORDS)
    if words.find(b"at]") >= 0 or words.find(b"]ost") >= 0:
        lower = raw.lower()
        if _AT_WORD.search(lower):
            return True
        if (b"zip" in lower or b"post" in lower) and _POSTAL_WORD.search(lower):
            return True
    urlsafe = raw.translate(_URLSAFE_AS_A)
    start = urlsafe.find(_BASE64_RUN)
    while start >= 0:  # each run of 18 or more of the URL-safe alphabet, which holds
        end = urlsafe.find(b" ", start)  # every run of the standard one
        if end < 0:
            end = len(raw)
        if _may_be_base64_address(raw[start:end]):
            return True
        start = urlsafe.find(_BASE64_RUN, end)
    return False


def _may_be_base64_address(coded: bytes) -> bool:
    """Whether a whole run of the URL-safe alphabet (ASCII) holds 18 or more of the
    standard one in a row, or decodes to an address as the full scan would decode it:
    ids and words joined by '-' or '_' are in most messages and are no address's
    base64."""
    if coded in _CLEAN_RUNS:
        return False
    if coded.translate(_BASE64_AS_A).find(_BASE64_RUN) >= 0:
        return True
    if base64_emails(coded.decode("ascii")):
        return True
    if len(coded) <= _CLEAN_RUN_LONGEST:
        if len(_CLEAN_RUNS) >= _CLEAN_RUNS_MOST:
            _CLEAN_RUNS.clear()
        _CLEAN_RUNS[coded] = None
    return False
