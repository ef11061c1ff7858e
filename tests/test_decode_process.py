"""An embedded run whose events a child process decodes ahead writes what a run alone
writes, whichever of the two decoded a line, and goes on alone when the child stops."""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

import lineage.decode_process as decode_process
import lineage.export as export
import lineage.view_process as view_process
from lineage import run_exports
from lineage.child import YIELDING, Child
from lineage.decode_process import (
    DecodeAhead,
    _serve,
    _serve_messages,
    answer_number,
    answer_verdicts,
    verdict,
)
from lineage.errors import RunError
from lineage.export.openlineage import OpenLineageMissing
from lineage.lines import read_lines
from lineage.policy.model import Policy
from lineage.redact import Redactor
from lineage.run import RunSummary, run_embedded
from lineage.schemas.packed import unpack
from lineage.verdicts import Batch
from tests.conftest import TakenAhead
from tests.golden import _subjects, decoding_every_line_ahead
from tests.helpers import access, consent

KEY = b"k" * 32


def day() -> list[bytes]:
    """Every kind of line a run meets: lawful and breaching flows, consents (some late),
    raw personal data to mask, duplicates and conflicting duplicates, bad JSON, invalid
    events, blank lines, CRLF line ends, and a line over the size limit."""
    lines: list[bytes] = []
    for n in range(1_500):
        at = f"2025-06-{1 + n % 28:02d}T12:{n % 60:02d}:00+09:00"
        subject = f"u-{n % 40}"
        if n % 50 == 7:
            lines.append(orjson.dumps(consent(event_id=f"c-{n}", subject=subject, occurred_at=at)))
        fields = access(
            event_id=f"e-{n}", subject=subject, occurred_at=at,
            recipient=("researchers", "adco", "mailer", "nowhere")[n % 4],
            purpose=("research", "billing", "ads")[n % 3],
        )  # fmt: skip
        if n % 97 == 3:
            fields["attributes"] = {"note": f"mail taro{n}@example.jp"}
        lines.append(orjson.dumps(fields))
        if n % 101 == 5:
            lines.append(lines[-1])  # a producer's retry
        if n % 103 == 9:
            lines.append(orjson.dumps({**fields, "purpose": "ads"}))  # same id, other content
        if n % 89 == 1:
            lines.append(b'{"event_id": "bad-' + str(n).encode() + b'", "occurred_at": 5}')
        if n % 83 == 2:
            lines.append(b"{not json")
        if n % 71 == 4:
            lines.append(b"   ")
        if n % 67 == 6:
            lines[-1] += b"\r"
    lines.insert(700, b'{"event_id": "huge", "note": "' + b"x" * (70 * 1024) + b'"}')
    return lines


def outputs(out: Path) -> dict[str, Any]:
    found: dict[str, Any] = {
        name: (out / name).read_bytes()
        for name in ("alerts.jsonl", "incidents.jsonl", "provision-records.jsonl")
    }
    found["dead"] = [
        {k: v for k, v in orjson.loads(line).items() if k != "received_at"}
        for line in (out / "dead-letter.jsonl").read_bytes().splitlines()
    ]
    found["subjects"] = _subjects(out / "subjects.sqlite")
    return found


def day_file(tmp_path: Path, days: int = 1) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(day() * days) + b"\n")
    return path


def run(policy: Policy, path: Path, out: Path) -> RunSummary:
    with path.open("rb") as source:
        return run_embedded(policy, source, out, redactor=Redactor(KEY), exports=False)


def test_a_run_decoded_ahead_writes_what_a_run_alone_writes(
    policy: Policy, tmp_path: Path, taken_ahead: TakenAhead
) -> None:
    path = day_file(tmp_path)
    alone = run(policy, path, tmp_path / "alone")
    assert int(taken_ahead) == 0  # a small file: no child
    with decoding_every_line_ahead():
        ahead = run(policy, path, tmp_path / "ahead")
    # Every valid line without raw personal data came decoded from the child; the run
    # decoded the others itself (bad lines, raw values to mask, the oversized line is
    # refused whole).
    assert 1_400 < int(taken_ahead) < ahead.stats.messages - alone.stats.dead_letters
    assert alone.stats == ahead.stats
    assert alone.stats.dead_letters > 40 and alone.stats.conflicts > 5
    assert alone.stats.duplicates > 5 and alone.stats.alerts > 100
    assert outputs(tmp_path / "ahead") == outputs(tmp_path / "alone")


def test_a_run_whose_decoding_process_stops_goes_on_alone(
    policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken_ahead: TakenAhead
) -> None:
    # Eight days in one file, about 12 batches of 220 KB: the child gets at most what
    # its pipe holds (1 MiB, under 5 batches) ahead of the batch the run takes, so when
    # it is killed as the run takes its first batch, lines are left that it never sent.
    # (One day is two batches, which the child may have sent whole by then.)
    path = day_file(tmp_path, days=8)
    alone = run(policy, path, tmp_path / "alone")
    with decoding_every_line_ahead():
        healthy = run(policy, path, tmp_path / "healthy")
    # What the run decodes itself even when the child decodes every line it can: bad
    # lines, and raw values to mask with the run's key.
    always_alone = healthy.stats.messages - int(taken_ahead)
    assert healthy.stats == alone.stats
    taken_ahead.children.clear()
    taken = DecodeAhead._next

    def kill_after_one(self: DecodeAhead, number: int) -> Batch | None:
        took = taken(self, number)
        if took is not None and self._child is not None:
            self._child.process.kill()
            self._child.process.wait()
        return took

    monkeypatch.setattr(DecodeAhead, "_next", kill_after_one)
    with decoding_every_line_ahead():
        ahead = run(policy, path, tmp_path / "ahead")
    # The batches the child sent before it died came from it (the run takes what its
    # pipe still holds); the run decoded the rest alone, valid lines too.
    judged = alone.stats.messages
    assert 0 < int(taken_ahead) <= 6 * decode_process._BATCH < judged - always_alone
    assert alone.stats == ahead.stats
    assert outputs(tmp_path / "ahead") == outputs(tmp_path / "alone")


def test_the_two_children_of_a_run_yield_the_cores_to_it(
    policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run judges, and its time is that process's: where the cores are fewer than
    # the three processes, the children take what the run leaves.
    priorities: dict[str, int] = {}

    class Recorded(Child):
        def __init__(self, module: str, args: list[str], name: str, **how: Any) -> None:
            super().__init__(module, args, name, **how)
            priorities[module] = os.getpriority(os.PRIO_PROCESS, self.process.pid)

    monkeypatch.setattr(decode_process, "Child", Recorded)
    monkeypatch.setattr(view_process, "Child", Recorded)
    with decoding_every_line_ahead():
        run(policy, day_file(tmp_path), tmp_path / "out")
    below = min(os.getpriority(os.PRIO_PROCESS, 0) + YIELDING, 19)
    assert priorities == {"lineage.decode_process": below, "lineage.view_process": below}


def exports(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(out.glob("lineage.*"))}


def exports_answered(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Path] | None]:
    """What each :meth:`DecodeAhead.exports_written` of the test returns, in order."""
    answered: list[dict[str, Path] | None] = []
    written = DecodeAhead.exports_written

    def kept(self: DecodeAhead) -> dict[str, Path] | None:
        answered.append(written(self))
        return answered[-1]

    monkeypatch.setattr(DecodeAhead, "exports_written", kept)
    return answered


def test_the_decoding_process_writes_the_graph_exports_a_run_alone_writes(
    policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = day_file(tmp_path)
    with path.open("rb") as source:
        alone = run_embedded(policy, source, tmp_path / "alone", source_name="day")
    answered = exports_answered(monkeypatch)
    with path.open("rb") as source, decoding_every_line_ahead():
        ahead = run_embedded(policy, source, tmp_path / "ahead", source_name="day")
    # The child wrote every format, where the run would have.
    formats = {"graphml", "json", "dot", "mermaid", "html", "openlineage"}
    assert answered == [{fmt: ahead.outputs[fmt] for fmt in formats}]
    assert all(ahead.outputs[fmt].parent == tmp_path / "ahead" for fmt in formats)
    assert len(exports(tmp_path / "alone")) == 6
    assert exports(tmp_path / "ahead") == exports(tmp_path / "alone")
    assert ahead.stats == alone.stats


def test_a_run_whose_decoding_process_stops_before_the_exports_writes_them(
    policy: Policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = day_file(tmp_path)
    with path.open("rb") as source:
        run_embedded(policy, source, tmp_path / "alone", source_name="day")
    asked = DecodeAhead.write_exports

    def killed_first(self: DecodeAhead, *args: Any) -> None:
        assert self._child is not None
        self._child.process.kill()
        self._child.process.wait()
        asked(self, *args)

    monkeypatch.setattr(DecodeAhead, "write_exports", killed_first)
    answered = exports_answered(monkeypatch)
    with path.open("rb") as source, decoding_every_line_ahead():
        run_embedded(policy, source, tmp_path / "ahead", source_name="day")
    assert answered == [None]  # no answer: the run wrote them
    assert exports(tmp_path / "ahead") == exports(tmp_path / "alone")


def test_an_export_the_decoding_process_cannot_write_stops_the_run_as_alone(
    policy: Policy, tmp_path: Path
) -> None:
    path = day_file(tmp_path)
    errors = []
    for name, ahead in (("alone", False), ("ahead", True)):
        out = tmp_path / name
        (out / "lineage.html").mkdir(parents=True)
        with path.open("rb") as source, contextlib.ExitStack() as stack:
            if ahead:
                stack.enter_context(decoding_every_line_ahead())
            with pytest.raises(RunError) as raised:
                run_embedded(policy, source, out, source_name="day")
        errors.append(str(raised.value).replace(str(out), "OUT"))
    assert errors[0] == errors[1] == "cannot write to OUT/lineage.html: Is a directory"


def test_the_decoding_process_says_what_it_could_not_export_and_the_run_logs_it(
    policy: Policy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def missing(graph: Any) -> str:
        raise OpenLineageMissing()

    # The child's side, in this process: the export of OpenLineage without its extra.
    monkeypatch.setitem(export._WRITERS, "openlineage", missing)
    answer = run_exports.answer(run_exports.request(policy, {}, "day", tmp_path))
    assert b"lineage.openlineage.jsonl not written" in answer
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lineage"):
        written = run_exports.written(answer)
    assert set(written) == {"graphml", "json", "dot", "mermaid", "html"}
    assert written["html"] == tmp_path / "lineage.html"
    assert [r.getMessage() for r in caplog.records] == [
        "lineage.openlineage.jsonl not written: the OpenLineage export needs "
        "openlineage-python: pip install 'privacy-lineage[openlineage]'"
    ]


def test_the_child_numbers_lines_as_the_run_does(tmp_path: Path) -> None:
    lines = day()
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"junk before the run's start\n" + b"\n".join(lines))  # no last newline
    sent: list[bytes] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        _serve(fd, len(b"junk before the run's start\n"), sent.append)
    finally:
        os.close(fd)
    assert sent[-1] == b""  # the last batch was sent
    verdicts = [v for message in sent[:-1] for v in marshal.loads(message)[1]]
    with path.open("rb") as source:
        source.readline()
        read = list(enumerate(read_lines(source), start=1))
    assert len(read) == len(lines)
    by_number = {number: line for number, line in read}
    for number, size, _digest, packed in verdicts:
        raw = by_number[number].raw.rstrip(b"\r\n")
        assert len(raw) == size
        assert orjson.loads(raw)["event_id"] == unpack(packed).event_id
    assert len(verdicts) > 1_400


def test_the_child_passes_over_the_lines_the_run_says_it_decodes_alone(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(day() * 4))
    fd = os.open(path, os.O_RDONLY)
    try:
        child = Child("lineage.decode_process", [str(fd), "0"], "a test's child", pass_fds=(fd,))
    finally:
        os.close(fd)
    try:
        child.send(b"3000")  # before the child's first look, at its 64th line
        numbers = []
        while message := child.next_answer():
            numbers += [verdict[0] for verdict in marshal.loads(message)[1]]
    finally:
        child.close()
    assert numbers and max(numbers) > 6_000
    assert all(n <= decode_process._LISTEN for n in numbers if n < 3_000 + decode_process._LEAD)
    resumed = min(n for n in numbers if n > decode_process._LISTEN)
    assert 3_000 + decode_process._LEAD <= resumed < 3_000 + decode_process._LEAD + 10


def test_a_worker_reads_which_part_an_answer_is_for_then_its_verdicts() -> None:
    # The messages mode, as a worker's Lookahead drives it: numbered parts in, each
    # answer its part's number, then one verdict a message, the same as verdict() gives.
    lines = day()
    parts = [(7, lines[:400]), (8, lines[400:401]), (2**40, lines[401:])]
    requests = [marshal.dumps(part) for part in parts]
    answers: list[bytes] = []

    def recv() -> bytes:
        if not requests:
            raise EOFError
        return requests.pop(0)

    _serve_messages(recv, answers.append)
    redactor = Redactor()
    assert [answer_number(answer) for answer in answers] == [number for number, _ in parts]
    for answer, (_, messages) in zip(answers, parts, strict=True):
        assert answer_verdicts(answer) == [verdict(redactor, raw) for raw in messages]
    assert sum(v is not None for a in answers for v in answer_verdicts(a)) > 1_400


def test_only_a_large_regular_file_is_decoded_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(decode_process, "cores", lambda: 2)  # whatever this machine has
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"x" * 100)
    with path.open("rb") as source:
        assert DecodeAhead.start(source, None) is None  # too small for a child to pay
        ahead = DecodeAhead.start(source, None, least=100)
        assert ahead is not None
        ahead.close()
        source.read(1)
        assert DecodeAhead.start(source, None, least=100) is None  # 99 bytes left

        class Finer(Redactor):
            pass

        # A redactor of the caller's own may find what the child's would not.
        assert DecodeAhead.start(source, Finer(), least=0) is None
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(read_end, "rb") as pipe:
            assert DecodeAhead.start(pipe, None, least=0) is None
    finally:
        os.close(write_end)
    assert DecodeAhead.start([b"a line"], None, least=0) is None


def test_a_run_on_one_core_decodes_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"x" * 100)
    monkeypatch.setattr(decode_process, "cores", lambda: 1)
    with path.open("rb") as source:
        assert DecodeAhead.start(source, None, least=0) is None
