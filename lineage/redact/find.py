"""The detectors: raw personal data in a folded text (:mod:`lineage.redact.fold`).

Each detector finds candidates with a regular expression anchored on something a
value cannot do without (an ``@``, a run of digits, two capital letters and seven
digits...), so the work is linear in the text, and confirms each candidate with a
well-kept library where one exists:

==================  ======================================  =================================
kind                found as                                confirmed by
==================  ======================================  =================================
``email``           an ``@`` (or ``[at]``, ``(at)``...),     a domain with a top-level domain
                    a local part (quoted, with comments),   of letters or punycode, or an IP
                    a domain (``[dot]`` for a dot);         literal
                    base64 of an address
``phone``           10-15 digits written as a phone is      phonenumbers (libphonenumber):
                    (``0`` trunk prefix, ``+``, ``00``,     possible in Japan (the default
                    ``010`` or ``81`` country code)         region), valid abroad
``card``            13-19 digits, issuer prefix 2-6         python-stdnum's Luhn check
``my_number``       12 digits (個人番号, spaced or not)      python-stdnum ``jp.in_``
``corporate_number``  13 digits (法人番号)                    python-stdnum ``jp.cn``
``iban``            two letters, two digits, 11-30 more     python-stdnum ``iban``
``passport``        two capital letters and seven digits    its shape (Japan's passports)
``postal_code``     ``〒`` or a postal word, then ddd-dddd   its shape and its context
==================  ======================================  =================================

Digits may be grouped by spaces, hyphens, ``/``, ``_``, full stops or brackets,
and a phone or card number may be glued to letters (``tel09056565656``), unless
the letters make a hexadecimal blob or a UUID, whose digits are no number.

Every detector returns :data:`Found` tuples: the folded span, the kind, and the
value's canonical form (the lower-cased address, the phone number in E.164, the
digits), from which the token is made, so one value written many ways gets one
token.
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from functools import lru_cache
from itertools import accumulate

__all__ = ["KINDS", "Found", "find_all"]

#: (start, end, kind, canonical value) in the folded text.
Found = tuple[int, int, str, str]

KINDS = (
    "email",
    "phone",
    "card",
    "my_number",
    "corporate_number",
    "iban",
    "passport",
    "postal_code",
)

# -- e-mail addresses ------------------------------------------------------------------------

_AT = re.compile(r"@|\s?[\[({<] ?(?:[Aa][Tt]) ?[\])}>]\s?")
_LOCAL_CHAR = re.compile(r"[\w.%+\-'!#$&*=?^`{|}~]")
_DOT_WORD = r"(?:\.|\s?[\[({<] ?(?:[Dd][Oo][Tt]) ?[\])}>]\s?)"
_DOMAIN = re.compile(rf"[\w\-]+(?:{_DOT_WORD}[\w\-]+)*")
_DOT_SPLIT = re.compile(_DOT_WORD)
_IP_LITERAL = re.compile(r"\[(?:IPv6:[0-9A-Fa-f:.]{2,45}|\d{1,3}(?:\.\d{1,3}){3})\]")
_TLD = re.compile(r"[^\W\d_]{2,}|xn--[a-z0-9\-]{2,59}", re.IGNORECASE)
_MAX_LOCAL = 64
_MAX_DOMAIN = 253
_MAX_COMMENT = 64


def _comment_before(text: str, end: int) -> int:
    """The start of an RFC 5322 comment ``(...)`` ending just before ``end``, or -1."""
    if end == 0 or text[end - 1] != ")":
        return -1
    lo = text.rfind("(", max(0, end - _MAX_COMMENT), end - 1)
    return lo


def _comment_after(text: str, start: int) -> int:
    """The end of a comment ``(...)`` starting at ``start``, or -1."""
    if start >= len(text) or text[start] != "(":
        return -1
    hi = text.find(")", start + 1, start + _MAX_COMMENT)
    return hi + 1 if hi >= 0 else -1


def _local_part(text: str, at: int) -> tuple[int, str] | None:
    """(start, canonical local part) of the local part ending at ``at``."""
    end = at
    skipped = _comment_before(text, end)  # taro(comment)@example.jp
    if skipped >= 0:
        end = skipped
    if end > 0 and text[end - 1] == '"':  # "taro yamada"@example.jp
        lo = text.rfind('"', max(0, end - 1 - _MAX_LOCAL), end - 1)
        if lo < 0 or lo == end - 2:
            return None
        return lo, text[lo + 1 : end - 1]
    lo = end
    while lo > 0 and end - lo < _MAX_LOCAL and _LOCAL_CHAR.match(text, lo - 1):
        lo -= 1
    while lo < end and text[lo] == ".":
        lo += 1  # a local part does not start with a dot
    if lo == end:
        return None
    local = text[lo:end]
    before = _comment_before(text, lo)  # (comment)taro@example.jp
    return (before if before >= 0 else lo), local


def _domain(text: str, start: int) -> tuple[int, str] | None:
    """(end, canonical domain) of the domain starting at ``start``."""
    after = _comment_after(text, start)
    if after >= 0:
        start = after
    literal = _IP_LITERAL.match(text, start)
    if literal is not None:
        return literal.end(), literal.group()
    match = _DOMAIN.match(text, start, min(len(text), start + _MAX_DOMAIN + 16))
    if match is None:
        return None
    labels = _DOT_SPLIT.split(match.group())
    if len(labels) < 2 or not labels[0] or not _TLD.fullmatch(labels[-1]):
        return None
    return match.end(), ".".join(labels)


def emails(text: str) -> list[Found]:
    """Every e-mail address, anchored on each ``@`` or spelt-out at sign."""
    found: list[Found] = []
    for at in _AT.finditer(text):
        local = _local_part(text, at.start())
        if local is None:
            continue
        domain = _domain(text, at.end())
        if domain is None:
            continue
        lo, name = local
        hi, host = domain
        found.append((lo, hi, "email", f"{name}@{host}".lower()))
    return found


# -- base64 of an address ------------------------------------------------------------------------

#: Base64 of an address of 13 bytes or more (``taro@mail.jp``): 18 characters unpadded.
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{18,}={0,2}")
#: The same in either alphabet: the URL-safe one writes ``-`` and ``_`` for ``+`` and ``/``.
_BASE64_ANY = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{18,}={0,2}")
#: Where a URL-safe run may start inside a longer one (after a word it is glued to).
_WORD_END = re.compile(r"[-_]")
#: The most words tried off either end of a run: a run of many words is no address's base64.
_MOST_STARTS = 8
#: Hexadecimal digits and hyphens alone (a UUID, a hash): never an address's base64.
_HEX_WORDS = re.compile(r"[0-9A-Fa-f-]+")
#: The longest base64 of an address (254 bytes), so that a long run is cut into few tries.
_LONGEST = 340


def base64_emails(text: str) -> list[Found]:
    """Runs of base64 (either alphabet) that decode to text holding an e-mail address
    (masked whole)."""
    found: list[Found] = []
    for run in _BASE64_ANY.finditer(text):
        coded, at = run.group(), run.start()
        parts: Iterable[tuple[int, int]] = [(0, len(coded))]
        if "-" in coded or "_" in coded:
            if not _HEX_WORDS.fullmatch(coded):
                hit = _urlsafe_email(coded, at)
                if hit is not None:
                    found.append(hit)
                    continue
            # Standard base64, where '-' and '_' end runs (``order-dGFyb0BleGFtcGxlLmpw``).
            parts = [part.span() for part in _BASE64.finditer(coded)]
        for start, end in parts:
            canonical = _decoded_email(coded[start:end], b"+/")
            if canonical is not None:
                found.append((at + start, at + end, "email", canonical))
    return found


def _urlsafe_email(coded: str, at: int) -> Found | None:
    """The address a URL-safe run at ``at`` is the base64 of: the whole run, or the run
    less a word glued before or after it by a ``-`` or ``_`` (``uid-...``, ``...-v2``)."""
    if "+" in coded or "/" in coded:
        return None  # not one alphabet
    bounds = [m.start() for m in _WORD_END.finditer(coded)]
    starts = [0, *(b + 1 for b in bounds[:_MOST_STARTS])]
    ends = [len(coded), *reversed(bounds[-_MOST_STARTS:])]
    for start in starts:
        for end in ends:
            if not 18 <= end - start <= _LONGEST:
                continue
            canonical = _decoded_email(coded[start:end], b"-_")
            if canonical is not None:
                return (at + start, at + end, "email", canonical)
    return None


def _decoded_email(coded: str, altchars: bytes) -> str | None:
    """The canonical address held by the base64 text ``coded``, if any."""
    bare = coded.rstrip("=")
    try:
        decoded = base64.b64decode(bare + "=" * (-len(bare) % 4), altchars, validate=True)
    except (binascii.Error, ValueError):
        return None
    if b"@" not in decoded:
        return None
    try:
        plain = decoded.decode("utf-8")
    except UnicodeDecodeError:
        return None
    inner = emails(plain)
    return inner[0][3] if inner else None


# -- numbers -------------------------------------------------------------------------------------

_DIGIT_RUN = re.compile(r"\+?\(?\d[\d \-/_.()]*\d")
_GROUP = re.compile(r"\d+")
_DIGITS_MIN, _DIGITS_MAX = 10, 19
#: How a phone number written without '+' starts: with the trunk prefix 0, or with
#: Japan's country code 81.
_PHONE_STARTS = ("0", "81")
#: How many digits a card number has.
_CARD_LENGTHS = range(13, 20)
_HEX_WORD = re.compile(r"[0-9A-Fa-f]+")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_WORD = re.compile(r"[A-Za-z0-9]+")


@lru_cache(maxsize=4096)
def _phone(digits: str, plus: bool) -> str | None:
    """The phone number in E.164 that ``digits`` spell (``plus``: written after '+').

    Written the way a phone number is: in Japan (the default region) with its trunk
    prefix 0, or after '+', when libphonenumber finds it possible (a length the
    country's numbers have); after the international prefixes 00 and 010, or Japan's
    country code 81 without '+', which an order number may also start with, only
    when libphonenumber finds it valid (a range the country has allocated).
    """
    import phonenumbers

    n = len(digits)
    strict = not plus
    if not plus:
        if digits.startswith("010") and n >= 12:
            digits, plus = digits[3:], True
        elif digits.startswith("00") and n >= 12:
            digits, plus = digits[2:], True
        elif digits.startswith("81") and 11 <= n <= 12:
            digits, plus = digits, True
        elif digits.startswith("0") and 10 <= n <= 11:
            strict = False
        else:
            return None
    if plus and not 8 <= len(digits) <= 15:
        return None
    try:
        number = phonenumbers.parse(("+" if plus else "") + digits, None if plus else "JP")
    except phonenumbers.NumberParseException:
        return None
    confirmed = phonenumbers.is_valid_number if strict else phonenumbers.is_possible_number
    if not confirmed(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _card_issuer(first: str) -> bool:
    """Whether a card number may start with this digit (the issuer prefixes 2-6)."""
    return "2" <= first <= "6"


def _card(digits: str) -> bool:
    if not (len(digits) in _CARD_LENGTHS and _card_issuer(digits[0])):
        return False
    from stdnum import luhn

    return bool(luhn.is_valid(digits))


def _my_number(digits: str) -> bool:
    from stdnum.jp import in_

    return len(digits) == 12 and bool(in_.is_valid(digits))


def _corporate_number(digits: str) -> bool:
    from stdnum.jp import cn

    return len(digits) == 13 and bool(cn.is_valid(digits))


#: How an identity number is printed on its card or certificate (My Number 4-4-4, a
#: corporate number 1-4-4-4): so grouped, it may be joined by any one separator people
#: write between digit groups (``1234.5678.9018``), not only by spaces or hyphens.
_PRINTED_GROUPS = {(4, 4, 4), (1, 4, 4, 4)}
_PRINTED_JOINS = ({"."}, {"/"}, {"_"})


def _phone_or_card(digits: str, plus: bool) -> tuple[str, str] | None:
    """("phone" or "card", canonical) of digits that spell either, or None: the numbers
    a stretch of a longer run of digits may hold."""
    if plus or digits.startswith(_PHONE_STARTS):
        phone = _phone(digits, plus)
        if phone is not None:
            return "phone", phone
    if not plus and _card(digits):
        return "card", digits
    return None


def _classify(
    digits: str,
    plus: bool,
    separators: set[str],
    glued: bool,
    integer: bool,
    groups: tuple[int, ...] = (),
) -> tuple[str, str] | None:
    """(kind, canonical) of a whole run of digits written as one number, or None
    (``groups``: the lengths of its digit groups as written)."""
    hit = _phone_or_card(digits, plus)
    if hit is not None or plus:
        return hit
    # Identity numbers are written bare, spaced or hyphenated (or joined by one other
    # separator in their printed groups), never glued to a word.
    if glued:
        return None
    if not separators <= {" ", "-"} and not (
        separators in _PRINTED_JOINS and groups in _PRINTED_GROUPS
    ):
        return None
    if _my_number(digits):
        return "my_number", digits
    if not integer and _corporate_number(digits):
        return "corporate_number", digits
    return None


def _in_blob(text: str, start: int, end: int) -> bool:
    """True when the digits at ``[start, end)`` are part of a hexadecimal blob or a UUID."""
    lo = start
    while lo > 0 and (text[lo - 1].isalnum() or text[lo - 1] == "-"):
        lo -= 1
    hi = end
    while hi < len(text) and (text[hi].isalnum() or text[hi] == "-"):
        hi += 1
    around = text[lo:hi]
    if _UUID.search(around):
        return True
    for word in _WORD.finditer(around):
        if word.start() + lo <= start < word.end() + lo and word.end() - word.start() > len(
            text[start:end]
        ):
            return _HEX_WORD.fullmatch(word.group()) is not None
    return False


def numbers(text: str, integer: bool = False) -> list[Found]:
    """Phone, card and identity numbers in runs of digits (``integer``: the text is a
    number's digits, which a corporate number is never written as)."""
    found: list[Found] = []
    for run in _DIGIT_RUN.finditer(text):
        start, end = run.span()
        prev = text[start - 1] if start else ""
        nxt = text[end] if end < len(text) else ""
        if prev == "." and start > 1 and text[start - 2].isdigit():
            continue  # the decimals of a number
        glued = prev.isalnum() or prev == "_" or nxt.isalnum() or nxt == "_"
        if glued and _in_blob(text, start, end):
            continue
        written = run.group()
        parts = _GROUP.findall(written)
        digits = "".join(parts)
        if len(digits) < _DIGITS_MIN:
            continue
        if len(digits) <= _DIGITS_MAX:
            separators = set(written) - set("0123456789+")
            plus = written.startswith("+")
            groups = tuple(map(len, parts))
            hit = _classify(digits, plus, separators, glued, integer, groups)
            if hit is not None:
                found.append((start, end, *hit))
                continue
        found.extend(_search_run(text, start, end))
    return found


def _search_run(text: str, start: int, end: int) -> Iterator[Found]:
    """The phone and card numbers inside a run of digit groups that is not one number
    itself (an identity number is never a stretch of a longer run).

    From each group on, the longest stretch of consecutive groups that reads as a
    number is taken (the stretches are tried longest first), and the search goes on
    after it. A stretch holds at most 19 digits, so each group starts a bounded number
    of tries: linear in the run. Only the tries that can succeed reach the libraries:
    a phone number starts with ``+``, ``0`` or ``81``, and a card starts with 2-6 and
    passes the Luhn check, which :class:`_LuhnSums` answers for any stretch in
    constant time.
    """
    run = text[start:end]
    spans = [m.span() for m in _GROUP.finditer(run)]
    digits = "".join(run[a:b] for a, b in spans)
    ends = list(accumulate(b - a for a, b in spans))  # where each group ends in ``digits``
    luhn: _LuhnSums | None = None
    i = 0
    while i < len(spans):
        at = ends[i] - (spans[i][1] - spans[i][0])  # where the group starts in ``digits``
        lo = spans[i][0]
        while lo > 0 and run[lo - 1] in "+(":
            lo -= 1
        plus = run[lo] == "+"
        phone = plus or digits.startswith(_PHONE_STARTS, at)
        card = not plus and _card_issuer(digits[at])
        if not (phone or card):
            i += 1
            continue
        if card and luhn is None:
            luhn = _LuhnSums(digits)
        hit: tuple[int, str, str] | None = None
        shortest = max(i, bisect_left(ends, at + _DIGITS_MIN))
        for j in range(bisect_right(ends, at + _DIGITS_MAX) - 1, shortest - 1, -1):
            if not phone and (
                ends[j] - at not in _CARD_LENGTHS or luhn is None or not luhn.valid(at, ends[j])
            ):
                continue
            found = _phone_or_card(digits[at : ends[j]], plus)
            if found is not None:
                hit = (j, *found)
                break
        if hit is None:
            i += 1
            continue
        j, kind, canonical = hit
        yield start + lo, start + spans[j][1], kind, canonical
        i = j + 1


class _LuhnSums:
    """The Luhn check of any stretch of one string of digits, in constant time.

    The check doubles every second digit counting from the stretch's last one, so which
    digits are doubled depends on where the stretch ends. ``_sums[p][k]`` adds up the
    first ``k`` digits, doubling those whose position's parity is not ``p``: the
    stretch ``[a, b)`` sums to ``_sums[(b - 1) % 2][b] - _sums[(b - 1) % 2][a]``. It is
    a filter: what passes is confirmed by python-stdnum. A group may hold the digits of
    other scripts (``\\d`` matches them): each is read by its value, and python-stdnum
    finds no card in them.
    """

    __slots__ = ("_sums",)

    def __init__(self, digits: str) -> None:
        values = [int(c) for c in digits]
        doubled = [_DOUBLED[v] for v in values]
        self._sums = tuple(
            [
                0,
                *accumulate(
                    v if k % 2 == parity else d
                    for k, (v, d) in enumerate(zip(values, doubled, strict=True))
                ),
            ]
            for parity in (0, 1)
        )

    def valid(self, start: int, end: int) -> bool:
        sums = self._sums[(end - 1) % 2]
        return (sums[end] - sums[start]) % 10 == 0


#: A digit doubled by the Luhn check, its digits added: 2·d, less 9 above 9.
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


# -- identifiers with letters ------------------------------------------------------------------

_LETTERS_DIGITS = re.compile(r"[A-Z]{2}\d")
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
)
_PASSPORT = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{7}(?![A-Za-z0-9])")
_POSTAL_MARK = re.compile(r"〒 ?(\d{3}-?\d{4})(?![\d])")
_POSTAL_WORD = re.compile(
    r"(?:postal|zip|post ?code|郵便番号|郵便)[^\d\n]{0,16}?(?<!\d)(\d{3}-?\d{4})(?![\d\-])",
    re.IGNORECASE,
)
_POSTAL_VALUE = re.compile(r" *(\d{3}-?\d{4}) *")
_POSTAL_CONTEXT = re.compile(r"postal|zip|post ?code|郵便", re.IGNORECASE)


def identifiers(text: str, context: str = "") -> list[Found]:
    """IBANs, passport numbers and postal codes (``context``: the attribute key a value
    is given under, which may say that a bare ddd-dddd is a postal code)."""
    found: list[Found] = []
    if _LETTERS_DIGITS.search(text):
        from stdnum import iban

        for match in _IBAN.finditer(text):
            if iban.is_valid(match.group()):
                found.append((*match.span(), "iban", iban.compact(match.group())))
        for match in _PASSPORT.finditer(text):
            found.append((*match.span(), "passport", match.group()))
    for match in _POSTAL_MARK.finditer(text):
        found.append((match.start(), match.end(), "postal_code", match.group(1).replace("-", "")))
    for match in _POSTAL_WORD.finditer(text):
        found.append((*match.span(1), "postal_code", match.group(1).replace("-", "")))
    if context and _POSTAL_CONTEXT.search(context):
        whole = _POSTAL_VALUE.fullmatch(text)
        if whole is not None:
            found.append((*whole.span(1), "postal_code", whole.group(1).replace("-", "")))
    return found


def find_all(text: str, *, context: str = "", integer: bool = False) -> list[Found]:
    """Every raw value in a folded text, in order, none overlapping (the earlier, then the
    longer, wins)."""
    found = emails(text)
    found += numbers(text, integer)
    if not integer:
        found += identifiers(text, context)
        if len(text) >= 18:
            found += base64_emails(text)
    if len(found) < 2:
        return found
    found.sort(key=lambda f: (f[0], -f[1]))
    out = [found[0]]
    for item in found[1:]:
        if item[0] >= out[-1][1]:
            out.append(item)
    return out
