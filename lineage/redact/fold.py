"""Text as the detectors read it: every disguise of a character undone, positions kept.

A producer, or someone probing the monitor, can write an address or a number so
that a plain pattern misses it: full-width forms (``０９０－１２３４``), kanji digits
(``〇九〇``), a zero-width space or a soft hyphen inside it, a no-break or thin space
between its groups, a JSON escape (``\\u0040``) in a dead letter's text, percent
encoding (``taro%40example.jp``). :func:`fold` returns the text with each of those
undone, and where each of its characters came from, so that a value found in the
folded text is masked where it stands in the original:

- JSON ``\\uXXXX`` escapes and ``%XX`` percent escapes (UTF-8) are decoded;
- each other character is taken in its NFKC compatibility form (full-width and
  half-width forms, circled and other compatibility digits);
- kanji digits become ASCII digits;
- Unicode format characters (category Cf: zero-width spaces and joiners, the soft
  hyphen, the byte-order mark, bidirectional marks) are dropped;
- every space-like character (categories Zs, Zl, Zp) becomes a space, every dash
  (Pd, the minus sign, the katakana prolonged sound mark written for a dash) a
  hyphen, and middle dots and ideographic full stops a full stop;
- the particle ``の`` between two digits, as a number is read out and written down
  (``〇九〇の一二三四の五六七八``), a hyphen.

ASCII text without ``%`` or ``\\u`` is its own folded form: the common case costs a
check. Otherwise the work is linear in the text: one regular expression finds the
stretches to fold, and the ASCII between them is copied whole.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Folded", "fold", "without_trailing_number"]

_KANJI_DIGITS = {
    "〇": "0",
    "零": "0",
    "一": "1",
    "二": "2",
    "三": "3",
    "四": "4",
    "五": "5",
    "六": "6",
    "七": "7",
    "八": "8",
    "九": "9",
}
_DASHES = {"\u2212", "\u30fc", "\uff70", "\u2043", "\ufe63", "\uff0d"}
_DOTS = {"\u30fb", "\uff65", "\u00b7", "\u2022", "\u3002", "\uff61", "\u2024", "\ufe52"}

# ``の`` between digits (folded): a separator of digit groups, one character for one.
_NO_BETWEEN_DIGITS = re.compile(r"(?<=[0-9])の(?=[0-9])")

# A JSON escape, a run of percent escapes, or a run of non-ASCII characters.
_SPECIAL = re.compile(r"\\u[0-9a-fA-F]{4}|(?:%[0-9A-Fa-f]{2})+|[^\x00-\x7f]+")


@lru_cache(maxsize=8192)
def _fold_char(ch: str) -> str:
    """What one character reads as ("" when it is dropped)."""
    if ch.isascii():
        return ch
    digit = _KANJI_DIGITS.get(ch)
    if digit is not None:
        return digit
    category = unicodedata.category(ch)
    if category == "Cf":
        return ""
    if category in ("Zs", "Zl", "Zp"):
        return " "
    if category == "Pd" or ch in _DASHES:
        return "-"
    if ch in _DOTS:
        return "."
    folded = unicodedata.normalize("NFKC", ch)
    if folded == "\uff0e":
        return "."
    return folded


@dataclass(frozen=True, slots=True)
class Folded:
    """A folded text and, for each of its characters, the original ``[start, end)``.

    ``starts`` and ``ends`` are None when the text is its own folded form.
    """

    text: str
    starts: list[int] | None = None
    ends: list[int] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the folded characters ``[start, end)`` (end > start)."""
        if self.starts is None or self.ends is None:
            return start, end
        return self.starts[start], self.ends[end - 1]


def _percent(run: str, at: int, out: list[str], starts: list[int], ends: list[int]) -> None:
    """Decode a run of ``%XX`` escapes as UTF-8; what does not decode stays as written."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    begun = at
    for i in range(0, len(run), 3):
        byte = bytes.fromhex(run[i + 1 : i + 3])
        try:
            chars = decoder.decode(byte)
        except UnicodeDecodeError:
            decoder.reset()
            for j in range(begun, at + i + 3):  # the bytes so far, as written
                out.append(run[j - at])
                starts.append(j)
                ends.append(j + 1)
            begun = at + i + 3
            continue
        if not chars:
            continue  # inside a multi-byte sequence
        for ch in chars:
            for piece in _fold_char(ch):
                out.append(piece)
                starts.append(begun)
                ends.append(at + i + 3)
        begun = at + i + 3
    for j in range(begun, at + len(run)):  # a sequence cut short at the end
        out.append(run[j - at])
        starts.append(j)
        ends.append(j + 1)


def fold(text: str) -> Folded:
    """``text`` as the detectors read it (module docstring)."""
    if text.isascii() and "%" not in text and "\\u" not in text:
        return Folded(text)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    last = 0
    for match in _SPECIAL.finditer(text):
        lo, hi = match.span()
        if lo > last:  # plain ASCII: itself
            out.append(text[last:lo])
            starts.extend(range(last, lo))
            ends.extend(range(last + 1, lo + 1))
        token = match.group()
        if token.startswith("\\u"):
            for piece in _fold_char(chr(int(token[2:], 16))):
                out.append(piece)
                starts.append(lo)
                ends.append(hi)
        elif token.startswith("%"):
            _percent(token, lo, out, starts, ends)
        else:
            for i, ch in enumerate(token, start=lo):
                for piece in _fold_char(ch):
                    out.append(piece)
                    starts.append(i)
                    ends.append(i + 1)
        last = hi
    if last < len(text):
        out.append(text[last:])
        starts.extend(range(last, len(text)))
        ends.extend(range(last + 1, len(text) + 1))
    folded = "".join(out)
    if "の" in folded:
        folded = _NO_BETWEEN_DIGITS.sub("-", folded)
    return Folded(folded, starts, ends)


#: What a digit group may be written with around it, as folded ("": a format character).
_GROUPING = frozenset(["", " ", "-", "/", "_", ".", "(", ")", "+", "の"])


def without_trailing_number(text: str, limit: int = 320) -> str:
    """``text`` less the number it ends in, if it ends in one: the last ``limit``
    characters at most, that read as digits or as what digit groups are written with
    (spaces, dashes, dots, brackets, format characters: ``4111\\u200b1111 ``,
    ``四一一一－``), when at least one of them is a digit.

    A value cut short is confirmed by no detector (a card without its check digit),
    and its start is as personal as the whole.
    """
    start = len(text)
    digits = False
    while start > 0 and len(text) - start < limit:
        folded = _fold_char(text[start - 1])
        if folded.isdigit():  # of any script, as the regular expression's \d it replaced
            digits = True
        elif folded not in _GROUPING:
            break
        start -= 1
    return text[:start] if digits else text
