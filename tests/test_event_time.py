"""An event time's POSIX seconds, as the engine reads them (``lineage.state.posix_of``),
are the float ``datetime.timestamp()`` gives, whatever its zone; its text as the engine
writes it (``lineage.schemas.judged.iso_text``) is what ``isoformat()`` gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import TzInfo

from lineage.schemas import decode_event
from lineage.schemas.judged import iso_text
from lineage.schemas.packed import pack, unpack
from lineage.schemas.zones import EPOCHS, zone_of
from lineage.state import posix_of

# Offsets up to a day either way, to the microsecond, as datetime.timezone allows.
_offsets = st.integers(min_value=-86_399_999_999, max_value=86_399_999_999)


def _zones() -> st.SearchStrategy[tzinfo]:
    seconds = st.integers(min_value=-86_399, max_value=86_399)
    return st.one_of(
        seconds.map(zone_of),  # the zones unpacked times share: read without asking them
        seconds.map(TzInfo),  # a validated time's own zone
        _offsets.map(lambda us: timezone(timedelta(microseconds=us))),
        st.sampled_from([UTC, ZoneInfo("Asia/Tokyo"), ZoneInfo("America/New_York")]),
    )


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    _zones(),
)
def test_posix_seconds_are_the_timestamp(naive: datetime, zone: tzinfo) -> None:
    moment = naive.replace(tzinfo=zone)
    try:
        expected = moment.timestamp()
    except (OverflowError, ValueError):  # outside the years datetime can shift to UTC
        return
    assert posix_of(moment) == expected


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    _zones(),
)
def test_the_text_is_isoformats(naive: datetime, zone: tzinfo) -> None:
    moment = naive.replace(tzinfo=zone)
    assert iso_text(moment) == moment.isoformat()
    assert iso_text(moment) == moment.isoformat()  # the day's text, kept, once more


def test_the_days_texts_kept_start_again_past_their_bound() -> None:
    zone = zone_of(32_400)
    day = datetime(2026, 1, 1, 23, 59, 59, tzinfo=zone)
    for n in range(5_000):  # more days than are kept
        moment = day + timedelta(days=n)
        assert iso_text(moment) == moment.isoformat()


def test_only_the_shared_zones_are_read_without_asking_them() -> None:
    at = datetime(2026, 4, 1, 10, 0)
    for seconds in (32_400, 0, -18_000, 32_400, 19_800):
        shared = zone_of(seconds)
        assert zone_of(seconds) is shared
        assert id(shared) in EPOCHS
        for zone in (shared, TzInfo(seconds), timezone(timedelta(seconds=seconds))):
            moment = at.replace(tzinfo=zone)
            assert posix_of(moment) == moment.timestamp()
        own = TzInfo(seconds)  # pydantic may hand out one zone for UTC: then it is shared
        assert own is shared or id(own) not in EPOCHS


def test_an_events_time_decoded_or_unpacked_gives_the_same_seconds() -> None:
    event = decode_event(
        b'{"event_id": "e1", "occurred_at": "2026-04-01T10:00:00.123456+09:00",'
        b' "source": "crm", "action": "use", "categories": ["contact.email"],'
        b' "purpose": "support"}'
    )
    unpacked = unpack(pack(event))
    assert unpacked.occurred_at.tzinfo is zone_of(32_400)
    assert posix_of(event.occurred_at) == posix_of(unpacked.occurred_at)
    assert posix_of(event.occurred_at) == event.occurred_at.timestamp() == 1775005200.123456
