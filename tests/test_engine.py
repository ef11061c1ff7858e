"""The engine: replays change nothing, redeliveries re-derive the same alerts, consents count
only when known before the event, memoized judgments equal fresh ones, and nothing leaks."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from lineage.engine import Engine
from lineage.policy import Policy
from lineage.redact import Redactor
from lineage.schemas import Alert, DeadLetter
from tests.helpers import access, consent

ALERT_FIELDS = {
    "alert_id", "rule", "article", "severity", "event_id", "occurred_at", "source", "recipient",
    "recipient_kind", "subject", "categories", "policy_version", "message", "evidence", "status",
}  # fmt: skip
BREACH = access(event_id="b-1", recipient="researchers", purpose="research")  # no consent


def counts(engine: Engine) -> dict[str, Any]:
    return {
        "edges": {k: v.to_json() for k, v in engine.state.edges.items()},
        "incidents": {k: v.count for k, v in engine.state.incidents.items()},
    }


def test_a_replayed_event_changes_nothing(policy: Policy) -> None:
    engine = Engine(policy)
    first = engine.process(orjson.dumps(BREACH), offset=0, origin="t")
    before = counts(engine)
    again = engine.process(orjson.dumps(BREACH), offset=1, origin="t")
    assert first.alerts and again.status == "duplicate" and again.alerts == []
    assert counts(engine) == before
    other = Engine(policy).process(orjson.dumps(BREACH), offset=7, origin="t")
    assert [a["alert_id"] for a in other.alerts] == [a["alert_id"] for a in first.alerts]


def test_a_redelivered_message_yields_the_same_alerts_and_counts_nothing(policy: Policy) -> None:
    engine = Engine(policy)
    first = engine.process(orjson.dumps(BREACH), offset=3, origin="t")
    before = counts(engine)
    again = engine.process(orjson.dumps(BREACH), offset=3, origin="t")
    assert again.redelivered and again.alerts == first.alerts
    assert counts(engine) == before


def test_consents_count_only_when_known_before_the_event(policy: Policy) -> None:
    engine = Engine(policy)
    disclosure = orjson.dumps(access(event_id="d-1", recipient="researchers", purpose="research"))
    assert engine.process(disclosure, offset=0, origin="t").alerts  # no consent yet
    engine.process(orjson.dumps(consent()), offset=1, origin="t")  # arrives later
    # Redelivered at its first offset, the disclosure is judged as it was then.
    assert engine.process(disclosure, offset=0, origin="t").alerts
    later = access(event_id="d-2", recipient="researchers", purpose="research")
    assert engine.process(orjson.dumps(later), offset=2, origin="t").alerts == []


RECIPIENTS = ["payco", "cardnet", "callco", "sister", "quiet-sister", "adco", "adx", "adz",
              "researchers", "police", "sdk", "crm", "broker-x"]  # fmt: skip
CATEGORIES = ["identity.name", "contact.email", "financial.credit_card", "device.cookie",
              "activity.viewing_history", "identity.date_of_birth"]  # fmt: skip
event_strategy = st.fixed_dictionaries(
    {
        "recipient": st.sampled_from(RECIPIENTS),
        "via": st.sampled_from([None, "payco", "adco", "adx"]),
        "categories": st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=3, unique=True),
        "purpose": st.sampled_from(["billing", "support", "ads", "joint", "research"]),
        "form": st.sampled_from(["identified", "pseudonymized", "aggregated"]),
        "keyed": st.booleans(),
        "encrypted_in_transit": st.sampled_from([True, False, None]),
        "day": st.dates(min_value=date(2023, 6, 1), max_value=date(2026, 6, 1)),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(event_strategy, min_size=1, max_size=25))
def test_memoized_judgments_equal_fresh_ones(policy: Policy, flows: list[dict[str, Any]]) -> None:
    cached, fresh = Engine(policy), Engine(policy)
    for i, flow in enumerate(flows):
        event = access(
            event_id=f"h-{i}",
            occurred_at=f"{flow['day'].isoformat()}T12:00:00+09:00",
            recipient=flow["recipient"],
            via=flow["via"],
            categories=flow["categories"],
            purpose=flow["purpose"],
            form=flow["form"],
            pseudonymization={"method": "hmac", "keyed": flow["keyed"]}
            if flow["form"] == "pseudonymized"
            else None,
            encrypted_in_transit=flow["encrypted_in_transit"],
        )
        line = orjson.dumps(event)
        a = cached.process(line, offset=i, origin="t")
        fresh.judge._judgments.clear()
        b = fresh.process(line, offset=i, origin="t")
        facts = [(x["rule"], x["categories"], x["message"], x["evidence"]) for x in a.alerts]
        assert facts == [
            (x["rule"], x["categories"], x["message"], x["evidence"]) for x in b.alerts
        ]


def test_alerts_have_the_contract_shape(policy: Policy) -> None:
    alerts = Engine(policy).process(orjson.dumps(BREACH), offset=0, origin="t").alerts
    for alert in alerts:
        assert set(alert) == ALERT_FIELDS
        Alert.model_validate(alert)


def test_raw_personal_data_is_redacted_everywhere_it_is_kept(policy: Policy) -> None:
    redactor = Redactor(b"k" * 32)
    engine = Engine(policy, redactor=redactor)
    email = "hanako.suzuki@example.jp"
    engine.process(orjson.dumps(consent(subject=email)), offset=0, origin="t")
    leak = access(
        event_id="r-1", subject=email, recipient="researchers", purpose="research",
        attributes={"card": "4111-1111-1111-1111"},
    )  # fmt: skip
    outcome = engine.process(orjson.dumps(leak), offset=1, origin="t")
    rules = {a["rule"] for a in outcome.alerts}
    assert "art6.raw-personal-data" in rules and "art9.no-consent" not in rules  # tokens match
    kept = orjson.dumps(
        [
            outcome.alerts,
            [e.to_json() for e in engine.state.edges.values()],
            [p.to_json() for p in engine.state.incidents.values()],
            [ledger.to_json() for ledger in engine.state.subjects.values()],
            list(engine.state.subjects),
        ]
    )
    assert b"example.jp" not in kept and b"4111" not in kept


def test_bad_lines_become_dead_letters_that_keep_the_original(policy: Policy) -> None:
    engine = Engine(policy)
    line = b'{"event_id": "x", "note": "mail taro@example.jp"}'
    outcome = engine.process(line, offset=0, origin="f.jsonl:1")
    assert outcome.status == "rejected" and outcome.dead_letter is not None
    record = DeadLetter.model_validate(outcome.dead_letter)
    assert record.redacted and "taro@example.jp" not in record.original
    assert record.original.startswith('{"event_id": "x", "note": "mail [redacted:email:')
    binary = engine.process(b"\xff\xfe not utf-8", offset=1, origin="f.jsonl:2").dead_letter
    assert binary is not None and binary["original_encoding"] == "base64"
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", binary["original"])
