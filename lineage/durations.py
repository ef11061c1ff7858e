"""Durations and instants as people write them: ``90``, ``90s``, ``30m``, ``24h``, ``2d``;
``2026-11-20T09:00:00+09:00``, ``2026-11-20`` or ``7d`` (back from now)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo

__all__ = ["parse_duration", "parse_instant"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """A duration; a bare number is seconds.

    >>> parse_duration("24h"), parse_duration("90")
    (datetime.timedelta(days=1), datetime.timedelta(seconds=90))
    """
    value = text.strip().lower()
    scale = _UNITS.get(value[-1:], 0)
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (try 24h, 90m, 3600s)") from None
    if seconds < 0:
        raise ValueError(f"{text!r} is negative")
    return timedelta(seconds=seconds)


def parse_instant(text: str, *, now: datetime, zone: tzinfo) -> datetime:
    """An instant: an RFC 3339 date-time with its offset, a date (its first moment in
    ``zone``, the policy's calendar), or a duration with its unit back from ``now``.

    >>> from datetime import UTC
    >>> now = datetime(2026, 11, 30, tzinfo=UTC)
    >>> parse_instant("7d", now=now, zone=UTC).isoformat()
    '2026-11-23T00:00:00+00:00'
    >>> parse_instant("2026-11-20T09:00:00+09:00", now=now, zone=UTC).isoformat()
    '2026-11-20T09:00:00+09:00'
    """
    value = text.strip()
    hint = (
        f"{text!r} is not a time: give an RFC 3339 time (2026-11-20T09:00:00+09:00), "
        "a date (2026-11-20) or a duration back from now (7d, 36h)"
    )
    if value[-1:].lower() in _UNITS and value[:-1].replace(".", "", 1).isdigit():
        return now - parse_duration(value)
    if len(value) == 10:
        try:
            return datetime.combine(date.fromisoformat(value), time(0), tzinfo=zone)
        except ValueError:
            raise ValueError(hint) from None
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(hint) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no offset: add one (Z, +09:00)")
    return moment
