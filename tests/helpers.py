"""Event builders for the tests."""

from __future__ import annotations

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
