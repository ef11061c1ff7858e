"""The data subject's and the regulator's view, embedded: retraction by a late consent,
conflicting duplicates, provision records, and per-subject lineage (docs/contract.md)."""

from __future__ import annotations

import copy
import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from lineage.cli import main
from lineage.engine import Engine, record_id
from lineage.policy import Policy
from lineage.records import FIELDS, csv_text, select
from lineage.redact import Redactor
from lineage.run import run_embedded
from lineage.schemas import ProvisionRecord, SubjectLineage
from lineage.subjects import answer, render_html
from lineage.view import Lineage, PairFacts, SubjectView
from tests.conftest import DATA
from tests.helpers import access, consent

POLICY = str(DATA / "policy.yaml")


def disclose(event_id: str = "d-1", **fields: Any) -> dict[str, Any]:
    base = {"event_id": event_id, "recipient": "researchers", "purpose": "research",
            "occurred_at": "2025-06-01T12:00:00+09:00"}  # fmt: skip
    base.update(fields)
    return access(**base)


def run(policy: Policy, *events: dict[str, Any] | bytes, **kw: Any) -> tuple[Engine, list[Any]]:
    engine = Engine(policy, redactor=Redactor(b"k" * 32), **kw)
    outcomes = []
    for offset, event in enumerate(events):
        raw = event if isinstance(event, bytes) else orjson.dumps(event)
        outcomes.append(engine.process(raw, offset=offset, origin=f"t:{offset}"))
    return engine, outcomes


def lineage_of(outcomes: list[Any], subject: str) -> Lineage | None:
    """The subject's lineage, as the view folds the facts the outcomes emitted."""
    view = SubjectView()
    for outcome in outcomes:
        view.fold(outcome.view)
    return view.lineage(subject)


# -- event-time consent and retraction -----------------------------------------------------------


def test_a_consent_that_arrives_late_retracts_the_alert_it_would_have_prevented(
    policy: Policy,
) -> None:
    late = consent(event_id="c-late", recipient="researchers",
                   occurred_at="2025-06-01T11:00:00+09:00")  # fmt: skip
    engine, (first, second) = run(policy, disclose(), late)
    (alert,) = first.alerts
    assert alert["rule"] == "art9.no-consent" and alert["status"] == "open"
    (retraction,) = second.alerts
    assert retraction["alert_id"] == alert["alert_id"]
    assert retraction["status"] == "retracted" and retraction["retracted_by"] == "c-late"
    assert engine.stats.retracted == 1
    # The incident's count goes down, and the edge no longer counts the breach.
    (partial,) = engine.state.incidents.values()
    assert partial.count == 0
    (edge,) = [e for k, e in engine.state.edges.items() if k[0] == "flow"]
    assert edge.breaching == 0 and edge.rules == {} and edge.breaches == {}


def test_a_late_consent_retracts_nothing_it_would_not_have_prevented(policy: Policy) -> None:
    after = consent(event_id="c-after", recipient="researchers",
                    occurred_at="2025-06-01T13:00:00+09:00")  # made after the event  # fmt: skip
    other = consent(event_id="c-other", recipient="police", occurred_at="2025-06-01T11:00:00+09:00")
    withdrawal = consent(event_id="c-w", status="withdrawn", recipient="researchers",
                         occurred_at="2025-06-01T11:00:00+09:00")  # fmt: skip
    _, outcomes = run(policy, disclose(), after, other, withdrawal)
    assert [o.alerts for o in outcomes[1:]] == [[], [], []]


def test_a_late_consent_retracts_only_art9_and_appi28(policy: Policy) -> None:
    # To a PH outsourcer, unencrypted: appi28 (retractable) and art6.unencrypted (not).
    flow = access(event_id="x-1", recipient="ph-desk", purpose="support",
                  categories=["contact.email"], encrypted_in_transit=False)  # fmt: skip
    late = consent(event_id="c-1", recipient="ph-desk", occurred_at="2025-06-01T11:00:00+09:00")
    engine, (first, second) = run(policy, flow, late)
    assert {a["rule"] for a in first.alerts} == {"art6.unencrypted", "appi28.foreign-no-basis"}
    assert [(a["rule"], a["status"]) for a in second.alerts] == [
        ("appi28.foreign-no-basis", "retracted")
    ]
    (edge,) = [e for k, e in engine.state.edges.items() if k[0] == "flow"]
    assert edge.breaching == 1 and edge.rules == {"art6.unencrypted": 1}


def test_late_consent_is_looked_for_only_within_the_lateness(policy: Policy) -> None:
    much_later = disclose("d-2", subject="u-1", occurred_at="2025-06-03T12:00:00+09:00")
    late = consent(event_id="c-late", recipient="researchers",
                   occurred_at="2025-06-01T11:00:00+09:00")  # fmt: skip
    # The subject's newest event is 2 days past the first alert: that alert stands,
    # the second one (in force then too) is retracted.
    _, outcomes = run(policy, disclose(), much_later, late, consent_lateness=timedelta(hours=24))
    assert [a["event_id"] for a in outcomes[-1].alerts] == ["d-2"]
    _, outcomes = run(policy, disclose(), much_later, late, consent_lateness=timedelta(days=3))
    assert sorted(a["event_id"] for a in outcomes[-1].alerts) == ["d-1", "d-2"]


def test_a_consent_delivered_again_says_its_retractions_again_and_changes_nothing(
    policy: Policy,
) -> None:
    late = orjson.dumps(consent(event_id="c-late", recipient="researchers",
                                occurred_at="2025-06-01T11:00:00+09:00"))  # fmt: skip
    engine, _ = run(policy, disclose(), late)
    # Kafka delivers both again (a crash before the commit): the alert comes again, and
    # its retraction after it, so the last word on that alert id is still "retracted".
    again = [
        engine.process(orjson.dumps(disclose()), offset=0, origin="t:0"),
        engine.process(late, offset=1, origin="t:1"),
    ]
    assert [a["status"] for o in again for a in o.alerts] == ["open", "retracted"]
    (partial,) = engine.state.incidents.values()
    assert partial.count == 0  # not retracted twice
    assert engine.stats.retracted == 1


def test_a_consent_that_retracts_two_breaches_of_one_incident_takes_both_off(
    policy: Policy,
) -> None:
    late = consent(event_id="c-late", recipient="researchers",
                   occurred_at="2025-06-01T11:00:00+09:00")  # fmt: skip
    engine, outcomes = run(policy, disclose("d-1"), disclose("d-2"), late)
    assert sorted(a["event_id"] for a in outcomes[-1].alerts) == ["d-1", "d-2"]
    (partial,) = engine.state.incidents.values()
    assert partial.count == 0 and partial.samples == []
    (edge,) = [e for k, e in engine.state.edges.items() if k[0] == "flow"]
    assert edge.breaching == 0 and edge.rules == {} and edge.breaches == {}


@pytest.mark.parametrize("lost", ["incidents", "edges", "both"])
def test_a_consent_delivered_again_completes_the_records_a_crash_did_not_write(
    policy: Policy, lost: str
) -> None:
    # A crash can write some records of a flush and not others: here the subject's
    # record (with the consent applied) was written, and the incident partial or the
    # edge was not. The consent, delivered again, must still take the breaches off them.
    late = orjson.dumps(consent(event_id="c-late", recipient="researchers",
                                occurred_at="2025-06-01T11:00:00+09:00"))  # fmt: skip
    engine, _ = run(policy, disclose("d-1"), disclose("d-2"))
    before = {"incidents": copy.deepcopy(dict(engine.state.incidents)),
              "edges": copy.deepcopy(dict(engine.state.edges))}  # fmt: skip
    engine.process(late, offset=2, origin="t:2")
    expected = (
        copy.deepcopy(dict(engine.state.incidents)),
        copy.deepcopy(dict(engine.state.edges)),
    )
    for table in ("incidents", "edges") if lost == "both" else (lost,):
        getattr(engine.state, table).clear()
        getattr(engine.state, table).update(copy.deepcopy(before[table]))
    again = engine.process(late, offset=2, origin="t:2")
    assert sorted(a["event_id"] for a in again.alerts) == ["d-1", "d-2"]
    assert (dict(engine.state.incidents), dict(engine.state.edges)) == expected
    (partial,) = engine.state.incidents.values()
    assert partial.count == 0
    # And a third delivery changes nothing more.
    engine.process(late, offset=2, origin="t:2")
    assert (dict(engine.state.incidents), dict(engine.state.edges)) == expected


# -- conflicting duplicates ----------------------------------------------------------------------


def test_the_same_id_with_other_content_is_a_conflicting_duplicate(policy: Policy) -> None:
    first = access(event_id="dup", recipient="payco")
    same = {**first}  # the same content, keys in another order
    same_bytes = orjson.dumps(dict(reversed(list(same.items()))))
    other = access(event_id="dup", recipient="payco", purpose="support")
    engine, outcomes = run(policy, first, same_bytes, other)
    assert [o.status for o in outcomes] == ["judged", "duplicate", "rejected"]
    dead = outcomes[2].dead_letter
    assert dead is not None and dead["kind"] == "duplicate-conflict"
    assert dead["reason"].startswith("event 'dup': duplicate-conflict")
    assert engine.stats.duplicates == 1 and engine.stats.conflicts == 1


# -- provision records ---------------------------------------------------------------------------


def records_of(policy: Policy, *events: dict[str, Any]) -> list[dict[str, Any]]:
    _, outcomes = run(policy, *events)
    return [r for o in outcomes for r in o.records]


def test_provision_records_are_written_for_third_parties_and_abroad(policy: Policy) -> None:
    granted = consent(recipient="researchers", reference="cmp-9")
    (record,) = records_of(policy, granted, disclose())
    ProvisionRecord.model_validate(record)
    assert list(record) == FIELDS
    assert record["record_id"] == record_id("d-1")
    assert record["lawful"] and record["consent_reference"] == "cmp-9"
    assert record["recipient_name"] == "Research Inc." and record["recipient_country"] == "JP"
    (unlawful,) = records_of(policy, disclose())
    assert not unlawful["lawful"] and unlawful["consent_reference"] is None
    # Abroad: recorded even for outsourcing, lawful or not.
    abroad = access(event_id="x", recipient="de-host", purpose="support",
                    categories=["contact.email"], legal_basis="outsourcing")  # fmt: skip
    (record,) = records_of(policy, abroad)
    assert record["recipient_country"] == "DE" and record["lawful"]
    (unknown,) = records_of(policy, access(event_id="u", recipient="who-knows"))
    assert unknown["recipient_country"] is None and unknown["recipient_name"] == "who-knows"


def test_no_record_for_outsourcing_at_home_an_exception_or_no_personal_data(
    policy: Policy,
) -> None:
    assert (
        records_of(policy, access(event_id="p", recipient="payco", legal_basis="outsourcing")) == []
    )
    claim = {"kind": "legal_requirement", "reference": "order-1"}
    exception = disclose(legal_basis="exception", exception=claim)
    assert records_of(policy, exception) == []
    assert records_of(policy, disclose(recipient="police")) == []  # an authority at home
    keyed = disclose(form="pseudonymized", pseudonymization={"method": "hmac", "keyed": True})
    assert records_of(policy, keyed) == []
    # An exception claimed without its reference is no exception: recorded, unlawful.
    (claimed,) = records_of(policy, {**exception, "exception": {"kind": "legal_requirement"}})
    assert not claimed["lawful"]


def test_a_record_is_written_once_and_a_retraction_changes_it_not(policy: Policy) -> None:
    late = consent(event_id="c-late", recipient="researchers",
                   occurred_at="2025-06-01T11:00:00+09:00")  # fmt: skip
    records = records_of(policy, disclose(), late)
    assert len(records) == 1 and records[0]["lawful"] is False


def test_records_select_by_day_and_recipient_and_make_a_clean_csv(policy: Policy) -> None:
    days = ["2025-06-01T23:30:00+09:00", "2025-06-02T00:30:00+09:00", "2025-06-03T12:00:00+09:00"]
    events = [disclose(f"d-{i}", occurred_at=at) for i, at in enumerate(days)]
    events.append(disclose("d-9", recipient="who-knows", subject="=cmd|' /C calc'!A0"))
    events.append(disclose("d-8", recipient="who-knows", subject="'=cmd|' /C calc'!A0"))
    records = records_of(policy, *events)
    chosen = select(records + records, policy, since=_day("2025-06-02"), until=_day("2025-06-02"))
    assert [r["event_id"] for r in chosen] == ["d-1"]  # once, and by the policy's calendar
    assert [r["event_id"] for r in select(records, policy, recipient="who-knows")] == [
        "d-9", "d-8"
    ]  # fmt: skip
    rows = list(csv.reader(io.StringIO(csv_text(records))))
    assert rows[0] == FIELDS and len(rows) == 6
    assert rows[1][FIELDS.index("categories")] == "identity.name"
    assert rows[4][FIELDS.index("subject")].startswith("'=")  # no formula runs
    # A subject that starts with the quote itself keeps it: the two are told apart.
    assert rows[5][FIELDS.index("subject")] == "''=cmd|' /C calc'!A0"


def _day(text: str) -> Any:
    from datetime import date

    return date.fromisoformat(text)


# -- per-subject lineage ---------------------------------------------------------------------------


def test_a_subjects_answer_names_every_recipient_consent_and_record(policy: Policy) -> None:
    events = [
        consent(reference="cmp-1"),
        access(event_id="e-1", recipient="payco", legal_basis="outsourcing",
               categories=["identity.name", "financial.credit_card"], purpose="billing"),
        disclose("e-2"),
        access(event_id="e-3", recipient="shop", action="transfer"),  # internal: not a recipient
        access(event_id="e-4", recipient="adco", purpose="ads", categories=["device.id"],
               form="pseudonymized", pseudonymization={"method": "hmac", "keyed": True}),
    ]  # fmt: skip
    _, outcomes = run(policy, *events)
    data = answer("u-1", lineage_of(outcomes, "u-1"), policy.version)
    SubjectLineage.model_validate(data)
    # In order of first transfer (the same time here: then by id).
    assert [r["recipient"] for r in data["recipients"]] == ["adco", "payco", "researchers"]
    payco = data["recipients"][1]
    assert payco["categories"] == ["financial.credit_card", "identity.name"]
    assert payco["legal_bases"] == ["outsourcing"] and payco["events"] == 1
    assert data["recipients"][2]["breaches"] == []  # consented
    assert data["consents"][0]["reference"] == "cmp-1"
    assert data["provision_records"] == [record_id("e-2")]
    # adco got keyed pseudonyms only: no personal data, nobody to notify there.
    assert data["notify_on_correction"] == ["payco", "researchers"]
    page = render_html(data)
    assert page.startswith("<!doctype html>") and "Research Inc." in page and "<script" not in page


def test_nothing_seen_of_a_subject_is_an_empty_answer(policy: Policy) -> None:
    data = answer("u-nobody", None, policy.version)
    assert data["recipients"] == [] and data["provision_records"] == []


GOOD_RECORD = {
    "record_id": "r-1", "provided_at": "2025-06-01T12:00:00+09:00", "recipient": "researchers",
    "recipient_name": "Researchers", "recipient_country": "JP", "subject": "u-1",
    "categories": ["identity.name"], "purpose": "research", "legal_basis": "consent",
    "consent_reference": None, "lawful": True, "event_id": "d-1", "policy_version": "t-1",
}  # fmt: skip
NOT_ONE = "not a provision record: "
MALFORMED = [
    # (line 2 of the file, what the one line says); each carries a value that must not show
    (b'{"record_id": "r-2", "provided_at": "SECRET-1"}',
     NOT_ONE + "provided_at is not an ISO 8601 time"),
    (b"not json SECRET-2", "not JSON: not a provision record"),
    (b'["SECRET-3"]', "a list, not a provision record (a JSON object)"),
    (b'{"provided_at": "2025-06-01T12:00:00+09:00", "subject": "SECRET-4"}',
     NOT_ONE + "record_id is missing"),
    (b'{"record_id": 7, "subject": "SECRET-5"}', NOT_ONE + "record_id is a number, not a string"),
    (b'{"record_id": "r", "provided_at": "2025-06-01T12:00:00", "subject": "SECRET-6"}',
     NOT_ONE + "provided_at has no UTC offset"),
    (b'{"record_id": "r", "provided_at": "2025-06-01T12:00:00Z", "recipient": ["SECRET-7"]}',
     NOT_ONE + "recipient is a list, not a string"),
    (b"\xff\xfe SECRET-8", "not JSON: not a provision record"),
    (b'{"record_id": "r", "provided_at": {"SECRET-9": 1}}',
     NOT_ONE + "provided_at is an object, not a string"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "says"), MALFORMED)
def test_a_malformed_records_file_is_one_line_naming_file_and_line(
    tmp_path: Path, bad: bytes, says: str
) -> None:
    (tmp_path / "provision-records.jsonl").write_bytes(orjson.dumps(GOOD_RECORD) + b"\n" + bad)
    # --since reads provided_at: the path that ended in a 29-line traceback quoting it.
    args = ["records", "--policy", POLICY, "--from-dir", str(tmp_path), "--since", "2025-01-01"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    (line,) = result.output.splitlines()  # one line, no traceback
    assert line == f"lineage: error: {tmp_path / 'provision-records.jsonl'}:2: {says}"
    assert "SECRET" not in result.output


def test_lineage_records_errors_are_one_line_in_a_real_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    records = tmp_path / "provision-records.jsonl"
    records.write_bytes(orjson.dumps(GOOD_RECORD) + b"\n" + MALFORMED[0][0] + b"\n")
    command = [sys.executable, "-m", "lineage.cli", "records", "--policy", POLICY,
               "--from-dir", str(tmp_path), "--since", "2025-01-01"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        f"lineage: error: {records}:2: not a provision record: provided_at is not an ISO 8601 "
        "time\n"
    )
    # An output it cannot write is one line too, not a traceback.
    records.write_bytes(orjson.dumps(GOOD_RECORD) + b"\n")
    unwritable = tmp_path / "no-such-folder" / "records.csv"
    done = subprocess.run(
        [*command[:-2], "--out", str(unwritable)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr == f"lineage: error: cannot write {unwritable}: No such file or directory\n"


def test_run_keeps_records_and_subjects_for_the_commands(tmp_path: Path, policy: Policy) -> None:
    email = "hanako@example.jp"
    events = [disclose("d-1"), disclose("d-2", subject=email)]
    out = tmp_path / "out"
    run_embedded(policy, [orjson.dumps(e) for e in events], out, redactor=Redactor(b"k" * 32))
    assert (out / "provision-records.jsonl").exists() and (out / "subjects.sqlite").exists()
    runner = CliRunner(env={"LINEAGE_REDACTION_KEY": "k" * 32})
    result = runner.invoke(main, ["records", "--policy", POLICY, "--from-dir", str(out),
                                  "--format", "csv"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].lstrip("\ufeff") == ",".join(FIELDS)
    result = runner.invoke(main, ["subject", "u-1", "--from-dir", str(out)])
    assert result.exit_code == 0 and orjson.loads(result.output)["recipients"]
    # A subject written as raw personal data is found by what it was, with the same key,
    # and the answer names it only by its token.
    result = runner.invoke(main, ["subject", email, "--from-dir", str(out)])
    found = orjson.loads(result.output)
    assert found["recipients"] and email not in result.output
    result = runner.invoke(main, ["subject", "u-1", "--from-dir", str(out), "--format", "html"])
    assert result.output.startswith("<!doctype html>")
    assert runner.invoke(main, ["subject", "u-1"]).exit_code == 2  # from where?
    # A worker's environment names a broker; --from-dir on the command line still wins,
    # and both on the command line are refused.
    deployed = CliRunner(env={"LINEAGE_REDACTION_KEY": "k" * 32, "LINEAGE_BROKER": "kafka:9"})
    result = deployed.invoke(main, ["subject", "u-1", "--from-dir", str(out)])
    assert result.exit_code == 0 and orjson.loads(result.output)["recipients"]
    result = deployed.invoke(main, ["records", "--from-dir", str(out), "--format", "jsonl"])
    assert result.exit_code == 0 and orjson.loads(result.output.splitlines()[0])["record_id"]
    both = ["subject", "u-1", "--from-dir", str(out), "--broker", "kafka:9"]
    assert runner.invoke(main, both).exit_code == 2


def test_incident_samples_are_the_earliest_standing_alerts_after_retractions(
    policy: Policy, tmp_path: Path
) -> None:
    """CONTRACT section 10: up to five standing alerts' event ids, earliest first, however
    many of the earliest a late consent retracted."""
    events: list[dict[str, Any]] = []
    for n in range(9):  # nine disclosures without consent, by two subjects
        events.append(
            access(
                event_id=f"d-{n}",
                subject="u-late" if n in (0, 2, 3) else f"u-{n}",
                recipient="researchers",
                purpose="research",
                occurred_at=f"2025-06-01T1{n}:00:00+09:00",
            )
        )
    # u-late's consent, in force since before its disclosures, comes after all of them.
    events.append(
        consent(
            event_id="c-late",
            subject="u-late",
            occurred_at="2025-05-01T00:00:00+09:00",
            recipient="researchers",
        )
    )
    out = tmp_path / "run"
    run_embedded(policy, [orjson.dumps(e) for e in events], out, redactor=Redactor(b"k" * 32))
    last: dict[str, dict[str, Any]] = {}
    for line in (out / "incidents.jsonl").read_bytes().splitlines():
        incident = orjson.loads(line)
        last[incident["incident_id"]] = incident
    final = next(i for i in last.values() if i["rule"] == "art9.no-consent")
    assert final["count"] == 6
    assert final["sample_event_ids"] == ["d-1", "d-4", "d-5", "d-6", "d-7"]


def test_the_answer_says_in_what_form_each_recipient_got_the_data(policy: Policy) -> None:
    events = [
        access(event_id="e-1", recipient="payco", legal_basis="outsourcing", purpose="billing"),
        access(event_id="e-2", recipient="adco", purpose="ads", categories=["device.id"],
               form="pseudonymized", pseudonymization={"method": "hmac", "keyed": True}),
        access(event_id="e-3", recipient="adco", purpose="ads", categories=["device.id"],
               form="aggregated", subject="u-1"),
    ]  # fmt: skip
    _, outcomes = run(policy, *events)
    lineage = lineage_of(outcomes, "u-1")
    assert lineage is not None
    assert lineage.recipients["adco"].forms == ("aggregated", "pseudonymized")
    # Kept in the stored facts, and read back from them.
    stored = orjson.loads(orjson.dumps(lineage.recipients["adco"].to_json()))
    assert stored["frm"] == ["aggregated", "pseudonymized"]
    assert PairFacts.from_json(stored) == lineage.recipients["adco"]
    data = answer("u-1", lineage, policy.version)
    SubjectLineage.model_validate(data)
    by_id = {r["recipient"]: r for r in data["recipients"]}
    assert by_id["adco"]["forms"] == ["aggregated", "pseudonymized"]
    assert by_id["payco"]["forms"] == ["identified"]
    assert data["notify_on_correction"] == ["payco"]


def test_the_page_says_why_a_recipient_is_not_notified_and_names_things_as_the_graph(
    policy: Policy,
) -> None:
    events = [
        access(event_id="e-1", recipient="payco", legal_basis="outsourcing", purpose="billing",
               categories=["identity.name", "financial.credit_card"],
               occurred_at="2025-06-01T09:05:00+09:00"),
        access(event_id="e-2", recipient="payco", legal_basis="outsourcing", purpose="billing",
               occurred_at="2025-06-01T17:40:00+09:00"),
        access(event_id="e-3", recipient="adx", purpose="ads", categories=["device.id"],
               form="pseudonymized", pseudonymization={"method": "hmac", "keyed": True}),
    ]  # fmt: skip
    _, outcomes = run(policy, *events)
    data = answer("u-1", lineage_of(outcomes, "u-1"), policy.version)
    labels = {cid: c.label for cid, c in policy.categories.items()}
    page = render_html(data, labels)
    adx = page[page.index('data-recipient="adx"') :].split("</section>")[0]
    assert "Ad provider · SG" in adx  # the graph's kind label, not ad_provider
    assert "No: it received only data pseudonymized with a key, which is not personal data" in adx
    payco = page[page.index('data-recipient="payco"') :].split("</section>")[0]
    assert "Yes: it received personal data" in payco
    assert ">Card</span>" in payco and ">Name</span>" in payco  # the policy's labels
    # First and last time on one line each: a date once, the times, the offset.
    assert '<span class="when">2025-06-01, 09:05–17:40 (+09:00)</span>' in payco
    assert "Not to notify, though they received this subject's data" in page
    assert "@page { size: A4 portrait" in page
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")


def test_records_past_retention_are_purged_from_every_output_of_a_run(
    policy: Policy, tmp_path: Path
) -> None:
    """CONTRACT section 10: past records_retention_days before the newest event time,
    a provision record and every reference to it are gone from each store."""
    short = policy.model_copy(
        update={"policy": policy.policy.model_copy(update={"records_retention_days": 30})}
    )
    events = [
        access(event_id="old", recipient="researchers", purpose="research",
               occurred_at="2025-06-01T12:00:00+09:00"),
        access(event_id="kept", recipient="researchers", purpose="research",
               occurred_at="2025-06-20T12:00:00+09:00"),
        access(event_id="newest", action="use", occurred_at="2025-07-05T12:00:00+09:00"),
    ]  # fmt: skip
    out = tmp_path / "run"
    summary = run_embedded(
        short, [orjson.dumps(e) for e in events], out, redactor=Redactor(b"k" * 32)
    )
    assert summary.purged == 1
    lines = (out / "provision-records.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["event_id"] for line in lines] == ["kept"]
    result = CliRunner().invoke(main, ["subject", "u-1", "--from-dir", str(out)])
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["provision_records"] == [record_id("kept")]
    # The flows themselves stay: nothing else is purged by age.
    assert data["recipients"][0]["events"] == 2
    records = CliRunner().invoke(
        main, ["records", "--from-dir", str(out), "--format", "jsonl", "--out", "-"]
    )
    assert records.exit_code == 0
    assert record_id("old") not in records.stdout and record_id("kept") in records.stdout
