"""The per-subject view of an embedded run, folded in a child process: the same view as
the run would have kept itself, and its failures are the run's."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

import lineage.view_process as view_process
from lineage.child import Child, error_answer, error_of
from lineage.errors import RunError
from lineage.policy.model import Policy
from lineage.redact import Redactor
from lineage.run import run_embedded
from lineage.view import Consent, Flow, Retracted, ViewFact
from lineage.view_process import RunView
from tests.helpers import access


def flow(offset: int, subject: str = "u-1", recipient: str = "researchers", **kw: Any) -> Flow:
    base: dict[str, Any] = dict(
        subject=subject, recipient=recipient, name="Research Inc.", kind="third_party",
        country="JP", categories=("identity.name", "contact.email"), purpose="research",
        basis="unstated", form="identified", at=f"2025-06-01T12:{offset % 60:02d}:00+09:00",
        posix=1748746800.0 + 3600 * offset, personal=True, rules=("art9.no-consent",),
        record=f"rec-{offset}", offset=offset,
    )  # fmt: skip
    base.update(kw)
    return Flow(**base)


def facts() -> list[ViewFact]:
    """Every kind of fact, some delivered twice, over three subjects and forty days."""
    out: list[ViewFact] = []
    for n in range(0, 960, 7):
        out.append(flow(n, subject=f"u-{n % 3}", recipient=("adco", "researchers")[n % 2]))
        if n % 5 == 0:
            out.append(flow(n, subject=f"u-{n % 3}", recipient=("adco", "researchers")[n % 2]))
        if n % 11 == 0:
            out.append(
                Consent(f"u-{n % 3}", f"c-{n}", "*", ("research", "ads") if n % 2 else None,
                        "granted", "2025-06-02T00:00:00+09:00", 1748790000.0, None, n)
            )  # fmt: skip
        if n % 13 == 0:
            out.append(Retracted(f"u-{n % 3}", "researchers", {"art9.no-consent": 1}, n))
    return out


def tables(path: Path) -> dict[str, list[Any]]:
    db = sqlite3.connect(path)
    try:
        return {
            table: list(db.execute(f"SELECT * FROM {table} ORDER BY 1, 2"))
            for table in ("pairs", "consents", "records", "meta")
        }
    finally:
        db.close()


def fold_all(view: RunView, every: list[ViewFact], size: int) -> tuple[int, float]:
    for start in range(0, len(every), size):
        view.fold(every[start : start + size])
    return view.finish(1748746800.0 + 3600 * 960, 30, {"policy_version": "v1"})


@pytest.mark.parametrize("write_after", [1, 40, 10**9])  # writes between messages, or at the end
def test_a_view_folded_by_a_child_process_is_the_one_the_run_would_keep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_after: int
) -> None:
    monkeypatch.setattr(view_process, "_BATCH", 5)  # many messages
    monkeypatch.setattr(view_process, "WRITE_AFTER", write_after)
    every = facts()
    here = fold_all(RunView(tmp_path / "here.sqlite", detach_after=10**9), every, 3)
    child = RunView(tmp_path / "child.sqlite", detach_after=1)
    there = fold_all(child, every, 3)
    assert child._child is None  # finished: the child has answered and is gone
    assert here == there and here[0] > 0  # the same records purged, the same newest time
    expected = tables(tmp_path / "here.sqlite")
    assert expected["pairs"] and expected["consents"] and expected["records"]
    assert tables(tmp_path / "child.sqlite") == expected


def test_a_run_that_hands_its_view_to_a_child_writes_the_same_outputs(
    policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [
        orjson.dumps(
            access(event_id=f"e-{n}", subject=f"u-{n % 7}", recipient="researchers",
                   purpose="research", occurred_at=f"2025-06-{1 + n % 28:02d}T12:00:00+09:00")
        )
        for n in range(300)
    ]  # fmt: skip
    redactor = Redactor(b"k" * 32)
    alone = run_embedded(policy, events, tmp_path / "alone", redactor=redactor, exports=False)
    monkeypatch.setattr(view_process, "DETACH_AFTER", 1)
    monkeypatch.setattr(view_process, "_BATCH", 16)
    apart = run_embedded(policy, events, tmp_path / "apart", redactor=redactor, exports=False)
    assert alone.stats == apart.stats and alone.purged == apart.purged
    assert tables(tmp_path / "apart" / "subjects.sqlite") == tables(
        tmp_path / "alone" / "subjects.sqlite"
    )
    for name in ("alerts.jsonl", "provision-records.jsonl", "incidents.jsonl"):
        assert (tmp_path / "apart" / name).read_bytes() == (tmp_path / "alone" / name).read_bytes()


def test_a_child_that_cannot_write_the_view_fails_the_run_with_its_reason(
    tmp_path: Path,
) -> None:
    not_a_file = tmp_path / "subjects.sqlite"
    not_a_file.mkdir()
    view = RunView(not_a_file, detach_after=1)
    with pytest.raises(RunError, match=r"cannot open the subjects' view .*subjects\.sqlite"):
        fold_all(view, facts(), 50)
    assert view._child is None


def test_a_child_that_dies_fails_the_run_naming_the_view_and_how_it_stopped(
    tmp_path: Path,
) -> None:
    view = RunView(tmp_path / "subjects.sqlite", detach_after=1)
    view.fold([flow(0)])
    assert view._child is not None
    view._child.process.send_signal(signal.SIGKILL)
    view._child.process.wait()
    stopped = r"view process for .*subjects\.sqlite stopped \(exit code -9\)"
    with pytest.raises(RunError, match=stopped):
        fold_all(view, facts(), 50)


def test_a_run_that_fails_stops_its_child(tmp_path: Path) -> None:
    view = RunView(tmp_path / "subjects.sqlite", detach_after=1)
    view.fold([flow(0)])
    child = view._child
    assert child is not None
    view.close()
    assert child.process.returncode is not None


def test_a_run_whose_exports_cannot_be_written_names_the_file_and_stops_its_child(
    policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The graph exports are written while the child finishes the view: a failure among
    # them is one error naming the file, never a traceback, and the child stops.
    started: list[Child] = []

    class Recorded(Child):
        def __init__(self, module: str, args: list[str], name: str) -> None:
            super().__init__(module, args, name)
            started.append(self)

    monkeypatch.setattr(view_process, "Child", Recorded)
    monkeypatch.setattr(view_process, "DETACH_AFTER", 1)
    (tmp_path / "out" / "lineage.dot").mkdir(parents=True)
    events = [
        orjson.dumps(access(event_id=f"e-{n}", subject=f"u-{n}", recipient="researchers"))
        for n in range(5)
    ]
    with pytest.raises(RunError, match=r"^cannot write to .*lineage\.dot: Is a directory$"):
        run_embedded(policy, events, tmp_path / "out", redactor=Redactor(b"k" * 32))
    assert started
    assert all(child.process.returncode is not None for child in started)


def test_a_child_that_fails_unexpectedly_says_where_never_with_what_it_held() -> None:
    held: dict[tuple[str, str], int] = {}
    try:
        held["u-secret-subject", "adco"]  # a pair the child does not hold
    except KeyError as exc:
        answer = error_answer(exc, "the subjects' view process for /state/views")
    error = error_of(answer)
    assert error is not None and "secret" not in error
    assert error.startswith("the subjects' view process for /state/views failed: KeyError at ")
    assert "test_view_process.py:" in error
    assert error_of(error_answer(RunError("cannot write x: disk full"), "p")) == (
        "cannot write x: disk full"
    )
