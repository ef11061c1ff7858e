"""What every ``lineage`` command shares: the ``--policy`` option and its loading."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from lineage.errors import PolicyError
from lineage.policy import Policy, load_policy
from lineage.redact import Redactor

__all__ = ["policy_option", "policy_or_exit", "redactor_or_exit"]

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


def redactor_or_exit() -> Redactor:
    """The redactor of ``LINEAGE_REDACTION_KEY`` (or the file ``LINEAGE_REDACTION_KEY_FILE``
    names): the same key as the workers' gives the same tokens. Without one, a random key.
    An unreadable key file exits 2."""
    key = os.environ.get("LINEAGE_REDACTION_KEY")
    path = os.environ.get("LINEAGE_REDACTION_KEY_FILE")
    if not key and path:
        try:
            key = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or type(exc).__name__
            click.echo(
                f"lineage: error: LINEAGE_REDACTION_KEY_FILE: cannot read {path}: {why}", err=True
            )
            sys.exit(2)
    return Redactor(key.encode() if key else None)
