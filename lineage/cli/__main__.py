"""``python -m lineage.cli``: the same as the ``lineage`` command."""

from lineage.cli import command

command()
