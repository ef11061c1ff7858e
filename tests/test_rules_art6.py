"""Article 6: each rule with a breaching case and a lawful near-miss."""

from __future__ import annotations

from tests.conftest import Judge
from tests.helpers import access, rules_of

LAWFUL = access(recipient="payco", categories=["identity.name", "financial.credit_card"])


def test_lawful_outsourcing_raises_nothing(judge: Judge) -> None:
    assert judge(LAWFUL) == []


def test_no_agreement_after_expiry_but_not_on_last_day(judge: Judge) -> None:
    expired = access(recipient="payco", occurred_at="2026-01-02T09:00:00+09:00")
    assert "art6.no-agreement" in rules_of(judge(expired))
    last_day = access(recipient="payco", occurred_at="2025-12-31T23:59:00+09:00")
    assert "art6.no-agreement" not in rules_of(judge(last_day))


def test_no_agreement_is_judged_on_the_policy_calendar(judge: Judge) -> None:
    # 2025-12-31T15:30Z is already 2026-01-01 in Tokyo, the day after expiry.
    utc = access(recipient="payco", occurred_at="2025-12-31T15:30:00Z")
    assert "art6.no-agreement" in rules_of(judge(utc))
    assert "art6.no-agreement" not in rules_of(
        judge(access(recipient="payco", occurred_at="2025-12-31T14:30:00Z"))
    )


def test_no_agreement_when_not_yet_signed_or_none_at_all(judge: Judge) -> None:
    early = access(recipient="payco", occurred_at="2023-12-31T12:00:00+09:00")
    alerts = judge(early)
    assert "art6.no-agreement" in rules_of(alerts)
    assert (
        "not yet signed" in next(a for a in alerts if a["rule"] == "art6.no-agreement")["message"]
    )
    assert "art6.no-agreement" in rules_of(judge(access(recipient="callco", purpose="support")))


def test_non_conforming_agreement_is_no_agreement(judge: Judge) -> None:
    # NDA-BAD is in force from 2026 but does not conform to the policy.
    alerts = judge(access(recipient="payco", occurred_at="2026-02-01T12:00:00+09:00"))
    found = next(a for a in alerts if a["rule"] == "art6.no-agreement")
    assert "does not conform" in found["message"]
    assert found["severity"] == "high" and found["article"] == "6"


def test_out_of_scope_category_and_purpose(judge: Judge) -> None:
    alerts = judge(access(recipient="payco", categories=["identity.name", "contact.email"]))
    scope = next(a for a in alerts if a["rule"] == "art6.out-of-scope")
    assert scope["categories"] == ["contact.email"]
    assert "art6.out-of-scope" in rules_of(judge(access(recipient="payco", purpose="support")))
    # Near-miss: a prefix entry ('financial') covers financial.bank_account.
    assert (
        rules_of(judge(access(recipient="payco", categories=["financial.bank_account"]))) == set()
    )


def test_unsupervised_when_audit_overdue(judge: Judge) -> None:
    # Last audit 2025-03-01 every 180 days: due by 2025-08-28.
    assert "art6.unsupervised" in rules_of(
        judge(access(recipient="payco", occurred_at="2025-08-29T12:00:00+09:00"))
    )
    assert "art6.unsupervised" not in rules_of(
        judge(access(recipient="payco", occurred_at="2025-08-28T12:00:00+09:00"))
    )


def test_unsupervised_when_never_audited_at_event_time(judge: Judge) -> None:
    before_audit = access(recipient="payco", occurred_at="2025-02-01T12:00:00+09:00")
    assert "art6.unsupervised" in rules_of(judge(before_audit))


def test_sub_outsourcing(judge: Judge) -> None:
    allowed = access(
        source="shop", via="payco", recipient="cardnet", categories=["financial.credit_card"]
    )
    assert rules_of(judge(allowed)) == set()
    not_listed = access(via="cardnet", recipient="payco", categories=["financial.credit_card"])
    assert "art6.sub-outsourcing" in rules_of(judge(not_listed))
    # callco is in payco's onward list but has no agreement of its own.
    listed_without_agreement = access(via="payco", recipient="callco", purpose="support")
    assert "art6.sub-outsourcing" in rules_of(judge(listed_without_agreement))


def test_unencrypted_transfer_of_personal_data(judge: Judge) -> None:
    alerts = judge(access(recipient="payco", encrypted_in_transit=False))
    assert rules_of(alerts) == {"art6.unencrypted"}
    # Near-miss: keyed pseudonyms are not personal data; absent flag is not a finding.
    keyed = access(
        recipient="payco",
        encrypted_in_transit=False,
        form="pseudonymized",
        pseudonymization={"method": "hmac-sha256", "keyed": True},
    )
    assert "art6.unencrypted" not in rules_of(judge(keyed))
    assert "art6.unencrypted" not in rules_of(
        judge(access(recipient="payco", encrypted_in_transit=None))
    )


def test_unencrypted_covers_unkeyed_hashes(judge: Judge) -> None:
    unkeyed = access(
        recipient="payco",
        encrypted_in_transit=False,
        form="pseudonymized",
        pseudonymization={"method": "sha256", "keyed": False},
    )
    assert "art6.unencrypted" in rules_of(judge(unkeyed))


def test_raw_personal_data_is_found_and_redacted(judge: Judge) -> None:
    event = access(
        action="use",
        subject="hanako@example.jp",
        attributes={"note": "call 090-1234-5678", "card": "4111 1111 1111 1111", "n": 3},
    )
    alerts = judge(event)
    raw = next(a for a in alerts if a["rule"] == "art6.raw-personal-data")
    assert set(raw["evidence"]["kinds"]) == {"email", "phone", "card"}
    assert set(raw["categories"]) == {"contact.email", "contact.phone", "financial.credit_card"}
    text = str(alerts)
    for leaked in ("hanako@example.jp", "090-1234-5678", "4111 1111 1111 1111"):
        assert leaked not in text
    assert raw["subject"].startswith("[redacted:email:")


def test_raw_personal_data_near_misses(judge: Judge) -> None:
    harmless = access(
        action="use",
        attributes={
            "order": "ord-20251120-0001",
            "ts_ms": 1732060800000,
            "ip_count": 1234567890,
            "card_like_but_not_luhn": "4111 1111 1111 1112",
            "date": "2025-06-01",
        },
    )
    assert rules_of(judge(harmless)) == set()
