"""Nothing raw, anywhere: personal data planted anywhere in an event never reaches an output.

A property-based test plants e-mail addresses, phone and card numbers, IBANs and the
Japanese identifiers (My Number, corporate number, passport, postal code), each in
one of the disguises the redactor must see through (full-width and kanji digits,
zero-width and soft-hyphen characters, odd spaces and separators, percent escapes,
``[at]``, quoted local parts, comments, punycode, IP literals, base64, numbers glued
to letters), in every field of an access and a consent event and in invalid
messages; runs them through the embedded run with every export, with alert routing's
notification texts and CEF lines rendered for every alert and incident, at debug
logging; and greps every output file, every SQLite row, every notification and SIEM
line and every log line for them, normalised (escapes, entities and disguises
undone). A second fuzz feeds the decoder arbitrary bytes and JSON: it only ever
refuses, never crashes.
"""

from __future__ import annotations

import base64
import html
import json
import re
import sqlite3
import unicodedata
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.jp import cn, in_

from lineage.engine import Engine
from lineage.notify import Kind
from lineage.notify.cef import cef_line
from lineage.notify.text import body, title
from lineage.policy import Policy
from lineage.redact import Redactor
from lineage.run import run_embedded
from lineage.schemas import EventRejected, decode_event
from tests.helpers import access, consent, debug_records

# -- what is planted -------------------------------------------------------------------------


def luhn_complete(prefix: str) -> str:
    """``prefix`` with the check digit that makes it pass Luhn."""
    for check in "0123456789":
        digits = prefix + check
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


KANJI = dict(zip("0123456789", "〇一二三四五六七八九", strict=True))


def kanji(text: str) -> str:
    return "".join(KANJI.get(c, c) for c in text)


def group(digits: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for size in sizes:
        out.append(digits[i : i + size])
        i += size
    if i < len(digits):
        out.append(digits[i:])
    return sep.join(part for part in out if part)


@dataclass(frozen=True)
class Planted:
    """A value as written, and what of it must never be found in an output (normalised:
    an address, a run of digits, or a text such as a base64 run or a passport number)."""

    written: str
    needles: tuple[str, ...]


locals_ = st.from_regex(r"[a-z][a-z0-9._]{0,12}[a-z0-9]", fullmatch=True)
domains = st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z]", fullmatch=True)
tlds = st.sampled_from(["jp", "com", "co.jp", "example"])
phone_digits = st.builds(
    lambda head, rest: "0" + head + rest,
    st.sampled_from(["90", "80", "70", "3", "6"]),
    st.from_regex(r"[1-9][0-9]{7}", fullmatch=True),
)
card_digits = st.builds(
    lambda prefix: luhn_complete(prefix),
    st.from_regex(r"4[0-9]{14}|5[1-5][0-9]{14}|35[0-9]{14}", fullmatch=True),
)
#: What people, or someone probing the monitor, put between digit groups.
SEPARATORS = ["", "-", " ", "/", "_", "・", "\u00a0", "\u2009", "\u200b", "\u00ad", "－"]
#: Invisible characters slipped into an address.
INVISIBLE = ["\u200b", "\u00ad", "\u2060", "\ufeff", "\u200c"]


@st.composite
def emails(draw: st.DrawFn) -> Planted:
    local, domain, tld = draw(locals_), draw(domains), draw(tlds)
    address = f"{local}@{domain}.{tld}"
    form = draw(st.sampled_from(
        ["plain", "upper", "fullwidth", "invisible", "quoted", "percent", "spelt", "comment",
         "punycode", "ip-literal", "base64"]
    ))  # fmt: skip
    if form == "upper":
        return Planted(address.upper(), (address,))
    if form == "fullwidth":
        return Planted(fullwidth(address), (address,))
    if form == "invisible":
        mark = draw(st.sampled_from(INVISIBLE))
        at = draw(st.integers(1, len(address) - 1))
        return Planted(address[:at] + mark + address[at:], (address,))
    if form == "quoted":
        return Planted(f'"{local} x"@{domain}.{tld}', (f"@{domain}.{tld}",))
    if form == "percent":
        return Planted(f"{local}%40{domain}.{tld}", (address,))
    if form == "spelt":
        return Planted(f"{local} [at] {domain} [dot] {tld}", (address,))
    if form == "comment":
        return Planted(f"{local}(home)@{domain}.{tld}", (f"@{domain}.{tld}", f"{local}(home)"))
    if form == "punycode":
        puny = f"{local}@xn--{domain}.xn--zckzah"
        return Planted(puny, (puny,))
    if form == "ip-literal":
        literal = f"{local}@[192.0.2.{draw(st.integers(1, 254))}]"
        return Planted(literal, (literal,))
    if form == "base64":
        coded = base64.b64encode(f"{local}.mail@{domain}.{tld}".encode()).decode()
        return Planted(coded, (coded.lower(), f"{local}.mail@{domain}.{tld}"))
    return Planted(address, (address,))


@st.composite
def phones(draw: st.DrawFn) -> Planted:
    digits = draw(phone_digits)
    sep = draw(st.sampled_from(SEPARATORS))
    written = group(digits, [3, 4, 4], sep)
    needle = digits
    form = draw(st.sampled_from(["domestic", "plus", "country-code", "glued", "kanji", "wide"]))
    if form == "plus":
        written = "+81 " + group(digits[1:], [2, 4, 4], sep or " ")
        needle = digits[1:]
    elif form == "country-code":  # 81-90-... without '+'
        written = "81-" + group(digits[1:], [2, 4, 4], "-")
        needle = digits[1:]
    elif form == "glued":
        written = draw(st.sampled_from(["tel", "sms_", "mobile", "phone:"])) + digits
    elif form == "kanji":
        written = kanji(written)
    elif form == "wide":
        written = fullwidth(written)
    return Planted(written, (needle,))


@st.composite
def cards(draw: st.DrawFn) -> Planted:
    digits = draw(card_digits)
    written = group(digits, [4, 4, 4, 4], draw(st.sampled_from(["", "-", " ", "_", "/"])))
    if draw(st.booleans()):
        written = fullwidth(written)
    elif draw(st.booleans()):
        written = "card" + digits
    return Planted(written, (digits,))


@st.composite
def identity_numbers(draw: st.DrawFn) -> Planted:
    if draw(st.booleans()):  # My Number: 11 digits and a check digit
        body_ = draw(st.from_regex(r"[1-9][0-9]{10}", fullmatch=True))
        digits = body_ + in_.calc_check_digit(body_)
        written = group(digits, [4, 4, 4], draw(st.sampled_from(["", " ", "-"])))
    else:  # corporate number: a check digit and 12 digits
        body_ = draw(st.from_regex(r"[0-9]{12}", fullmatch=True))
        digits = cn.calc_check_digit(body_) + body_
        written = digits
    if draw(st.booleans()):
        written = fullwidth(written)
    return Planted(written, (digits,))


@st.composite
def other_identifiers(draw: st.DrawFn) -> Planted:
    kind = draw(st.sampled_from(["passport", "postal", "iban"]))
    if kind == "passport":
        number = draw(st.from_regex(r"T[A-Z][0-9]{7}", fullmatch=True))
        return Planted(number, (number.lower(),))
    if kind == "postal":
        digits = draw(st.from_regex(r"[1-9][0-9]{6}", fullmatch=True))
        return Planted(f"〒{digits[:3]}-{digits[3:]}", (digits,))
    return Planted("DE89 3704 0044 0532 0130 00", ("de89370400440532013000", "370400440532013000"))


raw_values = st.one_of(emails(), phones(), cards(), identity_numbers(), other_identifiers())


def fits_an_id(value: str) -> bool:
    return re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", value) is not None


PLACES_VALID = [
    "subject",
    "event_id",
    "attribute value",
    "attribute key",
    "exception reference",
    "pseudonymization method",
    "source",
    "recipient",
    "via",
    "purpose",
    "category",
    "consent subject",
    "consent event_id",
    "consent reference",
    "consent recipient",
    "consent purpose",
]
PLACES_INVALID = ["unknown field value", "unknown field name", "wrong type", "truncated json"]


def plant(place: str, value: str, n: int) -> bytes:
    """A message carrying ``value`` at ``place`` (valid when the value fits there)."""
    base = access(event_id=f"leak-{n}", recipient="payco", attributes={"order": "o-1"})
    if place == "subject":
        base["subject"] = value
    elif place == "event_id":
        base["event_id"] = value
    elif place == "attribute value":
        base["attributes"] = {"note": f"call {value} now"}
    elif place == "attribute key":
        base["attributes"] = {value: "x"}
    elif place == "exception reference":
        base.update(
            recipient="police", legal_basis="exception",
            exception={"kind": "legal_requirement", "reference": f"case {value}"},
        )  # fmt: skip
    elif place == "pseudonymization method":
        base.update(form="pseudonymized", pseudonymization={"method": value, "keyed": False})
    elif place in ("source", "recipient", "via", "purpose"):
        base[place] = value
    elif place == "category":
        base["categories"] = ["identity.name", value]
    elif place == "consent subject":
        return orjson.dumps(consent(event_id=f"leak-{n}", subject=value))
    elif place == "consent reference":
        return orjson.dumps(consent(event_id=f"leak-{n}", reference=f"ref {value}"))
    elif place == "consent event_id":
        return orjson.dumps(consent(event_id=value))
    elif place == "consent recipient":
        return orjson.dumps(consent(event_id=f"leak-{n}", recipient=value))
    elif place == "consent purpose":
        return orjson.dumps(consent(event_id=f"leak-{n}", purposes=["research", value]))
    elif place == "unknown field value":
        base["phone"] = value
    elif place == "unknown field name":
        base[value] = 1
    elif place == "wrong type":
        base["encrypted_in_transit"] = value
    elif place == "truncated json":
        return orjson.dumps({**base, "note": value})[:-5]
    return orjson.dumps(base)


# -- how outputs are searched ----------------------------------------------------------------

_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_SPELT = re.compile(r"\s?[\[(]\s?(at|dot)\s?[\])]\s?", re.IGNORECASE)
_RUN = re.compile(r"\d[\d\s().+\-/_・]*\d")


def normalise(text: str) -> str:
    """An output as a reader of it could read it: escapes, entities, percent escapes,
    invisible characters, full-width and kanji digits, spelt-out at signs undone."""
    text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = urllib.parse.unquote(html.unescape(text))
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = "".join(KANJI_DIGITS.get(ch, ch) for ch in unicodedata.normalize("NFKC", text))
    text = _SPELT.sub(lambda m: "@" if m.group(1).lower() == "at" else ".", text)
    return text.lower()


KANJI_DIGITS = {k: d for d, k in KANJI.items()}


#: mode's timers log at DEBUG how long they slept, as float reprs of 16 or 17 digits
#: ("Timer _thread_keepalive-_ConsumerThread woke up - iteration=4 ...
#: since_epoch=5.003341915000419"): over a worker's run their digit runs hold any
#: 7-digit needle now and then (that one holds 1500041, a planted postal code's
#: digits). Those lines say a timer's name and its times, nothing of what was judged.
_TIMER_LINE = re.compile(r"^.*\btimer \S+ woke up\b.*$", re.IGNORECASE | re.MULTILINE)


def without_timer_times(log: str) -> str:
    """A worker's log with the digits of mode's timer lines zeroed (see _TIMER_LINE)."""
    return _TIMER_LINE.sub(lambda m: re.sub(r"\d", "0", m.group()), log)


def leaks(text: str, needle: str) -> bool:
    """Whether ``needle`` (a text, or a run of digits) can be read in ``text``."""
    normal = normalise(text)
    if not needle.isdigit():
        return needle.lower() in normal
    return any(needle in re.sub(r"\D", "", run) for run in _RUN.findall(normal))


def sqlite_rows(path: Path) -> str:
    """Every row of every table of an SQLite file, as text."""
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            repr(row) for table in tables for row in db.execute(f"SELECT * FROM {table}")
        )


def outputs_of(out: Path) -> dict[str, str]:
    return {p.name: p.read_text(errors="replace") for p in out.iterdir() if p.is_file()}


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    planted=st.lists(
        st.tuples(raw_values, st.sampled_from(PLACES_VALID + PLACES_INVALID)),
        min_size=1,
        max_size=4,
    )
)
def test_planted_personal_data_reaches_no_output(
    policy: Policy, tmp_path_factory: pytest.TempPathFactory, planted: list[Any]
) -> None:
    out = tmp_path_factory.mktemp("leak")
    lines = [orjson.dumps(access(event_id="ok-1", recipient="payco"))]
    lines += [plant(place, value.written, n) for n, (value, place) in enumerate(planted)]
    notifications: list[str] = []

    def forward(kind: str, record: dict[str, Any]) -> None:
        # What alert routing sends: chat and e-mail titles and bodies, and CEF lines.
        which = Kind.ALERT if kind == "alert" else Kind.INCIDENT
        notifications.extend(
            [title(which, record), body(which, record), cef_line(which, record, "0.1.0")]
        )

    with debug_records() as recorder:
        run_embedded(policy, lines, out, redactor=Redactor(b"k" * 32), forward=forward)
    texts = outputs_of(out)
    texts["subjects.sqlite rows"] = sqlite_rows(out / "subjects.sqlite")
    texts["notifications"] = "\n".join(notifications)
    texts["log"] = "\n".join(r.getMessage() for r in recorder.records)
    for value, place in planted:
        for needle in value.needles:
            for name, text in texts.items():
                assert not leaks(text, needle), (
                    f"{value.written!r} planted in {place} leaks into {name}"
                )


def test_the_search_finds_a_value_in_every_disguise() -> None:
    # The checker itself: a leak written any of these ways would be caught.
    for disguised in [
        "０９０－１２３４－５６７８",
        json.dumps("０９０-1234-5678"),
        "&#48;90-1234-5678",
        "090 1234 5678",
    ]:
        assert leaks(disguised, "09012345678"), disguised
    assert leaks(json.dumps("ＨＡＮＡＫＯ＠ＥＸＡＭＰＬＥ．ＪＰ"), "hanako@example.jp")


def test_a_timers_times_are_not_read_as_a_leak_and_nothing_else_is_dropped() -> None:
    timer = (
        "[2026-12-02 11:12:15,789] [959] [DEBUG] Timer _thread_keepalive-_ConsumerThread "
        "woke up - iteration=4 time_spent_sleeping=1.000571869999476 "
        "drift=-0.0005718699994758936 new_interval=0.9994281300005241 "
        "since_epoch=5.003341915000419 \n"
    )
    assert leaks(timer, "1500041")  # the digits are there, by chance
    assert not leaks(without_timer_times(timer), "1500041")
    late = "[x] [1] [INFO] Timer Monitor.sampler woke up too late, with a drift of +0.150004123\n"
    assert not leaks(without_timer_times(late), "1500041")
    other = "[x] [1] [DEBUG] sent 150-0041 to a timer woke up early\n"
    assert leaks(without_timer_times(timer + other), "1500041")


# -- the decoder never crashes ----------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
FIELDS = ["event_id", "occurred_at", "source", "action", "subject", "categories", "purpose",
          "recipient", "type", "status", "attributes", "schema_version", "form", "via"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        json_values.map(orjson.dumps),
        st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=10).map(orjson.dumps),
    )
)
def test_the_decoder_only_ever_refuses(raw: bytes) -> None:
    try:
        decode_event(raw)
    except EventRejected as rejection:
        assert rejection.kind and rejection.reason


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=10))
def test_the_engine_never_raises_on_any_message(policy: Policy, fields: dict[str, Any]) -> None:
    base = access(recipient="payco")
    outcome = Engine(policy).process(orjson.dumps({**base, **fields}), offset=0, origin="t")
    assert outcome.status in {"judged", "duplicate", "rejected"}
    if outcome.dead_letter is not None:
        assert outcome.dead_letter["kind"] != "internal_error", outcome.dead_letter["reason"]
