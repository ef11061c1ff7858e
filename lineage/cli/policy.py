"""``lineage policy``: start a policy file, check one, and say what changed between two.

lineage policy init [FILE]              the annotated seed policy, to edit
lineage policy check [FILE]             load and lint (exit 2 on a problem)
lineage policy diff OLD NEW             what changed, path by path
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from lineage.cli.options import policy_or_exit
from lineage.policy import DEFAULT_POLICY, lint_policy
from lineage.policy.diff import format_changes, policy_changes

__all__ = ["policy"]

_policy_file = click.Path(dir_okay=False, path_type=Path)


@click.group()
def policy() -> None:
    """Work with policy files: init, check, diff."""


@policy.command("init")
@click.argument("file", type=_policy_file, default=Path("my-policy.yaml"), required=False)
@click.option("--force", is_flag=True, help="Replace FILE when it exists.")
def policy_init(file: Path, force: bool) -> None:
    """Write the shipped seed policy, with its comments, to FILE (default my-policy.yaml;
    '-' writes to standard output): the start of your own policy."""
    text = DEFAULT_POLICY.read_text(encoding="utf-8")
    if str(file) == "-":
        click.echo(text, nl=False)
        return
    if file.exists() and not force:
        click.echo(
            f"lineage: error: {file} exists; pass --force to replace it, or name another file",
            err=True,
        )
        sys.exit(2)
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as exc:
        click.echo(f"lineage: error: cannot write {file}: {exc.strerror}", err=True)
        sys.exit(1)
    click.echo(
        f"wrote the seed policy to {file}: replace the recipients marked 'example: true' "
        f"with yours, then run: lineage policy check {file}",
        err=True,
    )


@policy.command("check")
@click.argument("file", type=_policy_file, required=False, envvar="LINEAGE_POLICY")
def policy_check(file: Path | None) -> None:
    """Lint a policy file: exit 2 with file, line and key for each problem."""
    loaded = policy_or_exit(file)
    where = file or DEFAULT_POLICY
    for warning in lint_policy(loaded):
        click.echo(f"{where}: warning: {warning}")
    click.echo(
        f"{where}: ok: {loaded.policy.name} version {loaded.version}, "
        f"{len(loaded.categories)} categories, {len(loaded.purposes)} purposes, "
        f"{len(loaded.recipients)} recipients"
    )


@policy.command("diff")
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one line a change ('+', '-' or '~', then the path); json: the list with "
    "before and after.",
)
def policy_diff(old: Path, new: Path, fmt: str) -> None:
    """What changed from policy OLD to policy NEW: recipients, agreements, announcements,
    conditions, countries, categories, purposes, systems, exceptions and policy.*.

    Each file is checked as `lineage policy check` does (exit 2 on a problem).
    """
    changes = policy_changes(policy_or_exit(old), policy_or_exit(new))
    if fmt == "json":
        click.echo(orjson.dumps(changes, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(format_changes(changes), nl=False)
