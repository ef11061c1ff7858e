"""The dedup index: its hash table against a dict, and ids whose hashes collide."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streams.dedup
from streams.dedup import SeenIndex
from streams.idtable import IdTable

# Keys that crowd a few slots of a 16-slot table, the last ones included, so that
# probes wrap around the end and removals shift entries back across it.
_CROWD = [n * 16 + home for n in range(1, 7) for home in (0, 1, 14, 15)] + [-17]
_KEYS = st.sampled_from(_CROWD)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _KEYS, st.integers(0, 3)), max_size=120))
def test_the_id_table_holds_what_a_dict_holds(steps: list[tuple[bool, int, int]]) -> None:
    table = IdTable(16)
    model: dict[int, int] = {}
    for put, key, offset in steps:
        if put:
            table.put(key, offset)
            model[key] = offset
        else:
            removed = table.remove(key, offset)
            assert removed == (model.get(key) == offset)
            if removed:
                del model[key]
        assert len(table) == len(model)
        for held in _CROWD:
            assert table.get(held) == model.get(held)


def test_the_id_table_grows_and_keeps_every_entry() -> None:
    table = IdTable(8)
    for key in range(1, 10_001):
        table.put(key * 2_654_435_761, -key)
    assert len(table) == 10_000 and table.capacity == 16_384  # at most two thirds full
    assert all(table.get(k * 2_654_435_761) == -k for k in range(1, 10_001))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(-(2**50), 2**50),
    st.lists(st.tuples(st.booleans(), _KEYS, st.integers(0, 2**16 - 1)), max_size=80),
)
def test_offsets_read_back_whole_from_their_low_bits(
    start: int, steps: list[tuple[bool, int, int]]
) -> None:
    """An entry keeps an offset's low 16 bits here: read against the highest offset put,
    every offset within that span below it comes back whole, wherever the span lies."""
    table = IdTable(16, offset_bits=16)
    model: dict[int, int] = {}
    top = start
    for put, key, step in steps:
        offset = top - step  # never more than the span below the highest
        if put:
            table.put(key, offset)
            model[key] = offset
            top = max(top, offset)
        elif table.remove(key, offset):
            del model[key]
        model = {k: o for k, o in model.items() if top - o <= table.span}
        for held in _CROWD:
            if held in model:
                assert table.get(held) == model[held]
        top += step // 2  # time moves on


def test_an_offset_beyond_the_span_is_refused_not_misread() -> None:
    table = IdTable(16, offset_bits=16)
    table.put(1, 100_000)
    table.put(2, 100_000 - 65_535)  # the span's far end
    with pytest.raises(ValueError, match="more than 65535 below 100000"):
        table.put(3, 100_000 - 65_536)
    assert (table.get(1), table.get(2), table.get(3)) == (100_000, 34_465, None)


def test_keys_equal_in_the_bits_kept_are_one_key_to_the_table() -> None:
    """The caller tells such ids apart (SeenIndex confirms every hit by id)."""
    table = IdTable(16, offset_bits=24)
    table.put(5, 10)
    assert table.get(5 + (1 << 38)) == 10 and table.get(6) is None


def test_a_window_of_offsets_far_past_the_kept_bits_reads_back_exactly() -> None:
    backing: dict[str, bytes] = {}
    index = SeenIndex(backing, 0, window=1_000)
    first = 5_000_000_000  # far beyond the 2**24 an entry keeps
    for offset in range(first, first + 3_000):
        assert _engine_like(index, f"e-{offset}", offset, f"{offset:016x}") is None
        if offset % 250 == 249:
            index.flush()
    held = [o for o in range(first, first + 3_000) if index.get(f"e-{o}") is not None]
    assert held and all(index.get(f"e-{o}") == (o, f"{o:016x}") for o in held)
    assert held[-1] == first + 2_999 and held[0] >= first + 3_000 - 1_000 - 250
    again = SeenIndex(backing, 0, window=1_000)
    assert all(again.get(f"e-{o}") == (o, f"{o:016x}") for o in held)


def _engine_like(index: SeenIndex, event_id: str, offset: int, digest: str) -> Any:
    """What the engine does with an event: look its id up, hold it if absent."""
    held = index.get(event_id)
    if held is None:
        index[event_id] = (offset, digest)
    return held


@pytest.mark.parametrize("colliding", [False, True], ids=["own hashes", "one hash for all"])
def test_ids_are_told_apart_by_id_even_when_their_hashes_are_equal(
    monkeypatch: pytest.MonkeyPatch, colliding: bool
) -> None:
    if colliding:
        monkeypatch.setattr(streams.dedup, "key_of", lambda event_id: 7)
    backing: dict[str, bytes] = {}
    index = SeenIndex(backing, 0, window=40)
    model: dict[str, tuple[int, str]] = {}
    records: list[tuple[int, list[str]]] = []  # (last offset, ids) of each flushed batch
    batch: list[str] = []
    for n in range(120):
        offset = n
        # New ids, and now and then an id of an earlier batch (a producer's retry).
        event_id = f"e-{n // 2}" if n % 5 == 0 else f"e-{n}"
        digest = f"{n % 3:016x}"
        assert _engine_like(index, event_id, offset, digest) == model.get(event_id)
        if event_id not in model:
            model[event_id] = (offset, digest)
            batch.append(event_id)
        if n % 10 == 9:
            index.flush()
            if batch:
                records.append((offset, batch))
            batch = []
            horizon = records[-1][0] - 40
            while records and records[0][0] < horizon:
                for gone in records.pop(0)[1]:
                    del model[gone]
        assert {e: index.get(e) for e in model} == model
        assert len(index) == len(model)
    assert set(index) == set(model)
    rebuilt = SeenIndex(backing, 0, window=40)  # after a rebalance
    assert {e: rebuilt.get(e) for e in model} == model and len(rebuilt) == len(model)
    assert rebuilt.get("e-0") is None and index.get("e-0") is None


def test_a_redelivered_batch_finds_its_ids_at_their_own_offsets() -> None:
    backing: dict[str, bytes] = {}
    index = SeenIndex(backing, 2)
    for offset in range(100):
        index[f"e-{offset}"] = (offset, f"{offset:016x}")
        if offset % 25 == 24:
            index.flush()
    again = SeenIndex(backing, 2)
    assert [again.get(f"e-{o}") for o in range(100)] == [(o, f"{o:016x}") for o in range(100)]
    assert again.get("e-100") is None and again.get("") is None
