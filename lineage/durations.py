"""Durations as people write them: ``90``, ``90s``, ``30m``, ``24h``, ``2d``."""

from __future__ import annotations

from datetime import timedelta

__all__ = ["parse_duration"]

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
