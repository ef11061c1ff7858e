"""Policy-as-code: the shipped seed policy, and refusals that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lineage.cli import main
from lineage.errors import PolicyError
from lineage.policy import lint_policy, load_policy, load_policy_text
from tests.conftest import DATA

SEED_CATEGORIES = {
    "identity.name", "identity.date_of_birth", "identity.sex", "contact.postal_code",
    "contact.address", "contact.phone", "contact.email", "financial.bank_account",
    "financial.credit_card", "device.id", "device.cookie", "activity.purchase_history",
    "activity.viewing_history", "activity.ip_address", "activity.request_time",
    "activity.site_history",
}  # fmt: skip

GOOD = (DATA / "policy.yaml").read_text()


def test_the_seed_policy_has_its_categories_and_the_announced_affiliate() -> None:
    policy = load_policy()
    assert set(policy.categories) == SEED_CATEGORIES
    affiliate = policy.recipients["audiostock-artists"]
    assert affiliate.announcement is not None
    announced = affiliate.announcement.category_set
    for shared in (
        "identity.name",
        "contact.postal_code",
        "contact.address",
        "contact.phone",
        "contact.email",
        "activity.viewing_history",
        "device.cookie",
    ):
        assert shared in announced
    for withheld in ("identity.date_of_birth", "financial.bank_account", "financial.credit_card"):
        assert withheld not in announced
    examples = {rid for rid, r in policy.recipients.items() if r.example}
    warnings = "\n".join(lint_policy(policy))
    assert examples and all(f"recipients.{rid}: an example entry" in warnings for rid in examples)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("old", "new", "key", "needle"),
    [
        ("    kind: third_party", "    kind: third_party\n    colour: red", "colour", "colour"),
        (
            "signed_on: 2024-01-01, expires_on: 2025-12-31",
            "signed_on: soon, expires_on: 2025-12-31",
            "signed_on",
            "id: NDA-1",
        ),
        (
            "categories: [financial.credit_card], purposes: [billing]",
            "categories: [health.blood], purposes: [billing]",
            "categories[0]",
            "health.blood",
        ),
        (
            "      purposes: [joint]",
            "      purposes: [jointz]",
            "purposes[0]",
            "purposes: [jointz]",
        ),
        (
            "    onward: [cardnet, callco]",
            "    onward: [cardnet, nobody]",
            "onward[1]",
            "onward: [cardnet, nobody]",
        ),
        ("      manager: Test Inc.\n", "", "manager", "announcement:"),
        ("      purpose: Joint services\n", "", "announcement.purpose", "announcement:"),
    ],
)
def test_a_bad_policy_is_refused_with_file_line_and_key(
    old: str, new: str, key: str, needle: str
) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, "p.yaml")
    problem = caught.value.problems[0]
    assert problem.file == "p.yaml" and key in problem.key
    assert problem.line == line_of(text, needle)
    assert str(caught.value).startswith(f"p.yaml:{problem.line}: ")


def test_duplicate_keys_yaml_errors_and_empty_files_are_refused() -> None:
    with pytest.raises(PolicyError, match="duplicate key"):
        load_policy_text(GOOD.replace("  sdk:", "  police:"), "p.yaml")
    with pytest.raises(PolicyError, match=r"p.yaml:\d+: \(yaml\)"):
        load_policy_text(GOOD + "\n  broken: [", "p.yaml")
    with pytest.raises(PolicyError, match="empty"):
        load_policy_text("", "p.yaml")
    with pytest.raises(PolicyError, match="mapping"):
        load_policy_text("- a\n- b\n", "p.yaml")
    with pytest.raises(PolicyError, match=r"missing\.yaml"):
        load_policy(Path("missing.yaml"))


def test_policy_check_command(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["policy", "check", str(DATA / "policy.yaml")])
    assert ok.exit_code == 0 and "ok: Test Policy" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("    kind: third_party", "    kind: stranger"))
    refused = runner.invoke(main, ["policy", "check", str(bad)])
    assert refused.exit_code == 2
    assert f"{bad}:{line_of(bad.read_text(), 'kind: stranger')}: recipients.researchers.kind" in (
        refused.output
    )


def test_an_unknown_time_zone_is_refused_at_load(tmp_path: Path) -> None:
    # Accepted, it turned every event into an internal_error dead letter.
    path = tmp_path / "tz.yaml"
    path.write_text(
        "policy: {name: x, version: '1', effective_on: 2020-01-01, timezone: Mars/Olympus}\n"
        "categories: {contact.email: {label: e, identifying: direct}}\n"
        "purposes: {support: {label: s, categories: [contact]}}\n"
    )
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    problem = refused.value.problems[0]
    assert (problem.line, problem.key) == (1, "policy.timezone")
    assert "unknown time zone 'Mars/Olympus'" in problem.message
