"""The embedded run's loop makes no cyclic garbage, so it may run with the cycle
collector off (:func:`lineage.garbage.cycles_left_alone`).

With the collector off, a cycle the loop made would be kept until the process ends.
Each day below is run with the collector off, as the run turns it off; as the loop
ends, while everything the run holds is still in reach, a full collection must find
nothing to free. Any change that makes the loop leave cycles fails here.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

import lineage.run
from bench.traffic import generate
from lineage.demo import generate_day
from lineage.engine import Engine
from lineage.garbage import cycles_left_alone
from lineage.policy import Policy, load_policy
from lineage.run import run_embedded
from lineage.view import SubjectView, ViewFact, decode_facts, encode_facts
from lineage.view_process import _finish
from tests.helpers import access, consent

ROOT = Path(__file__).resolve().parents[1]
SAKURA = ROOT / "bench" / "policies" / "sakura-retail.yaml"


def _late_consents() -> Iterator[bytes]:
    """Transfers that break Art. 9 for want of consent, then each subject's consent,
    given before them but arriving after: every alert is retracted."""
    for n in range(200):
        yield orjson.dumps(
            access(event_id=f"e-{n}", subject=f"u-{n}", recipient="researchers", purpose="research")
        )
    for n in range(200):
        yield orjson.dumps(consent(event_id=f"c-{n}", subject=f"u-{n}", purposes=["research"]))


def _day(name: str) -> tuple[Policy, Iterable[bytes]]:
    """The policy and lines of day ``name`` (the only one built)."""
    if name == "demo":
        # Every kind of bad line, many times over, raw personal data, duplicates.
        return load_policy(), generate_day(events=5_000, seed=3, malformed=700)
    if name == "storm":
        sakura = load_policy(SAKURA)
        return sakura, generate(sakura, 5_000, 0.9, subjects=500, seed=5)
    return load_policy(), _late_consents()


@pytest.mark.parametrize("day", ["demo", "storm", "late-consents"])
def test_the_run_leaves_no_cycles_for_the_collector(
    day: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy, lines = _day(day)
    source = tmp_path / "day.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    freed: list[int] = []

    @contextmanager
    def checked() -> Iterator[None]:
        gc.collect()
        with cycles_left_alone():
            assert not gc.isenabled()
            yield
            freed.append(gc.collect())

    monkeypatch.setattr(lineage.run, "cycles_left_alone", checked)
    with source.open("rb") as handle:
        summary = run_embedded(policy, handle, tmp_path / "out", exports=False)
    stats = summary.stats
    assert stats.messages > 0
    if day == "demo":
        assert stats.dead_letters >= 700 and stats.duplicates > 0
    if day == "late-consents":
        assert stats.retracted == 200
    assert freed == [0], f"{day}: the run's loop left {freed} objects in cycles"
    assert gc.isenabled()


def test_what_the_loop_made_is_moved_to_the_oldest_generation_unwalked() -> None:
    """Left young, what the loop holds would all be walked by the first collection
    after it, only to be found alive."""
    gc.collect()
    with cycles_left_alone():
        made = [[] for _ in range(50_000)]  # lists: the collector tracks them
        assert gc.get_count()[0] >= 50_000
    assert gc.get_count()[0] < 1_000
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert id(made) in oldest and id(made[-1]) in oldest
    assert not {id(o) for o in gc.get_objects(generation=0)} & {id(made), id(made[-1])}


def test_the_process_s_own_frozen_objects_stay_frozen() -> None:
    """A server that froze its objects before forking keeps them out of the collector's
    reach through a run."""
    kept = [[] for _ in range(1_000)]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with cycles_left_alone():
            made = [[] for _ in range(1_000)]
        assert gc.get_freeze_count() == frozen
        assert id(kept[0]) not in {id(o) for o in gc.get_objects(generation=2)}
        assert made
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("day", ["demo", "storm", "late-consents"])
def test_the_view_s_process_leaves_no_cycles_for_the_collector(day: str, tmp_path: Path) -> None:
    """The process that keeps a run's view folds with the collector off too: folding the
    day's facts as they come off the pipe, writing them as it writes them and finishing
    the file must leave nothing in cycles."""
    policy, lines = _day(day)
    engine = Engine(policy)
    facts: list[ViewFact] = []
    for number, line in enumerate(lines, start=1):
        facts.extend(engine.process(line, offset=number, origin=f"day:{number}").view)
    assert facts
    gc.collect()
    with cycles_left_alone():
        view = SubjectView(tmp_path / "subjects.sqlite")
        for start in range(0, len(facts), 500):
            view.fold(decode_facts(encode_facts(facts[start : start + 500])))
            view.fold_now()
            if view.unwritten() >= 300:
                view.flush(rows_wanted=False)
        days = policy.policy.records_retention_days
        _finish(view, engine.stats.newest, days, {"policy_version": policy.version})
        view.close()
        del view
        freed = gc.collect()
    assert freed == 0, f"{day}: folding the view left {freed} objects in cycles"
