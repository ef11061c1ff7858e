"""The per-subject view: folded from the facts judging emits, exact under redelivery,
rebuilt from its rows, purged past retention."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from lineage.errors import RunError
from lineage.view import Consent, Flow, Retracted, SubjectView, _pairs_query

ROOT = Path(__file__).resolve().parent.parent


def flow(
    offset: int, recipient: str = "researchers", rules: tuple[str, ...] = (), **kw: object
) -> Flow:
    base = dict(
        subject="u-1", recipient=recipient, name="Research Inc.", kind="third_party",
        country="JP", categories=("identity.name",), purpose="research", basis="unstated",
        form="identified", at=f"2025-06-01T12:{offset:02d}:00+09:00",
        posix=1748746800.0 + 60 * offset, personal=True, rules=rules,
        record=f"rec-{offset}", offset=offset,
    )  # fmt: skip
    base.update(kw)
    return Flow(**base)  # type: ignore[arg-type]


def test_a_fact_delivered_again_changes_nothing() -> None:
    view = SubjectView()
    view.fold([flow(0, rules=("art9.no-consent",)), flow(1)])
    view.fold([flow(0, rules=("art9.no-consent",)), flow(1)])  # Kafka delivered them again
    lineage = view.lineage("u-1")
    assert lineage is not None
    facts = lineage.recipients["researchers"]
    assert facts.events == 2 and facts.breaches == {"art9.no-consent": 1}
    assert lineage.records == ["rec-0", "rec-1"]


def test_a_view_counts_what_it_has_not_written_until_a_flush() -> None:
    view = SubjectView()
    view.fold([flow(0), flow(1), flow(2, recipient="adco", record=None)])
    assert view.unwritten() == 0  # facts taken, not folded yet
    view.fold_now()
    assert view.unwritten() == 4  # two pairs and two provision records
    view.fold([flow(1)])  # delivered again
    view.fold_now()
    assert view.unwritten() == 4
    view.flush(rows_wanted=False)
    assert view.unwritten() == 0


def test_one_consent_takes_back_every_breach_it_retracts_of_one_recipient() -> None:
    view = SubjectView()
    view.fold([flow(0, rules=("art9.no-consent",)), flow(1, rules=("art9.no-consent",))])
    view.fold([Retracted("u-1", "researchers", {"art9.no-consent": 2}, 5)])
    view.fold([Retracted("u-1", "researchers", {"art9.no-consent": 2}, 5)])  # again
    lineage = view.lineage("u-1")
    assert lineage is not None and lineage.recipients["researchers"].breaches == {}


def test_a_view_rebuilt_from_its_rows_answers_the_same(tmp_path: Path) -> None:
    first = SubjectView(tmp_path / "a.sqlite")
    rows = []
    first.fold([flow(0), flow(1, recipient="adco", kind="ad_provider", name="AdCo")])
    first.fold([Consent("u-1", "c-1", "*", None, "granted", "2025-05-01T00:00:00+09:00",
                        1746025200.0, "cmp-1", 2)])  # fmt: skip
    rows += first.flush()
    first.fold([flow(3)])
    rows += first.flush()
    second = SubjectView(tmp_path / "b.sqlite")
    second.load(rows)
    assert second.lineage("u-1") == first.lineage("u-1")
    assert second.subjects() == ["u-1"]


def test_a_subject_or_event_id_holding_the_key_separator_is_rebuilt_as_itself() -> None:
    """A subject ref and an event id may be any text. Read back by the key's first
    separator, subject ``a\x1fb``'s rows answered for subject ``a``."""
    odd = "a\x1fb%1F"
    first = SubjectView()
    first.fold([flow(0, subject=odd), flow(1, subject="a")])
    first.fold([Consent(odd, "c\x1f1%25", "*", None, "granted", "2025-05-01T00:00:00+09:00",
                        1746025200.0, None, 2)])  # fmt: skip
    rows = first.flush()
    second = SubjectView()
    second.load(rows)
    assert second.subjects() == ["a", odd]
    for subject in ("a", odd):
        assert second.lineage(subject) == first.lineage(subject)
    mine = second.lineage(odd)
    assert mine is not None and mine.records == ["rec-0"] and len(mine.consents) == 1


def test_pairs_records_and_plain_consents_keep_the_keys_earlier_workers_gave_them() -> None:
    """So what a view's topic holds already is read, and replaced by the same keys."""
    rows = SubjectView()
    rows.fold([flow(0, subject="u\x1f2")])
    rows.fold([Consent("u-1", "c-1", "*", None, "granted", "2025-05-01T00:00:00+09:00",
                       1746025200.0, None, 1)])  # fmt: skip
    written = rows.flush()
    assert sorted(key for key, _ in written) == [
        "c\x1fu-1\x1fc-1", "f\x1fu\x1f2\x1fresearchers", "r\x1fu\x1f2\x1frec-0"
    ]  # fmt: skip
    again = SubjectView()
    again.load(written)
    assert again.subjects() == ["u\x1f2", "u-1"]


def test_a_read_between_flushes_leaves_every_row_to_the_next_flush() -> None:
    """A worker answers ``/subjects`` between its flushes. A read writes what was folded,
    and the rows that made went nowhere: a consent's and a record's row are written
    once, so a view rebuilt from its topic lost them."""
    view = SubjectView()
    view.fold([flow(0)])
    rows = view.flush()
    view.fold([flow(1, recipient="adco", kind="ad_provider", name="AdCo")])
    view.fold([Consent("u-1", "c-1", "*", None, "granted", "2025-05-01T00:00:00+09:00",
                       1746025200.0, None, 2)])  # fmt: skip
    assert view.subjects() == ["u-1"]
    read = view.lineage("u-1")
    assert read is not None and sorted(read.recipients) == ["adco", "researchers"]
    rows += view.flush()
    again = SubjectView()
    again.load(rows)
    assert again.lineage("u-1") == read
    assert view.flush() == []  # sent once


def test_records_past_retention_are_purged_and_deleted_from_the_rows() -> None:
    view = SubjectView()
    view.fold([flow(0, posix=1000.0), flow(1, posix=5000.0)])
    view.flush()
    view.observe(5000.0 + 86_400)
    assert view.retain(1) == 1  # provided more than a day before the newest event
    rows = view.flush()
    assert ("r\x1fu-1\x1frec-0", None) in rows
    lineage = view.lineage("u-1")
    assert lineage is not None and lineage.records == ["rec-1"]
    # The flow itself stays: nothing else is purged by age.
    assert lineage.recipients["researchers"].events == 2


def test_a_crash_between_the_rows_of_a_flush_loses_no_provision_record() -> None:
    # A flush's rows reach the view's topic in order, and a crash keeps a prefix of them.
    # Whatever prefix a restarted worker rebuilds from, judging the same events again must
    # give the same answer: a pair's row says its facts are folded, so the provision
    # records those facts made must be in the topic before it.
    def flow(n: int, recipient: str) -> Flow:
        return Flow(
            "u-1", recipient, recipient, "third_party", "JP", ("contact.email",),
            "marketing", "consent", "plain", f"2026-01-01T00:00:0{n}Z", 1.7e9 + n, True,
            (), f"rec-{n}", n,
        )  # fmt: skip

    facts = [flow(0, "payco"), flow(1, "adco"), flow(2, "payco")]
    whole = SubjectView()
    whole.fold(facts)
    rows = whole.flush()
    expected = whole.lineage("u-1")
    assert expected is not None and len(expected.records) == 3
    for kept in range(len(rows) + 1):
        again = SubjectView()
        again.load(rows[:kept])
        again.fold(facts)  # the same events, judged again after the restart
        again.flush()
        assert again.lineage("u-1") == expected, f"rebuilt from the first {kept} rows"


def test_pairs_not_held_are_looked_up_by_primary_key_not_by_a_scan() -> None:
    # A scan per query made folding cost grow with everything the view had written.
    view = SubjectView()
    plan = view._db.execute(
        "EXPLAIN QUERY PLAN " + _pairs_query(3), ["u-1", "a", "u-2", "b", "u-3", "c"]
    ).fetchall()
    steps = [row[-1] for row in plan]
    assert "SEARCH p USING PRIMARY KEY (subject=? AND recipient=?)" in steps, steps
    assert not [s for s in steps if s in ("SCAN p", "SCAN pairs")], steps


def test_a_view_reads_back_the_pairs_it_forgot() -> None:
    view = SubjectView(max_cached=1)
    view.fold([flow(0), flow(1, recipient="adco", name="AdCo", kind="ad_provider")])
    view.flush()  # past max_cached: the pairs are forgotten, all of them in SQLite
    view.fold([flow(2), flow(3, recipient="adco", name="AdCo", kind="ad_provider")])
    view.flush()
    lineage = view.lineage("u-1")
    assert lineage is not None
    assert {r: f.events for r, f in lineage.recipients.items()} == {"researchers": 2, "adco": 2}


def test_a_view_that_holds_every_pair_it_wrote_asks_sqlite_for_none() -> None:
    # An embedded run's view: a pair not held is new, so folding reads nothing.
    view = SubjectView()
    view.fold([flow(0)])
    view.flush()
    asked: list[str] = []
    view._db.set_trace_callback(asked.append)
    view.fold([flow(1), flow(2, recipient="adco", name="AdCo", kind="ad_provider")])
    view.flush()
    assert not [q for q in asked if q.startswith("SELECT")], asked
    lineage = view.lineage("u-1")
    assert lineage is not None
    assert {r: f.events for r, f in lineage.recipients.items()} == {"researchers": 2, "adco": 1}


def test_a_view_that_took_rows_reads_their_pairs_when_it_folds() -> None:
    first = SubjectView()
    first.fold([flow(0)])
    rows = first.flush()
    second = SubjectView()  # began empty, then took rows it does not hold decoded
    second.load(rows)
    second.fold([flow(1)])
    second.flush()
    lineage = second.lineage("u-1")
    assert lineage is not None and lineage.recipients["researchers"].events == 2


def test_pairs_are_read_back_in_a_few_shapes_of_query() -> None:
    # Python's sqlite3 keeps a prepared statement for each text: one for every count
    # of keys held megabytes a connection. Counts are padded to a few sizes.
    view = SubjectView(max_cached=1)
    view.fold([flow(n, subject=f"u-{n}") for n in range(300)])
    view.flush()  # past max_cached: all but one forgotten
    _pairs_query.cache_clear()
    for start, count in ((0, 3), (3, 5), (8, 17), (25, 275)):
        view.fold([flow(1000 + n, subject=f"u-{n}") for n in range(start, start + count)])
        view.flush()
    assert view._db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0] == 300
    for n in (0, 7, 24, 299):
        lineage = view.lineage(f"u-{n}")
        assert lineage is not None and lineage.recipients["researchers"].events == 2, n
    assert _pairs_query.cache_info().currsize <= 4  # 4, 8, 32 and 400 keys (not 3, 5, 17, 275)


def test_a_flush_forgets_the_pairs_folded_least_recently() -> None:
    view = SubjectView(max_cached=2)
    view.fold([flow(0, subject="u-a"), flow(1, subject="u-b")])
    view.flush()
    view.fold([flow(2, subject="u-a"), flow(3, subject="u-c")])  # u-a again, u-c new
    view.flush()
    assert set(view._pairs) == {("u-a", "researchers"), ("u-c", "researchers")}
    lineage = view.lineage("u-b")  # forgotten, read back from SQLite
    assert lineage is not None and lineage.recipients["researchers"].events == 1


def _categories(start: int, n: int) -> tuple[str, ...]:
    return tuple(f"custom.category-{k:05d}" for k in range(start, start + n))


def _compacted(rows: list[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    """What a compacted topic keeps of ``rows``: the last value of each key, deletions
    gone."""
    last = dict(rows)
    return [(key, value) for key, value in last.items() if value is not None]


def test_a_pair_row_too_long_for_one_message_goes_in_pieces_and_is_read_back_whole() -> None:
    """A recipient that got thousands of distinct categories of one subject: its row
    alone would pass the least message size a worker may send."""
    view = SubjectView(max_row_bytes=1_000)
    view.fold([flow(0, categories=_categories(0, 100))])
    first = view.flush()
    assert all(len(value or b"") <= 1_000 for _, value in first)
    assert sum(key.startswith("p\x1f") for key, _ in first) > 1
    view.fold([flow(1, categories=_categories(100, 100), rules=("art9.no-consent",))])
    second = view.flush()
    # The second generation's pieces, then the row naming them, then the first's deleted.
    assert [value for key, value in second if key.startswith("p\x1f") and value is None]
    expected = view.lineage("u-1")
    assert expected is not None and len(expected.recipients["researchers"].categories) == 200
    for rows in (first + second, _compacted(first + second)):
        again = SubjectView(max_row_bytes=1_000)
        again.load(rows)
        assert again.lineage("u-1") == expected
    assert not [key for key, _ in _compacted(first + second) if key.endswith("\x1f1.0")]


def test_a_crash_amid_a_pair_in_pieces_leaves_it_whole_and_its_orphans_are_deleted() -> None:
    view = SubjectView(max_row_bytes=1_000)
    view.fold([flow(0, categories=_categories(0, 100))])
    first = view.flush()
    before = view.lineage("u-1")
    view.fold([flow(1, categories=_categories(100, 100))])
    second = view.flush()
    after = view.lineage("u-1")
    assert before is not None and after is not None
    for kept in range(len(second) + 1):
        rows = first + second[:kept]
        again = SubjectView(max_row_bytes=1_000)
        again.load(rows)
        rebuilt = again.lineage("u-1")
        assert rebuilt is not None
        assert rebuilt.recipients in (before.recipients, after.recipients), f"{kept} rows"
        # The next flush deletes the pieces no row names, whatever else it writes.
        again.fold([flow(2, recipient="adco")])
        live = _compacted(rows + again.flush())
        named = [key for key, value in live if value is not None and value.startswith(b'{"~')]
        assert len(named) == 1
        generation = orjson.loads(dict(live)[named[0]])["~pieces"][0]
        assert {key.rsplit("\x1f", 1)[1].split(".")[0] for key, _ in live if key[0] == "p"} == {
            str(generation)
        }


def test_a_pair_whose_pieces_are_gone_is_refused_with_a_clear_message() -> None:
    view = SubjectView(max_row_bytes=1_000)
    view.fold([flow(0, categories=_categories(0, 100))])
    rows = [row for row in view.flush() if not row[0].endswith("\x1f1.1")]
    with pytest.raises(RunError, match=r"recipient 'researchers' names 3 pieces of generation 1"):
        SubjectView().load(rows)


def test_a_pair_back_under_the_limit_is_one_row_again_and_its_pieces_are_deleted() -> None:
    view = SubjectView(max_row_bytes=1_200)
    view.fold([flow(0, categories=_categories(0, 30), rules=("art9.no-consent",) * 1)])
    rules = {f"rule-{k:03d}": 1 for k in range(40)}
    view.fold([flow(1, rules=tuple(rules))])
    rows = view.flush()
    assert any(key[0] == "p" for key, _ in rows)
    view.fold([Retracted("u-1", "researchers", rules, 2)])
    rows += view.flush()
    live = _compacted(rows)
    assert not [key for key, _ in live if key[0] == "p"]
    again = SubjectView(max_row_bytes=1_200)
    again.load(live)
    assert again.lineage("u-1") == view.lineage("u-1")


def test_a_flush_of_many_pairs_makes_their_texts_one_at_a_time(tmp_path: Path) -> None:
    """A view kept in a file alone writes a flush's pairs as it makes their text: the
    flush grows the process by little more than the file, whatever the number of pairs.
    (Compiled, the pairs' texts once stayed behind, 4 KiB each: about 600 MiB for a
    breach storm's 152,456 pairs.) Run in a fresh interpreter, whose peak is its own."""
    script = f"""
import resource
from pathlib import Path
from tests.test_view import flow
from lineage.view import SubjectView

def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

view = SubjectView(Path({str(tmp_path / "view.sqlite")!r}))
view.fold(flow(1, subject=f"u-{{n}}", record=None) for n in range(40_000))
view.fold_now()
before = peak()
view.flush(rows_wanted=False)
print(peak() - before)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    grew = int(done.stdout.split()[-1])
    size = (tmp_path / "view.sqlite").stat().st_size >> 20
    assert grew <= size + 30, (grew, size)
