"""Article 9: each rule with a breaching case and a lawful near-miss."""

from __future__ import annotations

from tests.conftest import Judge
from tests.helpers import access, consent, rules_of


def disclose(**fields: object) -> dict[str, object]:
    base = {"event_id": "d-1", "recipient": "researchers", "purpose": "research"}
    base.update(fields)
    return access(**base)


def test_consented_disclosure_is_lawful(judge: Judge) -> None:
    assert judge(consent(), disclose()) == []
    assert judge(consent(recipient="*", purposes=["research"]), disclose()) == []


def test_no_consent(judge: Judge) -> None:
    alerts = judge(disclose())
    assert rules_of(alerts) == {"art9.no-consent"}
    assert alerts[0]["evidence"]["consent_state"] == "none"


def test_consent_after_the_event_does_not_count(judge: Judge) -> None:
    # Out of order: the grant arrives first but happened after the disclosure.
    late = consent(occurred_at="2025-06-02T00:00:00+09:00")
    assert rules_of(judge(late, disclose())) == {"art9.no-consent"}


def test_consent_withdrawn(judge: Judge) -> None:
    withdrawn = consent(event_id="c-2", status="withdrawn", occurred_at="2025-05-20T00:00:00+09:00")
    assert rules_of(judge(consent(), withdrawn, disclose())) == {"art9.consent-withdrawn"}
    # Near-miss: granted again after the withdrawal.
    regranted = consent(event_id="c-3", occurred_at="2025-05-25T00:00:00+09:00")
    assert judge(consent(), withdrawn, regranted, disclose()) == []


def test_withdrawal_of_one_purpose_leaves_others(judge: Judge) -> None:
    everything = consent(recipient="*")
    ads_only = consent(
        event_id="c-2",
        status="withdrawn",
        purposes=["ads"],
        occurred_at="2025-05-20T00:00:00+09:00",
    )
    assert judge(everything, ads_only, disclose()) == []


def test_consent_scope(judge: Judge) -> None:
    other_purpose = consent(purposes=["ads"])
    assert rules_of(judge(other_purpose, disclose())) == {"art9.consent-scope"}
    other_recipient = consent(recipient="police")
    assert rules_of(judge(other_recipient, disclose())) == {"art9.consent-scope"}


def test_consent_belongs_to_its_subject(judge: Judge) -> None:
    assert rules_of(judge(consent(subject="u-2"), disclose())) == {"art9.no-consent"}


def test_unknown_recipient_is_critical_even_with_consent(judge: Judge) -> None:
    alerts = judge(consent(recipient="*"), disclose(recipient="broker-x"))
    assert rules_of(alerts) == {"art9.unknown-recipient"}
    assert alerts[0]["severity"] == "critical" and alerts[0]["recipient_kind"] == "unknown"
    # Near-miss: an internal system is no third party.
    assert judge(disclose(recipient="crm")) == []


def test_exceptions(judge: Judge) -> None:
    lawful = disclose(
        recipient="police",
        legal_basis="exception",
        exception={"kind": "legal_requirement", "reference": "court order 2025-77"},
    )
    assert judge(lawful) == []
    no_reference = disclose(
        recipient="police",
        legal_basis="exception",
        exception={"kind": "legal_requirement", "reference": " "},
    )
    assert rules_of(judge(no_reference)) == {"art9.exception-unsupported", "art9.no-consent"}
    no_claim = disclose(recipient="police", legal_basis="exception")
    assert "art9.exception-unsupported" in rules_of(judge(no_claim))


def test_outsourcing_and_joint_use_are_not_disclosures(judge: Judge) -> None:
    assert "art9.no-consent" not in rules_of(judge(access(recipient="payco")))
    assert "art9.no-consent" not in rules_of(judge(access(recipient="sister", purpose="joint")))


def test_non_personal_data_needs_no_consent(judge: Judge) -> None:
    assert judge(disclose(form="aggregated")) == []
    keyed = disclose(form="pseudonymized", pseudonymization={"method": "hmac", "keyed": True})
    assert judge(keyed) == []
