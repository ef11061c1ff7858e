"""The detector sees through disguise, confirms with the libraries, and keeps its tokens.

Each disguise of issue 16 is planted alone and must be found and masked whole; each
near-miss (ids, timestamps, UUIDs, decimals, IP addresses) must be left alone. The
Japanese identifiers (My Number, corporate number, passport, postal code) are
found too, and raise ``art6.raw-personal-data`` like an e-mail address does.
"""

from __future__ import annotations

import base64
import random
import re

import orjson
import pytest

from lineage.engine import Engine, dead_letter_record
from lineage.policy import Policy
from lineage.redact import Redactor, may_hold_raw_values
from lineage.redact.fold import fold
from lineage.schemas import EventRejected, decode_event
from tests.helpers import access, consent, rules_of

R = Redactor(b"k" * 32)

FOUND = {
    # e-mail addresses
    "taro@example.jp": "email",
    "ta\u200bro@exa\u00admple.jp": "email",  # zero-width space, soft hyphen
    "taro\u2060yamada@example.jp": "email",  # word joiner
    '"taro yamada"@example.jp': "email",  # quoted local part
    "taro%40example.jp": "email",
    "taro[at]example[dot]jp": "email",
    "taro (at) example (dot) jp": "email",
    "taro(comment)@example.jp": "email",
    "taro@(comment)example.jp": "email",
    "taro@xn--eckwd4c7c.xn--zckzah": "email",  # punycode TLD
    "taro@[192.168.0.1]": "email",  # IP literal
    "taro@[IPv6:2001:db8::1]": "email",
    "dGFyb0BleGFtcGxlLmpw": "email",  # base64 of taro@example.jp
    "eD4-PnlAZXhhbXBsZS5vcmc": "email",  # URL-safe base64 of x>>>y@example.org
    "YWI_fkBleGFtcGxlLm9yZw": "email",  # URL-safe base64 of ab?~@example.org
    "ＴＡＲＯ＠ＥＸＡＭＰＬＥ．ＪＰ": "email",
    "hanako\\u0040example.jp": "email",  # a JSON escape, as a dead letter keeps it
    # phone numbers
    "090-1234-5678": "phone",
    "〇九〇－一二三四－九八七六": "phone",  # kanji digits
    "〇九〇の一二三四の九八七六": "phone",  # groups joined by の, as read out
    "０９０\u00a0１２３４\u2009５６７８": "phone",  # no-break and thin spaces
    "090\u200b1234\u00ad5678": "phone",
    "090/1234/5678": "phone",
    "090_1234_5678": "phone",
    "090・1234・5678": "phone",
    "tel09056565656": "phone",  # glued to letters
    "sms_09012345678": "phone",
    "81-90-1234-5678": "phone",  # country code without +
    "+81 90 8765 4321": "phone",
    "+1 415 555 2671": "phone",
    "0120-123-456": "phone",
    "090%2D1234%2D5678": "phone",
    # cards and bank accounts
    "4111 1111 1111 1111": "card",
    "4111_1111_1111_1111": "card",
    "card4111111111111111": "card",
    "DE89 3704 0044 0532 0130 00": "iban",
    "GB82WEST12345698765432": "iban",
    # Japanese identifiers
    "1234 5678 9018": "my_number",
    "123456789018": "my_number",
    "１２３４－５６７８－９０１８": "my_number",
    # in the groups of the card, joined by another separator
    "1234.5678.9018": "my_number",
    "1234/5678/9018": "my_number",
    "1234_5678_9018": "my_number",
    "１２３４・５６７８・９０１８": "my_number",  # middle dots
    "5835678256246": "corporate_number",
    "5.8356.7825.6246": "corporate_number",
    "TK1234567": "passport",
    "〒123-4567": "postal_code",
    "〒１２３－４５６７": "postal_code",
    "postal code: 123-4567": "postal_code",
    "郵便番号 123-4567": "postal_code",
}

LEFT_ALONE = [
    "550e8400-e29b-41d4-a716-446655440000",
    "2026-11-20T10:15:00+09:00",
    "2026/11/20 10:15",
    "order-12345678901",
    "3.14159265358979",
    "192.168.100.200",
    "ab0312345678cd",
    "deadbeef0312345678cafe",
    "s-021222",
    "payment-processor",
    "1234567",
    "meet (at) noon",
    "service_operation",
    "activity.purchase_history",
    "123-4567",  # a bare ddd-dddd is no postal code without its context
    "1764633600",  # epoch seconds
    "東京都港区芝公園4丁目2の8",  # an address's block numbers joined by の
    "checkout-service-eu-west-1-primary",  # words that are base64's alphabet
    "dGhpcyBpcyBub3QgYW4gYWRkcmVzcw-v2",  # URL-safe base64 of no address
    "1234.5678.9011",  # My Number's groups, a wrong check digit
    "12.3456.7890.18",  # its digits and check digit, not its groups
    "1234.5678.9018.5",  # a fourth group: a version, not a number of a card
    "1234./5678/9018",  # two separators
]


@pytest.mark.parametrize("written", sorted(FOUND))
def test_each_disguise_is_found_and_masked_whole(written: str) -> None:
    text = f"note: {written} thanks"
    found = R.scan_text(text)
    assert [kind for kind, _ in found] == [FOUND[written]], found
    masked = R.mask(text)
    assert masked.startswith("note: ") and masked.endswith(" thanks"), masked
    assert f"[redacted:{FOUND[written]}:" in masked
    # Nothing of the value is left: no digit, and no part of an address.
    rest = re.sub(r"\[redacted:[a-z_]+:[0-9a-f]{12}\]", "", masked)
    assert not re.search(r"\d|example|[@＠]|%40|\[at\]|dGFy", rest), masked


@pytest.mark.parametrize("coded", ["YWI_fkBleGFtcGxlLm9yZw", "YWI/fkBleGFtcGxlLm9yZw=="])
@pytest.mark.parametrize("before, after", [("", ""), ("uid-", ""), ("", "-v2"), ("a_b-", "_c")])
def test_base64_of_an_address_is_masked_whole_in_either_alphabet(
    coded: str, before: str, after: str
) -> None:
    # URL-safe base64 writes '-' and '_' where base64 writes '+' and '/': the run was
    # cut there, and what came before the cut was left as written ("YWI_").
    token = R.mask("ab?~@example.org")
    assert R.mask(f"id={before}{coded}{after};") == f"id={before}{token}{after};"


def test_every_url_safe_base64_address_passes_the_byte_pre_check_to_the_scan() -> None:
    # Kanji in the local part put '-' and '_' all through the URL-safe form: the byte
    # pre-check once looked only for 18 of the standard alphabet in a row, and let 15%
    # of these events through unscanned.
    draw = random.Random(18)
    missed = []
    for n in range(2_000):
        local = "".join(chr(draw.randrange(0x4E00, 0x9FA0)) for _ in range(draw.randint(2, 6)))
        address = f"{local}@example.jp"
        coded = base64.urlsafe_b64encode(address.encode()).decode().rstrip("=")
        event = access(event_id=f"u-{n}", action="use", attributes={"ref": coded})
        raw = orjson.dumps(event)
        _, found = R.scan_event(decode_event(raw), raw)
        if found != {"attributes.ref": ["email"]}:
            missed.append(coded)
    assert not missed, f"{len(missed)} of 2,000 passed, such as {missed[:3]}"


@pytest.mark.parametrize(
    "value",
    [
        "encrypted_in_transit",
        "3f2a9c1e-8b7d-4e6f-a5c4-0d9e8f7a6b5c",
        "checkout-service-v2-blue",
        "order_2026_11_20_shibuya_store",
    ],
)
def test_words_joined_by_hyphens_or_underscores_pass_the_pre_check_as_clean(value: str) -> None:
    raw = orjson.dumps(access(event_id="w-1", action="use", attributes={"ref": value}))
    assert not may_hold_raw_values(raw)
    assert may_hold_raw_values(raw.replace(value.encode(), b"dGFyb0BleGFtcGxlLmpw"))
    assert may_hold_raw_values(raw.replace(value.encode(), b"YWI_fkBleGFtcGxlLm9yZw"))


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_near_misses_are_left_alone(text: str) -> None:
    assert R.scan_text(text) == []
    assert R.mask(text) == text


def test_one_value_written_many_ways_gets_one_token() -> None:
    assert R.mask("TARO@EXAMPLE.JP") == R.mask("taro@example.jp") == R.mask("taro%40example.jp")
    assert R.mask("dGFyb0BleGFtcGxlLmpw") == R.mask("taro@example.jp")
    phone = R.mask("090-1234-5678")
    assert phone == R.mask("+81 90 1234 5678") == R.mask("〇九〇一二三四五六七八")
    assert R.mask("1234 5678 9018") == R.mask("123456789018")
    assert R.mask("taro@example.jp") != R.mask("hanako@example.jp")


def test_a_postal_code_is_found_beside_its_key() -> None:
    assert R.mask("123-4567") == "123-4567"
    assert R.mask("123-4567", context="postal_code").startswith("[redacted:postal_code:")
    assert R.mask("123-4567", context="郵便番号").startswith("[redacted:postal_code:")
    assert R.mask("123-4567", context="order") == "123-4567"


def test_a_corporate_number_is_not_read_into_an_integer() -> None:
    # 13-digit integers are mostly epoch milliseconds; a corporate number is text.
    assert R.mask("5835678256246", integer=True) == "5835678256246"
    assert R.mask("123456789018", integer=True).startswith("[redacted:my_number:")


def test_folding_keeps_where_each_character_came_from() -> None:
    folded = fold("a\u200bb%40c〇")
    assert folded.text == "ab@c0"
    assert folded.span(0, 5) == (0, 8)
    assert folded.span(2, 3) == (3, 6)


def test_japanese_identifiers_raise_raw_personal_data(policy: Policy) -> None:
    engine = Engine(policy, redactor=R)
    for n, value in enumerate(["1234 5678 9018", "TK1234567", "〒123-4567", "5835678256246"]):
        event = access(event_id=f"jp-{n}", action="use", attributes={"note": f"is {value}"})
        outcome = engine.process(orjson.dumps(event), offset=n, origin="t")
        alert = next(a for a in outcome.alerts if a["rule"] == "art6.raw-personal-data")
        assert alert["evidence"]["fields"] == ["attributes.note"]
        assert value not in orjson.dumps(outcome.alerts).decode()
    assert engine.stats.by_rule["art6.raw-personal-data"] == 4


def test_an_attribute_key_is_shown_in_a_path_only_when_it_is_a_plain_name(
    policy: Policy,
) -> None:
    engine = Engine(policy, redactor=R)
    event = access(
        event_id="k-1",
        action="use",
        attributes={"Taro Yamada": "taro@example.jp", "contact": "hanako@example.jp"},
    )
    outcome = engine.process(orjson.dumps(event), offset=0, origin="t")
    alert = next(a for a in outcome.alerts if a["rule"] == "art6.raw-personal-data")
    text = orjson.dumps(alert).decode()
    assert "Taro Yamada" not in text and "Taro" not in text
    fields = alert["evidence"]["fields"]
    assert "attributes.contact" in fields
    assert any(f.startswith("attributes.[redacted:key:") for f in fields), fields


def test_an_attribute_named_as_another_attributes_key_path_is_told_apart(
    policy: Policy,
) -> None:
    """An attribute key may be any text. Attribute ``collected_on#key`` holding an
    address must not rename ``collected_on`` (whose date Art. 10's retention rule
    reads), nor be named in the alert as the key of ``collected_on``."""
    engine = Engine(policy, redactor=R)
    attributes = {"collected_on": "2023-01-01", "collected_on#key": "taro@example.jp"}
    event = access(
        event_id="k-2",
        action="use",
        categories=["activity.purchase_history"],
        purpose="ads",
        attributes=attributes,
    )
    outcome = engine.process(orjson.dumps(event), offset=0, origin="t")
    assert "art10.retention" in rules_of(outcome.alerts)
    alert = next(a for a in outcome.alerts if a["rule"] == "art6.raw-personal-data")
    (field,) = alert["evidence"]["fields"]
    assert field.startswith("attributes.[redacted:key:") and not field.endswith("#key")
    assert "collected_on" not in field


def test_no_alert_message_names_the_subject(policy: Policy) -> None:
    engine = Engine(policy, redactor=R)
    alerts = []
    for n, fields in enumerate(
        [
            {"recipient": "researchers", "purpose": "research"},  # art9.no-consent
            {"recipient": "adz", "purpose": "ads", "categories": ["activity.viewing_history"]},
            {"recipient": "nobody-knows", "purpose": "research"},
        ]
    ):
        event = access(event_id=f"s-{n}", subject="u-secret-77", **fields)
        alerts += engine.process(orjson.dumps(event), offset=2 * n, origin="t").alerts
        withdrawal = consent(
            event_id=f"w-{n}", subject="u-secret-77", status="withdrawn", recipient="*"
        )
        engine.process(orjson.dumps(withdrawal), offset=2 * n + 1, origin="t")
    alerts += engine.process(
        orjson.dumps(
            access(
                event_id="s-9",
                subject="u-secret-77",
                recipient="researchers",
                purpose="research",
                occurred_at="2025-07-01T00:00:00+09:00",
            )
        ),
        offset=99,
        origin="t",
    ).alerts
    assert {"art9.no-consent", "art9.consent-withdrawn"} <= rules_of(alerts)
    assert all(a["subject"] == "u-secret-77" for a in alerts)  # the record keeps it
    assert not [a["message"] for a in alerts if "u-secret-77" in a["message"]]


def test_the_findings_cache_keeps_each_events_pseudonymisation_method(policy: Policy) -> None:
    engine = Engine(policy, redactor=R)
    methods = []
    for n, method in enumerate(["sha256", "md5"]):
        event = access(
            event_id=f"p-{n}",
            recipient="adco",
            purpose="ads",
            categories=["activity.viewing_history"],
            form="pseudonymized",
            pseudonymization={"method": method, "keyed": False},
        )
        outcome = engine.process(orjson.dumps(event), offset=n, origin="t")
        alert = next(a for a in outcome.alerts if a["rule"] == "art10.identifiable")
        methods.append(alert["evidence"]["pseudonymization"]["method"])
    assert methods == ["sha256", "md5"]


def test_a_cut_dead_letter_keeps_no_digit_of_a_card_on_the_cut() -> None:
    from lineage.engine import DEAD_LETTER_KEEP

    card = "4111 1111 1111 1111"
    for shift in range(0, len(card) + 1):
        head = b'{"note": "' + b"x" * (DEAD_LETTER_KEEP - 10 - len(card) + shift) + b" "
        raw = head + card.encode() + b' tail"' + b"y" * 2000
        record = dead_letter_record(
            raw, EventRejected("oversized", field=None, kind="oversized"), "t", R
        )
        assert record["truncated"]
        assert "1111" not in record["original"], shift
        assert "4111" not in record["original"], shift


def test_a_cut_looks_for_the_value_it_falls_in_at_the_end_of_the_text_only() -> None:
    # What a cut drops (the value it falls in, then the number that ends in) lies in the
    # text's last few hundred characters; read there alone, it is what the expressions
    # find over the whole text, across runs as long as they can match and longer.
    from lineage.engine import outputs
    from lineage.redact.fold import without_trailing_number

    def over_the_whole(text: str) -> str:
        kept = without_trailing_number(outputs._CUT_TAIL.sub("", text))
        return outputs._CUT_DIGITS.sub("", kept)

    pieces = ["x", "7", "a1", " ", "\n", "-", ",", '"', "{", "漢", "四", "\u200b", "(", "."]
    lengths = (1, 2, 50, 319, 320, 321, 322, 323, 700)
    draw = random.Random(18)
    for _ in range(600):
        text = "".join(
            draw.choice(pieces) * draw.choice(lengths) for _ in range(draw.randint(1, 5))
        )
        assert outputs._cut(text) == over_the_whole(text), text[-40:]


def test_a_message_cut_before_it_arrived_keeps_no_digit_of_the_number_it_ends_in() -> None:
    # A card short of its check digit is confirmed by no detector; its start is as
    # personal as the whole. Full-width digits are digits too.
    not_json = EventRejected("not JSON: EOF while parsing a string", field=None, kind="not_json")
    for card in (
        "411111111111111",
        "４１１１１１１１１１１１１１１",
        "4111 1111 1111 111",
        "4111 1111 ",  # cut after a group's separator
        "4111\u200b1111\u200b",  # ... a zero-width one
        "四一一一－一一一一－",  # kanji digits, a full-width dash
        "〇九〇の一二三四の",
        "٤١١١ ٤١١١ ",  # Arabic-Indic digits
    ):
        raw = ('{"event_id": "e-1", "note": "' + card).encode()
        record = dead_letter_record(raw, not_json, "t", R)
        assert record["original"] == '{"event_id": "e-1", "note": "', card
        assert record["redacted"] and "truncated" not in record
    # Digits that end a message that is not cut (or not JSON at all) stay when they are no
    # value: only a cut number goes, nothing after it.
    raw = b'{"event_id": "e-1", "n": 12}'
    record = dead_letter_record(raw, not_json, "t", R)
    assert record["original"] == raw.decode() and not record["redacted"]


def test_a_message_cut_inside_a_string_keeps_nothing_of_the_value_it_was_cut_in() -> None:
    # An address cut in its domain is confirmed by no detector; what is left of it (a
    # local part with a comment, say) is as personal as the whole.
    not_json = EventRejected("not JSON: EOF while parsing a string", field=None, kind="not_json")
    for value in ("john(home)@exam", "john(home)@", "john.doe@exa", "call jo(work)@ex"):
        raw = ('{"event_id": "e-1", "note": "' + value).encode()
        record = dead_letter_record(raw, not_json, "t", R)
        kept = record["original"]
        assert "john" not in kept and "jo(work)" not in kept, kept
        assert kept.startswith('{"event_id": "e-1", "note": "'), kept
        assert record["redacted"]
    # A string that is closed is no cut value: a message that is no JSON for another
    # reason keeps its last word.
    raw = b'{"event_id": "e-1", "note": "done" trailing'
    record = dead_letter_record(raw, not_json, "t", R)
    assert record["original"] == raw.decode() and not record["redacted"]
    # An escaped quote does not close the string.
    raw = b'{"event_id": "e-1", "note": "say \\"hi\\" to jo(home)@exa'
    record = dead_letter_record(raw, not_json, "t", R)
    assert "jo(home)" not in record["original"], record["original"]


def _longest_stretches(text: str) -> list[tuple[int, int, str, str]]:
    """What a long run of digit groups holds, by the search's definition read plainly:
    from each group on, the longest stretch of consecutive groups (10 to 19 digits)
    that spells a phone or card number, then on after it."""
    from lineage.redact import find

    groups = list(find._GROUP.finditer(text))
    found, i = [], 0
    while i < len(groups):
        lo = groups[i].start()
        while lo > 0 and text[lo - 1] in "+(":
            lo -= 1
        hit, digits = None, ""
        for j in range(i, len(groups)):
            digits += groups[j].group()
            if len(digits) > 19:
                break
            number = find._phone_or_card(digits, text[lo] == "+") if len(digits) >= 10 else None
            if number is not None:
                hit = (lo, groups[j].end(), *number)
        if hit is None:
            i += 1
            continue
        found.append(hit)
        i = next(k for k, group in enumerate(groups) if group.end() == hit[1]) + 1
    return found


def test_a_long_run_of_digit_groups_is_searched_for_its_longest_numbers() -> None:
    # Phone numbers, cards that pass and fail the Luhn check, and digits that start
    # neither, grouped every way, in runs too long to be one number.
    from lineage.redact import find

    pieces = ["090", "1234", "5678", "+81", "81", "0", "00", "010", "4111", "1111", "5555",
              "4444", "2", "3", "6", "1", "7", "9", "8", "12", "378282", "246310005",
              "٤١١١", "١١١١", "४१११", "4१", "٠٩٠", "८१"]  # other scripts' digits  # fmt: skip
    joins = [" ", "-", "-", " ", "/", "_", ".", "(", ")", ") ", " ("]
    draw, searched = random.Random(39), 0
    for _ in range(3000):
        run = draw.choice(pieces)
        for _ in range(draw.randint(4, 30)):
            run += draw.choice(joins) + draw.choice(pieces).lstrip("+")
        if len(re.sub(r"\D", "", run)) <= 19 or find._DIGIT_RUN.fullmatch(run) is None:
            continue
        found = list(find._search_run(run, 0, len(run)))
        assert found == _longest_stretches(run), run
        searched += bool(found)
    assert searched > 1000


@pytest.mark.parametrize("written", ["1-", "5 ", "81-", "12-"])
def test_a_long_run_that_holds_no_number_asks_the_libraries_nothing(
    written: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 64 KB of one- or two-digit groups: a stretch that cannot start a phone number, or
    # fails the Luhn check, never reaches libphonenumber or python-stdnum (once hundreds
    # of thousands of calls, seconds of the judging thread for one dead letter).
    import phonenumbers
    from stdnum import luhn

    from lineage.redact import find

    asked = {"parse": 0, "luhn": 0}
    parse, is_valid = phonenumbers.parse, luhn.is_valid

    def counted_parse(*args: object, **kwargs: object) -> object:
        asked["parse"] += 1
        return parse(*args, **kwargs)  # type: ignore[arg-type]

    def counted_luhn(number: str) -> bool:
        asked["luhn"] += 1
        return bool(is_valid(number))

    monkeypatch.setattr(phonenumbers, "parse", counted_parse)
    monkeypatch.setattr(luhn, "is_valid", counted_luhn)
    find._phone.cache_clear()
    text = written * (64 * 1024 // len(written))
    assert find.numbers(text) == []
    assert asked["luhn"] == 0
    # "8181..." starts a phone number: of its even lengths, 12 is one Japan's country
    # code allows, asked once (cached).
    assert asked["parse"] == (1 if written == "81-" else 0)
