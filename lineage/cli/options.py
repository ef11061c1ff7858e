"""What every ``lineage`` command shares: the ``--policy`` option and its loading."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lineage.errors import PolicyError
from lineage.policy import Policy, load_policy

__all__ = ["policy_option", "policy_or_exit"]

#: ``--policy FILE`` (or ``LINEAGE_POLICY``); absent means the shipped seed policy.
policy_option = click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="LINEAGE_POLICY",
    show_envvar=True,
    help="Policy file (YAML). Default: the shipped seed policy.",
)


def policy_or_exit(path: Path | None) -> Policy:
    """Load a policy, or print each problem (file:line: key: message) and exit 2."""
    try:
        return load_policy(path)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(f"lineage: policy error: {problem}", err=True)
        sys.exit(2)
