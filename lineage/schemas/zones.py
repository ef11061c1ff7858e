"""One time zone per UTC offset for the event times unpacked from the decoding process.

Validation gives each event time a zone of its own (pydantic's ``TzInfo``). The times
:mod:`lineage.schemas.packed` makes again share one per offset, from :func:`zone_of`,
and each such zone has the epoch in its own time beside it: a time minus that epoch
is its POSIX seconds without asking the zone for its offset
(:func:`lineage.state.posix_of`), and the text ``isoformat()`` ends its times with
(:func:`lineage.schemas.judged.iso_text`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic_core import TzInfo

__all__ = ["EPOCHS", "SUFFIXES", "ZONES", "zone_of"]

#: The zones of :func:`zone_of`, by offset (read it first where a call costs).
ZONES: dict[int, TzInfo] = {}
#: The epoch in each zone of :func:`zone_of`'s own time, by the zone's id (the zones are
#: kept here for good, so no other object takes one of their ids).
EPOCHS: dict[int, datetime] = {}
#: How ``isoformat()`` ends a time in each zone of :func:`zone_of` ("+09:00"), by the
#: zone's id (:func:`lineage.schemas.judged.iso_text`).
SUFFIXES: dict[int, str] = {}
_EPOCH = datetime(1970, 1, 1)


def zone_of(offset: int) -> TzInfo:
    """The one zone of ``offset`` seconds east of UTC that unpacked event times share."""
    zone = ZONES.get(offset)
    if zone is None:
        zone = ZONES[offset] = TzInfo(offset)
        epoch = (_EPOCH + timedelta(seconds=offset)).replace(tzinfo=zone)
        EPOCHS[id(zone)] = epoch
        SUFFIXES[id(zone)] = epoch.isoformat()[19:]
    return zone
