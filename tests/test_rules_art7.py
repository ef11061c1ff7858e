"""Article 7: each rule with a breaching case and a lawful near-miss."""

from __future__ import annotations

from tests.conftest import Judge
from tests.helpers import access, rules_of


def shared(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "recipient": "sister",
        "purpose": "joint",
        "categories": ["identity.name"],
    }
    base.update(fields)
    return access(**base)


def test_announced_sharing_is_lawful(judge: Judge) -> None:
    assert judge(shared()) == []


def test_not_announced_before_the_announcement_day(judge: Judge) -> None:
    assert "art7.not-announced" in rules_of(judge(shared(occurred_at="2025-03-31T23:00:00+09:00")))
    assert judge(shared(occurred_at="2025-04-01T00:30:00+09:00")) == []


def test_not_announced_without_any_announcement(judge: Judge) -> None:
    alerts = judge(access(recipient="quiet-sister", purpose="joint"))
    assert rules_of(alerts) == {"art7.not-announced"}
    assert alerts[0]["severity"] == "high" and alerts[0]["recipient_kind"] == "affiliate"


def test_category_not_announced(judge: Judge) -> None:
    alerts = judge(shared(categories=["identity.name", "identity.date_of_birth"]))
    found = next(a for a in alerts if a["rule"] == "art7.category-not-announced")
    assert found["categories"] == ["identity.date_of_birth"]
    # Near-miss: 'contact' announced as a prefix covers contact.phone.
    assert judge(shared(categories=["contact.phone"])) == []


def test_purpose_not_announced(judge: Judge) -> None:
    assert rules_of(judge(shared(purpose="research"))) == {"art7.purpose-not-announced"}


def test_non_personal_data_to_affiliate_is_not_judged(judge: Judge) -> None:
    assert judge(shared(form="aggregated", categories=["financial.bank_account"])) == []
