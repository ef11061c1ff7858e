"""A hash table of event-id hashes, each with its offset, packed in one array.

The dedup index of a partition holds hundreds of thousands of event ids. As a dict
of str to int, an id costs its string, its int and its slot: about 160 bytes. Here an
entry is one 64-bit word in an ``array`` (the key's low bits and the offset's low
bits), at a load of at most two thirds, and no Python object at all.

The offset is kept modulo ``2 ** offset_bits`` and read back against the highest
offset put, so every offset held must lie within that span below the highest (the
dedup window keeps them so, by forgetting what falls behind it). A put that would
leave one outside widens the table: more offset bits, read back from the entries
while they are still right, and fewer key bits. The key is kept by its low
``62 - offset_bits`` bits, which also choose its slot: two keys equal in those bits
are one key to the table.

Open addressing with linear probing. A removal moves the entries after the freed slot
back where their probe would find them (no tombstones), so a table whose entries come
and go never fills up with deleted slots.

The table doubles when it is two thirds full, except once: told the most entries it
will hold (``most``: the dedup window and some slack), it grows to the size that holds
those at two thirds and no further, where doubling would pass it. A full window of
500,000 ids then takes 843,750 slots (6.4 MiB), not 2 ** 20 (8 MiB). Should it hold
more after all, it doubles from there. Sizes need not be powers of two: a key's slot is
its tag modulo the size.

The table knows keys, not ids: the caller hashes an id to its key and must tell apart
two ids whose keys are equal (:class:`streams.dedup.SeenIndex` confirms every hit
against the record that holds the id).
"""

from __future__ import annotations

from array import array

__all__ = ["IdTable", "key_of", "room_for"]

#: Offset bits an entry keeps unless told otherwise: a span of 16,777,216 offsets.
OFFSET_BITS = 24
#: The most: a span of 70 trillion offsets, and 16 bits of the key.
_MOST_BITS = 46


def key_of(event_id: str) -> int:
    """The table key of an id: its hash, which a str keeps once computed."""
    return hash(event_id)


def room_for(entries: int) -> int:
    """The slots that hold ``entries`` at a load of two thirds."""
    return -(-3 * entries // 2)


class IdTable:
    """Key -> offset, one 64-bit word an entry (module docstring)."""

    __slots__ = (
        "_bits",
        "_bottom",
        "_count",
        "_keep",
        "_limit",
        "_low",
        "_marker",
        "_room",
        "_size",
        "_top",
        "_words",
    )

    def __init__(
        self, capacity: int = 1024, offset_bits: int = OFFSET_BITS, most: int | None = None
    ) -> None:
        if not 16 <= offset_bits <= _MOST_BITS:
            raise ValueError(f"offset_bits must be from 16 to {_MOST_BITS}, not {offset_bits}")
        size = 1 << max(3, (capacity - 1).bit_length())
        self._words = array("q", bytes(8 * size))
        self._size = size
        self._limit = 2 * size // 3  # entries before the table grows
        # The size that holds ``most`` entries, where growth stops doubling (0: never).
        self._room = room_for(most) if most is not None else 0
        self._count = 0
        self._set_bits(offset_bits)
        self._top: int | None = None  # the highest offset put
        self._bottom = 0  # at most the lowest offset held (when the table holds any)

    def _set_bits(self, offset_bits: int) -> None:
        self._bits = offset_bits
        self._low = (1 << offset_bits) - 1
        # A word is (marker | key's kept bits) above the offset's bits: the marker makes
        # every used word nonzero (0 is a free slot).
        self._keep = (1 << (62 - offset_bits)) - 1
        self._marker = self._keep + 1

    def __len__(self) -> int:
        return self._count

    @property
    def capacity(self) -> int:
        return self._size

    @property
    def span(self) -> int:
        """How far below the highest offset put an offset held may lie."""
        return self._low

    def slot(self, key: int) -> int:
        """The slot holding ``key``, or ``~free`` (negative) for the free slot where it
        would go."""
        words = self._words
        size = self._size
        bits = self._bits
        tag = (key & self._keep) | self._marker
        i = tag % size
        held = words[i]
        while held >> bits != tag:
            if not held:
                return ~i
            i += 1
            if i == size:
                i = 0
            held = words[i]
        return i

    def offset(self, slot: int) -> int:
        """The offset in an occupied slot."""
        top = self._top
        assert top is not None, "an occupied slot was put"
        return top - ((top - self._words[slot]) & self._low)

    def get(self, key: int) -> int | None:
        i = self.slot(key)
        return self.offset(i) if i >= 0 else None

    def put(self, key: int, offset: int, slot: int | None = None) -> None:
        """Hold ``offset`` for ``key``, replacing what it held.

        ``slot``: what :meth:`slot` gave for this key, if nothing was put or removed
        since (saves probing again).
        """
        top = self._top
        if top is None or not self._count:
            self._top = self._bottom = offset
        elif offset > top:  # the common case: offsets rise
            if offset - self._bottom > self._low:
                self._widen(offset)
                slot = None  # the entries moved
            self._top = offset
        elif offset < self._bottom:
            if top - offset > self._low:
                self._widen(offset)
                slot = None
            self._bottom = offset
        i = self.slot(key) if slot is None else slot
        if i < 0:
            if self._count >= self._limit:
                self._grow()
                i = self.slot(key)
            i = ~i
            self._count += 1
        self._words[i] = (((key & self._keep) | self._marker) << self._bits) | (offset & self._low)

    def remove(self, key: int, offset: int) -> bool:
        """Remove ``key`` if it holds ``offset`` (an entry put since for the same key
        stays); whether it was removed."""
        words = self._words
        i = self.slot(key)
        if i < 0 or self.offset(i) != offset:
            return False
        size = self._size
        bits = self._bits
        # Backward shift: every entry after the hole up to the next free slot whose own
        # slot is not between the hole and where it sits moves into the hole.
        j = i
        while True:
            j += 1
            if j == size:
                j = 0
            held = words[j]
            if not held:
                break
            home = (held >> bits) % size
            if (i < j and (home <= i or home > j)) or (i > j and j < home <= i):
                words[i] = held
                i = j
        words[i] = 0
        self._count -= 1
        return True

    def held_from(self, offset: int) -> None:
        """The caller holds no offset below ``offset`` any more (it forgot them): a
        later put need not look for lower ones."""
        top = self._top
        if top is not None and self._count and offset > self._bottom:
            self._bottom = min(offset, top)

    def _widen(self, offset: int) -> None:
        """Make room for ``offset`` beside the offsets held: first look for the lowest
        one the table really holds (entries removed since may have raised it), then,
        if the span is still too narrow, give every entry more offset bits (and fewer
        key bits)."""
        held = [(w >> self._bits, self.offset(i)) for i, w in enumerate(self._words) if w]
        assert held and self._top is not None, "a table holding nothing needs no room"
        low = min(offset, min(o for _, o in held))
        high = max(offset, self._top)
        self._top, self._bottom = high, low
        if high - low <= self._low:
            return
        bits = (high - low).bit_length()
        if bits > _MOST_BITS:
            raise ValueError(f"offsets from {low} to {high} span more than 2**{_MOST_BITS}")
        self._set_bits(bits)
        self._words = array("q", bytes(8 * self._size))
        self._count = 0
        for tag, kept in held:
            self.put(tag, kept)  # the key's kept bits: the tag less its marker is enough
        self._top, self._bottom = high, low

    def _grow(self) -> None:
        words = self._words
        size = 2 * self._size
        if self._size + self._size // 4 <= self._room < size:
            size = self._room  # what the most it will hold needs, not twice what it has
        self._words = new = array("q", bytes(8 * size))
        self._size = size
        self._limit = 2 * size // 3
        bits = self._bits
        for held in words:
            if held:
                i = (held >> bits) % size
                while new[i]:
                    i += 1
                    if i == size:
                        i = 0
                new[i] = held
