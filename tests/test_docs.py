"""The documentation stays true to the code and to itself.

- every relative link of README.md and docs/**/*.md reaches a file of the repository,
  and every ``#anchor`` a heading of its page (GitHub's slugs); a path in backticks
  under a top-level folder of the repository names something that exists;
- no page points at the team's internal specs, which users never see;
- docs/rules.md is what ``python -m lineage.rules.catalogue`` writes;
- every setting, rule id, command, option, event and output field, topic and policy
  key of the code is documented where a reader looks for it;
- the example policy of docs/policy.md loads without a warning.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from pydantic import BaseModel

from lineage.rules import CATALOGUE
from lineage.rules.catalogue import docstring, render_markdown
from lineage.rules.catalogue import main as catalogue_main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_REPO_PATH = re.compile(r"^\.?[\w-]+(?:/[\w.*-]+)+/?$")
_RULE_ID = re.compile(r"(?:art\d+|appi\d+)\.[a-z][a-z-]*")
_INTERNAL_SPECS = re.compile(
    r"\b(?:CONTRACT|RULES|ARCHITECTURE|KAFKA_NOTES|STYLE)\.md\b|(?<![\w/.-])shared/"
)


def _rel(path: Path, root: Path = ROOT) -> str:
    return str(path.relative_to(root))


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a Markdown page, outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if match:
            marker = match.group(1)
            if fence is None:
                fence = marker
            elif marker == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text, lower-cased, without punctuation, spaces
    turned into hyphens.

    >>> slug("4. Alerts"), slug("### `art6.no-agreement`".lstrip("# "))
    ('4-alerts', 'art6no-agreement')
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link reads as its text
    text = re.sub(r"<[^>]+>", "", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page has: its headings' slugs (-1, -2 for repeats) and HTML anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(text):
        found.update(_HTML_ANCHOR.findall(line))
        match = _HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of every Markdown link and link reference of a page."""
    for number, line in prose_lines(text):
        # Code spans hold no links; keep their place so link texts with code still match.
        plain = _CODE_SPAN.sub(lambda m: "x" * len(m.group(0)), line)
        for match in _LINK.finditer(plain):
            yield number, line[match.start(1) : match.end(1)]
        reference = _REFERENCE.match(plain)
        if reference:
            yield number, reference.group(1)


def code_spans(text: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of every inline code span outside fenced blocks."""
    for number, line in prose_lines(text):
        for match in _CODE_SPAN.finditer(line):
            yield number, match.group(2).strip()


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the relative links of one page (nothing: an empty list)."""
    text = page.read_text(encoding="utf-8")
    problems = []
    for number, target in links(text):
        if _SCHEME.match(target) or target.startswith("//"):
            continue  # a web address: not ours to check offline
        path_part, _, anchor = target.partition("#")
        where = f"{_rel(page, root)}:{number}: {target}"
        resolved = (page.parent / path_part).resolve() if path_part else page
        if root not in resolved.parents and resolved != root:
            problems.append(f"{where}: outside the repository")
            continue
        if not resolved.exists():
            problems.append(f"{where}: no such file")
            continue
        if anchor:
            if resolved.suffix != ".md":
                problems.append(f"{where}: an anchor into a page that is not Markdown")
            elif anchor not in anchors(resolved.read_text(encoding="utf-8")):
                problems.append(f"{where}: no heading #{anchor} in {_rel(resolved, root)}")
    return problems


def missing_paths(page: Path, root: Path = ROOT) -> list[str]:
    """Paths in backticks, under a top-level folder of the repository, that do not exist."""
    top = {p.name for p in root.iterdir()}
    problems = []
    for number, span in code_spans(page.read_text(encoding="utf-8")):
        if not _REPO_PATH.match(span) or span.split("/", 1)[0] not in top:
            continue
        if not any(root.glob(span.rstrip("/"))):
            problems.append(f"{_rel(page, root)}:{number}: `{span}` does not exist")
    return problems


# -- links, anchors and paths ----------------------------------------------------------------


def test_slugs_follow_github() -> None:
    assert slug("8. Per-subject lineage") == "8-per-subject-lineage"
    assert slug("`lineage run`") == "lineage-run"
    assert slug("Article 7: sharing with affiliates (APPI joint use, Art. 27 (5) (iii))") == (
        "article-7-sharing-with-affiliates-appi-joint-use-art-27-5-iii"
    )
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_paths_in_backticks_exist(page: Path) -> None:
    assert missing_paths(page) == []


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_no_page_points_at_the_internal_specs(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    found = [
        f"{_rel(page)}:{n}: {m.group(0)}"
        for n, line in enumerate(text.splitlines(), start=1)
        for m in _INTERNAL_SPECS.finditer(line)
    ]
    assert found == []


def test_the_checks_find_what_is_broken(tmp_path: Path) -> None:
    """The checks can fail: dead links, a dead anchor, a dead path, a link out of the tree."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "lineage" / "rules").mkdir(parents=True)
    (tmp_path / "lineage" / "rules" / "catalogue.py").write_text("", encoding="utf-8")
    (tmp_path / "docs" / "contract.md").write_text("# Contract\n\n## 4. Alerts\n")
    page = tmp_path / "docs" / "probe.md"
    page.write_text(
        "# Probe\n\n[ok](contract.md#4-alerts) [self](#probe) `lineage/rules/catalogue.py`\n"
        "[gone](no-such-page.md) [bad anchor](contract.md#no-such-heading) [up](../../x.md)\n"
        "`lineage/no_such_module.py` `lineage-demo/alerts.jsonl` [`code`](#nowhere)\n"
        "```\n[in a code block](ignored.md)\n```\n",
        encoding="utf-8",
    )
    root = tmp_path.resolve()
    assert broken_links(page, root) == [
        "docs/probe.md:4: no-such-page.md: no such file",
        "docs/probe.md:4: contract.md#no-such-heading: no heading #no-such-heading in "
        "docs/contract.md",
        "docs/probe.md:4: ../../x.md: outside the repository",
        "docs/probe.md:5: #nowhere: no heading #nowhere in docs/probe.md",
    ]
    assert missing_paths(page, root) == [
        "docs/probe.md:5: `lineage/no_such_module.py` does not exist"
    ]


# -- generated and code-derived content --------------------------------------------------------


def test_rules_page_is_generated_from_the_catalogue() -> None:
    assert (DOCS / "rules.md").read_text(encoding="utf-8") == render_markdown(), (
        "docs/rules.md is stale: run python -m lineage.rules.catalogue"
    )


def test_catalogue_check_says_when_the_page_is_stale(tmp_path: Path) -> None:
    page = tmp_path / "rules.md"
    assert catalogue_main(["--check", "--out", str(page)]) == 1  # missing
    assert catalogue_main(["--out", str(page)]) == 0
    assert catalogue_main(["--check", "--out", str(page)]) == 0
    page.write_text(page.read_text(encoding="utf-8") + "edited by hand\n", encoding="utf-8")
    assert catalogue_main(["--check", "--out", str(page)]) == 1


def test_every_rule_says_what_it_checks() -> None:
    page = render_markdown()
    for spec in CATALOGUE.values():
        # From the source: a compiled rule (lineage.compiled) keeps no docstring.
        assert docstring(spec.fn.__module__, spec.fn.__name__), (
            f"{spec.id}: its function needs a docstring"
        )
        assert f"### `{spec.id}`\n\n**{spec.title}.**" in page


def test_every_rule_id_is_documented_and_every_documented_id_exists() -> None:
    contract = (DOCS / "contract.md").read_text(encoding="utf-8")
    rules = (DOCS / "rules.md").read_text(encoding="utf-8")
    undocumented = [r for r in CATALOGUE if f"`{r}`" not in contract and f"`{r}`" not in rules]
    assert undocumented == []
    unknown = [
        f"{_rel(page)}:{n}: {span}"
        for page in PAGES
        for n, span in code_spans(page.read_text(encoding="utf-8"))
        if _RULE_ID.fullmatch(span) and span not in CATALOGUE
    ]
    assert unknown == []


def test_every_setting_is_in_the_operations_table() -> None:
    pytest.importorskip("pydantic_settings")
    from streams.settings import Settings

    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| `")}
    missing = [
        f"LINEAGE_{name.upper()}"
        for name in Settings.model_fields
        if f"`LINEAGE_{name.upper()}`" not in rows
    ]
    assert missing == [], "settings without a row in docs/operations.md"


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n")
    end = len(text)
    for match in re.finditer(r"^(#{1,6}) ", text[start + len(heading) :], re.M):
        if len(match.group(1)) <= level:
            end = start + len(heading) + match.start()
            break
    return text[start:end]


def _commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # with those imported only when named
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def test_every_command_and_option_is_in_the_contract() -> None:
    from lineage.cli import main

    text = (DOCS / "contract.md").read_text(encoding="utf-8")
    problems = []
    for name, command in _commands(main, "lineage"):
        heading = f"### `{name}`"
        if heading + "\n" not in text:
            problems.append(f"{name}: no section {heading}")
            continue
        section = _section(text, heading)
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:  # hidden: internal
                continue
            for opt in param.opts:
                if opt.startswith("--") and not re.search(rf"`{re.escape(opt)}[ `]", section):
                    problems.append(f"{name}: option {opt} not documented")
            envvar = param.envvar if isinstance(param.envvar, str) else None
            if envvar and f"`{envvar}`" not in section:
                problems.append(f"{name}: {param.opts[0]}'s variable {envvar} not documented")
    assert problems == []


def _fields(model: type[BaseModel]) -> Iterator[str]:
    yield from model.model_fields


def _words_in_code(text: str) -> set[str]:
    return {word for _, span in code_spans(text) for word in re.findall(r"[\w.-]+", span)}


def test_every_event_and_output_field_is_in_the_contract() -> None:
    from lineage.schemas import events, outputs

    words = _words_in_code((DOCS / "contract.md").read_text(encoding="utf-8"))
    models: list[type[BaseModel]] = [
        events.AccessEvent,
        events.ConsentEvent,
        events.Pseudonymization,
        events.ExceptionClaim,
        outputs.Alert,
        outputs.Incident,
        outputs.DeadLetter,
        outputs.ProvisionRecord,
        outputs.SubjectLineage,
        outputs.RecipientLineage,
        outputs.ConsentOnRecord,
    ]
    missing = [f"{m.__name__}.{f}" for m in models for f in _fields(m) if f not in words]
    assert missing == []


def test_every_topic_is_in_the_contract() -> None:
    pytest.importorskip("pydantic_settings")
    from streams.settings import Settings
    from streams.topics import Topics

    text = (DOCS / "contract.md").read_text(encoding="utf-8")
    # The contract's names, whatever this machine's LINEAGE_* variables say.
    settings = Settings.model_construct(topic_prefix="lineage.")
    missing = [t for t in Topics.of(settings).all() if f"`{t}`" not in text]
    assert missing == []


def test_every_policy_key_is_in_the_policy_reference() -> None:
    from lineage.policy import model

    words = _words_in_code((DOCS / "policy.md").read_text(encoding="utf-8"))
    models: list[type[BaseModel]] = [
        model.Policy,
        model.PolicyMeta,
        model.Category,
        model.Purpose,
        model.Recipient,
        model.Agreement,
        model.Supervision,
        model.Announcement,
        model.Conditions,
        model.System,
    ]
    missing = [f"{m.__name__}.{f}" for m in models for f in _fields(m) if f not in words]
    assert missing == []


def test_the_policy_example_loads_without_a_warning() -> None:
    from lineage.policy import lint_policy, load_policy_text

    text = (DOCS / "policy.md").read_text(encoding="utf-8")
    examples = [
        block
        for block in re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S)
        if block.startswith("policy:")
    ]
    assert examples, "docs/policy.md has no complete example"
    for block in examples:
        assert lint_policy(load_policy_text(block, "docs/policy.md")) == []


def test_the_seed_policy_text_is_in_the_docs() -> None:
    text = (DOCS / "seed" / "privacy-policy.txt").read_text(encoding="utf-8")
    assert "Audiostock Inc." in text
    articles = re.findall(r"^Article (\d+) \(", text, re.M)
    assert articles == [str(n) for n in range(1, 17)]
    mapping = (DOCS / "seed-policy.md").read_text(encoding="utf-8")
    for number in articles:
        assert re.search(rf"^\| {number}(?: \(\d+\)(?:-\(\d+\))?)? \|", mapping, re.M), number
