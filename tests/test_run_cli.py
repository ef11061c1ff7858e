"""`lineage run`: outputs, exit codes, stdin, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from lineage.cli import main
from tests.conftest import DATA
from tests.helpers import access, consent

POLICY = str(DATA / "policy.yaml")
BAD = [b"{broken", b'{"event_id": "bad-1"}']


def lines(*events: dict[str, object]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events)


def write_source(tmp_path: Path) -> Path:
    source = tmp_path / "events.jsonl"
    body = lines(
        access(event_id="ok-1", recipient="payco"),
        consent(),
        access(event_id="d-1", recipient="researchers", purpose="research"),  # consented
        access(event_id="d-2", recipient="researchers", purpose="research", subject="u-9"),
        access(event_id="d-2", recipient="researchers", purpose="research", subject="u-9"),
    )
    source.write_bytes(body + b"\n\n" + b"\n".join(BAD) + b"\n")
    return source


def test_run_writes_every_output_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["run", "--policy", POLICY, "--source", str(write_source(tmp_path)), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    for name in (
        "alerts.jsonl",
        "incidents.jsonl",
        "dead-letter.jsonl",
        "summary.json",
        "lineage.html",
        "lineage.graphml",
        "lineage.json",
        "lineage.dot",
        "lineage.mmd",
    ):
        assert (out / name).exists(), name
    alerts = [orjson.loads(x) for x in (out / "alerts.jsonl").read_bytes().splitlines()]
    assert [a["event_id"] for a in alerts] == ["d-2"]  # d-1 consented, d-2's replay dropped
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    dead = [orjson.loads(x) for x in (out / "dead-letter.jsonl").read_bytes().splitlines()]
    assert [d["original"].encode() for d in dead] == BAD
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["duplicates"] == 1 and summary["dead_letters"] == 2
    assert "1 alerts (Art. 9: 1)" in result.output


def test_fail_on_exit_codes(tmp_path: Path) -> None:
    source = str(write_source(tmp_path))
    runner = CliRunner()
    args = ["run", "--policy", POLICY, "--source", source, "--out", str(tmp_path / "o")]
    assert runner.invoke(main, [*args, "--fail-on", "high"]).exit_code == 3
    assert runner.invoke(main, [*args, "--fail-on", "critical"]).exit_code == 0
    medium_only = tmp_path / "medium.jsonl"
    medium_only.write_bytes(lines(access(recipient="payco", purpose="support")))  # out of scope
    medium = ["run", "--policy", POLICY, "--source", str(medium_only), "--out", str(tmp_path / "m")]
    assert runner.invoke(main, [*medium, "--fail-on", "high"]).exit_code == 0
    assert runner.invoke(main, [*medium, "--fail-on", "medium"]).exit_code == 3


def test_run_reads_standard_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["run", "--policy", POLICY, "--source", "-", "--out", str(tmp_path / "o")],
        input=lines(access(event_id="s-1", recipient="broker-x")),
    )
    assert result.exit_code == 0
    assert b"art9.unknown-recipient" in (tmp_path / "o" / "alerts.jsonl").read_bytes()


def test_usage_and_policy_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    source = str(write_source(tmp_path))
    missing = runner.invoke(
        main, ["run", "--policy", "nope.yaml", "--source", source, "--out", "o"]
    )
    assert missing.exit_code == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text((DATA / "policy.yaml").read_text().replace("kind: authority", "kind: police"))
    refused = runner.invoke(main, ["run", "--policy", str(bad), "--source", source, "--out", "o"])
    assert refused.exit_code == 2 and f"{bad}:" in refused.output and "kind" in refused.output


def test_an_unwritable_output_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    source = str(write_source(tmp_path))
    runner = CliRunner()
    a_file = runner.invoke(
        main, ["run", "--policy", POLICY, "--source", source, "--out", str(blocker)]
    )
    assert a_file.exit_code == 2 and "is a file" in a_file.output  # a usage error
    under = runner.invoke(
        main, ["run", "--policy", POLICY, "--source", source, "--out", str(blocker / "sub")]
    )
    assert under.exit_code == 1
    assert f"cannot create output folder {blocker / 'sub'}" in under.output
    assert "Traceback" not in under.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run"], ["lineage run", "--source"]),
        (["run", "--source", "nope.jsonl", "--out", "o"], ["--source", "nope.jsonl"]),
        (["run", "--source", "-", "--out", "o", "--fail-on", "hgh"], ["--fail-on", "hgh"]),
        (["bogus"], ["bogus"]),
        (["--bogus"], ["--bogus"]),
        (["records", "--format", "xlsx"], ["lineage records", "--format", "xlsx"]),
        (["policy", "diff", "only-one.yaml"], ["lineage policy diff", "only-one.yaml"]),
        (["demo", "--events", "0"], ["--events", "0"]),
    ],
)
def test_usage_errors_are_one_line_naming_the_option_and_the_value(
    args: list[str], words: list[str]
) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("lineage: error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_help_and_version_still_print_in_full() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).exit_code == 0
    helped = runner.invoke(main, ["run", "--help"])
    assert helped.exit_code == 0 and "--consent-lateness" in helped.output
    group = runner.invoke(main, ["policy"])  # a group alone shows its commands
    assert "diff" in group.output and "init" in group.output


def test_the_program_leaves_its_objects_to_the_end_of_its_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``lineage`` (the installed script and ``python -m lineage.cli``) ends its process
    on every exit, after moving what it holds out of the collector's last walk."""
    import tomllib

    import lineage.cli

    left: list[bool] = []
    monkeypatch.setattr(lineage.cli, "leave_to_exit", lambda: left.append(True))
    monkeypatch.setattr("sys.argv", ["lineage", "--version"])
    with pytest.raises(SystemExit) as done:
        lineage.cli.command()
    assert done.value.code == 0 and left == [True]
    monkeypatch.setattr("sys.argv", ["lineage", "run", "--policy", "no-such-policy.yaml"])
    with pytest.raises(SystemExit) as done:
        lineage.cli.command()
    assert done.value.code == 2 and left == [True, True]
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["lineage"] == "lineage.cli:command"
