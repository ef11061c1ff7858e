"""The per-subject view (policy Art. 11; APPI Arts. 33 and 33 (5)), folded from what
judging emits.

Judging keeps only what the rules read (:mod:`lineage.state`). What each recipient
received of a subject's data is a view of it: for every event, the engine emits view
facts (:attr:`lineage.engine.Outcome.view`), an append-only log,

- :class:`Flow`: a transfer of the subject's data to a recipient outside the company
  (who, what, why, on what basis, in what form, when, the rules it broke, its
  provision record);
- :class:`Consent`: a consent decision of the subject;
- :class:`Retracted`: breaches a late consent took back from one recipient;

and a :class:`SubjectView` folds them into a store that answers "everything about
subject X" with an indexed read and purges provision records past retention with a
range delete: per (subject, recipient) one row of :class:`PairFacts`, per consent one
row, per provision record one row, in SQLite. A pair's row carries the offset it
applied up to, so a fact delivered again changes nothing (the exactness of the
judging state, for the view).

Writes are coalesced: a pair changed by many events is written once per
:meth:`SubjectView.flush`, which also returns the rows it changed, for a worker to
keep them in a compacted Kafka topic that another worker rebuilds the view from
(:meth:`SubjectView.load`).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from lineage.errors import RunError

__all__ = [
    "Consent",
    "Flow",
    "Lineage",
    "PairFacts",
    "Retracted",
    "Row",
    "SubjectView",
    "ViewFact",
    "decode_facts",
    "encode_facts",
    "process_name",
]


class Flow(NamedTuple):
    """A transfer of a subject's data to a recipient outside the company, at ``offset``."""

    subject: str
    recipient: str
    name: str  # the recipient's name, kind and country in the policy when the data went
    kind: str
    country: str
    # Tuples as judging makes them, lists as they come off the wire (decode_facts).
    categories: Sequence[str]
    purpose: str
    basis: str  # the legal basis, or "unstated"
    form: str
    at: str  # the event's time, as written
    posix: float
    personal: bool
    rules: Sequence[str]  # the rules the event broke
    record: str | None  # its provision record (APPI Art. 29), if it needs one
    offset: int


class Consent(NamedTuple):
    """A consent decision of a subject, at ``offset``."""

    subject: str
    event_id: str
    recipient: str
    purposes: Sequence[str] | None  # as a flow's categories
    status: str
    at: str
    posix: float
    reference: str | None
    offset: int


class Retracted(NamedTuple):
    """Breaches (rule -> events) a consent at ``offset`` took back from one recipient."""

    subject: str
    recipient: str
    rules: dict[str, int]
    offset: int


ViewFact = Flow | Consent | Retracted

#: A fact's kind by its length on the wire (each is the array of its fields).
_KINDS: dict[int, Any] = {len(Flow._fields): Flow, len(Consent._fields): Consent}
_KINDS[len(Retracted._fields)] = Retracted
assert len(_KINDS) == 3, "view facts must differ in length to be told apart on the wire"


def encode_facts(facts: list[ViewFact]) -> bytes:
    """View facts as they cross a pipe to a view process: a JSON array of their fields'
    arrays (orjson: about a quarter of a microsecond a fact)."""
    # Typed here: a build without orjson installed (mypyc's) sees it as Any.
    data: bytes = orjson.dumps(facts, default=tuple)
    return data


def process_name(where: Path | str) -> str:
    """How errors name the process that keeps the views of file or folder ``where``."""
    return f"the subjects' view process for {where}"


def decode_facts(data: bytes | memoryview) -> list[ViewFact]:
    """What :func:`encode_facts` made of view facts, back."""
    # Made as tuples are: a named tuple's own __new__ is a Python function that takes
    # each field by name (0.15 µs more a fact).
    make = tuple.__new__
    return [make(_KINDS[len(row)], row) for row in orjson.loads(data)]


#: A row of the view as a compacted topic keeps it: (key, value), None for a deletion.
Row = tuple[str, bytes | None]

#: Between the parts of a row's key: its kind, the subject, then the pair's recipient,
#: the consent's event id or the provision record's id (:func:`_row_key`).
_SEP = "\x1f"
#: Pairs asked of SQLite in one query (two variables each).
_KEYS_PER_QUERY = 400
#: The numbers of pairs a query asks for: its keys are padded to the next with NULLs,
#: which match no pair. Python's sqlite3 keeps the last 128 statements of a connection
#: prepared, one for each text; a statement for every number of keys up to 400 came to
#: 11.6 MiB a connection, in each partition's view, and grew as the counts varied.
_QUERY_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, _KEYS_PER_QUERY)
#: The size of a new file's pages, in bytes (:class:`SubjectView`).
_PAGE_SIZE = 16_384
#: A pair's subject, from its key (subject, recipient).
_SUBJECT = operator.itemgetter(0)
#: The key of the row that says the newest event time the view has seen.
_NEWEST = f"m{_SEP}newest{_SEP}"
#: How a pair's row that stands for its facts in pieces starts: ``{"~pieces":
#: [generation, count]}`` (a pair's own facts start ``{"n":``).
_PIECES = b'{"~pieces":'


@dataclass(slots=True)
class PairFacts:
    """What one recipient received of one subject's data, summed over transfers.

    Name, kind and country are the policy's when the data first went, so an answer
    says what was true then. ``applied``: the offset of the last fact folded in.

    A worker's view process holds tens of thousands of these, so they are kept small:
    the categories, purposes, legal bases and forms are sorted tuples (a set of up to
    four strings takes 216 bytes and steps to 728 at the fifth; a tuple takes 8 bytes a
    string), and every string but the times is interned (:func:`sys.intern`), so that
    the pairs share one copy of each name of the policy's or the events' vocabulary.
    """

    name: str
    kind: str
    country: str
    categories: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    bases: tuple[str, ...] = ()
    forms: tuple[str, ...] = ()
    first: float = float("inf")
    first_at: str | None = None
    last: float = float("-inf")
    last_at: str | None = None
    events: int = 0
    personal: int = 0  # of them, transfers of personal data
    breaches: dict[str, int] = field(default_factory=dict)  # rule id -> events
    applied: int = -1

    @classmethod
    def of(cls, name: str, kind: str, country: str) -> PairFacts:
        """A pair nothing was folded into yet."""
        return cls(sys.intern(name), sys.intern(kind), sys.intern(country))

    def add(self, flow: Flow) -> None:
        categories = self.categories
        for category in flow.categories:
            if category not in categories:
                categories = _with(categories, category)
        self.categories = categories
        if flow.purpose not in self.purposes:
            self.purposes = _with(self.purposes, flow.purpose)
        if flow.basis not in self.bases:
            self.bases = _with(self.bases, flow.basis)
        if flow.form not in self.forms:
            self.forms = _with(self.forms, flow.form)
        if flow.posix < self.first:
            self.first, self.first_at = flow.posix, flow.at
        if flow.posix > self.last:
            self.last, self.last_at = flow.posix, flow.at
        self.events += 1
        self.personal += flow.personal
        breaches = self.breaches
        for rule in flow.rules:
            if rule in breaches:
                breaches[rule] += 1
            else:
                breaches[sys.intern(rule)] = 1
        self.applied = flow.offset

    def retract(self, rules: dict[str, int], offset: int) -> None:
        for rule, n in rules.items():
            left = self.breaches.get(rule, 0) - n
            if left > 0:
                self.breaches[rule] = left
            else:
                self.breaches.pop(rule, None)
        self.applied = offset

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.name,
            "k": self.kind,
            "c": self.country,
            "cat": self.categories,
            "pur": self.purposes,
            "bas": self.bases,
            "frm": self.forms,
            "first": [self.first, self.first_at] if self.first_at is not None else None,
            "last": [self.last, self.last_at] if self.last_at is not None else None,
            "ev": self.events,
            "pd": self.personal,
            "br": self.breaches,
            "applied": self.applied,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PairFacts:
        first, last = data["first"], data["last"]
        first_at = first[1] if first else None
        last_at = last[1] if last else None
        if last_at == first_at:  # one transfer, or several at one time: one string
            last_at = first_at
        return cls(
            name=sys.intern(data["n"]),
            kind=sys.intern(data["k"]),
            country=sys.intern(data["c"]),
            categories=_words(data["cat"]),
            purposes=_words(data["pur"]),
            bases=_words(data["bas"]),
            forms=_words(data["frm"]),
            first=first[0] if first else float("inf"),
            first_at=first_at,
            last=last[0] if last else float("-inf"),
            last_at=last_at,
            events=data["ev"],
            personal=data["pd"],
            breaches={sys.intern(rule): n for rule, n in data["br"].items()},
            applied=data["applied"],
        )


def _with(words: tuple[str, ...], word: str) -> tuple[str, ...]:
    """Sorted ``words`` and ``word`` (not among them), interned."""
    if not words:  # a new pair's first
        return (sys.intern(word),)
    return tuple(sorted((*words, sys.intern(word))))


def _words(stored: list[str]) -> tuple[str, ...]:
    """A pair's stored list of names, as a sorted tuple without repeats, interned."""
    return tuple(sorted(set(map(sys.intern, stored))))


@dataclass(slots=True)
class Lineage:
    """Everything the view holds of one subject: each recipient's facts, the consent
    decisions (by time) and the provision records within retention (oldest first)."""

    recipients: dict[str, PairFacts]
    consents: list[dict[str, Any]]
    records: list[str]


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pairs (subject TEXT NOT NULL, recipient TEXT NOT NULL, "
    "facts BLOB NOT NULL, PRIMARY KEY (subject, recipient)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS consents (subject TEXT NOT NULL, event_id TEXT NOT NULL, "
    "posix REAL NOT NULL, offset INTEGER NOT NULL, decision BLOB NOT NULL, "
    "PRIMARY KEY (subject, event_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS records (subject TEXT NOT NULL, record_id TEXT NOT NULL, "
    "provided REAL NOT NULL, recipient TEXT NOT NULL, PRIMARY KEY (subject, record_id)) "
    "WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS records_by_time ON records (provided)",
)


#: A flush's writes not made yet: (the newest event time's text, or None when it did not
#: change; the pairs; the consents; the provision records; whether any pair changed).
_Staged = tuple[
    str | None,
    Iterable[tuple[str, str, bytes]],
    list[tuple[str, str, float, int, bytes]],
    list[tuple[str, str, float, str]],
    bool,
]


class SubjectView:
    """The per-subject view of one partition (or of a whole embedded run), in SQLite.

    ``path`` None keeps it in memory. Folded pairs are held decoded and written at
    :meth:`flush`; with ``max_cached``, a flush then forgets the pairs folded least
    recently (all of them are in SQLite) until at most that many are held: memory
    stays level whatever the number of subjects, and the pairs in use stay decoded.

    A pair's row longer than ``max_row_bytes`` (a recipient that got thousands of
    distinct categories or purposes of one subject) goes to the rows in pieces, so that
    a topic takes it (:meth:`flush`).
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        max_cached: int | None = None,
        max_row_bytes: int | None = None,
    ) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(str(path) if path is not None else ":memory:")
            # The file is derived (from a run's events, or the view's topic, which a
            # worker rebuilds it from): no journal, no waiting for the disk.
            self._db.execute("PRAGMA journal_mode = OFF")
            self._db.execute("PRAGMA synchronous = OFF")
            # A new file's pages (an existing one keeps its own): a pair's row is about
            # 360 bytes, and at SQLite's 4 KiB a page held ten of them. Writing a breach
            # storm's 150,000 pairs as flushes write them took 0.77 s so, 0.55 s at 16 KiB
            # (docs/benchmarks.md).
            self._db.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            for statement in _SCHEMA:
                self._db.execute(statement)
        except sqlite3.Error as exc:
            raise RunError(f"cannot open the subjects' view {path}: {exc}") from exc
        self._max_cached = max_cached
        self._max_row_bytes = max_row_bytes
        #: (generation, count) of the pairs whose rows are in pieces.
        self._in_pieces: dict[tuple[str, str], tuple[int, int]] = {}
        #: Keys of pieces no pair's row names (a crash came before their deletion).
        self._orphans: list[str] = []
        self._pairs: dict[tuple[str, str], PairFacts] = {}
        self._absent: set[tuple[str, str]] = set()
        #: The pairs changed since the last flush, with their text when :meth:`prepare`
        #: made it since their last change.
        self._dirty: dict[tuple[str, str], bytes | None] = {}
        #: The pairs facts touched since the last :meth:`prepare` or flush.
        self._unprepared: set[tuple[str, str]] = set()
        self._facts: list[ViewFact] = []
        self._consents: list[Consent] = []
        self._records: list[tuple[str, str, float, str]] = []
        self._empty = self._db.execute("SELECT 1 FROM pairs LIMIT 1").fetchone() is None
        #: Every pair SQLite has is held decoded: the view began empty, forgets no pair
        #: (no ``max_cached``) and has loaded no rows since. A pair not held is then new,
        #: and folding never asks SQLite for it (an embedded run's view).
        self._holds_all = self._empty and max_cached is None
        self._purged: list[tuple[str, str]] = []
        #: Rows a read's flush made, for the next :meth:`flush` to return first.
        self._unsent: list[Row] = []
        #: What a flush not written yet leaves SQLite to take (:meth:`write_staged`).
        self._staged: _Staged | None = None
        newest = self.meta("newest")
        #: The newest event time judged in what the view folds (POSIX seconds): the time
        #: retention is judged against.
        self.newest = float(newest) if newest is not None else float("-inf")
        self._newest_written = self.newest

    # -- folding -----------------------------------------------------------------------------

    def fold(self, facts: Iterable[ViewFact]) -> None:
        """Take view facts, in the order judging emitted them; they are folded in at the
        next :meth:`flush` (or read), with one query for every pair not held."""
        self._facts.extend(facts)

    def fold_now(self) -> None:
        """Fold the facts taken so far into the pairs held (a flush would; a process that
        only folds does it as facts come, so that it never holds many)."""
        self._apply()

    def _apply(self) -> None:
        self.write_staged()
        facts, self._facts = self._facts, []
        if not facts:
            return
        keys = {(f.subject, f.recipient) for f in facts if type(f) is not Consent}
        self._load_pairs(keys)
        self._unprepared |= keys
        for fact in facts:
            if type(fact) is Flow:
                self._flow(fact)
            elif type(fact) is Consent:
                self._consents.append(fact)
            else:
                assert isinstance(fact, Retracted)
                self._retracted(fact)

    def _load_pairs(self, keys: set[tuple[str, str]]) -> None:
        """Hold the pairs of ``keys`` that SQLite has and are not held yet; with a
        ``max_cached``, the pairs held move to the end of the order :meth:`write_staged`
        forgets them in (the least recently folded first)."""
        held = self._pairs
        if self._max_cached is not None:
            for key in keys:
                pair = held.pop(key, None)
                if pair is not None:
                    held[key] = pair
        if self._holds_all:
            return
        missing = [k for k in keys if k not in held and k not in self._absent]
        if not missing:
            return
        if self._empty:  # nothing written yet: nothing to read
            self._absent.update(missing)
            return
        db = self._db
        for start in range(0, len(missing), _KEYS_PER_QUERY):
            chunk = missing[start : start + _KEYS_PER_QUERY]
            size = _QUERY_SIZES[bisect.bisect_left(_QUERY_SIZES, len(chunk))]
            wanted: list[str | None] = [part for key in chunk for part in key]
            wanted += [None] * (2 * (size - len(chunk)))
            found = db.execute(_pairs_query(size), wanted).fetchall()
            for subject, recipient, facts in found:
                self._pairs[subject, recipient] = PairFacts.from_json(orjson.loads(facts))
            self._absent.update(k for k in chunk if k not in self._pairs)

    def _pair(self, key: tuple[str, str]) -> PairFacts | None:
        return self._pairs.get(key)

    def _flow(self, flow: Flow) -> None:
        key = (flow.subject, flow.recipient)
        pair = self._pair(key)
        if pair is None:
            pair = self._pairs[key] = PairFacts.of(flow.name, flow.kind, flow.country)
            self._absent.discard(key)
        elif pair.applied >= flow.offset:
            return  # delivered again: folded in already
        pair.add(flow)
        self._dirty[key] = None
        if flow.record is not None:
            self._records.append((flow.subject, flow.record, flow.posix, flow.recipient))

    def _retracted(self, retracted: Retracted) -> None:
        key = (retracted.subject, retracted.recipient)
        pair = self._pair(key)
        if pair is None or pair.applied >= retracted.offset:
            return
        pair.retract(retracted.rules, retracted.offset)
        self._dirty[key] = None

    def unwritten(self) -> int:
        """Pairs changed and rows made since the last flush."""
        return len(self._dirty) + len(self._records) + len(self._consents)

    def prepare(self) -> None:
        """Fold the facts taken and make the text of each pair changed since the last
        flush, which writes it unless the pair changes again (a process that only keeps
        the view does this while it waits, so that a flush has less to do)."""
        self._apply()
        held = self._pairs
        dirty = self._dirty
        for key in self._unprepared:
            if key in dirty and dirty[key] is None:
                dirty[key] = orjson.dumps(held[key].to_json())
        self._unprepared.clear()

    def observe(self, newest: float) -> None:
        """Judging has seen an event as new as ``newest`` (POSIX seconds)."""
        if newest > self.newest:
            self.newest = newest

    def retain(self, days: int) -> int:
        """Purge the provision records more than ``days`` before the newest event time
        seen (CONTRACT section 10); return how many."""
        if self.newest == float("-inf"):
            return 0
        return self.purge(self.newest - days * 86_400)

    # -- writing -----------------------------------------------------------------------------

    def flush(self, rows_wanted: bool = True, *, write: bool = True) -> list[Row]:
        """Write what changed since the last flush, each pair once; return the rows
        written (and deleted), as a compacted topic keeps them (none when not
        ``rows_wanted``: a view kept in one file alone).

        Not ``write``: the rows are made and what SQLite is to take is staged, for
        :meth:`write_staged` to write (a process that hands the rows on writes its file
        while they travel); anything else done to the view writes it first.

        The pairs' rows come last: a pair's row says which facts are folded in (a fact
        delivered again is skipped), so what folding them made (provision records) must
        reach the topic before it, where a crash keeps a prefix of the rows. The rows
        of what a read wrote in between come first.
        """
        rows = self._write(rows_wanted)
        if write:
            self.write_staged()
        unsent, self._unsent = self._unsent, []
        return unsent + rows if rows_wanted and unsent else rows

    def _ready(self) -> None:
        """Write what was folded, for a read. The rows that makes are the next
        :meth:`flush`'s: a view's topic must get every one (a consent's and a provision
        record's row are written once)."""
        self._unsent = self.flush()

    def _write(self, rows_wanted: bool) -> list[Row]:
        self._apply()
        rows: list[Row] = []
        held = self._pairs
        dirty, self._dirty = self._dirty, {}
        # By subject: SQLite inserts into its B-tree three times faster in key order, and
        # a subject's pairs, in the order they changed, fall in one page all the same.
        # Sorted by the subject alone, the sort compares strings directly, where keys
        # (tuples) were compared element by element: 3.8 times faster (a breach storm's
        # 155,072 pairs: 134 ms against 504 ms), with the insert as fast.
        order = sorted(dirty, key=_SUBJECT)
        self._unprepared.clear()
        # A view kept in a file alone makes each pair's text as SQLite takes it and frees
        # it: a flush of many pairs then grows no memory, and growing the heap cost
        # five times what making the text did (150,000 pairs: 2.6 s against 0.16 s).
        pairs: Iterable[tuple[str, str, bytes]] = _pair_texts(order, dirty, held)
        if rows_wanted:
            pairs = list(pairs)
        consents = []
        add_row = rows.append if rows_wanted else _ignore
        for c in self._consents:
            decision = orjson.dumps(
                {
                    "recipient": c.recipient,
                    "purposes": sorted(c.purposes) if c.purposes is not None else None,
                    "status": c.status,
                    "occurred_at": c.at,
                    "reference": c.reference,
                }
            )
            consents.append((c.subject, c.event_id, c.posix, c.offset, decision))
            value = orjson.dumps([c.posix, c.offset, orjson.Fragment(decision)])
            add_row((_row_key("c", c.subject, c.event_id), value))
        self._consents = []
        if rows_wanted:
            for subject, record, provided, recipient in self._records:
                rows.append((_row_key("r", subject, record), orjson.dumps([provided, recipient])))
            for subject, record in self._purged:
                rows.append((_row_key("r", subject, record), None))
        self._purged = []
        newest = None
        if self.newest > self._newest_written:
            newest = repr(self.newest)
            add_row((_NEWEST, newest.encode()))
            self._newest_written = self.newest
        if rows_wanted:
            rows.extend((key, None) for key in self._orphans)
            self._orphans = []
            for s, r, facts in pairs:
                self._pair_rows(s, r, facts, rows)
        records, self._records = sorted(self._records, key=_SUBJECT), []
        self._staged = (newest, pairs, consents, records, bool(dirty))
        if not rows_wanted:  # the pairs' text is made as SQLite takes it, from the pairs held
            self.write_staged()
        return rows

    def write_staged(self) -> None:
        """Write to SQLite what the last :meth:`flush` staged, if it is not written yet."""
        staged, self._staged = self._staged, None
        if staged is None:
            return
        newest, pairs, consents, records, any_pairs = staged
        db = self._db
        try:
            with db:
                if newest is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('newest', ?)", (newest,))
                db.executemany("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?)", pairs)
                db.executemany("INSERT OR IGNORE INTO consents VALUES (?, ?, ?, ?, ?)", consents)
                db.executemany("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?)", records)
        except sqlite3.Error as exc:
            raise RunError(f"cannot write the subjects' view {self.path}: {exc}") from exc
        self._empty = self._empty and not any_pairs
        limit = self._max_cached
        if limit is not None:
            held = self._pairs
            if len(held) > limit:  # every pair held is in SQLite now
                for key in list(itertools.islice(held, len(held) - limit)):
                    del held[key]
            if len(self._absent) > limit:
                self._absent.clear()

    def _pair_rows(self, subject: str, recipient: str, facts: bytes, rows: list[Row]) -> None:
        """Append the rows of a pair's ``facts``: one row, or, past ``max_row_bytes``,
        its pieces (keys of their own, of a new generation), then the row that names
        them, then the deletions of the pieces it replaces. A topic partition keeps
        their order, and a crash keeps a prefix of them: the pair as it was, or as it
        is now, whole."""
        key = (subject, recipient)
        old = self._in_pieces.pop(key, None)
        limit = self._max_row_bytes
        if limit is None or len(facts) <= limit:
            rows.append((_row_key("f", subject, recipient), facts))
        else:
            generation = old[0] + 1 if old is not None else 1
            count = -(-len(facts) // limit)
            for n in range(count):
                piece = facts[n * limit : (n + 1) * limit]
                rows.append((_piece_key(subject, recipient, generation, n), piece))
            head = orjson.dumps({"~pieces": [generation, count]})
            rows.append((_row_key("f", subject, recipient), head))
            self._in_pieces[key] = (generation, count)
        if old is not None:
            rows.extend((_piece_key(subject, recipient, old[0], n), None) for n in range(old[1]))

    def load(self, rows: Iterable[Row]) -> int:
        """Take rows as :meth:`flush` returned them (a compacted topic's records, in
        order; a later row of a key replaces an earlier one); return how many."""
        consents, records, deleted = [], [], []
        # A pair's facts, or the (generation, count) of its pieces.
        pairs: dict[tuple[str, str], bytes | tuple[int, int]] = {}
        pieces: dict[str, bytes] = {}
        n = 0
        newest = self.newest
        for key, value in rows:
            n += 1
            if key == _NEWEST:
                if value is not None:
                    newest = max(newest, float(value))
                continue
            kind, subject, rest = _row_parts(key)
            if kind == "r":
                if value is None:
                    deleted.append((subject, rest))
                else:
                    provided, recipient = orjson.loads(value)
                    records.append((subject, rest, provided, recipient))
            elif kind == "p":
                if value is None:
                    pieces.pop(key, None)
                else:
                    pieces[key] = value
            elif value is None:
                continue
            elif kind == "f":
                if value.startswith(_PIECES):
                    generation, count = orjson.loads(value)["~pieces"]
                    pairs[subject, rest] = (generation, count)
                else:
                    pairs[subject, rest] = value
            elif kind == "c":
                posix, offset, decision = orjson.loads(value)
                consents.append((subject, rest, posix, offset, orjson.dumps(decision)))
        whole = [(s, r, self._joined(s, r, facts, pieces)) for (s, r), facts in pairs.items()]
        self._orphans.extend(pieces)
        with self._db as db:
            db.executemany("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?)", whole)
            db.executemany("INSERT OR REPLACE INTO consents VALUES (?, ?, ?, ?, ?)", consents)
            db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", records)
            db.executemany("DELETE FROM records WHERE subject = ? AND record_id = ?", deleted)
            if newest > self.newest:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('newest', ?)", (repr(newest),))
        self.newest = self._newest_written = newest
        self._pairs.clear()
        self._absent.clear()
        self._empty = self._empty and not pairs
        self._holds_all = self._holds_all and self._empty
        return n

    def _joined(
        self,
        subject: str,
        recipient: str,
        facts: bytes | tuple[int, int],
        pieces: dict[str, bytes],
    ) -> bytes:
        """A pair's facts as :meth:`load` read them: joined from its pieces (taken out
        of ``pieces``, which keeps the keys no row names) when in pieces."""
        if isinstance(facts, bytes):
            return facts
        generation, count = facts
        keys = [_piece_key(subject, recipient, generation, n) for n in range(count)]
        missing = sum(key not in pieces for key in keys)
        if missing:
            raise RunError(
                f"the subjects' view: a row of recipient {recipient!r} names {count} pieces "
                f"of generation {generation}, and {missing} of them are not in its rows"
            )
        self._in_pieces[subject, recipient] = (generation, count)
        return b"".join(pieces.pop(key) for key in keys)

    def purge(self, before: float) -> int:
        """Delete the provision records provided before ``before`` (POSIX seconds): past
        retention, they are listed no more; return how many."""
        self._apply()
        unwritten = [r for r in self._records if r[2] >= before]
        n = len(self._records) - len(unwritten)  # never written: nothing to delete
        self._records = unwritten
        gone = self._db.execute(
            "SELECT subject, record_id FROM records WHERE provided < ?", (before,)
        ).fetchall()
        if gone:
            with self._db as db:
                db.execute("DELETE FROM records WHERE provided < ?", (before,))
            self._purged.extend(gone)
        return n + len(gone)

    def set_meta(self, key: str, value: str) -> None:
        with self._db as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def close(self) -> None:
        try:
            self.write_staged()
        finally:
            self._db.close()

    # -- reading -----------------------------------------------------------------------------

    def subjects(self) -> list[str]:
        """Every subject the view holds anything of, sorted."""
        self._ready()
        found = self._db.execute(
            "SELECT subject FROM pairs UNION SELECT subject FROM consents ORDER BY 1"
        )
        return [row[0] for row in found]

    def lineage(self, subject: str) -> Lineage | None:
        """Everything the view holds of ``subject``, or None when it holds nothing."""
        self._ready()
        db = self._db
        recipients = {
            recipient: PairFacts.from_json(orjson.loads(facts))
            for recipient, facts in db.execute(
                "SELECT recipient, facts FROM pairs WHERE subject = ?", (subject,)
            )
        }
        consents = [
            orjson.loads(decision)
            for (decision,) in db.execute(
                "SELECT decision FROM consents WHERE subject = ? ORDER BY posix, offset",
                (subject,),
            )
        ]
        if not recipients and not consents:
            return None
        records = [
            record
            for (record,) in db.execute(
                "SELECT record_id FROM records WHERE subject = ? ORDER BY provided, record_id",
                (subject,),
            )
        ]
        return Lineage(recipients, consents, records)

    def find(self, spellings: Iterable[str]) -> tuple[str, Lineage | None]:
        """(the spelling found, its lineage), trying each spelling in turn (as given,
        then its redaction token); the first spelling and None when none is held."""
        tried = list(spellings)
        for spelling in tried:
            found = self.lineage(spelling)
            if found is not None:
                return spelling, found
        return tried[0], None


def _row_key(kind: str, subject: str, last: str) -> str:
    """The key of a row of ``kind`` (``f`` a pair, ``c`` a consent, ``r`` a provision
    record) of ``subject``, ``last`` its recipient, event id or record id.

    A subject ref and an event id may be any text, the separator too; recipient ids
    and record ids never hold it. So a pair's or a record's key is read from its end,
    and a consent whose subject or event id holds the separator is keyed ``C``, its
    parts escaped (``%`` as ``%25``, the separator as ``%1F``). Every other key is as
    earlier workers wrote it.
    """
    if kind == "c" and (_SEP in subject or _SEP in last):
        return f"C{_SEP}{_escape(subject)}{_SEP}{_escape(last)}"
    return f"{kind}{_SEP}{subject}{_SEP}{last}"


def _piece_key(subject: str, recipient: str, generation: int, n: int) -> str:
    """The key of the ``n``-th piece of a generation of a pair's row (kind ``p``)."""
    return f"p{_SEP}{subject}{_SEP}{recipient}{_SEP}{generation}.{n}"


def _row_parts(key: str) -> tuple[str, str, str]:
    """(kind, subject, last part) of a row's key (:func:`_row_key`)."""
    kind, _, rest = key.partition(_SEP)
    if kind == "C":
        subject, last = rest.split(_SEP)
        return "c", _unescape(subject), _unescape(last)
    if kind == "c":  # an earlier worker's: either part may hold the separator
        subject, _, last = rest.partition(_SEP)
    else:
        subject, _, last = rest.rpartition(_SEP)
    return kind, subject, last


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace(_SEP, "%1F")


def _unescape(text: str) -> str:
    # Every '%' of an escaped text starts '%25' or '%1F': neither hides the other.
    return text.replace("%1F", _SEP).replace("%25", "%")


@functools.cache
def _pairs_query(keys: int) -> str:
    """The query for the pairs of ``keys`` (subject, recipient) parameters.

    A join from the keys, so that SQLite looks each up by the primary key: a row-value
    ``IN (VALUES ...)`` scans the whole table for every query (SQLite 3.40), and the
    cost of folding then grows with everything the view has written.
    """
    values = ",".join("(?,?)" for _ in range(keys))
    return (
        f"SELECT p.subject, p.recipient, p.facts FROM (VALUES {values}) AS k "
        "CROSS JOIN pairs AS p ON p.subject = k.column1 AND p.recipient = k.column2"
    )


def _pair_texts(
    order: list[tuple[str, str]],
    dirty: dict[tuple[str, str], bytes | None],
    held: dict[tuple[str, str], PairFacts],
) -> Iterator[tuple[str, str, bytes]]:
    """Each pair of ``order`` with its text: made by :meth:`SubjectView.prepare` since
    its last change, else now.

    A generator function, not a generator expression: compiled by mypyc, the same
    expression consumed by ``executemany`` grew the process by about 600 MiB over the
    final flush of a breach storm's 152,456 pairs, 4 KiB a pair, the buffer orjson
    (from 3.12) gives each text and does not trim; interpreted, or as this function, it
    grew by nothing."""
    for key in order:
        text = dirty[key]
        yield key[0], key[1], text if text is not None else orjson.dumps(held[key].to_json())


def _ignore(row: Row) -> None:
    pass


def rows_of(records: Iterable[tuple[bytes | None, bytes | None]]) -> Iterator[Row]:
    """Rows from a compacted topic's (key, value) records."""
    for key, value in records:
        if key is not None:
            yield key.decode(), value
