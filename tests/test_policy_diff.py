"""`lineage policy diff` and `lineage policy init`: what changed between two policies, path by
path, and where a first policy file comes from."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lineage.cli import main
from lineage.policy import DEFAULT_POLICY, load_policy, load_policy_text
from lineage.policy.diff import format_changes, policy_changes
from tests.conftest import DATA

GOOD = (DATA / "policy.yaml").read_text()


def _revised() -> str:
    """The test policy with one change of each kind the contract names."""
    text = GOOD.replace('version: "t-1"', 'version: "t-2"')  # policy.*
    text = text.replace("  adz:\n    name: AdZ\n    kind: ad_provider\n    country: US\n", "")
    text = text.replace("    onward: [adz]\n", "")  # adx passed data on to adz
    text = text.replace(
        "conditions: {since: 2025-01-01, use_limited_to: [ads], binds_onward: true}",
        "conditions: {since: 2025-02-01, use_limited_to: [ads], binds_onward: true}",
    )
    text = text.replace(
        "    name: Research Inc.\n    kind: third_party\n    country: JP",
        ("    name: Research Inc.\n    kind: third_party\n    country: US"),
    )
    text = text.replace(  # an agreement renewed, another signed
        "{id: NDA-1, signed_on: 2024-01-01, expires_on: 2025-12-31,",
        "{id: NDA-1, signed_on: 2024-01-01, expires_on: 2027-12-31,",
    )
    text = text.replace(
        "  callco:\n    name: CallCo\n    kind: outsourcer\n    country: JP\n",
        "  callco:\n    name: CallCo\n    kind: outsourcer\n    country: JP\n    agreements:\n"
        "      - {id: NDA-CALL, signed_on: 2025-01-01, conforms_to_policy: true,\n"
        "         categories: [contact], purposes: [support]}\n",
    )
    text = text.replace(  # a category relabelled, a purpose added
        "device.cookie: {label: Cookie, identifying: none}",
        "device.cookie: {label: Cookie ID, identifying: indirect}",
    )
    text = text.replace(
        "  research: {label: Market research, categories: [activity, identity]}\n",
        "  research: {label: Market research, categories: [activity, identity]}\n"
        "  fraud: {label: Fraud checks, categories: [identity, financial]}\n",
    )
    text += "  newco:\n    name: NewCo\n    kind: third_party\n    country: JP\n"
    return text


def test_each_change_is_one_entry_at_the_policy_keys_sorted_by_path() -> None:
    changes = policy_changes(load_policy_text(GOOD), load_policy_text(_revised()))
    paths = [c["path"] for c in changes]
    assert paths == sorted(paths)
    by_path = {c["path"]: c for c in changes}
    assert set(by_path) == {
        "categories.device.cookie",
        "policy.version",
        "purposes.fraud",
        "recipients.adco.conditions",
        "recipients.adx.onward",
        "recipients.adz",
        "recipients.callco.agreements.NDA-CALL",
        "recipients.newco",
        "recipients.payco.agreements.NDA-1",
        "recipients.researchers.country",
    }
    assert by_path["recipients.adz"]["change"] == "removed"
    assert by_path["recipients.adz"]["after"] is None
    assert by_path["recipients.adz"]["before"]["kind"] == "ad_provider"
    assert by_path["recipients.newco"] == {
        "path": "recipients.newco",
        "change": "added",
        "before": None,
        "after": by_path["recipients.newco"]["after"],
    }
    conditions = by_path["recipients.adco.conditions"]
    assert conditions["change"] == "changed"
    assert conditions["before"]["since"] == "2025-01-01"
    assert conditions["after"]["since"] == "2025-02-01"
    assert by_path["recipients.researchers.country"]["before"] == "JP"
    assert by_path["recipients.researchers.country"]["after"] == "US"
    assert by_path["recipients.payco.agreements.NDA-1"]["after"]["expires_on"] == "2027-12-31"
    assert by_path["recipients.callco.agreements.NDA-CALL"]["change"] == "added"
    assert by_path["policy.version"] == {
        "path": "policy.version",
        "change": "changed",
        "before": "t-1",
        "after": "t-2",
    }
    json.dumps(changes)  # every value is plain JSON


def test_defaults_written_out_are_no_change_and_a_policy_equals_itself() -> None:
    policy = load_policy_text(GOOD)
    assert policy_changes(policy, policy) == []
    explicit = GOOD.replace(
        'policy: {name: Test Policy, version: "t-1", effective_on: 2024-01-01}',
        'policy: {name: Test Policy, version: "t-1", effective_on: 2024-01-01,\n'
        "         timezone: Asia/Tokyo, home_country: JP}",
    )
    assert policy_changes(policy, load_policy_text(explicit)) == []
    no_country = GOOD.replace(
        "    name: Police\n    kind: authority\n    country: JP\n",
        ("    name: Police\n    kind: authority\n"),
    )
    assert policy_changes(policy, load_policy_text(no_country)) == []  # a v1 file's JP


def test_exceptions_and_systems_are_compared_too() -> None:
    old = load_policy_text(GOOD)
    new = load_policy_text(
        GOOD.replace("  crm: {label: CRM}\n", "  crm: {label: CRM}\n  erp: {label: ERP}\n")
        + "exceptions: [legal_requirement]\n"
    )
    changes = {c["path"]: c for c in policy_changes(old, new)}
    assert changes["systems.erp"]["change"] == "added"
    assert changes["exceptions"]["after"] == ["legal_requirement"]
    assert len(changes["exceptions"]["before"]) == 4


def test_the_text_format_is_a_sign_and_a_path_a_line() -> None:
    changes = policy_changes(load_policy_text(GOOD), load_policy_text(_revised()))
    lines = format_changes(changes).splitlines()
    assert "- recipients.adz" in lines
    assert "+ recipients.newco" in lines
    assert "~ recipients.adco.conditions" in lines
    assert all(line[:2] in ("+ ", "- ", "~ ") for line in lines)


def test_policy_diff_command_prints_text_or_json(tmp_path: Path) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(GOOD)
    new.write_text(_revised())
    runner = CliRunner()
    text = runner.invoke(main, ["policy", "diff", str(old), str(new)])
    assert text.exit_code == 0, text.output
    assert "~ recipients.researchers.country\n" in text.output
    as_json = runner.invoke(main, ["policy", "diff", str(old), str(new), "--format", "json"])
    assert as_json.exit_code == 0
    listed = json.loads(as_json.output)
    assert [c["path"] for c in listed] == sorted(c["path"] for c in listed)
    assert {"path", "change", "before", "after"} == set(listed[0])
    same = runner.invoke(main, ["policy", "diff", str(old), str(old)])
    assert same.exit_code == 0 and same.output == ""


def test_policy_diff_refuses_a_bad_policy_as_policy_check_does(tmp_path: Path) -> None:
    old, bad = tmp_path / "old.yaml", tmp_path / "bad.yaml"
    old.write_text(GOOD)
    bad.write_text(GOOD.replace("kind: authority", "kind: police"))
    result = CliRunner().invoke(main, ["policy", "diff", str(old), str(bad)])
    assert result.exit_code == 2
    assert result.output.startswith(f"lineage: policy error: {bad}:")
    missing = CliRunner().invoke(main, ["policy", "diff", str(old), str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2


def test_policy_init_writes_the_annotated_seed_and_keeps_an_existing_file(tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "my-policy.yaml"
    done = runner.invoke(main, ["policy", "init", str(target)])
    assert done.exit_code == 0, done.output
    assert target.read_text() == DEFAULT_POLICY.read_text()
    assert "# " in target.read_text()  # the comments that say what to replace
    assert load_policy(target).version == load_policy().version
    assert "lineage policy check" in done.output
    target.write_text("mine")
    again = runner.invoke(main, ["policy", "init", str(target)])
    assert again.exit_code == 2 and "--force" in again.output
    assert target.read_text() == "mine"
    forced = runner.invoke(main, ["policy", "init", str(target), "--force"])
    assert forced.exit_code == 0 and target.read_text() == DEFAULT_POLICY.read_text()
    out = runner.invoke(main, ["policy", "init", "-"])
    assert out.exit_code == 0 and out.output == DEFAULT_POLICY.read_text()


def test_policy_init_with_no_file_writes_my_policy_yaml(tmp_path: Path) -> None:
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        assert runner.invoke(main, ["policy", "init"]).exit_code == 0
        assert Path("my-policy.yaml").read_text() == DEFAULT_POLICY.read_text()
