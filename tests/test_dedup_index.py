"""The dedup index: its hash table against a dict, and ids whose hashes collide."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streams.store
from streams.dedup import SeenIndex, _load
from streams.idtable import IdTable

# Keys that crowd a few slots of a 16-slot table, the last ones included, so that
# probes wrap around the end and removals shift entries back across it.
_CROWD = [n * 16 + home for n in range(1, 7) for home in (0, 1, 14, 15)] + [-17]
_KEYS = st.sampled_from(_CROWD)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _KEYS, st.integers(0, 3)), max_size=120))
def test_the_id_table_holds_what_a_dict_holds(steps: list[tuple[bool, int, int]]) -> None:
    _holds_what_a_dict_holds(IdTable(16), steps)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _KEYS, st.integers(0, 3)), max_size=120))
def test_a_table_of_a_size_no_power_of_two_holds_what_a_dict_holds(
    steps: list[tuple[bool, int, int]],
) -> None:
    table = IdTable(8, most=14)  # doubles to 16, then grows to 21 slots, not 32
    model = {}
    for n in range(11):
        key = (n + 1) * 2_654_435_761
        table.put(key, 2)
        model[key] = 2
    assert table.capacity == 21
    _holds_what_a_dict_holds(table, steps, model)


def _holds_what_a_dict_holds(
    table: IdTable, steps: list[tuple[bool, int, int]], model: dict[int, int] | None = None
) -> None:
    """Puts (True) and removes (False) of (key, offset), each followed by every key of
    the crowd read back from the table and from a dict that had the same (``model``:
    what the table held before)."""
    model = {} if model is None else model
    before = dict(model)
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
    for held in before:
        assert table.get(held) == model.get(held)


def test_the_id_table_grows_and_keeps_every_entry() -> None:
    table = IdTable(8)
    for key in range(1, 10_001):
        table.put(key * 2_654_435_761, -key)
    assert len(table) == 10_000 and table.capacity == 16_384  # at most two thirds full
    assert all(table.get(k * 2_654_435_761) == -k for k in range(1, 10_001))


def test_a_table_told_the_most_it_holds_grows_to_that_and_no_further() -> None:
    table = IdTable(8, most=10_000)  # two thirds of 15,000 slots, not of 16,384
    for key in range(1, 10_001):
        table.put(key * 2_654_435_761, key)
    assert table.capacity == 15_000
    table.put(0, 0)  # one more than it was told: it doubles from there
    assert table.capacity == 30_000
    assert all(table.get(k * 2_654_435_761) == k for k in range(10_001))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(2**40), 2**40),
    st.lists(
        st.tuples(
            st.booleans(),
            _KEYS,
            st.one_of(st.integers(-(2**17), 2**17), st.integers(-(2**44), 2**44)),
        ),
        max_size=80,
    ),
)
def test_offsets_read_back_whole_however_far_apart(
    start: int, steps: list[tuple[bool, int, int]]
) -> None:
    """An entry keeps an offset's low bits (16 here), read against the highest offset
    put: offsets further apart than that widen the table, and every one comes back."""
    moved = [(put, key, start + step) for put, key, step in steps]
    _holds_what_a_dict_holds(IdTable(16, offset_bits=16), moved)


def test_a_table_widens_only_when_what_it_holds_needs_it() -> None:
    table = IdTable(16, offset_bits=16)
    table.put(1, 0)
    table.remove(1, 0)
    table.put(2, 10)
    table.held_from(10)
    table.put(3, 10 + 65_535)  # 0 was forgotten: the span from 10 is room enough
    assert table.span == 65_535
    table.put(4, 200_000)  # 10 is still held: wider
    assert table.span >= 200_000 - 10
    assert [table.get(k) for k in (1, 2, 3, 4)] == [None, 10, 65_545, 200_000]


def test_a_table_looks_for_its_lowest_offset_before_it_widens() -> None:
    table = IdTable(16, offset_bits=16)
    table.put(1, 0)
    table.put(2, 10)
    table.remove(1, 0)  # nobody said so: the table finds 10 the lowest when it must
    table.put(3, 10 + 65_535)
    assert table.span == 65_535
    assert [table.get(k) for k in (1, 2, 3)] == [None, 10, 65_545]


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


def test_records_of_every_form_are_read_and_forgotten_alike() -> None:
    """Records written before the compact form (``{id: [offset, digest]}``) and before
    compression (``[first offset, [ids], [offset steps], "digests"]`` in plain JSON),
    beside records written now (that list, compressed)."""
    digest = "0123456789abcdef"
    backing: dict[str, Any] = {
        "0|00000000000000000000": orjson.dumps({"old-0": [0, digest], "old-1": [1, digest]}),
        "0|00000000000000000002": [2, ["faust-2", "faust-4"], [0, 2], digest * 2],  # restored
        "0|00000000000000000003": orjson.dumps([3, ["plain-3"], [0], digest]),
    }
    index = SeenIndex(backing, 0, window=10)
    assert [index.get(e) for e in ("old-0", "old-1", "faust-2", "faust-4", "plain-3")] == [
        (0, digest), (1, digest), (2, digest), (4, digest), (3, digest)
    ]  # fmt: skip
    for offset in (5, 6, 9):
        index[f"new-{offset}"] = (offset, f"{offset:016x}")
    index.flush()
    raw = backing["0|00000000000000000005"]
    written = _load(raw)
    assert written == [5, ["new-5", "new-6", "new-9"], [0, 1, 3], "".join(
        f"{o:016x}" for o in (5, 6, 9))]  # fmt: skip
    assert raw[:1] == b"x" and raw != orjson.dumps(written)  # zlib's header, not JSON
    assert set(index) == {
        "old-0", "old-1", "faust-2", "faust-4", "plain-3", "new-5", "new-6", "new-9"
    }  # fmt: skip
    for offset in range(10, 16):
        index[f"new-{offset}"] = (offset, f"{offset:016x}")
    index.flush()  # 15 - 10: the records ending below 5 go
    assert "0|00000000000000000000" not in backing and "0|00000000000000000002" not in backing
    assert "0|00000000000000000003" not in backing
    assert index.get("old-1") is None and index.get("faust-4") is None
    assert index.get("new-5") == (5, f"{5:016x}")
    again = SeenIndex(backing, 0, window=10)
    assert set(again) == {f"new-{o}" for o in (5, 6, 9, *range(10, 16))}


def test_a_batch_set_out_of_offset_order_is_written_in_it() -> None:
    backing: dict[str, Any] = {}
    index = SeenIndex(backing, 0, window=100)
    for offset in (7, 3, 12, 5):
        index[f"e-{offset}"] = (offset, f"{offset:016x}")
    index.flush()
    (record,) = backing.values()
    assert _load(record)[:3] == [3, ["e-3", "e-5", "e-7", "e-12"], [0, 2, 2, 5]]
    again = SeenIndex(backing, 0, window=100)
    assert [again.get(f"e-{o}") for o in (3, 5, 7, 12)] == [(o, f"{o:016x}") for o in (3, 5, 7, 12)]


def test_a_batch_too_large_for_one_message_is_written_as_several_records() -> None:
    """Ids of 64 kanji are 192 bytes each in UTF-8: 5,000 of them in one record would
    be over Kafka's default message size, and the worker could not write its state."""
    backing: dict[str, Any] = {}
    index = SeenIndex(backing, 1, window=20_000)
    name = "識" * 60
    for offset in range(5_000):
        index[f"{name}{offset:04d}"] = (offset, f"{offset:016x}")
    assert index.flush() == 5_000
    assert len(backing) > 1
    assert all(len(record) <= streams.store.RECORD_BYTES for record in backing.values())
    firsts = [_load(backing[key])[0] for key in sorted(backing)]
    assert firsts == sorted(firsts) and firsts[0] == 0
    again = SeenIndex(backing, 1, window=20_000)
    assert [again.get(f"{name}{o:04d}") for o in range(0, 5_000, 7)] == [
        (o, f"{o:016x}") for o in range(0, 5_000, 7)
    ]
    assert len(again) == 5_000
    for offset in range(5_000, 30_000, 1_000):  # the window moves past them all
        again[f"later-{offset}"] = (offset, f"{offset:016x}")
        again.flush()
    assert again.get(f"{name}0000") is None and not any(
        _load(record)[1][0].startswith(name) for record in backing.values()
    )


def test_ids_that_json_escapes_are_split_until_each_record_fits() -> None:
    """Control characters take six bytes each in JSON: more than the guess allows for."""
    backing: dict[str, Any] = {}
    index = SeenIndex(backing, 0)
    for offset in range(2_000):
        index["\x01" * 60 + f"{offset:04d}"] = (offset, f"{offset:016x}")
    index.flush()
    assert all(len(record) <= streams.store.RECORD_BYTES for record in backing.values())
    again = SeenIndex(backing, 0)
    assert len(again) == 2_000 and again.get("\x01" * 60 + "1999") == (1999, f"{1999:016x}")


def test_a_days_ids_take_half_the_bytes_or_less_compressed() -> None:
    # The ids of one batch share most of their characters: what compression wins.
    draw = random.Random(18)
    backing: dict[str, Any] = {}
    index = SeenIndex(backing, 0, window=100_000)
    for offset in range(2_000):
        index[f"e-{offset * 3}"] = (offset, f"{draw.getrandbits(64):016x}")
    index.flush()
    written = sum(len(record) for record in backing.values())
    plain = sum(len(orjson.dumps(_load(record))) for record in backing.values())
    assert written * 2 <= plain, (written, plain)
