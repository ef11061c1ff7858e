"""Every `lineage` example of the README and docs/ runs as written.

A reader copies a shell block and runs it where `lineage demo` wrote `lineage-demo/`.
Each `lineage` command of every ```sh block (and the `run:` steps of the README's CI
job) runs here in a copy of such a folder, which also holds what the examples name as
the reader's own files: `events.jsonl` (the demo day's events), `my-policy.yaml` (from
`lineage policy init`), `revised-policy.yaml`, and the CI job's `privacy/` files. It
must exit 0 (3 where it asks for a gate: `--fail-on`, `--fail-on-new`), and a subject
it asks about must be found.

A command that needs a broker (`--broker`, `lineage worker`, `lineage export`) or sends
notifications over the network (`--routes`, `LINEAGE_ROUTES`) is parsed instead: its
command, options and values must be ones `lineage` takes, and the files it names exist.
"""

from __future__ import annotations

import re
import shlex
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner

from lineage.cli import main
from lineage.demo import generate_day
from lineage.policy import DEFAULT_POLICY
from tests.test_docs import PAGES, _rel

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"^```(sh|bash|shell|console|yaml)\n(.*?)^```", re.M | re.S)
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
_NETWORK = ("--broker", "--routes")


@dataclass(frozen=True)
class Example:
    where: str  # page:line
    line: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.line, comments=True)

    @property
    def env(self) -> dict[str, str]:
        env = {}
        for word in self.words:
            if not _ENV.match(word):
                break
            name, _, value = word.partition("=")
            env[name] = value
        return env

    @property
    def piped_from(self) -> str | None:
        """The file of a ``cat FILE | lineage ...`` example."""
        words = self.words
        return words[1] if words[:1] == ["cat"] and "|" in words else None

    @property
    def args(self) -> list[str]:
        words = self.words
        if "|" in words:
            words = words[words.index("|") + 1 :]
        words = [w for w in words if not _ENV.match(w)] if words[:1] != ["lineage"] else words
        assert words[:1] == ["lineage"], self
        return words[1:]

    @property
    def offline(self) -> bool:
        args = self.args
        return not (
            args[:1] in (["worker"], ["export"])
            or any(a in _NETWORK for a in args)
            or "LINEAGE_ROUTES" in self.env
        )


def _shell_lines(block: str) -> Iterator[tuple[int, str]]:
    """(offset, line) of a shell block, continuation lines joined."""
    pending, start = "", 0
    for offset, raw in enumerate(block.splitlines()):
        if not pending:
            start = offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        yield start, pending + raw
        pending = ""


def examples() -> list[Example]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in _BLOCK.finditer(text):
            kind, block = match.groups()
            first = text[: match.start()].count("\n") + 2
            if kind == "yaml":
                steps = yaml.safe_load(block) or {}
                if not isinstance(steps, dict) or "jobs" not in steps:
                    continue
                for job in steps["jobs"].values():
                    for step in job.get("steps", []):
                        run = " ".join(str(step.get("run", "")).split())
                        if run.startswith("lineage "):
                            found.append(Example(f"{_rel(page)}:{first} (CI job)", run))
                continue
            for offset, line in _shell_lines(block):
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:
                    continue
                rest = [w for w in words if not _ENV.match(w)]
                if "|" in rest:
                    rest = rest[rest.index("|") + 1 :]
                if rest[:1] == ["lineage"]:
                    found.append(Example(f"{_rel(page)}:{first + offset}", line.strip()))
    return found


EXAMPLES = examples()


def revised_text() -> str:
    """A revision of the seed policy: an agreement renewed, a third party abroad."""
    text = DEFAULT_POLICY.read_text()
    text = text.replace("expires_on: 2026-04-30", "expires_on: 2027-04-30")
    return text.replace(
        "    kind: third_party\n    country: JP", "    kind: third_party\n    country: US"
    )


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as a reader has it after `lineage demo`, with their own files."""
    folder = tmp_path_factory.mktemp("reader")
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=folder) as here:
        done = runner.invoke(main, ["demo"])
        assert done.exit_code == 0, done.output
        folder = Path(here)
    events = b"\n".join(generate_day()) + b"\n"
    (folder / "events.jsonl").write_bytes(events)
    (folder / "my-policy.yaml").write_text(DEFAULT_POLICY.read_text())
    (folder / "revised-policy.yaml").write_text(revised_text())
    (folder / "baseline-policy.yaml").write_text(DEFAULT_POLICY.read_text())
    (folder / "privacy").mkdir()
    (folder / "privacy" / "policy.yaml").write_text(revised_text())
    (folder / "privacy" / "events-last-week.jsonl").write_bytes(events)
    readme = (ROOT / "README.md").read_text()
    routes = re.search(r"```yaml\n(# routes\.yaml\n.*?)```", readme, re.S)
    assert routes, "the README's routes.yaml example"
    (folder / "routes.yaml").write_text(routes.group(1))
    return folder


def test_the_examples_are_found() -> None:
    lines = [e.line for e in EXAMPLES]
    assert any(line.startswith("lineage replay") for line in lines)
    assert any("--fail-on-new" in line for line in lines)  # the CI job's step
    assert any(line.startswith("lineage subject") for line in lines)
    assert any(line.startswith("cat events.jsonl |") for line in lines)
    assert all("[" not in e.args for e in EXAMPLES)  # no [optional] notation in a command


def _remaining(ctx: object) -> list[str]:
    """What a group's context left to its subcommand (click 8: protected_args, then args)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*getattr(ctx, "protected_args", []), *getattr(ctx, "args", [])]


def _parse(args: list[str]) -> None:
    """Parse a command line as `lineage` would, without running it."""
    ctx = main.make_context("lineage", list(args))
    group, rest = main, _remaining(ctx)
    while True:
        name, command, rest = group.resolve_command(ctx, rest)
        assert command is not None, args
        sub = command.make_context(str(name), list(rest), parent=ctx)
        if not hasattr(command, "resolve_command"):
            return
        group, ctx, rest = command, sub, _remaining(sub)  # type: ignore[assignment]


def _stand_in(arg: str, here: Path) -> str:
    """A deployment's own file (/etc/lineage/policy.yaml) stands for itself in the folder."""
    if not arg.startswith("/") or Path(arg).exists():
        return arg
    local = here / "deployment" / arg.lstrip("/")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(DEFAULT_POLICY.read_text() if arg.endswith(".yaml") else "secret\n")
    return str(local)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"{e.where} {e.line[:60]}")
def test_each_example_runs_as_written(
    example: Example, reader_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "here"
    shutil.copytree(reader_folder, here)
    monkeypatch.chdir(here)
    for name, value in example.env.items():
        monkeypatch.setenv(name, value)
    args = example.args
    if not example.offline:
        _parse([_stand_in(a, here) for a in args])
        return
    if args[:2] == ["policy", "init"]:
        # Its reader has no policy of their own yet: that is what it writes.
        (here / args[2]).unlink(missing_ok=True)
    piped = example.piped_from
    stdin = (here / piped).read_bytes() if piped else None
    result = CliRunner().invoke(main, args, input=stdin)
    gate = "--fail-on" in args or "--fail-on-new" in args
    assert result.exit_code in ((0, 3) if gate else (0,)), (example, result.output)
    if args[0] == "subject":
        out = args[args.index("--out") + 1] if "--out" in args else None
        text = (here / out).read_text() if out else result.stdout
        if "--format" in args and args[args.index("--format") + 1] == "html":
            assert "data-recipient=" in text, "the subject is not in the demo"
        else:
            assert orjson.loads(text)["recipients"], "the subject is not in the demo"
