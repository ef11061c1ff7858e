"""Nothing raw, anywhere: personal data planted anywhere in an event never reaches an output.

A property-based test plants e-mail addresses, phone and card numbers, written in
ASCII, full-width, JSON-escaped and international forms, in random places of valid
and invalid events, runs them through the embedded run with every export, and
greps every output file and every log line for them, normalised (escapes and
entities undone, full-width folded, separators ignored). A second fuzz feeds the
decoder arbitrary bytes and JSON: it only ever refuses, never crashes.
"""

from __future__ import annotations

import html
import json
import logging
import re
import unicodedata
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage.engine import Engine
from lineage.policy import Policy
from lineage.redact import Redactor
from lineage.run import run_embedded
from lineage.schemas import EventRejected, decode_event
from tests.helpers import access, consent

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


def group(digits: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for size in sizes:
        out.append(digits[i : i + size])
        i += size
    if i < len(digits):
        out.append(digits[i:])
    return sep.join(part for part in out if part)


emails = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.from_regex(r"[a-z][a-z0-9._]{0,12}[a-z0-9]", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z]", fullmatch=True),
    st.sampled_from(["jp", "com", "co.jp", "example"]),
)
phone_digits = st.builds(
    lambda head, rest: "0" + head + rest,
    st.sampled_from(["90", "80", "70", "3", "6"]),
    st.from_regex(r"[0-9]{8}", fullmatch=True),
)
card_digits = st.builds(
    lambda prefix: luhn_complete(prefix),
    st.from_regex(r"4[0-9]{14}|5[1-5][0-9]{14}|35[0-9]{14}", fullmatch=True),
)


@st.composite
def raw_values(draw: st.DrawFn) -> tuple[str, str]:
    """(the value as written, its canonical form: the address, or the digits)."""
    kind = draw(st.sampled_from(["email", "phone", "card"]))
    if kind == "email":
        value = draw(emails)
        canonical = value
        written = draw(st.sampled_from([value, fullwidth(value), value.upper()]))
        return written, canonical.lower()
    digits = draw(phone_digits if kind == "phone" else card_digits)
    sep = draw(st.sampled_from(["", "-", " "]))
    sizes = [3, 4, 4] if kind == "phone" else [4, 4, 4, 4]
    written = group(digits, sizes, sep)
    if kind == "phone" and draw(st.booleans()):
        written = "+81 " + group(digits[1:], [2, 4, 4], sep or " ")  # international form
    if draw(st.booleans()):
        written = fullwidth(written)
    return written, digits.lstrip("0") if written.lstrip(fullwidth("+")).startswith(
        ("+", fullwidth("+"))
    ) else digits


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
    "consent reference",
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
_RUN = re.compile(r"\d[\d\s().+\-]*\d")


def normalise(text: str) -> str:
    text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = html.unescape(text)
    return unicodedata.normalize("NFKC", text).lower()


def leaks(text: str, canonical: str) -> bool:
    normal = normalise(text)
    if "@" in canonical:
        return canonical in normal
    return any(canonical in re.sub(r"\D", "", run) for run in _RUN.findall(normal))


def outputs_of(out: Path) -> dict[str, str]:
    return {p.name: p.read_text(errors="replace") for p in out.iterdir() if p.is_file()}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    planted=st.lists(
        st.tuples(raw_values(), st.sampled_from(PLACES_VALID + PLACES_INVALID)),
        min_size=1,
        max_size=4,
    )
)
def test_planted_personal_data_reaches_no_output(
    policy: Policy, tmp_path_factory: pytest.TempPathFactory, planted: list[Any]
) -> None:
    out = tmp_path_factory.mktemp("leak")
    lines = [orjson.dumps(access(event_id="ok-1", recipient="payco"))]
    lines += [plant(place, written, n) for n, ((written, _), place) in enumerate(planted)]
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        run_embedded(policy, lines, out, redactor=Redactor(b"k" * 32))
    finally:
        root.removeHandler(handler)
    texts = outputs_of(out)
    texts["log"] = "\n".join(r.getMessage() for r in records)
    for (written, canonical), place in planted:
        for name, text in texts.items():
            assert not leaks(text, canonical), f"{written!r} planted in {place} leaks into {name}"


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
