"""The per-subject view of an embedded run, folded in a child process: the same view as
the run would have kept itself, and its failures are the run's."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

import lineage.view_process as view_process
from lineage.child import YIELDING, Child, Forked, error_answer, error_of
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


def fold_in_a_child(folder: str) -> None:
    """Fold :func:`facts` here and in a child started at once; print how the child was
    made, whether it left the caller's process group, whether it yields the cores to the
    caller, and whether the views agree."""
    tmp = Path(folder)
    every = facts()
    here = fold_all(RunView(tmp / "here.sqlite", detach_after=10**9), every, 3)
    view = RunView(tmp / "child.sqlite")
    view.detach()
    assert view._child is not None
    process = view._child.process
    below = min(os.getpriority(os.PRIO_PROCESS, 0) + YIELDING, 19)
    print(
        type(process).__name__,
        os.getpgid(process.pid) != os.getpgid(0),
        os.getpriority(os.PRIO_PROCESS, process.pid) == below,
    )
    there = fold_all(view, every, 3)
    print(here == there, tables(tmp / "child.sqlite") == tables(tmp / "here.sqlite"))


def test_a_caller_running_no_other_thread_forks_its_child(tmp_path: Path) -> None:
    # In an interpreter of its own: this one runs what threads other tests left.
    script = "import sys; from tests.test_view_process import fold_in_a_child as f; f(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Forked", "True", "True", "True", "True"]


def test_a_caller_running_another_thread_starts_its_child_anew(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A fork copies the forking thread alone: a lock another thread held (a worker's
    # event loop, its Kafka clients) would stay held in the child.
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
    try:
        fold_in_a_child(str(tmp_path))
    finally:
        stop.set()
    assert capsys.readouterr().out.split() == ["Popen", "True", "True", "True", "True"]


def test_a_forked_child_holds_its_descriptors_alone_as_a_started_one_does(
    tmp_path: Path,
) -> None:
    held = (tmp_path / "held").open("wb")  # a file of the caller's, open as it forks
    reads, writes = os.pipe()
    try:
        child = Forked("tests.test_view_process", ["say", str(writes)], (writes,))
        os.close(writes)
        with os.fdopen(reads, "rb") as said:
            found = orjson.loads(said.read())
    finally:
        held.close()
    assert child.wait() == 0
    assert found["fds"] == {"0": os.devnull, "1": found["fds"]["1"], "2": found["fds"]["2"]}
    assert found["group"] != os.getpgid(0)


def test_a_forked_child_whose_main_fails_ends_with_code_1_and_its_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert Forked("tests.test_view_process", ["fail"], ()).wait() == 1
    assert "RuntimeError: a test's child failed" in capfd.readouterr().err
    assert Forked("tests.test_view_process", ["exit", "3"], ()).wait() == 3


def main(argv: list[str]) -> int:
    """The ``main`` of the forked children above."""
    if argv[0] == "say":  # what it holds, on the descriptor it was given
        writes = int(argv[1])
        fds = {}
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(FileNotFoundError):  # the listing's own, closed
                fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        fds.pop(argv[1])
        os.write(writes, orjson.dumps({"fds": fds, "group": os.getpgid(0)}))
        return 0
    if argv[0] == "fail":
        raise RuntimeError("a test's child failed")
    raise SystemExit(int(argv[1]))


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
        def __init__(self, module: str, args: list[str], name: str, **how: Any) -> None:
            super().__init__(module, args, name, **how)
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
