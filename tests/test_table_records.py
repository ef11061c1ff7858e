"""Table records: a value too long for one Kafka message goes in pieces, and no key of a
subject is another record's key."""

from __future__ import annotations

from typing import Any

import orjson

import streams.store
from lineage.engine import Engine
from lineage.policy import Policy
from lineage.state import EdgeAggregate
from streams.tables import PartitionState, edge_records
from tests.helpers import access, consent


def _tables() -> dict[str, dict[str, Any]]:
    return {name: {} for name in ("seen", "subjects", "edges", "incidents", "board")}


def _pieces(table: dict[str, Any]) -> list[str]:
    return [key for key in table if "\x00" in key]


def _breaches(engine: Engine, n: int, start: int = 0) -> None:
    """``n`` disclosures of one subject to a third party without consent, in one day:
    each an alert that a late consent may still retract, kept in the subject's record."""
    for offset in range(start, start + n):
        event = access(
            event_id=f"e-{offset}",
            recipient="researchers",
            occurred_at=f"2025-06-01T{offset % 24:02d}:00:00+09:00",
        )
        engine.process(orjson.dumps(event), offset=offset, origin="t")


def _flushed_with_1500_breaches(
    policy: Policy,
) -> tuple[dict[str, dict[str, Any]], PartitionState, Engine]:
    """Partition 1's tables, state and engine after :func:`_breaches` of 1,500, flushed."""
    backing = _tables()
    state = PartitionState(backing, 1)
    engine = Engine(policy, state.as_state())
    _breaches(engine, 1_500)
    state.flush()
    return backing, state, engine


def test_a_subject_with_thousands_of_retractable_alerts_is_written_and_read_back_whole(
    policy: Policy,
) -> None:
    backing, state, _ = _flushed_with_1500_breaches(policy)
    subjects = backing["subjects"]
    assert _pieces(subjects), "a subject of 1,500 pending alerts is over one record"
    assert all(len(value) <= streams.store.RECORD_BYTES for value in subjects.values())
    assert orjson.loads(subjects["1|u-1"]) == {"~pieces": [1, len(_pieces(subjects))]}
    written = state.subjects["u-1"].to_json()

    # A new owner, from the table as written here and as faust restores it (decoded;
    # the dedup records, compressed, are read by the tables' raw codec alone).
    restored = {
        name: {k: v if name == "seen" else orjson.loads(v) for k, v in t.items()}
        for name, t in backing.items()
    }
    for tables in (backing, restored):
        assert PartitionState(tables, 1).subjects["u-1"].to_json() == written

    # A late consent retracts every alert, from the record read back from its pieces
    # as from the one never written.
    late = orjson.dumps(consent(event_id="c-late", occurred_at="2025-05-31T12:00:00+09:00"))
    again = PartitionState(restored, 1)
    outcome = Engine(policy, again.as_state()).process(late, offset=1_500, origin="t")
    alone = Engine(policy)
    _breaches(alone, 1_500)
    expected = alone.process(late, offset=1_500, origin="t")
    assert len(outcome.alerts) == len(expected.alerts) == 1_500
    assert outcome.alerts == expected.alerts


def test_a_record_in_pieces_replaces_its_pieces_and_drops_them_when_it_fits_again(
    policy: Policy,
) -> None:
    backing, state, engine = _flushed_with_1500_breaches(policy)
    first = set(_pieces(backing["subjects"]))
    _breaches(engine, 10, start=1_500)
    state.flush()
    second = set(_pieces(backing["subjects"]))
    assert second and not first & second  # a new generation; the old one deleted
    assert orjson.loads(backing["subjects"]["1|u-1"])["~pieces"][0] == 2

    # A day later the pending alerts are past the consent lateness: the record fits.
    later = access(
        event_id="e-next", recipient="researchers", occurred_at="2025-06-03T12:00:00+09:00"
    )
    engine.process(orjson.dumps(later), offset=2_000, origin="t")
    state.flush()
    assert not _pieces(backing["subjects"])
    assert "~pieces" not in orjson.loads(backing["subjects"]["1|u-1"])
    assert PartitionState(backing, 1).subjects["u-1"].to_json() == state.subjects["u-1"].to_json()


def test_pieces_a_crash_left_behind_are_deleted_with_the_next_generation(policy: Policy) -> None:
    backing, _, _ = _flushed_with_1500_breaches(policy)
    orphans = {
        k.replace("\x001.", "\x000."): v for k, v in backing["subjects"].items() if "\x00" in k
    }
    backing["subjects"].update(orphans)  # generation 0: a crash before its deletes
    again = PartitionState(backing, 1)
    engine = Engine(policy, again.as_state())
    _breaches(engine, 10, start=1_500)
    again.flush()
    assert {k.split("\x00")[1].split(".")[0] for k in _pieces(backing["subjects"])} == {"2"}


def test_an_edge_met_in_many_shapes_is_written_in_pieces_and_exported_whole(
    policy: Policy,
) -> None:
    backing = _tables()
    state = PartitionState(backing, 0)
    engine = Engine(policy, state.as_state())
    for offset in range(1_000):  # purposes the policy does not declare: each a shape
        event = access(event_id=f"e-{offset}", subject=f"u-{offset}", purpose=f"p-{offset}")
        event["recipient"] = "payco"
        engine.process(orjson.dumps(event), offset=offset, origin="t")
    state.flush()
    edges = backing["edges"]
    assert _pieces(edges)
    assert all(len(value) <= streams.store.RECORD_BYTES for value in edges.values())
    exported = dict(edge_records(sorted(edges.items())))
    edge = exported[("flow", "shop", "payco")]
    assert isinstance(edge, EdgeAggregate) and edge.count == 1_000
    assert edge.to_json() == state.edges[("flow", "shop", "payco")].to_json()
    assert PartitionState(backing, 0).edges[("flow", "shop", "payco")].count == 1_000


def test_a_subject_named_like_another_subjects_decision_record_keeps_apart(
    policy: Policy,
) -> None:
    """Subject ``a``'s first record of decisions is ``a#0``; a subject may be named so."""
    backing = _tables()
    state = PartitionState(backing, 0)
    engine = Engine(policy, state.as_state())
    engine.process(orjson.dumps(consent(subject="a", event_id="c-1")), offset=0, origin="t")
    for offset, name in enumerate(("a#0", "a%230", "a\x00"), start=1):
        event = access(subject=name, event_id=f"e-{offset}", recipient="researchers")
        engine.process(orjson.dumps(event), offset=offset, origin="t")
    state.flush()
    assert sorted(backing["subjects"]) == [
        "0|a", "0|a#0", "0|a%00", "0|a%230", "0|a%25230"
    ]  # fmt: skip
    again = PartitionState(backing, 0)
    assert [d.recipient for d in again.subjects["a"].decisions] == ["researchers"]
    for name in ("a#0", "a%230", "a\x00"):
        assert again.subjects[name].to_json() == state.subjects[name].to_json()


def test_a_subject_an_earlier_worker_kept_under_its_name_as_given_is_read_and_moved(
    policy: Policy,
) -> None:
    backing = _tables()
    state = PartitionState(backing, 0)
    engine = Engine(policy, state.as_state())
    engine.process(orjson.dumps(consent(subject="x#y", event_id="c-1")), offset=0, origin="t")
    state.flush()
    # As an earlier worker wrote it: under "x#y", its decisions under "x#y#0".
    subjects = backing["subjects"]
    earlier = {"0|x#y": subjects.pop("0|x%23y"), "0|x#y#0": subjects.pop("0|x%23y#0")}
    subjects.update(earlier)
    subjects["0|b#0"] = subjects["0|x#y#0"]  # subject b's decisions: no subject "b#0"
    again = PartitionState(backing, 0)
    assert again.subjects.get("b#0") is None
    moved = again.subjects["x#y"]
    assert [d.recipient for d in moved.decisions] == ["researchers"]
    again.flush()
    assert subjects["0|x%23y#0"] == earlier["0|x#y#0"]
    assert PartitionState(backing, 0).subjects["x#y"].to_json() == moved.to_json()


def test_a_subject_named_as_another_subjects_key_is_a_subject_of_its_own(policy: Policy) -> None:
    """Subject ``a#b`` is kept under ``a%23b``. Subject ``a%23b`` (a ref written
    URL-encoded, say) must not read it as its own earlier record: it would hold the
    other subject's consents, and its disclosures would raise nothing."""
    backing = _tables()
    state = PartitionState(backing, 0)
    engine = Engine(policy, state.as_state())
    engine.process(orjson.dumps(consent(subject="a#b", event_id="c-1")), offset=0, origin="t")
    state.flush()
    again = PartitionState(backing, 0)
    engine = Engine(policy, again.as_state())
    event = access(subject="a%23b", event_id="e-1", recipient="researchers")
    outcome = engine.process(orjson.dumps(event), offset=1, origin="t")
    assert [alert["rule"] for alert in outcome.alerts if alert["article"] == "9"]
    assert again.subjects["a%23b"].decisions == []
    assert [d.event_id for d in again.subjects["a#b"].decisions] == ["c-1"]
