"""faust tables whose keys carry their partition, and the engine's state kept in them.

faust writes a table's changelog record to the partition of the event being
processed. The evaluate agent judges events of several partitions in one batch
and writes its state once per batch, so "the current event" says nothing about
where a key belongs: every key here starts with its partition (``"3|..."``) and
:class:`PartitionedTable` sends each record to that partition. On recovery,
partition 3's changelog then rebuilds exactly partition 3's state, on whichever
worker owns it.

Values are our own JSON bytes (orjson), stored raw: faust never pickles or guesses.
A value longer than :data:`RECORD_BYTES` (a subject with thousands of alerts that a
late consent may still retract, an edge met in thousands of shapes) is written in
pieces, each a record of its own, so that Kafka takes it whatever
``LINEAGE_MAX_OUTPUT_BYTES`` is (:meth:`CachedView._put`).

With the ``rocksdb://`` store each partition of a table is a database of its own, and
what reads one partition whole (:class:`streams.dedup.SeenIndex`, :class:`BoardView`) reads that one
alone (:func:`partition_items`). The ``memory://`` store keeps every partition in one
dict, which is then scanned for the partition's prefix; both tables read so are small
(dedup records of a window, incident board entries), and each is read once per
assignment of its partition.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

import orjson

from lineage.incidents import BoardEntry
from lineage.jsonbytes import dumps_kept
from lineage.state import (
    EdgeAggregate,
    EdgeKey,
    IncidentPartial,
    State,
    SubjectState,
    edge_key_from_str,
    edge_key_to_str,
)
from streams.dedup import SeenIndex
from streams.faust_internals import LineageTable
from streams.store import (
    MAPPING,
    RECORD_BYTES,
    Writer,
    load_json,
    partition_items,
    partition_of,
)

__all__ = [
    "BoardView",
    "CachedView",
    "PartitionState",
    "PartitionedTable",
    "edge_records",
    "subject_key",
]

K = TypeVar("K")
V = TypeVar("V")


#: A piece's key is its value's key, this character, then ``<generation>.<n>``.
_PIECE = "\x00"

#: The key of the record that stands for a value in pieces: ``{"~pieces": [generation,
#: count]}``.
_PIECES = "~pieces"


def _piece_key(key: str, generation: int, n: int) -> str:
    return f"{key}{_PIECE}{generation}.{n}"


def _is_piece(key: str) -> bool:
    return _PIECE in key


def _split(value: bytes) -> list[bytes]:
    """``value`` (JSON text) in pieces of at most :data:`RECORD_BYTES` bytes, each a
    JSON string (faust decodes the JSON of what it restores): a quarter of that in
    characters, as a character takes at most four bytes so."""
    text = value.decode()
    step = RECORD_BYTES // 4
    return [dumps_kept(text[n : n + step]) for n in range(0, len(text), step)]


def _pieces_of(data: Any) -> tuple[int, int] | None:
    """(generation, count) when ``data`` is a record standing for a value in pieces."""
    if type(data) is dict and len(data) == 1 and _PIECES in data:
        generation, count = data[_PIECES]
        return int(generation), int(count)
    return None


def _joined(read: Callable[[str], Any], key: str, generation: int, count: int) -> Any:
    """The data of a value in pieces, read with ``read``."""
    parts: list[str] = []
    for n in range(count):
        raw = read(_piece_key(key, generation, n))
        if raw is None:  # a piece goes before its record in the same partition
            raise LookupError(f"table record {key!r} names a piece {generation}.{n} it lacks")
        parts.append(raw if isinstance(raw, str) else orjson.loads(raw))
    return orjson.loads("".join(parts))


class PartitionedTable(LineageTable):
    """A table whose changelog partition (and RocksDB database) is read from the key, not
    from the current event."""

    def partition_for_key(self, key: Any) -> int | None:
        return partition_of(key)


class CachedView(MutableMapping[K, V], Generic[K, V]):
    """A mapping over one partition's keys of a table, holding decoded objects.

    Reads decode once (``decode`` gets the value's JSON data) and keep the object (or
    remember that the key is absent); writes mark the key dirty, and :meth:`flush`
    writes each dirty key to the table once. Valid while this worker owns the
    partition (only it writes these keys); dropped on revocation.
    """

    def __init__(
        self,
        table: Any,
        partition: int,
        encode_key: Callable[[K], str],
        decode: Callable[[Any], V],
        encode: Callable[[V], bytes],
        max_cached: int | None = None,
        writer: Writer = MAPPING,
    ) -> None:
        self._table = table
        self._read = writer.reader(table)
        self._writer = writer
        self._max_cached = max_cached
        self._prefix = f"{partition}|"
        self._encode_key = encode_key
        self._decode = decode
        self._encode = encode
        self._objects: dict[K, V] = {}
        self._absent: set[K] = set()
        self._dirty: set[K] = set()
        # (generation, count) of the values held in pieces, by table key.
        self._in_pieces: dict[str, tuple[int, int]] = {}

    def _key(self, key: K) -> str:
        return self._prefix + self._encode_key(key)

    def _lookup(self, key: K) -> V | None:
        """The object of ``key``, or None when the table has none."""
        found = self._objects.get(key)
        if found is not None or key in self._absent:
            return found
        return self._fetch(key)

    def _fetch(self, key: K) -> V | None:
        """:meth:`_lookup` of a key neither held nor known absent: read from the table."""
        # Most subjects have no consent record: remember the misses too, since a miss in
        # a faust table costs as much as judging a rule.
        table_key = self._key(key)
        raw = self._read(table_key)
        if raw is None:
            earlier = self._earlier(key)
            if earlier is None:
                self._absent.add(key)
                return None
            self._objects[key] = earlier
            return earlier
        value = self._objects[key] = self._load(key, self._data(table_key, raw))
        return value

    def _earlier(self, key: K) -> V | None:
        """The object of ``key`` kept under the key an earlier worker gave it, if any (a
        subclass whose keys changed reads it)."""
        return None

    def _data(self, table_key: str, raw: Any) -> Any:
        """The JSON data of a record, its pieces joined when it is in pieces."""
        data = load_json(raw)
        pieces = _pieces_of(data)
        if pieces is None:
            return data
        self._in_pieces[table_key] = pieces
        return _joined(self._read, table_key, *pieces)

    def _put(self, table_key: str, value: bytes) -> None:
        """Write one record; one longer than :data:`RECORD_BYTES` goes in pieces.

        The pieces (each a key of their own, of a new generation) are written first,
        then the record that names them, then the pieces of the value it replaces are
        deleted: in one changelog partition, where Kafka keeps their order, a crash
        leaves the record as it was, or as it is now, whole.
        """
        if len(value) <= RECORD_BYTES:
            self._writer.set(self._table, table_key, value)
            self._drop_pieces(table_key)
            return
        old = self._in_pieces.get(table_key)
        generation = old[0] + 1 if old is not None else 1
        pieces = _split(value)
        for n, piece in enumerate(pieces):
            self._writer.set(self._table, _piece_key(table_key, generation, n), piece)
        self._writer.set(self._table, table_key, dumps_kept({_PIECES: [generation, len(pieces)]}))
        self._drop_pieces(table_key)
        self._in_pieces[table_key] = (generation, len(pieces))

    def _drop_pieces(self, table_key: str) -> None:
        """Delete the pieces the value of ``table_key`` was in, if it was."""
        old = self._in_pieces.pop(table_key, None)
        if old is None:
            return
        generation, count = old
        for n in range(count):
            self._writer.delete(self._table, _piece_key(table_key, generation, n))
        # The generation before, left behind when a crash came between a record and
        # these deletes.
        n = 0
        while self._read(_piece_key(table_key, generation - 1, n)) is not None:
            self._writer.delete(self._table, _piece_key(table_key, generation - 1, n))
            n += 1

    def _load(self, key: K, data: Any) -> V:
        """The object of ``key`` from its record's JSON (a subclass reads what the
        record keeps apart)."""
        return self._decode(data)

    def __getitem__(self, key: K) -> V:
        found = self._lookup(key)
        if found is None:
            raise KeyError(key)
        return found

    def get(self, key: K, default: Any = None) -> Any:
        # The engine's lookups go through here: no exception for the common miss, and a
        # key held costs one dict lookup.
        found = self._objects.get(key)
        if found is None and key not in self._absent:
            found = self._fetch(key)
        return default if found is None else found

    def __setitem__(self, key: K, value: V) -> None:
        self._objects[key] = value
        self._absent.discard(key)
        self._dirty.add(key)

    def __delitem__(self, key: K) -> None:
        self._objects.pop(key, None)
        self._dirty.discard(key)
        self._absent.add(key)
        table_key = self._key(key)
        self._writer.delete(self._table, table_key)
        self._drop_pieces(table_key)

    def __iter__(self) -> Iterator[K]:
        return iter(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def dirty(self) -> set[K]:
        return set(self._dirty)

    def flush(self) -> int:
        """Write every changed key once; returns how many.

        Past ``max_cached`` keys, the view then forgets what it holds (all of it is in
        the table now) rather than grow with every subject it has seen.
        """
        for key in self._dirty:
            self._put(self._key(key), self._encode(self._objects[key]))
        written = len(self._dirty)
        self._dirty.clear()
        limit = self._max_cached
        if limit is not None and len(self._objects) + len(self._absent) > limit:
            self._objects.clear()
            self._absent.clear()
        return written


def _json(obj: Any) -> bytes:
    return dumps_kept(obj.to_json())


def _chunk_key(table_key: str, chunk: int) -> str:
    """The key of a subject's ``chunk``-th record of decisions."""
    return f"{table_key}#{chunk}"


#: A subject ref that is :func:`subject_key` of another subject: a '%' in it, and each
#: '%' an escape that function writes.
_KEY_OF_ANOTHER = re.compile(r"[^%#\x00]*%(?:25|23|00)(?:[^%#\x00]|%(?:25|23|00))*")


def subject_key(subject: str) -> str:
    """A subject's key in its table: the subject, with ``%``, ``#`` and NUL written
    ``%25``, ``%23`` and ``%00``. A subject ref may be any text: written as it is, the
    record of subject ``a#0`` would be subject ``a``'s first record of decisions."""
    if "%" in subject or "#" in subject or _PIECE in subject:
        return subject.replace("%", "%25").replace("#", "%23").replace(_PIECE, "%00")
    return subject


class SubjectTable(CachedView[str, SubjectState]):
    """The subjects' judging records of one partition: each subject's consent decisions
    in records of :data:`DECISIONS_PER_RECORD` (``<subject>#<n>``), of which only the
    last one changes when a decision is added, and the rest (pending alerts,
    retractions, its newest event time, how many decisions it has) in the subject's
    own record, written when it changed. So no record written per event grows with a
    subject's history.

    A flush writes a subject's decision records before its own record, in the same
    changelog partition, where Kafka keeps their order: a crash between them leaves
    decisions the subject's record does not count yet, which a load leaves out (the
    events that made them are judged again), never a count without its decisions.
    """

    def __init__(
        self, table: Any, partition: int, max_cached: int | None = None, writer: Writer = MAPPING
    ) -> None:
        super().__init__(
            table,
            partition,
            subject_key,
            SubjectState.from_json,
            _subject_json,
            max_cached,
            writer,
        )

    def _chunk_key(self, key: str, chunk: int) -> str:
        return _chunk_key(self._key(key), chunk)

    def _load(self, key: str, data: Any) -> SubjectState:
        return SubjectState.from_json(data, self._decisions(self._key(key), data))

    def _decisions(self, table_key: str, data: Any) -> list[Any] | None:
        """The decisions of the subject whose record (``data``) is under ``table_key``,
        from their own records; None when the record holds them (an earlier worker's)."""
        if "d" in data:
            return None
        n = data.get("dn", 0)
        decisions: list[Any] = []
        for chunk in range(-(-n // DECISIONS_PER_RECORD)):
            decisions.extend(load_json(self._table[_chunk_key(table_key, chunk)]))
        del decisions[n:]
        return decisions

    def _earlier(self, key: str) -> SubjectState | None:
        """A subject whose key :func:`subject_key` escapes, as an earlier worker kept it
        (under the subject as given): read, and written anew under its own key at the
        next flush, decisions and all. Its old records stay where they are.

        Not when the subject as given is the key of another subject (``a%23b`` is
        subject ``a#b``'s): what is kept there may be that subject's."""
        old = self._prefix + key
        if old == self._key(key) or _KEY_OF_ANOTHER.fullmatch(key):
            return None
        raw = self._read(old)
        data = self._data(old, raw) if raw is not None else None
        if not isinstance(data, dict):  # nothing, or the decisions of another subject
            return None
        subject = SubjectState.from_json(data, self._decisions(old, data))
        subject.stored_decisions = 0
        self._dirty.add(key)
        return subject

    def flush(self) -> int:
        per = DECISIONS_PER_RECORD
        for key in self._dirty:
            subject = self._objects[key]
            n = len(subject.decisions)
            if subject.stored_decisions == n:
                continue
            for chunk in range(subject.stored_decisions // per, -(-n // per)):
                self._writer.set(
                    self._table,
                    self._chunk_key(key, chunk),
                    dumps_kept(subject.decisions_json(chunk * per, (chunk + 1) * per)),
                )
            subject.stored_decisions = n
        return super().flush()


#: Consent decisions in one record of the ``subjects`` table.
DECISIONS_PER_RECORD = 16


def _month_key(key: str, month: str) -> str:
    return f"{key}#{month}"


@functools.lru_cache(maxsize=64)
def _month_days(month: str) -> tuple[str, ...]:
    """Every day a month (YYYY-MM) may have, as the policy's calendar writes days."""
    return tuple(f"{month}-{d:02d}" for d in range(1, 32))


def _days_json(edge: EdgeAggregate, days: Iterable[str]) -> dict[str, dict[str, int]]:
    """The counts of ``days``, zeros included (a zero takes a count back)."""
    return {
        "days": {d: edge.days.get(d, 0) for d in days},
        "breach_days": {d: edge.breach_days.get(d, 0) for d in days},
    }


def _put_days(edge: EdgeAggregate, data: Mapping[str, Mapping[str, int]]) -> None:
    for name, counts in (("days", edge.days), ("breach_days", edge.breach_days)):
        for day, n in data[name].items():
            if n:
                counts[day] = n
            else:
                counts.pop(day, None)


class EdgeTable(CachedView[EdgeKey, EdgeAggregate]):
    """The edges of one partition: each edge's totals in one record, and its counts by
    day in a record per month (``<edge>#YYYY-MM``) that a flush rewrites only when a
    day of it changed. So what is written per event does not grow with an edge's age
    (an edge met every day for the three years records are kept has over a thousand
    days).

    The edge's record also carries the counts of the days the flush changed, and is
    written before the months' records, in the same changelog partition, where Kafka
    keeps their order: a crash between them leaves months a flush behind, and a load
    puts those days back from the edge's record, which is as new as its ``applied``.
    """

    def __init__(self, table: Any, partition: int, writer: Writer = MAPPING) -> None:
        super().__init__(
            table, partition, edge_key_to_str, EdgeAggregate.from_json, _json, writer=writer
        )
        self._months: dict[EdgeKey, set[str]] = {}  # months written, by edge

    def _load(self, key: EdgeKey, data: Any) -> EdgeAggregate:
        edge = EdgeAggregate.from_json(data)
        if "months" in data:
            for month in data["months"]:
                chunk = self._read(_month_key(self._key(key), month))
                if chunk is not None:
                    _put_days(edge, load_json(chunk))
            _put_days(edge, data["recent"])
            # Their months may be the ones a crash kept from Kafka: written again.
            edge.touched.update(data["recent"]["days"])
            self._months[key] = set(data["months"])
        else:  # a record of an earlier worker, its days inside: each month written anew
            edge.touched.update(edge.days)
            self._months[key] = set()
        return edge

    def flush(self) -> int:
        changed: list[tuple[str, EdgeAggregate, set[str]]] = []
        for key in self._dirty:
            edge = self._objects[key]
            months = self._months.setdefault(key, set())
            touched = sorted(edge.touched)
            edge.touched.clear()
            new = {day[:7] for day in touched}
            months |= new
            data = edge.to_json()
            del data["days"], data["breach_days"]
            data["months"] = sorted(months)
            data["recent"] = _days_json(edge, touched)
            self._put(self._key(key), dumps_kept(data))
            changed.append((self._key(key), edge, new))
        # The months after every edge's own record (the class docstring says why).
        for table_key, edge, new in changed:
            for month in sorted(new):
                held = [d for d in _month_days(month) if d in edge.days or d in edge.breach_days]
                self._writer.set(
                    self._table, _month_key(table_key, month), dumps_kept(_days_json(edge, held))
                )
        written = len(self._dirty)
        self._dirty.clear()
        return written


def _subject_json(subject: SubjectState) -> bytes:
    return dumps_kept(subject.to_json(decisions=False))


class PartitionState:
    """The engine state of one partition, backed by the worker's tables."""

    #: The tables it reads and writes, keyed by this partition of the events topic.
    TABLES = ("seen", "subjects", "edges", "incidents")

    def __init__(
        self,
        tables: Mapping[str, Any],
        partition: int,
        *,
        dedup_window: int | None = None,
        cached_subjects: int | None = None,
        writer: Writer = MAPPING,
    ) -> None:
        self.partition = partition
        self.seen = SeenIndex(tables["seen"], partition, dedup_window, writer)
        self.subjects: CachedView[str, SubjectState] = SubjectTable(
            tables["subjects"], partition, cached_subjects, writer
        )
        self.edges: CachedView[EdgeKey, EdgeAggregate] = EdgeTable(
            tables["edges"], partition, writer
        )
        self.incidents: CachedView[str, IncidentPartial] = CachedView(
            tables["incidents"], partition, str, IncidentPartial.from_json, _json, writer=writer
        )

    def as_state(self) -> State:
        return State(
            seen=self.seen, subjects=self.subjects, edges=self.edges, incidents=self.incidents
        )

    def flush(self) -> int:
        return (
            self.seen.flush() + self.subjects.flush() + self.edges.flush() + self.incidents.flush()
        )


class BoardView(CachedView[str, BoardEntry]):
    """The incident board's entries of one partition of the incident-partials topic."""

    def __init__(self, table: Any, partition: int, writer: Writer = MAPPING) -> None:
        super().__init__(table, partition, str, BoardEntry.from_json, _json, writer=writer)
        # Load every entry now: the periodic flush walks them all.
        prefix = f"{partition}|"
        for key, raw in partition_items(table, partition):
            if raw and not _is_piece(key):
                data = self._data(key, raw)
                self._objects[key[len(prefix) :]] = BoardEntry.from_json(data)


def edge_records(items: Any) -> Iterator[tuple[EdgeKey, EdgeAggregate]]:
    """(edge key, aggregate) of changelog items ``(table key, raw value)``: each edge's
    record with its days put back from the records of its months, then from its own
    (:class:`EdgeTable`)."""
    edges: dict[str, tuple[EdgeAggregate, Any]] = {}
    months: dict[str, list[Any]] = {}
    held = dict(items)
    for key, raw in held.items():
        if not raw or _is_piece(key):
            continue
        base, sep, _ = key.partition("#")
        if sep:
            months.setdefault(base, []).append(load_json(raw))
        else:
            data = load_json(raw)
            pieces = _pieces_of(data)
            if pieces is not None:
                data = _joined(held.get, key, *pieces)
            edges[key] = (EdgeAggregate.from_json(data), data)
    for key, (edge, data) in edges.items():
        if "months" in data:
            for days in months.get(key, ()):
                _put_days(edge, days)
            _put_days(edge, data["recent"])
        _, _, name = key.partition("|")
        yield edge_key_from_str(name), edge
