"""The errors of alert routing, under the package's one root.

    LineageError                 (lineage.errors)
    └── NotifyError              alert routing cannot do what was asked
        ├── RoutesError          a routes file is refused (names file, line and key)
        └── DeliveryFailed       one attempt at one destination failed; the router
                                 retries it and never lets it reach the caller

A problem in a routes file has the same shape as one in a policy file (file, line,
key, message): :class:`RoutesProblem` is :class:`lineage.errors.PolicyProblem`.
"""

from __future__ import annotations

from lineage.errors import LineageError, PolicyProblem

__all__ = ["DeliveryFailed", "NotifyError", "RoutesError", "RoutesProblem"]

#: One thing wrong in a routes file: where, which key, what (``file:line: key: message``).
RoutesProblem = PolicyProblem


class NotifyError(LineageError):
    """Root of the errors of :mod:`lineage.notify`."""


class RoutesError(NotifyError):
    """A routes file is refused; ``problems`` lists every problem found, first one first."""

    def __init__(self, problems: list[RoutesProblem]) -> None:
        self.problems = problems
        head = str(problems[0]) if problems else "routes refused"
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(head + more)


class DeliveryFailed(NotifyError):
    """One attempt to deliver to one destination failed.

    The message says why in words safe to log: never the destination's URL (it may
    hold a token) and never the record.
    """
