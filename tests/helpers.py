"""Event builders for the tests."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any


def access(**fields: Any) -> dict[str, Any]:
    """A lawful-looking access event; tests override what they are about."""
    event: dict[str, Any] = {
        "event_id": "e-1",
        "occurred_at": "2025-06-01T12:00:00+09:00",
        "source": "shop",
        "action": "transfer",
        "subject": "u-1",
        "categories": ["identity.name"],
        "purpose": "billing",
        "encrypted_in_transit": True,
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not None}


def consent(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "consent",
        "event_id": "c-1",
        "occurred_at": "2025-05-01T12:00:00+09:00",
        "subject": "u-1",
        "recipient": "researchers",
        "status": "granted",
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not None}


def rules_of(alerts: list[dict[str, Any]]) -> set[str]:
    return {a["rule"] for a in alerts}


class Recorder(logging.Handler):
    """A handler that keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def debug_records() -> Iterator[Recorder]:
    """A :class:`Recorder` on the root logger, at DEBUG, while the block runs; the root
    logger's level is put back after."""
    recorder = Recorder()
    root = logging.getLogger()
    level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    try:
        yield recorder
    finally:
        root.removeHandler(recorder)
        root.setLevel(level)
