"""The worker's per-subject views, kept by a process of their own: the rows and answers
a view kept in the worker would give, and its failures are the worker's."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from lineage.errors import RunError
from lineage.view import Row, SubjectView, ViewFact, rows_of
from streams.store import RECORD_BYTES
from streams.views import PartitionViews
from tests.test_view_process import facts, flow, tables

NEWEST = 1748746800.0 + 3600 * 960


async def no_rows(partition: int) -> list[Row]:
    return []


def chunks(every: list[ViewFact], size: int) -> list[list[ViewFact]]:
    return [every[start : start + size] for start in range(0, len(every), size)]


def test_a_view_prepared_while_it_waits_and_written_after_its_rows_is_the_same(
    tmp_path: Path,
) -> None:
    # What the view process does between a worker's flushes changes nothing it answers.
    plain = SubjectView(tmp_path / "plain.sqlite", max_cached=4, max_row_bytes=300)
    eager = SubjectView(tmp_path / "eager.sqlite", max_cached=4, max_row_bytes=300)
    for n, chunk in enumerate(chunks(facts(), 9)):
        plain.fold(chunk)
        eager.fold(chunk)
        eager.prepare()  # pairs made text, some changed again by the next chunk
        if n % 4 == 3:
            plain.observe(NEWEST)
            eager.observe(NEWEST)
            assert plain.retain(20) == eager.retain(20)
            rows = eager.flush(write=False)
            assert rows == plain.flush()
            assert any(r[0].startswith("f") and r[1] and b"~pieces" in r[1] for r in rows)
            if n % 8 == 3:
                eager.write_staged()  # otherwise the next fold writes it first
    assert eager.lineage("u-1") == plain.lineage("u-1")
    plain.close()
    eager.close()  # writes what is staged
    assert tables(tmp_path / "eager.sqlite") == tables(tmp_path / "plain.sqlite")


def test_the_views_of_a_worker_answer_as_views_kept_in_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        views = PartitionViews(tmp_path / "views", no_rows)
        here = {p: SubjectView(max_row_bytes=RECORD_BYTES) for p in (0, 1)}
        try:
            for partition in (0, 1):
                await views.open(partition)
            # Taken once: a ship empties the list a folder fills, it does not replace it.
            folders = {partition: views.folder(partition) for partition in (0, 1)}
            for n, chunk in enumerate(chunks(facts(), 7)):
                partition = n % 2
                folders[partition](chunk)
                views.ship(partition)
                here[partition].fold(chunk)
                if n % 5 == 4:
                    flushed = await views.flush({0: NEWEST, 1: NEWEST - 86_400}, 30)
                    expected = []
                    for p, newest in ((0, NEWEST), (1, NEWEST - 86_400)):
                        here[p].observe(newest)
                        here[p].retain(30)
                        expected.append((p, here[p].flush()))
                    assert flushed == expected
            assert views.held() == [0, 1]
            assert await views.find(1, ["nobody", "u-2"]) == here[1].find(["nobody", "u-2"])
            views.drop(0)
            assert views.held() == [1]
            await views.find(1, ["u-2"])  # answered after the drop: the file is gone
            assert not (views.directory / "partition-0.sqlite").exists()
            assert (views.directory / "partition-1.sqlite").exists()
        finally:
            views.close()
            for view in here.values():
                view.close()
        assert not views.directory.exists()

    asyncio.run(scenario())


def test_a_partition_taken_over_is_rebuilt_from_its_rows(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = PartitionViews(tmp_path / "a", no_rows)
        await first.open(3)
        first.folder(3)(facts())
        [(_, rows)] = await first.flush({3: NEWEST}, 30)
        wanted = await first.find(3, ["u-0"])
        first.close()

        async def read(partition: int) -> list[Row]:
            assert partition == 3
            return list(rows_of((key.encode(), value) for key, value in rows))

        second = PartitionViews(tmp_path / "b", read)
        try:
            assert await second.find(3, ["u-0"]) == wanted
            assert wanted[1] is not None
        finally:
            second.close()

    asyncio.run(scenario())


def test_a_view_the_process_cannot_open_fails_the_worker_naming_its_file(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        views = PartitionViews(tmp_path, no_rows)
        (views.directory / "partition-5.sqlite").mkdir()
        try:
            with pytest.raises(RunError, match=r"cannot open the subjects' view .*partition-5"):
                await views.open(5)
        finally:
            views.close()

    asyncio.run(scenario())


def test_a_view_process_that_dies_fails_the_next_flush_saying_how_it_stopped(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        views = PartitionViews(tmp_path, no_rows)
        try:
            await views.open(0)
            views.folder(0)([flow(0)])
            child = views._child
            assert child is not None
            child.process.send_signal(signal.SIGKILL)
            child.process.wait()
            with pytest.raises(RunError, match=r"view process for .* stopped \(exit code -9\)"):
                views.ship(0)
                await views.flush({}, 30)
        finally:
            views.close()

    asyncio.run(scenario())


def test_a_signal_to_the_workers_group_is_the_workers_to_answer(tmp_path: Path) -> None:
    # A supervisor stops a worker with a SIGTERM to its process group (the tests too):
    # the view process goes on until the worker, stopping, closes its pipe.
    async def scenario() -> None:
        views = PartitionViews(tmp_path, no_rows)
        try:
            await views.open(0)
            child = views._child
            assert child is not None
            assert os.getpgid(child.process.pid) != os.getpgid(0)  # out of ours
            views.folder(0)([flow(0)])
            [(_, rows)] = await views.flush({0: NEWEST}, 30)
            assert rows
        finally:
            views.close()
        assert child.process.returncode == 0  # it ended as its pipe closed

    asyncio.run(scenario())


def test_the_view_process_gives_freed_memory_back_when_it_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Like the worker, the view process trims its heap as it works and once nothing
    # more has been asked for a while (here 0.05 s), not in every gap between messages.
    import multiprocessing
    import pickle
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import streams.views as views_module

    calls: list[bool] = []
    idle_after_work = threading.Event()

    class Recorded(views_module.HeapTrim):
        def maybe(self, now: float, worked: bool = True) -> None:
            calls.append(worked)
            if not worked and True in calls:
                idle_after_work.set()

    monkeypatch.setattr(views_module, "HeapTrim", Recorded)
    to_child, from_worker = multiprocessing.Pipe(duplex=False)
    from_child, answers = multiprocessing.Pipe(duplex=False)
    with ThreadPoolExecutor(1) as pool:
        serving = pool.submit(views_module._serve, to_child, answers, tmp_path, 0.05)
        from_worker.send_bytes(b"O" + pickle.dumps((0, [])))
        assert pickle.loads(from_child.recv_bytes()) == 0  # the open was answered
        assert idle_after_work.wait(timeout=30)
        from_worker.close()  # the worker stops
        assert serving.result(timeout=30) == 0


def test_the_view_process_does_not_trim_between_a_busy_workers_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child waits for each of these messages, but for less than its idle time.
    import multiprocessing
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    import streams.views as views_module

    calls: list[bool] = []

    class Recorded(views_module.HeapTrim):
        def maybe(self, now: float, worked: bool = True) -> None:
            calls.append(worked)

    monkeypatch.setattr(views_module, "HeapTrim", Recorded)
    to_child, from_worker = multiprocessing.Pipe(duplex=False)
    from_child, answers = multiprocessing.Pipe(duplex=False)
    with ThreadPoolExecutor(1) as pool:
        serving = pool.submit(views_module._serve, to_child, answers, tmp_path, 60.0)
        for partition in range(3):
            from_worker.send_bytes(b"O" + pickle.dumps((partition, [])))
            assert pickle.loads(from_child.recv_bytes()) == 0
            from_worker.send_bytes(b"Q" + pickle.dumps((partition, ["u-1"])))
            from_child.recv_bytes()
        from_worker.close()
        assert serving.result(timeout=30) == 0
    assert calls == [True] * 6


def test_a_worker_waiting_to_queue_facts_still_reads_the_answer_to_a_flush(
    tmp_path: Path,
) -> None:
    # The loop asks for a flush whose answer is larger than a pipe holds, and before it
    # awaits it, hands over more facts than the queue to the view process holds: the
    # loop waits for room while the process writes the answer. The answer must be read
    # all the same, or the process stops reading facts and the worker hangs.
    import threading

    from lineage.child import QUEUED

    ended = threading.Event()
    rows: list[tuple[int, list[Row]]] = []

    async def scenario() -> None:
        views = PartitionViews(tmp_path, no_rows)
        try:
            await views.open(0)
            fold = views.folder(0)
            fold([flow(n, subject=f"u-{n}") for n in range(6_000)])  # 6,000 pairs
            pending = views.ask_flush({0: NEWEST}, 3650)
            for round_ in range(QUEUED * 3):  # no await between: the loop never yields
                first = 10_000 + round_ * 4_096
                fold([flow(first + n, subject=f"v-{n % 50}") for n in range(4_096)])
                views.ship(0)
            rows.extend(await pending)
        finally:
            views.close()
            ended.set()

    runner = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    runner.start()
    assert ended.wait(timeout=120), "the worker's loop and its view process wait on each other"
    [(partition, flushed)] = rows
    assert partition == 0 and sum(1 for key, _ in flushed if key.startswith("f")) >= 6_000
