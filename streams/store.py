"""Reading and writing the worker's tables, whatever their store.

Every key of a table starts with its partition (``"3|..."``, see
:mod:`streams.tables`). The worker's writes go to a table's store and to its
changelog through a :class:`Writer`; its reads go through :func:`reader` (the memory
store's dict where there is one) and, for what is read one partition whole,
:func:`partition_items`. Tests and benchmarks use plain mappings in their place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, cast

import orjson

__all__ = [
    "MAPPING",
    "RECORD_BYTES",
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


class MappingWriter:
    """Writes a table as the mapping it is."""

    def set(self, table: Any, key: str, value: bytes) -> None:
        table[key] = value

    def delete(self, table: Any, key: str) -> None:
        del table[key]

    def written(self) -> None:
        pass


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
