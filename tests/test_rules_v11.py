"""The rules of v1.1 (Arts. 2, 3, 8 and APPI Art. 28): each with a breach and a lawful near-miss."""

from __future__ import annotations

from tests.conftest import Judge
from tests.helpers import access, consent, rules_of


def use(**fields: object) -> dict[str, object]:
    base = {"event_id": "u-1", "action": "use", "categories": ["contact.email"],
            "purpose": "support"}  # fmt: skip
    base.update(fields)
    return access(**base)


# -- Art. 2 -----------------------------------------------------------------------------------


def test_an_undeclared_category_is_data_collected_outside_art_2(judge: Judge) -> None:
    alerts = judge(use(action="collect", categories=["identity.name", "identity.my_number"]))
    assert rules_of(alerts) == {"art2.undeclared-category"}
    (alert,) = alerts
    assert alert["article"] == "2" and alert["severity"] == "medium"
    assert alert["categories"] == ["identity.my_number"]


def test_declared_categories_are_lawful_and_a_prefix_is_no_category(judge: Judge) -> None:
    assert judge(use(action="collect", categories=["identity.name", "contact.email"])) == []
    # 'activity' is a prefix the policy uses, not a category it declares.
    assert rules_of(judge(use(action="collect", categories=["activity"]))) == {
        "art2.undeclared-category"
    }


# -- Art. 3 -----------------------------------------------------------------------------------


def test_an_undeclared_purpose(judge: Judge) -> None:
    alerts = judge(use(purpose="credit-scoring"))
    assert rules_of(alerts) == {"art3.undeclared-purpose"}
    assert alerts[0]["article"] == "3" and alerts[0]["severity"] == "high"


def test_an_undeclared_purpose_near_misses(judge: Judge) -> None:
    assert judge(use(action="collect", purpose="credit-scoring")) == []  # collected, not used
    anonymous = use(purpose="credit-scoring", form="aggregated")
    assert judge(anonymous) == []  # not personal data


def test_a_category_the_purpose_does_not_list(judge: Judge) -> None:
    alerts = judge(use(categories=["contact.email", "financial.bank_account"]))
    assert rules_of(alerts) == {"art3.category-not-for-purpose"}
    assert alerts[0]["categories"] == ["financial.bank_account"]
    assert alerts[0]["severity"] == "medium"


def test_a_category_the_purpose_lists_by_prefix_is_lawful(judge: Judge) -> None:
    # 'support' lists identity.name and the prefix 'contact'.
    assert judge(use(categories=["identity.name", "contact.phone"])) == []
    # An undeclared category is Art. 2's finding alone.
    assert rules_of(judge(use(categories=["contact.email", "contact.fax"]))) == {
        "art2.undeclared-category"
    }


# -- Art. 8 -----------------------------------------------------------------------------------


def to_module(**fields: object) -> dict[str, object]:
    keyed = {"method": "hmac", "keyed": True}
    base = {"event_id": "m-1", "recipient": "sdk", "purpose": "research",
            "categories": ["activity.viewing_history", "device.id"],
            "form": "pseudonymized", "pseudonymization": keyed}  # fmt: skip
    base.update(fields)
    return access(**base)


def test_an_info_module_receiving_identified_data(judge: Judge) -> None:
    alerts = judge(to_module(form="identified", pseudonymization=None))
    assert "art8.identifying" in rules_of(alerts)
    assert next(a for a in alerts if a["rule"] == "art8.identifying")["severity"] == "high"


def test_an_info_module_receiving_a_directly_identifying_category(judge: Judge) -> None:
    alerts = judge(to_module(categories=["activity.viewing_history", "identity.name"]))
    art8 = next(a for a in alerts if a["rule"] == "art8.identifying")
    assert art8["categories"] == ["identity.name"]


def test_an_info_module_receiving_keyed_activity_data_is_lawful(judge: Judge) -> None:
    assert judge(to_module()) == []
    direct_but_aggregated = to_module(categories=["identity.name"], form="aggregated")
    assert "art8.identifying" not in rules_of(judge(direct_but_aggregated))


# -- APPI Art. 28 -------------------------------------------------------------------------------


def abroad(recipient: str, **fields: object) -> dict[str, object]:
    base = {"event_id": "x-1", "recipient": recipient, "purpose": "support",
            "categories": ["contact.email"], "legal_basis": "outsourcing"}  # fmt: skip
    base.update(fields)
    return access(**base)


def test_personal_data_abroad_without_a_basis(judge: Judge) -> None:
    alerts = judge(abroad("ph-desk"))
    assert rules_of(alerts) == {"appi28.foreign-no-basis"}  # outsourcing is not exempt
    (alert,) = alerts
    assert alert["article"] == "APPI-28" and alert["severity"] == "high"
    assert alert["evidence"]["country"] == "PH"


def test_abroad_with_a_basis_is_lawful(judge: Judge) -> None:
    assert judge(abroad("de-host")) == []  # an adequate country
    assert judge(abroad("us-mail")) == []  # an equivalent system
    assert judge(consent(recipient="ph-desk", purposes=["support"]), abroad("ph-desk")) == []
    assert judge(consent(recipient="*"), abroad("ph-desk")) == []
    keyed = abroad(
        "ph-desk", form="pseudonymized", pseudonymization={"method": "hmac", "keyed": True}
    )
    assert judge(keyed) == []  # not personal data


def test_a_consent_for_another_purpose_or_withdrawn_is_no_basis(judge: Judge) -> None:
    other = consent(recipient="ph-desk", purposes=["billing"])
    assert rules_of(judge(other, abroad("ph-desk"))) == {"appi28.foreign-no-basis"}
    withdrawn = consent(event_id="c-2", recipient="ph-desk", status="withdrawn",
                        occurred_at="2025-05-20T00:00:00+09:00")  # fmt: skip
    granted = consent(recipient="ph-desk")
    assert rules_of(judge(granted, withdrawn, abroad("ph-desk"))) == {"appi28.foreign-no-basis"}


def test_a_recipient_without_a_country_is_at_home(judge: Judge) -> None:
    from lineage.policy import load_policy_text
    from tests.conftest import DATA

    text = (DATA / "policy.yaml").read_text().replace("    country: PH\n", "")
    policy = load_policy_text(text)
    assert policy.recipients["ph-desk"].country_code == "JP"
    from lineage.policy import lint_policy

    assert any("ph-desk: no country" in w for w in lint_policy(policy))
