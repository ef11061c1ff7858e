"""`lineage replay`: two policies judge the same events, each exactly as `lineage run` would,
and what only one of them raises is reported (CONTRACT s.9, docs/contract.md s.10)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

import lineage.replay.run as replay_run
from lineage.child import Child
from lineage.cli import main
from lineage.demo import generate_day
from lineage.policy import Policy, load_policy, load_policy_text
from lineage.policy.diff import policy_changes
from lineage.redact import Redactor
from lineage.replay import Message, decoded_ahead, replay
from lineage.run import run_embedded
from lineage.schemas import Severity
from tests.conftest import DATA, TakenAhead
from tests.golden import decoding_every_line_ahead
from tests.helpers import access, consent

KEY = b"replay-test-key"
GOOD = (DATA / "policy.yaml").read_text()


def candidate_text() -> str:
    """The test policy revised: breaches begin (an agreement ends earlier, an authority is
    dropped from the policy, a third party moves abroad, a purpose loses a category) and end
    (an affiliate is announced)."""
    text = GOOD.replace('version: "t-1"', 'version: "t-2"')
    text = text.replace(
        "research: {label: Market research, categories: [activity, identity]}",
        "research: {label: Market research, categories: [activity]}",
    )
    text = text.replace(
        "{id: NDA-1, signed_on: 2024-01-01, expires_on: 2025-12-31,",
        "{id: NDA-1, signed_on: 2024-01-01, expires_on: 2025-05-31,",
    )
    text = text.replace("  police:\n    name: Police\n    kind: authority\n    country: JP\n", "")
    text = text.replace(
        "  quiet-sister:\n    name: Unannounced Co.\n    kind: affiliate\n    country: JP\n",
        "  quiet-sister:\n    name: Unannounced Co.\n    kind: affiliate\n    country: JP\n"
        "    announcement:\n      announced_on: 2025-01-01\n      purpose: Joint services\n"
        "      purposes: [joint]\n      categories: [identity.name, contact, activity]\n"
        "      manager: Test Inc.\n",
    )
    return text.replace(
        "    name: Research Inc.\n    kind: third_party\n    country: JP",
        "    name: Research Inc.\n    kind: third_party\n    country: CN",
    )


@pytest.fixture(scope="module")
def candidate() -> Policy:
    return load_policy_text(candidate_text(), "candidate.yaml")


def lines(*events: dict[str, Any]) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


def week() -> list[bytes]:
    """Flows that each policy judges differently, consents on time and late, bad lines."""
    return [
        *lines(
            consent(event_id="c-early", subject="u-2", occurred_at="2025-05-20T10:00:00+09:00"),
            access(event_id="pay-1", recipient="payco", occurred_at="2025-06-01T10:00:00+09:00"),
            access(
                event_id="pay-2",
                recipient="payco",
                subject="u-2",
                occurred_at="2025-05-20T11:00:00+09:00",
            ),
            access(
                event_id="res-1",
                recipient="researchers",
                purpose="research",
                subject="u-2",
                occurred_at="2025-06-01T11:00:00+09:00",
            ),
            access(
                event_id="res-2",
                recipient="researchers",
                purpose="research",
                subject="u-3",
                occurred_at="2025-06-01T12:00:00+09:00",
            ),
            # u-4's consent, made before the transfer, arrives after it: retracted on both
            access(
                event_id="res-3",
                recipient="researchers",
                purpose="research",
                subject="u-4",
                occurred_at="2025-06-02T09:00:00+09:00",
            ),
            consent(event_id="c-late", subject="u-4", occurred_at="2025-06-02T08:00:00+09:00"),
            access(
                event_id="pol-1",
                recipient="police",
                purpose="billing",
                subject="u-5",
                legal_basis="exception",
                exception={"kind": "legal_requirement", "reference": "warrant-7"},
                occurred_at="2025-06-02T10:00:00+09:00",
            ),
            access(
                event_id="sis-1",
                recipient="quiet-sister",
                purpose="joint",
                subject="u-6",
                occurred_at="2025-06-03T10:00:00+09:00",
            ),
            access(
                event_id="use-1",
                action="use",
                categories=["identity.passport"],
                occurred_at="2025-06-03T11:00:00+09:00",
            ),
            access(event_id="pay-1", recipient="payco", occurred_at="2025-06-01T10:00:00+09:00"),
            access(event_id="pay-1", recipient="payco", occurred_at="2025-06-09T10:00:00+09:00"),
        ),
        b"{not json",
        b'{"event_id": "x-1", "action": "transfer"}',
        b"",
    ]


def standing(out: Path) -> dict[str, dict[str, Any]]:
    """The alerts of a `lineage run` folder that stand at the end (last record per id)."""
    last: dict[str, dict[str, Any]] = {}
    for line in (out / "alerts.jsonl").read_bytes().splitlines():
        alert = orjson.loads(line)
        last[alert["alert_id"]] = alert
    return {k: a for k, a in last.items() if a["status"] == "open"}


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def run_twice(
    baseline: Policy, candidate: Policy, source: list[bytes], tmp: Path
) -> tuple[Path, Path]:
    """`lineage run` of the same lines under each policy: what a replay must agree with."""
    for name, policy in (("run-baseline", baseline), ("run-candidate", candidate)):
        run_embedded(
            policy,
            source,
            tmp / name,
            source_name="week.jsonl",
            redactor=Redactor(KEY),
            exports=False,
        )
    return tmp / "run-baseline", tmp / "run-candidate"


def messages(source: Iterable[bytes], name: str = "week.jsonl") -> list[Message]:
    return [Message(raw, f"{name}:{n}") for n, raw in enumerate(source, 1) if raw.strip()]


def expected_changes(base_out: Path, cand_out: Path) -> tuple[list[Any], list[Any]]:
    before, after = standing(base_out), standing(cand_out)
    alerts = [("added", a) for k, a in after.items() if k not in before]
    alerts += [("removed", a) for k, a in before.items() if k not in after]
    was = {r["record_id"]: r for r in jsonl(base_out / "provision-records.jsonl")}
    now = {r["record_id"]: r for r in jsonl(cand_out / "provision-records.jsonl")}
    records = [("added", r) for k, r in now.items() if k not in was]
    records += [("removed", r) for k, r in was.items() if k not in now]
    records += [
        ("lawful-changed", r)
        for k, r in now.items()
        if k in was and was[k]["lawful"] != r["lawful"]
    ]
    return alerts, records


def by_id(pairs: Iterable[tuple[str, dict[str, Any]]], key: str) -> list[tuple[str, str, str]]:
    return sorted(
        (change, item[key], orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode())
        for change, item in pairs
    )


def test_the_differences_are_those_of_two_lineage_runs(
    policy: Policy, candidate: Policy, tmp_path: Path
) -> None:
    source = week()
    base_out, cand_out = run_twice(policy, candidate, source, tmp_path)
    report = replay(
        policy, candidate, messages(source), tmp_path / "replay", redactor=Redactor(KEY)
    )
    out = tmp_path / "replay"
    alerts, records = expected_changes(base_out, cand_out)
    assert alerts, "the policies must judge some event differently"
    assert {c for c, _ in alerts} == {"added", "removed"}
    got = [(x["change"], x["alert"]) for x in jsonl(out / "replay-alerts.jsonl")]
    assert by_id(got, "alert_id") == by_id(alerts, "alert_id")
    got_records = [(x["change"], x["record"]) for x in jsonl(out / "replay-records.jsonl")]
    assert by_id(got_records, "record_id") == by_id(records, "record_id")
    assert {c for c, _ in records} >= {"lawful-changed"}
    # u-4's late consent retracts res-3's no-consent alert on both sides: raised by neither.
    retracted = [a for a in jsonl(base_out / "alerts.jsonl") if a["status"] == "retracted"]
    assert [(a["event_id"], a["rule"]) for a in retracted] == [("res-3", "art9.no-consent")]
    assert ("res-3", "art9.no-consent") not in {(a["event_id"], a["rule"]) for _, a in alerts}
    summary = json.loads((out / "replay.json").read_text())
    assert summary == report.summary
    for side, folder in (("baseline", base_out), ("candidate", cand_out)):
        counts: dict[str, int] = {}
        for alert in standing(folder).values():
            counts[alert["rule"]] = counts.get(alert["rule"], 0) + 1
        assert summary[side]["alerts_by_rule"] == counts
        assert summary[side]["provision_records"] == len(jsonl(folder / "provision-records.jsonl"))
    assert summary["baseline"]["policy_version"] == "t-1"
    assert summary["candidate"]["policy_version"] == "t-2"
    assert summary["added"]["alerts"] == sum(c == "added" for c, _ in alerts)
    assert summary["removed"]["by_rule"] == {"art7.not-announced": 1}
    assert summary["removed"]["by_recipient"] == {"quiet-sister": 1}
    assert set(summary["added"]["by_severity"]) == {s.value for s in Severity}
    assert summary["policy_changes"] == policy_changes(policy, candidate)
    assert summary["events"] == 10 and summary["reported"] == 10
    assert summary["duplicates"] == 1 and summary["dead_letters"] == 3

    # Dead letters once, as lineage run writes them.
    def dead(folder: Path) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in d.items() if k != "received_at"}
            for d in jsonl(folder / "dead-letter.jsonl")
        ]

    assert dead(out) == dead(base_out)


def test_each_flow_whose_alerts_differ_is_one_line(
    policy: Policy, candidate: Policy, tmp_path: Path
) -> None:
    report = replay(policy, candidate, messages(week()), tmp_path, redactor=Redactor(KEY))
    flows = jsonl(tmp_path / "replay-flows.jsonl")
    assert flows == report.flows
    assert len(flows) == report.summary["flows_changed"]
    by_edge = {(f["source"], f["recipient"], f["via"]): f for f in flows}
    sister = by_edge["shop", "quiet-sister", None]
    assert sister["events"] == 1
    assert sister["breaches"]["baseline"] == {"art7.not-announced": 1}
    assert sister["breaches"]["candidate"] == {}
    assert sister["removed"] == {"art7.not-announced": 1} and sister["added"] == {}
    assert sister["baseline"] == {"breaches": {"art7.not-announced": 1}, "alerts": 1}
    assert sister["candidate"] == {"breaches": {}, "alerts": 0}
    assert sister["sample_event_ids"] == ["sis-1"]
    payco = by_edge["shop", "payco", None]
    assert payco["events"] == 2  # pay-1 and pay-2 (the repeat of pay-1 is a duplicate)
    assert payco["added"] == {"art6.no-agreement": 1}  # pay-2 was still in force


def test_report_since_reports_later_events_and_earlier_consents_still_count(
    policy: Policy, candidate: Policy, tmp_path: Path
) -> None:
    from datetime import datetime

    since = datetime.fromisoformat("2025-06-01T00:00:00+09:00")
    report = replay(
        policy,
        candidate,
        messages(week()),
        tmp_path,
        redactor=Redactor(KEY),
        report_since=since,
    )
    s = report.summary
    assert s["events"] == 10 and s["reported"] == 8  # c-early and pay-2 are before
    assert s["report_since"] == "2025-06-01T00:00:00+09:00"
    changed = {c.alert["event_id"] for c in report.alerts}
    assert "pay-2" not in changed
    # res-1 of u-2, who consented on 2025-05-20 (before the reported week): that consent is
    # in force on both sides, abroad (CN) too, so only the purpose's category changes it.
    assert {c.alert["rule"] for c in report.alerts if c.alert["event_id"] == "res-1"} == {
        "art3.category-not-for-purpose"
    }
    assert all(c.alert["occurred_at"] >= "2025-06-01" for c in report.alerts)


def test_replay_reads_kafka_order_as_it_reads_a_file(tmp_path: Path) -> None:
    """Subjects interleaved differently (as partitions are), each subject's events in order:
    the same files, byte for byte (replay.json but for its seconds)."""
    seed = load_policy()
    text = (Path(__file__).parents[1] / "lineage" / "data" / "default-policy.yaml").read_text()
    revised = load_policy_text(
        text.replace("expires_on: 2026-04-30", "expires_on: 2027-04-30").replace(
            "    kind: third_party\n    country: JP", "    kind: third_party\n    country: US"
        ),
        "revised.yaml",
    )
    source = list(generate_day(events=3000, seed=11))
    first = replay(seed, revised, messages(source), tmp_path / "a", redactor=Redactor(KEY))
    keyed: dict[bytes, list[bytes]] = {}
    for raw in source:
        try:
            data = orjson.loads(raw)
            key = (data.get("subject") or data.get("source") or "").encode()
        except orjson.JSONDecodeError:
            key = b""
        keyed.setdefault(key, []).append(raw)
    queues = list(keyed.values())
    rnd = random.Random(5)
    shuffled: list[bytes] = []
    while queues:
        queue = rnd.choice(queues)
        shuffled.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    assert shuffled != source
    replay(seed, revised, messages(shuffled), tmp_path / "b", redactor=Redactor(KEY))
    assert first.summary["added"]["alerts"] and first.summary["removed"]["alerts"]
    for name in ("replay-alerts.jsonl", "replay-records.jsonl", "replay-flows.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    a, b = (json.loads((tmp_path / d / "replay.json").read_text()) for d in "ab")
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_the_same_policy_twice_changes_nothing(policy: Policy, tmp_path: Path) -> None:
    report = replay(policy, policy, messages(week()), tmp_path, redactor=Redactor(KEY))
    s = report.summary
    assert s["added"]["alerts"] == s["removed"]["alerts"] == s["flows_changed"] == 0
    assert s["baseline"]["alerts_by_rule"] == s["candidate"]["alerts_by_rule"]
    assert s["policy_changes"] == []
    assert (tmp_path / "replay-alerts.jsonl").read_bytes() == b""
    assert "Nothing: the two policies hold the same data." in (tmp_path / "replay.html").read_text()


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "old.yaml").write_text(GOOD)
    (tmp_path / "new.yaml").write_text(candidate_text())
    (tmp_path / "week.jsonl").write_bytes(b"\n".join(week()) + b"\n")
    return {
        name: str(tmp_path / file)
        for name, file in (("old", "old.yaml"), ("new", "new.yaml"), ("events", "week.jsonl"))
    } | {"out": str(tmp_path / "out")}


def invoke(*args: str, **env: str) -> Any:
    return CliRunner().invoke(main, ["replay", *args], env={"LINEAGE_REDACTION_KEY": "k", **env})


def test_the_command_writes_every_output_and_says_what_changed(files: dict[str, str]) -> None:
    result = invoke(
        "--policy",
        files["new"],
        "--baseline",
        files["old"],
        "--source",
        files["events"],
        "--out",
        files["out"],
    )
    assert result.exit_code == 0, result.output
    out = Path(files["out"])
    for name in (
        "replay-alerts.jsonl",
        "replay-records.jsonl",
        "replay-flows.jsonl",
        "replay.json",
        "replay.html",
        "dead-letter.jsonl",
    ):
        assert (out / name).exists(), name
    summary = json.loads((out / "replay.json").read_text())
    assert f"alerts added: +{summary['added']['alerts']}" in result.output
    assert summary["baseline"]["file"] == files["old"]
    assert summary["candidate"]["file"] == files["new"]


def replay_outputs(out: Path) -> dict[str, Any]:
    """What a replay wrote, less what differs from one replay to the next (its time)."""
    found: dict[str, Any] = {
        name: (out / name).read_bytes()
        for name in ("replay-alerts.jsonl", "replay-records.jsonl", "replay-flows.jsonl")
    }
    summary = orjson.loads((out / "replay.json").read_bytes())
    found["summary"] = {k: v for k, v in summary.items() if k != "seconds"}
    found["dead"] = [
        {k: v for k, v in letter.items() if k != "received_at"}
        for letter in jsonl(out / "dead-letter.jsonl")
    ]
    return found


def test_a_replay_decoded_ahead_writes_what_a_replay_alone_writes(
    files: dict[str, str], tmp_path: Path, taken_ahead: TakenAhead
) -> None:
    # The week twice (its second half all duplicates), a line holding raw personal data
    # (the replay masks it with its own key) and a line with a CRLF end.
    raw_value = access(event_id="raw-1", attributes={"note": "mail taro@example.jp"})
    crlf = orjson.dumps(access(event_id="crlf-1", recipient="researchers")) + b"\r"
    source = tmp_path / "weeks.jsonl"
    source.write_bytes(b"\n".join([*week(), *lines(raw_value), crlf, *week()]) + b"\n")
    args = ("--policy", files["new"], "--baseline", files["old"], "--source", str(source))
    alone = invoke(*args, "--out", str(tmp_path / "alone"))
    assert alone.exit_code == 0, alone.output
    assert int(taken_ahead) == 0  # a small file: no process decodes it ahead
    with decoding_every_line_ahead():
        ahead = invoke(*args, "--out", str(tmp_path / "ahead"))
    assert ahead.exit_code == 0, ahead.output
    # Every valid line without raw personal data came decoded: the week's twelve valid
    # events (duplicates too: the engine tells them apart) twice, and the CRLF line.
    assert int(taken_ahead) == 25
    found = replay_outputs(tmp_path / "ahead")
    assert found == replay_outputs(tmp_path / "alone")
    assert found["summary"]["added"]["alerts"] > 0 and len(found["dead"]) > 3


def weeks_with_raw_values() -> list[Message]:
    raw_value = access(event_id="raw-1", attributes={"note": "mail taro@example.jp"})
    return messages([*week(), *lines(raw_value), *week()])


def test_batches_decoded_ahead_replay_as_their_messages_alone(
    policy: Policy, candidate: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_run, "cores", lambda: 2)  # whatever this machine has
    plain = weeks_with_raw_values()
    replay(policy, candidate, plain, tmp_path / "alone", redactor=Redactor(KEY))
    batches = [plain[n : n + 4] for n in range(0, len(plain), 4)]
    decoded = list(decoded_ahead(batches))
    assert [m.raw for m in decoded] == [m.raw for m in plain]
    # Every valid message without raw personal data, duplicates too: twelve a week.
    assert sum(m.scanned is not None for m in decoded) == 24
    replay(policy, candidate, decoded, tmp_path / "ahead", redactor=Redactor(KEY))
    assert replay_outputs(tmp_path / "ahead") == replay_outputs(tmp_path / "alone")


def test_batches_go_on_undecoded_when_the_decoding_process_stops(
    policy: Policy, candidate: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = 0

    class Dying(Child):
        def recv(self) -> bytes:
            nonlocal answers
            answers += 1
            if answers == 2:  # killed when the second answer is asked for
                self.process.kill()
                self.process.wait()
            return super().recv()

    monkeypatch.setattr(replay_run, "cores", lambda: 2)
    monkeypatch.setattr(replay_run, "Child", Dying)
    plain = weeks_with_raw_values()
    replay(policy, candidate, plain, tmp_path / "alone", redactor=Redactor(KEY))
    batches = [plain[n : n + 4] for n in range(0, len(plain), 4)]
    decoded = list(decoded_ahead(batches))
    assert [m.raw for m in decoded] == [m.raw for m in plain]
    came = [m.scanned is not None for m in decoded]
    # The first batch was answered. The second and third were sent before the kill and
    # may have been answered already; the child was dead before the fourth was sent.
    assert all(came[:4]) and not any(came[12:])
    replay(policy, candidate, decoded, tmp_path / "ahead", redactor=Redactor(KEY))
    assert replay_outputs(tmp_path / "ahead") == replay_outputs(tmp_path / "alone")


def test_the_baseline_is_lineage_policy_else_the_seed(files: dict[str, str]) -> None:
    out = Path(files["out"])
    env_given = invoke(
        "--policy",
        files["new"],
        "--source",
        files["events"],
        "--out",
        files["out"],
        LINEAGE_POLICY=files["old"],
    )
    assert env_given.exit_code == 0, env_given.output
    assert json.loads((out / "replay.json").read_text())["baseline"]["policy_version"] == "t-1"
    seeded = invoke("--policy", files["new"], "--source", files["events"], "--out", files["out"])
    assert seeded.exit_code == 0, seeded.output
    assert json.loads((out / "replay.json").read_text())["baseline"]["policy_version"] == (
        load_policy().version
    )


def test_fail_on_new_exits_3_only_for_new_alerts_at_or_above(files: dict[str, str]) -> None:
    args = [
        "--policy",
        files["new"],
        "--baseline",
        files["old"],
        "--source",
        files["events"],
        "--out",
        files["out"],
    ]
    summary_of = Path(files["out"]) / "replay.json"
    assert invoke(*args).exit_code == 0
    added = json.loads(summary_of.read_text())["added"]["by_severity"]
    worst = next(s for s in Severity if added[s.value])
    assert invoke(*args, "--fail-on-new", worst.value).exit_code == 3
    above = [s for s in Severity if s.rank > worst.rank]
    for severity in above:
        assert invoke(*args, "--fail-on-new", severity.value).exit_code == 0
    # Alerts removed never fail the gate: the other way round nothing is new but removals.
    back = [
        "--policy",
        files["old"],
        "--baseline",
        files["new"],
        "--source",
        files["events"],
        "--out",
        files["out"],
        "--fail-on-new",
        "low",
    ]
    reverse = invoke(*back)
    added_back = json.loads(summary_of.read_text())["added"]["alerts"]
    assert reverse.exit_code == (3 if added_back else 0)


def test_reads_standard_input(files: dict[str, str]) -> None:
    result = CliRunner().invoke(
        main,
        [
            "replay",
            "--policy",
            files["new"],
            "--baseline",
            files["old"],
            "--source",
            "-",
            "--out",
            files["out"],
        ],
        input=Path(files["events"]).read_bytes(),
    )
    assert result.exit_code == 0, result.output
    assert json.loads((Path(files["out"]) / "replay.json").read_text())["source"] == "-"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "--source FILE"),
        (["--source", "{events}", "--broker", "localhost:9092"], "--source FILE"),
        (["--source", "{events}", "--since", "7d"], "--since and --until"),
        (["--source", "{events}", "--report-since", "last tuesday"], "--report-since"),
        (["--source", "{events}", "--consent-lateness", "soon"], "--consent-lateness"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    files: dict[str, str], args: list[str], words: str
) -> None:
    given = [a.format(**files) for a in args]
    result = invoke(
        "--policy", files["new"], "--baseline", files["old"], "--out", files["out"], *given
    )
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_each_policy_is_checked_as_policy_check_does(files: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("kind: authority", "kind: police"))
    for role in ("--policy", "--baseline"):
        other = "--baseline" if role == "--policy" else "--policy"
        result = invoke(
            role, str(bad), other, files["old"], "--source", files["events"], "--out", files["out"]
        )
        assert result.exit_code == 2
        assert result.output.startswith(f"lineage: policy error: {bad}:")
        assert not (Path(files["out"]) / "replay.json").exists()


def test_no_raw_personal_data_in_any_output(files: dict[str, str], tmp_path: Path) -> None:
    leaky = tmp_path / "leaky.jsonl"
    leaky.write_bytes(
        b"\n".join(
            lines(
                access(
                    event_id="raw-1",
                    recipient="researchers",
                    purpose="research",
                    subject="taro.yamada@example.com",
                ),
                access(
                    event_id="raw-2",
                    recipient="quiet-sister",
                    purpose="joint",
                    attributes={"note": "call 090-8765-4321"},
                ),
            )
        )
        + b'\n{"event_id": "bad", "subject": "hanako@example.jp"\n'
    )
    result = invoke(
        "--policy",
        files["new"],
        "--baseline",
        files["old"],
        "--source",
        str(leaky),
        "--out",
        files["out"],
    )
    assert result.exit_code == 0, result.output
    for path in Path(files["out"]).iterdir():
        text = path.read_text()
        for raw in ("taro.yamada@example.com", "090-8765-4321", "hanako@example.jp"):
            assert raw not in text, (path.name, raw)
    assert "taro.yamada" not in result.output


def test_progress_shows_messages_read_of_messages_to_read_on_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import sys

    from lineage.cli.replay import _with_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    given = [Message(b"{}", f"t[0]@{n}") for n in range(3)]
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    assert list(_with_progress(given, 3, "reading events", "messages")) == given
    assert "reading events" in screen.getvalue() and "3/3" in screen.getvalue()
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    assert list(_with_progress(given, 3, "reading events", "messages")) == given
    assert pipe.getvalue() == ""


def test_an_event_the_engine_fails_on_is_set_aside_once_and_the_run_goes_on(
    policy: Policy, candidate: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lineage.replay import Comparison

    comparison = Comparison(policy, candidate, redactor=Redactor(KEY))
    side = comparison.sides[1]

    class Failing:
        """The side's engine, failing on one event (a compiled engine's methods cannot
        be replaced on the instance)."""

        def __init__(self, engine: Any) -> None:
            self.engine = engine

        def __getattr__(self, name: str) -> Any:
            return getattr(self.engine, name)

        def apply(self, event: Any, **kw: Any) -> Any:
            if event.event_id == "sis-1":
                raise ZeroDivisionError("a bug of ours")
            return self.engine.apply(event, **kw)

    monkeypatch.setattr(side, "engine", Failing(side.engine))
    dead = comparison.run(messages(week()))
    kinds = [d["kind"] for d in dead]
    assert kinds.count("internal_error") == 1
    (failed,) = [d for d in dead if d["kind"] == "internal_error"]
    assert failed["origin"] == "week.jsonl:9" and "ZeroDivisionError" in failed["reason"]
    assert comparison.events == 10  # judged by the baseline, and the rest by both
