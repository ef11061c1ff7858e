"""Errors raised by the schemas package.

SchemaError
└── EventRejected   a message is not a valid event (goes to the dead letters)
"""

from __future__ import annotations

__all__ = ["EventRejected", "SchemaError"]


class SchemaError(Exception):
    """Root of the errors raised by :mod:`lineage.schemas`."""


class EventRejected(SchemaError):
    """A message that is not a valid event; carries a reason a person can act on.

    ``kind`` is a stable machine word (``not_json``, ``missing_field``, ``wrong_type``,
    ``unknown_value``, ``unknown_schema_version``, ``bad_timestamp``, ``oversized``,
    ``unknown_field``, ``bad_value``; and, raised by the engine rather than the schemas,
    ``duplicate-conflict`` and ``internal_error``) and ``field`` the dotted path of the
    field at fault.
    The reason never repeats a value that looks like personal data.
    """

    def __init__(
        self, reason: str, *, field: str | None, kind: str, event_id: str | None = None
    ) -> None:
        where = f"event {event_id!r}: " if event_id else ""
        super().__init__(where + reason)
        self.reason = where + reason
        self.field = field
        self.kind = kind
        self.event_id = event_id
