"""A hash table of 64-bit keys, each with a 64-bit offset, held in two arrays.

The dedup index of a partition holds hundreds of thousands of event ids. As a dict
of str to int, an id costs its string, its int and its slot: about 160 bytes. Here an
entry costs 16 bytes a slot (its key and its offset) in two ``array``\\ s, at a load
of at most two thirds, and no Python object at all.

Open addressing with linear probing. A removal moves the entries after the freed slot
back where their probe would find them (no tombstones), so a table whose entries come
and go never fills up with deleted slots.

The table knows keys, not ids: the caller hashes an id to its key and must tell apart
two ids whose keys are equal (:class:`streams.dedup.SeenIndex` confirms every hit
against the record that holds the id).
"""

from __future__ import annotations

from array import array

__all__ = ["IdTable", "key_of"]


def key_of(event_id: str) -> int:
    """The table key of an id: its hash, which a str keeps once computed (0 marks a
    free slot, so an id hashing to 0 gets 1)."""
    return hash(event_id) or 1


def _zeros(typecode: str, n: int) -> array[int]:
    return array(typecode, bytes(8 * n))


class IdTable:
    """Key -> offset; keys are nonzero signed 64-bit ints, offsets signed 64-bit ints."""

    __slots__ = ("_count", "_keys", "_limit", "_mask", "_offsets")

    def __init__(self, capacity: int = 1024) -> None:
        size = 1 << max(3, (capacity - 1).bit_length())
        self._keys = _zeros("q", size)
        self._offsets = _zeros("q", size)
        self._mask = size - 1
        self._limit = 2 * size // 3  # entries before the table doubles
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def capacity(self) -> int:
        return self._mask + 1

    def slot(self, key: int) -> int:
        """The slot holding ``key``, or ``~free`` (negative) for the free slot where it
        would go."""
        keys = self._keys
        mask = self._mask
        i = key & mask
        held = keys[i]
        while held != key:
            if not held:
                return ~i
            i = (i + 1) & mask
            held = keys[i]
        return i

    def offset(self, slot: int) -> int:
        """The offset in an occupied slot."""
        return self._offsets[slot]

    def get(self, key: int) -> int | None:
        i = self.slot(key)
        return self._offsets[i] if i >= 0 else None

    def put(self, key: int, offset: int, slot: int | None = None) -> None:
        """Hold ``offset`` for ``key``, replacing what it held.

        ``slot``: what :meth:`slot` gave for this key, if nothing was put or removed
        since (saves probing again).
        """
        i = self.slot(key) if slot is None else slot
        if i < 0:
            if self._count >= self._limit:
                self._grow()
                i = self.slot(key)
            i = ~i
            self._keys[i] = key
            self._count += 1
        self._offsets[i] = offset

    def remove(self, key: int, offset: int) -> bool:
        """Remove ``key`` if it holds ``offset`` (an entry put since for the same key
        stays); whether it was removed."""
        keys = self._keys
        i = self.slot(key)
        if i < 0 or self._offsets[i] != offset:
            return False
        offsets = self._offsets
        mask = self._mask
        # Backward shift: every entry after the hole up to the next free slot whose own
        # slot is not between the hole and where it sits moves into the hole.
        j = i
        while True:
            j = (j + 1) & mask
            held = keys[j]
            if not held:
                break
            home = held & mask
            if (i < j and (home <= i or home > j)) or (i > j and j < home <= i):
                keys[i] = held
                offsets[i] = offsets[j]
                i = j
        keys[i] = 0
        self._count -= 1
        return True

    def _grow(self) -> None:
        keys, offsets = self._keys, self._offsets
        size = 2 * (self._mask + 1)
        self._keys = _zeros("q", size)
        self._offsets = _zeros("q", size)
        self._mask = size - 1
        self._limit = 2 * size // 3
        new_keys, new_offsets = self._keys, self._offsets
        mask = self._mask
        for n, key in enumerate(keys):
            if key:
                i = key & mask
                while new_keys[i]:
                    i = (i + 1) & mask
                new_keys[i] = key
                new_offsets[i] = offsets[n]
