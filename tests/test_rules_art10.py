"""Article 10: each rule with a breaching case and a lawful near-miss."""

from __future__ import annotations

from tests.conftest import Judge
from tests.helpers import access, rules_of

KEYED = {"method": "hmac-sha256", "keyed": True}


def to_ads(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "recipient": "adco",
        "purpose": "ads",
        "categories": ["activity.viewing_history", "device.cookie"],
        "form": "pseudonymized",
        "pseudonymization": KEYED,
    }
    base.update(fields)
    return access(**base)


def test_lawful_ad_flow(judge: Judge) -> None:
    assert judge(to_ads()) == []


def test_category(judge: Judge) -> None:
    alerts = judge(to_ads(categories=["activity.viewing_history", "contact.email"]))
    assert rules_of(alerts) == {"art10.category"}
    assert alerts[0]["categories"] == ["contact.email"]


def test_identifiable(judge: Judge) -> None:
    identified = judge(to_ads(form="identified", pseudonymization=None))
    assert "art10.identifiable" in rules_of(identified)
    assert (
        next(a for a in identified if a["rule"] == "art10.identifiable")["severity"] == "critical"
    )
    unkeyed = to_ads(pseudonymization={"method": "sha256", "keyed": False})
    assert "art10.identifiable" in rules_of(judge(unkeyed))


def test_no_conditions(judge: Judge) -> None:
    assert "art10.no-conditions" in rules_of(judge(to_ads(recipient="adz")))
    before = to_ads(occurred_at="2024-12-31T12:00:00+09:00")
    assert rules_of(judge(before)) == {"art10.no-conditions"}
    assert judge(to_ads(occurred_at="2025-01-01T00:10:00+09:00")) == []


def test_purpose(judge: Judge) -> None:
    assert rules_of(judge(to_ads(purpose="research"))) == {"art10.purpose"}


def test_onward(judge: Judge) -> None:
    assert judge(to_ads(via="adco", recipient="adx")) == []  # listed, bound
    assert "art10.onward" in rules_of(judge(to_ads(via="adco", recipient="adz")))  # not listed
    # adx lists adz, but does not bind it to the same conditions.
    assert "art10.onward" in rules_of(judge(to_ads(via="adx", recipient="adz")))


def test_retention(judge: Judge) -> None:
    old = to_ads(attributes={"collected_at": "2024-05-01T00:00:00+09:00"})
    alerts = judge(old)
    assert rules_of(alerts) == {"art10.retention"}
    assert alerts[0]["categories"] == ["activity.viewing_history"]
    fresh = to_ads(attributes={"collected_at": "2024-06-02T00:00:00+09:00"})
    assert judge(fresh) == []
    internal_use = access(
        action="use",
        categories=["activity.purchase_history"],
        purpose="ads",
        attributes={"collected_on": "2023-01-01"},
    )
    assert rules_of(judge(internal_use)) == {"art10.retention"}


def test_statistics_to_ad_providers_are_not_judged(judge: Judge) -> None:
    assert (
        judge(to_ads(form="aggregated", categories=["identity.name"], pseudonymization=None)) == []
    )
