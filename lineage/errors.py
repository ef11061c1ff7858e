"""The errors of the lineage core, under one root.

    LineageError
    ├── PolicyError          a policy file is refused (names file, line and key)
    └── RunError             an embedded run cannot go on (unreadable input, unwritable output)

Bad *events* are not errors here: they are data, sent to the dead letters
(:class:`lineage.schemas.EventRejected` carries the reason).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["LineageError", "PolicyError", "PolicyProblem", "RunError", "unwritable"]


class LineageError(Exception):
    """Root of the errors raised by :mod:`lineage`."""


class PolicyProblem:
    """One thing wrong in a policy file: where, which key, what."""

    __slots__ = ("file", "key", "line", "message")

    def __init__(self, file: str, line: int | None, key: str, message: str) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.message = message

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}"

    def __repr__(self) -> str:
        return f"PolicyProblem({self})"


class PolicyError(LineageError):
    """A policy file is refused; ``problems`` lists every problem found, first one first."""

    def __init__(self, problems: list[PolicyProblem]) -> None:
        self.problems = problems
        head = str(problems[0]) if problems else "policy refused"
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(head + more)


class RunError(LineageError):
    """An embedded run cannot go on: unreadable input or unwritable output."""


def unwritable(out_dir: Path, exc: OSError) -> RunError:
    """The error of an output in ``out_dir`` that could not be written, naming its file
    when known."""
    where = exc.filename if exc.filename is not None else out_dir
    return RunError(f"cannot write to {where}: {exc.strerror}")
