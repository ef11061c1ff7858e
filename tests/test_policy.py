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


# -- text a picture or an alert could not show -------------------------------------------------

#: Characters that break a line or hide text, as YAML double-quoted escapes, and their code.
HIDDEN = [
    ("\\n", "U+000A"),  # line feed
    ("\\t", "U+0009"),  # tab
    ("\\0", "U+0000"),  # NUL: no XML file can hold it
    ("\\e", "U+001B"),  # ESC: terminal escape sequences
    ("\\x7f", "U+007F"),  # DEL
    ("\\N", "U+0085"),  # NEL (C1)
    ("\\x9b", "U+009B"),  # CSI (C1)
    ("\\L", "U+2028"),  # line separator
    ("\\P", "U+2029"),  # paragraph separator
    ("\\u202e", "U+202E"),  # right-to-left override
    ("\\u2066", "U+2066"),  # left-to-right isolate
    ("\\u200b", "U+200B"),  # zero-width space
    ("\\ufeff", "U+FEFF"),  # byte-order mark inside text
]


@pytest.mark.parametrize(("escape", "code"), HIDDEN)
def test_a_control_or_format_character_in_policy_text_is_refused(escape: str, code: str) -> None:
    old = "identity.name: {label: Name, identifying: direct}"
    text = GOOD.replace(old, old.replace("label: Name", f'label: "Na{escape}me"'), 1)
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, "p.yaml")
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.key) == (
        "p.yaml",
        4,
        "categories.identity.name.label",
    )
    assert problem.message.startswith(f"a control or format character ({code}): ")
    # One line, naming the code point, never the text itself.
    shown = str(caught.value)
    assert shown.startswith("p.yaml:4: categories.identity.name.label: ")
    assert "Na" not in shown and shown.isprintable()


@pytest.mark.parametrize(
    ("old", "new", "key", "needle"),
    [
        # a mapping key
        ("  crm: {label: CRM}", '  "c\\u202erm": {label: CRM}', "systems", "u202erm"),
        # a list item
        (
            "support: {label: Support, categories: [identity.name, contact]}",
            'support: {label: Support, categories: ["identity.name\\L"]}',
            "purposes.support.categories[0]",
            "identity.name\\L",
        ),
        # a recipient's name: a block scalar with a line inside it
        (
            "    name: PayCo\n",
            "    name: |\n      PayCo\n      forged line\n",
            "recipients.payco.name",
            "name: |",
        ),
        # the policy's own name
        (
            "policy: {name: Test Policy,",
            'policy: {name: "Test\\u2029Policy",',
            "policy.name",
            "u2029Policy",
        ),
    ],
)
def test_hidden_characters_are_refused_in_every_string(
    old: str, new: str, key: str, needle: str
) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, "p.yaml")
    (problem,) = caught.value.problems
    assert problem.key == key and "control or format character" in problem.message
    assert problem.line == line_of(text, needle)


def test_a_block_scalar_ends_with_yamls_own_line_feed_and_is_accepted() -> None:
    text = GOOD.replace("    name: PayCo\n", "    name: >\n      PayCo\n", 1)
    assert load_policy_text(text, "p.yaml").recipients["payco"].name == "PayCo"


def test_policy_check_refuses_a_control_character_with_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("{label: Name,", '{label: "Name\\e[2J\\u202e",', 1))
    refused = CliRunner().invoke(main, ["policy", "check", str(bad)])
    assert refused.exit_code == 2
    assert refused.output == (
        f"lineage: policy error: {bad}:4: categories.identity.name.label: a control or format "
        "character (U+001B): text here must be printable (no tabs, line breaks, bidi or "
        "zero-width characters)\n"
    )


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        ("effective_on: 2024-01-01}", "effective_on: 2024-13-45}", "date or time"),
        ("interval_days: 180}", "interval_days: !!int one-hundred-eighty}", "integer"),
        ("conforms_to_policy: true,", "conforms_to_policy: !!bool perhaps,", "boolean"),
        ("  activity: 365", "  activity: !!float lots", "number"),
        ("  crm: {label: CRM}", "  crm: !!map not-a-mapping", "mapping"),
    ],
)
def test_a_value_its_tag_cannot_read_is_refused_by_kind_not_repeated(
    old: str, new: str, kind: str
) -> None:
    # These were a ValueError, a KeyError or a PyYAML message quoting the line: a
    # traceback from `policy check`, or the value echoed.
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, "p.yaml")
    (problem,) = caught.value.problems
    assert problem.message == f"not a valid {kind}"
    assert problem.line == line_of(text, new.split(":")[0].strip() + ":")
    bad_value = new.split(": ")[-1].rstrip(",}").split()[-1]
    assert bad_value not in str(caught.value)
