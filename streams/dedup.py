"""The dedup window: the event ids applied in one partition, held in little memory.

A producer that sends an event again (a retry, a spooled message resent) must not
have it judged twice, and the same id with other content is a conflicting duplicate
(a dead letter). :class:`SeenIndex` answers both for the ids of a window of recent
offsets, from records kept in the ``seen`` table, with an :class:`IdTable` of their
hashes in memory.
"""

from __future__ import annotations

import bisect
import operator
import zlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, cast

from lineage.jsonbytes import dumps_kept
from streams.idtable import IdTable, key_of
from streams.store import MAPPING, RECORD_BYTES, Writer, load_json, partition_items

__all__ = ["Seen", "SeenIndex"]


Seen = tuple[int, str]  # (offset first applied at, digest of the content)


_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def _seen(value: Any) -> Seen:
    """A stored seen entry: ``[offset, digest]`` (or a bare offset, from before digests)."""
    if isinstance(value, int):
        return value, ""
    return int(value[0]), str(value[1])


#: The digest's length in a record of the compact form (:func:`lineage.scanning.fingerprint`'s hex).
_DIGEST = 16

#: What an id costs in a record beside its own characters (quotes, commas, its step
#: and digest), to guess how many records a batch needs before encoding it.
_PER_ID = 26

#: A record is its JSON compressed with zlib at this level: ids of one batch share
#: most of their characters, and level 1 takes them from 30 bytes an id of the
#: benchmarks' to 13 (UUIDs: 57 to 33) at a quarter of a microsecond an id.
_LEVEL = 1
#: The first byte of a zlib stream; a record of JSON (written before 2026-12-03) starts
#: with ``[`` or ``{``.
_ZLIB = 0x78


def _records(
    pending: Mapping[str, Seen], limit: int = RECORD_BYTES
) -> list[tuple[int, int, bytes]]:
    """A batch's records as (first offset, last offset, record), in offset order: as
    few as keep each within ``limit`` bytes (in one record, a flush of 5,000 ids of 64
    kanji, 3 bytes each in UTF-8, would pass Kafka's default 1,000,000)."""
    items = list(pending.items())
    offsets = list(map(_first, pending.values()))
    if any(map(operator.gt, offsets, offsets[1:])):  # a batch is judged in offset order
        items.sort(key=_offset_of)
    guess = sum(map(len, pending)) + _PER_ID * len(items)
    parts = -(-guess // limit)
    size = -(-len(items) // parts)
    out: list[tuple[int, int, bytes]] = []
    for start in range(0, len(items), size):
        _encode_within(items[start : start + size], limit, out)
    return out


def _encode_within(
    items: list[tuple[str, Seen]], limit: int, out: list[tuple[int, int, bytes]]
) -> None:
    """Append the records of ``items`` (in offset order) to ``out``, halving them
    until each fits (ids that JSON escapes are longer than guessed)."""
    record = _encode(items)
    if len(record) > limit and len(items) > 1:
        half = len(items) // 2
        _encode_within(items[:half], limit, out)
        _encode_within(items[half:], limit, out)
        return
    out.append((items[0][1][0], items[-1][1][0], record))


def _offset_of(item: tuple[str, Seen]) -> int:
    return item[1][0]


def _encode(items: list[tuple[str, Seen]]) -> bytes:
    """The record of ``items`` (in offset order): ``[first offset, [ids], [offset
    steps], "digests"]`` (about 30 bytes an id of the benchmarks' against 43 as ``{id:
    [offset, digest]}``, and after a restore a list of strings instead of a dict of
    lists), or that object when a digest is not :data:`_DIGEST` characters long; in
    JSON, compressed (:data:`_LEVEL`)."""
    names = list(map(_first, items))
    seen = list(map(_second, items))
    offsets = list(map(_first, seen))
    digests = list(map(_second, seen))
    if set(map(len, digests)) != {_DIGEST}:
        text = dumps_kept({eid: [offset, digest] for eid, (offset, digest) in items})
    else:
        steps = [0, *map(operator.sub, offsets[1:], offsets)]
        text = dumps_kept([offsets[0], names, steps, "".join(digests)])
    return zlib.compress(text, _LEVEL)


def _load(raw: Any) -> Any:
    """A stored record, decoded: compressed (:func:`_encode`) or plain JSON."""
    if isinstance(raw, bytes | bytearray | memoryview) and raw[0] == _ZLIB:
        raw = zlib.decompress(raw)
    return load_json(raw)


def _entries(record: Any) -> Iterator[tuple[str, int, str]]:
    """(id, offset, digest) of a decoded record, of either form."""
    if isinstance(record, dict):
        for eid, value in record.items():
            offset, digest = _seen(value)
            yield eid, offset, digest
        return
    offset, ids, steps, digests = record
    for n, (eid, step) in enumerate(zip(ids, steps, strict=True)):
        offset += step
        yield eid, offset, digests[n * _DIGEST : (n + 1) * _DIGEST]


class SeenIndex(MutableMapping[str, Seen]):
    """Event ids applied in one partition (dedup), within a window of recent offsets.

    Each id maps to the offset it was first applied at and a digest of its content,
    so that the same id with other content is told apart (a conflicting duplicate).
    One changelog record per event would cost more than judging it; so the ids a
    batch adds go into one record keyed by the batch's first offset, and the index
    is rebuilt from those records when the partition is (re)assigned.

    In memory an id is its hash and offset in an :class:`IdTable` (8 bytes a slot),
    not a string. A hash found there is an answer only once the id is found where its
    offset says: in the batch not yet written, or in the record that holds that
    offset (one offset, one message, one id), which also gives the digest. An id whose
    hash another id holds already is kept by id in a dict beside the table.

    The index forgets ids more than ``window`` offsets behind the newest one it
    holds: their records are deleted (the changelog compacts them away), so memory
    and changelog stay bounded. A producer's duplicate that arrives further apart
    than that is counted again. Redelivery by Kafka does not depend on this index:
    every state record carries the offset it applied up to.
    """

    def __init__(
        self, table: Any, partition: int, window: int | None = None, writer: Writer = MAPPING
    ) -> None:
        self._table = table
        self._read = writer.reader(table)
        self._writer = writer
        self._partition = partition
        self._window = window
        # Beyond the window the table holds the ids of the record that straddles its
        # edge and of the batch not yet written: a flush's worth each, far below an
        # eighth of the window at the default settings.
        self._ids = IdTable(most=window + window // 8 if window is not None else None)
        self._odd: dict[str, Seen] = {}  # ids whose hash another id holds in the table
        self._pending: dict[str, Seen] = {}  # set since the last flush
        # (first offset, last offset, table key) of each record, oldest first.
        self._records: list[tuple[int, int, str]] = []
        # The ids of the record a hit was last found in (redelivered events come in
        # offset order, so they are found in the same record in turn).
        self._found: tuple[str, dict[str, Seen]] | None = None
        # (id, its key, its free slot) of the last get that found an id absent, which
        # the set that follows it reuses while nothing else changed the table.
        self._missed: tuple[str, int, int] | None = None
        for key, raw in sorted(partition_items(table, partition), key=_first):
            if raw:
                ids = {eid: (offset, digest) for eid, offset, digest in _entries(_load(raw))}
                if ids:
                    offsets = [offset for offset, _ in ids.values()]
                    self._records.append((min(offsets), max(offsets), key))
                    for eid, seen in ids.items():
                        self._hold(eid, seen)
        self._found = None
        self._forget()

    def __getitem__(self, key: str) -> Seen:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return cast(Seen, found)

    def get(self, key: str, default: Any = None) -> Any:
        if self._odd:
            found = self._odd.get(key)
            if found is not None:
                return found
        ids = self._ids
        hashed = key_of(key)
        slot = ids.slot(hashed)
        if slot < 0:
            self._missed = (key, hashed, slot)
            return default
        found = self._lookup(key, ids.offset(slot))
        return default if found is None else found

    def __setitem__(self, key: str, value: Seen) -> None:
        missed = self._missed
        if missed is not None and missed[0] is key:
            # The id the last get found absent (the engine's every new event): its
            # free slot is known.
            self._missed = None
            self._ids.put(missed[1], value[0], missed[2])
        else:
            self._hold(key, value)
        self._pending[key] = value

    def _hold(self, key: str, seen: Seen) -> None:
        if self._odd and key in self._odd:
            del self._odd[key]  # held again, in the table if its slot is free
        ids = self._ids
        hashed = key_of(key)
        slot = ids.slot(hashed)
        self._missed = None
        if slot >= 0 and self._lookup(key, ids.offset(slot)) is None:
            self._odd[key] = seen  # another id of the same hash holds the slot
            return
        ids.put(hashed, seen[0], slot)

    def _lookup(self, key: str, offset: int) -> Seen | None:
        """The entry of ``key`` if it was applied at ``offset`` (where its hash is held)."""
        pending = self._pending.get(key)
        if pending is not None:
            return pending if pending[0] == offset else None
        records = self._records
        n = bisect.bisect_right(records, offset, key=_first_offset)
        while n:
            n -= 1
            _, last, record_key = records[n]
            if last < offset:
                continue
            found = self._found
            if found is None or found[0] != record_key:
                raw = self._read(record_key)
                held = {eid: (o, d) for eid, o, d in _entries(_load(raw))} if raw else {}
                found = self._found = (record_key, held)
            seen = found[1].get(key)
            if seen is not None:
                return seen if seen[0] == offset else None
        return None

    def __delitem__(self, key: str) -> None:
        raise NotImplementedError("event ids are never forgotten one by one")

    def __iter__(self) -> Iterator[str]:
        """Every id held (read back from the records: slow, for tests and tools)."""
        candidates: dict[str, None] = dict.fromkeys(self._odd)
        for _, _, key in self._records:
            raw = self._read(key)
            if raw:
                candidates.update(dict.fromkeys(eid for eid, _, _ in _entries(_load(raw))))
        candidates.update(dict.fromkeys(self._pending))
        return iter([eid for eid in candidates if self.get(eid) is not None])

    def __len__(self) -> int:
        return len(self._ids) + len(self._odd)

    def flush(self) -> int:
        if not self._pending:
            return 0
        for first, last, record in _records(self._pending):
            key = f"{self._partition}|{first:020d}"
            self._writer.set(self._table, key, record)
            self._records.append((first, last, key))
        written = len(self._pending)
        self._pending = {}
        self._found = None
        self._forget()
        return written

    def _forget(self) -> None:
        """Drop the records wholly older than the window."""
        if self._window is None or not self._records:
            return
        horizon = self._records[-1][1] - self._window  # records are in offset order
        keep = 0
        ids = self._ids
        odd = self._odd
        self._missed = None  # removals move entries
        while keep < len(self._records) and self._records[keep][1] < horizon:
            key = self._records[keep][2]
            raw = self._read(key)
            if raw:
                for event_id, offset, _ in _entries(_load(raw)):
                    # An entry that holds this record's offset was made by this record's
                    # event (one offset, one message): it goes, a newer entry stays.
                    if odd:
                        held = odd.get(event_id)
                        if held is not None and held[0] == offset:
                            del odd[event_id]
                            continue
                    ids.remove(key_of(event_id), offset)
            self._writer.delete(self._table, key)
            keep += 1
        if keep:
            del self._records[:keep]
            self._found = None
            if self._records:
                self._ids.held_from(self._records[0][0])


def _first_offset(record: tuple[int, int, str]) -> int:
    return record[0]
