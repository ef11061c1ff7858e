"""Reading and writing the worker's tables, whatever their store.

Every key of a table starts with its partition (``"3|..."``, see
:mod:`streams.tables`). The worker's writes go to a table's store and to its
changelog through a :class:`Writer`; its reads go through :func:`reader` (the memory
store's dict where there is one) and, for what is read one partition whole,
:func:`partition_items`. Tests and benchmarks use plain mappings in their place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, cast

import orjson

__all__ = [
    "MAPPING",
    "RECORD_BYTES",
    "DeferredWriter",
    "Held",
    "MappingWriter",
    "Writer",
    "load_json",
    "partition_items",
    "partition_of",
    "reader",
]


#: The most bytes a table record the worker writes may take: under the least it may
#: be let send (``LINEAGE_MAX_OUTPUT_BYTES`` is at least 64 KiB), so that Kafka takes
#: every record whatever that setting is. What could be longer is split: the dedup
#: ids of a flush into several records (:mod:`streams.dedup`), any other value into
#: pieces (:mod:`streams.tables`), and so is a row of the subject view
#: (:mod:`streams.views`).
RECORD_BYTES = 60_000


class Writer(Protocol):
    """How a table record is written: into the table, and to its changelog.

    The worker's (:class:`streams.faust_internals.ChangelogWriter`) writes the table's
    store and hands the changelog record to the worker's batched sender; plain
    mappings (the tests, the benchmarks) are written as mappings (:class:`MappingWriter`).
    """

    def set(self, table: Any, key: str, value: bytes) -> None: ...

    def delete(self, table: Any, key: str) -> None: ...

    def written(self) -> None:
        """Every changelog record handed over so far was acknowledged by Kafka."""
        ...

    def reader(self, table: Any) -> Callable[[str], Any]:
        """How to read one key of ``table`` as this writer has written it."""
        ...


class MappingWriter:
    """Writes a table as the mapping it is."""

    def set(self, table: Any, key: str, value: bytes) -> None:
        table[key] = value

    def delete(self, table: Any, key: str) -> None:
        del table[key]

    def written(self) -> None:
        pass

    def reader(self, table: Any) -> Callable[[str], Any]:
        return reader(table)


MAPPING = MappingWriter()


def load_json(value: Any) -> Any:
    """A table value as data: our JSON bytes as written, or already decoded by faust.

    Values written in this process are our bytes; values restored from the changelog
    come back through faust's topic codec, which decodes JSON itself.
    """
    if isinstance(value, bytes | bytearray | memoryview | str):
        return orjson.loads(value)
    return value


def partition_of(key: str) -> int:
    """The partition a table key belongs to (its prefix)."""
    return int(key.split("|", 1)[0])


def partition_items(table: Any, partition: int) -> Iterator[tuple[str, Any]]:
    """(key, value) of every key of one partition of a table, in no particular order.

    A RocksDB store reads that partition's database alone; any other table (the memory
    store, a dict in tests) is scanned whole for the partition's prefix.
    """
    read = getattr(table, "partition_items", None)
    found = read(partition) if read is not None else None
    if found is not None:
        yield from found
        return
    prefix = f"{partition}|"
    for key, value in table.items():
        if isinstance(key, str) and key.startswith(prefix):
            yield key, value


def reader(table: Any) -> Callable[[str], Any]:
    """How to read one key of ``table`` (None when it has none) at the least cost.

    A faust table's ``get`` is ``Mapping.get``: the table's ``__getitem__`` (its
    sensors) and then its store's, and an absent key costs a ``KeyError`` raised and
    caught. The memory store keeps a dict, which is read directly, as
    :class:`streams.faust_internals.ChangelogWriter` writes the store directly. The
    store and its dict are made once for the table's life.
    """
    held = getattr(getattr(table, "data", None), "data", None)
    if isinstance(held, dict):
        return held.get
    return cast(Callable[[str], Any], table.get)


#: (table, key, value): one record a :class:`DeferredWriter` holds; ``None`` deletes.
Held = tuple[Any, str, bytes | None]


class DeferredWriter:
    """Holds the table records each flush makes until that flush may write them.

    A worker judges the next events while a flush awaits Kafka
    (:class:`streams.checkpoint.Checkpoint`). The flush's records are made when it
    starts, from the state as judged up to then; they may reach the tables and their
    changelogs only once Kafka has acknowledged the outputs of those events. So they
    are held here: :meth:`cut` closes the records made so far as one flush's, and
    :meth:`write` hands a flush's records, and those of any flush before it, to the
    ``inner`` writer in the order they were made. What is held is read before the
    table (:meth:`reader`): the views over the tables that forget what they hold
    after a flush, and the dedup index that reads its records back, see their own
    writes at once, as they would if the records were written.

    :meth:`forget` drops what is held for revoked partitions, :meth:`discard` all of
    it: what was judged is judged again from the tables as they are.
    """

    def __init__(self, inner: Writer) -> None:
        self.inner = inner
        #: The records held, one list a flush, oldest first; the last is being made.
        self._held: list[list[Held]] = [[]]
        #: By table: the newest value held of each key, and how many records hold it.
        self._newest: dict[int, dict[str, tuple[bytes | None, int]]] = {}

    def set(self, table: Any, key: str, value: bytes) -> None:
        self._hold(table, key, value)

    def delete(self, table: Any, key: str) -> None:
        self._hold(table, key, None)

    def _hold(self, table: Any, key: str, value: bytes | None) -> None:
        self._held[-1].append((table, key, value))
        newest = self._newest_of(table)
        held = newest.get(key)
        newest[key] = (value, 1 if held is None else held[1] + 1)

    def _newest_of(self, table: Any) -> dict[str, tuple[bytes | None, int]]:
        newest = self._newest.get(id(table))
        if newest is None:
            newest = self._newest[id(table)] = {}
        return newest

    def written(self) -> None:
        self.inner.written()

    def reader(self, table: Any) -> Callable[[str], Any]:
        """How to read one key of ``table``: its newest record held, else the table's."""
        read = reader(table)
        newest = self._newest_of(table)  # one dict for the table's life, changed in place

        def read_held(key: str) -> Any:
            held = newest.get(key)
            return read(key) if held is None else held[0]

        return read_held

    @property
    def held(self) -> int:
        """Records held, of every flush."""
        return sum(len(records) for records in self._held)

    def cut(self) -> list[Held]:
        """Close the records made so far as one flush's; what follows is the next's."""
        records = self._held[-1]
        self._held.append([])
        return records

    def write(self, records: list[Held]) -> int:
        """Write ``records`` (a :meth:`cut`), and every flush's held before them, through
        the inner writer, in the order they were made. Returns how many."""
        if not any(held is records for held in self._held[:-1]):
            return 0  # written before, or dropped with everything held
        written = 0
        while self._held[0] is not records:
            written += self._write(self._held.pop(0))
        return written + self._write(self._held.pop(0))

    def _write(self, records: list[Held]) -> int:
        inner = self.inner
        for table, key, value in records:
            if value is None:
                inner.delete(table, key)
            else:
                inner.set(table, key, value)
            self._release(table, key)
        return len(records)

    def _release(self, table: Any, key: str) -> None:
        newest = self._newest[id(table)]
        value, count = newest[key]
        if count > 1:
            newest[key] = (value, count - 1)
        else:
            del newest[key]

    def forget(self, tables: Iterable[Any], partition: int) -> int:
        """Drop what is held of ``partition``'s keys of ``tables`` (revoked). Returns how
        many records."""
        ids = {id(t) for t in tables}
        prefix = f"{partition}|"
        dropped = 0
        for records in self._held:
            kept: list[Held] = []
            for record in records:
                table, key, _ = record
                if id(table) in ids and key.startswith(prefix):
                    self._release(table, key)
                else:
                    kept.append(record)
            dropped += len(records) - len(kept)
            records[:] = kept  # in place: a flush under way holds this list
        return dropped

    def discard(self) -> int:
        """Drop everything held. Returns how many records."""
        dropped = self.held
        for records in self._held:
            records.clear()
        self._held = [[]]
        for newest in self._newest.values():
            newest.clear()  # in place: each reader holds its table's
        return dropped
