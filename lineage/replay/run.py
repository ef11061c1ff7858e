"""``lineage replay`` without its command line: messages in, the comparison's files out."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from lineage.child import Child
from lineage.cores import cores
from lineage.decode_process import (
    MESSAGES,
    DecodeAhead,
    Verdict,
    answer_number,
    answer_verdicts,
    request,
)
from lineage.errors import RunError
from lineage.lines import Line
from lineage.policy.diff import policy_changes
from lineage.policy.model import Policy
from lineage.redact import Redactor
from lineage.replay.compare import Comparison, Message
from lineage.replay.page import render_page
from lineage.replay.report import (
    ALERTS_FILE,
    DEAD_LETTERS_FILE,
    FLOWS_FILE,
    PAGE_FILE,
    RECORDS_FILE,
    SUMMARY_FILE,
    ReplayReport,
    flow_lines,
    summarize,
    write_lines,
)
from lineage.verdicts import as_scanned

__all__ = ["decoded_ahead", "file_messages", "replay"]

log = logging.getLogger("lineage.replay")


def file_messages(
    lines: Iterable[Line], name: str, ahead: DecodeAhead | None = None
) -> Iterable[Message]:
    """The messages of a file's lines (:func:`lineage.lines.read_lines`), blank ones passed
    over, each named ``name:line`` as ``lineage run`` names them; with what ``ahead``, the
    process decoding that file ahead (:meth:`DecodeAhead.start`), made of each line,
    where it made anything."""
    verdicts = ahead.verdicts if ahead is not None else None
    for number, line in enumerate(lines, start=1):
        origin = f"{name}:{number}"
        if line.digest is not None:
            yield Message(line.raw, origin, size=line.size, digest=line.digest)
            continue
        raw = line.raw.rstrip(b"\r\n")
        if raw.strip():
            scanned = verdicts.scanned(number, len(raw)) if verdicts is not None else None
            yield Message(raw, origin, scanned=scanned)


def decoded_ahead(batches: Iterable[list[Message]]) -> Iterator[Message]:
    """The messages of ``batches``, each batch decoded, validated, scanned and digested by
    ``python -m lineage.decode_process messages`` while the replay judges the batch
    before it (:attr:`Message.scanned` of each valid message holding no raw personal
    data). On one core, or without that process (it could not start, or it stopped),
    the messages come as they are and the replay decodes them itself: the files written
    are the same either way."""
    decoder = _Decoder()
    try:
        sent: deque[tuple[int | None, list[Message]]] = deque()
        for batch in batches:
            sent.append((decoder.send(batch), batch))
            if len(sent) > 1:
                yield from decoder.answered(*sent.popleft())
        while sent:
            yield from decoder.answered(*sent.popleft())
    finally:
        decoder.close()


class _Decoder:
    """The decoding process of :func:`decoded_ahead`, and what to do when it stops."""

    def __init__(self) -> None:
        self._child: Child | None = None
        self._number = 0  # of the last batch sent
        if cores() < 2:  # the child would only take the replay's own core from it
            return
        try:
            self._child = Child("lineage.decode_process", [MESSAGES], _DECODER)
        except RunError as exc:
            self._lost(exc)

    def send(self, batch: list[Message]) -> int | None:
        """Send ``batch`` to be decoded; its number, or None when it was not sent."""
        if self._child is None:
            return None
        self._number += 1
        try:
            self._child.send(request(self._number, [m.raw for m in batch]))
        except RunError as exc:
            self._lost(exc)
            return None
        return self._number

    def answered(self, number: int | None, batch: list[Message]) -> Iterator[Message]:
        """The messages of ``batch`` (sent as ``number``), with what the child made of
        each (waits for its answer)."""
        verdicts: list[Verdict] | None = None
        if number is not None and self._child is not None:
            try:
                answer = self._child.recv()
            except RunError as exc:
                self._lost(exc)
            else:
                if answer_number(answer) == number:
                    verdicts = answer_verdicts(answer)
                else:  # it answers in the order it was asked: it is not sound
                    self._lost(RunError(f"{_DECODER} answered out of order"))
        if verdicts is None or len(verdicts) != len(batch):
            yield from batch
            return
        for message, verdict in zip(batch, verdicts, strict=True):
            if verdict is None:
                yield message
            else:
                made = as_scanned(*verdict)
                yield Message(message.raw, message.origin, message.size, message.digest, made)

    def close(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.close()

    def _lost(self, exc: RunError) -> None:
        log.warning("%s; the replay decodes its events itself", exc)
        self.close()


_DECODER = "the replay's decoding process"


def replay(
    baseline: Policy,
    candidate: Policy,
    messages: Iterable[Message],
    out_dir: Path,
    *,
    redactor: Redactor | None = None,
    consent_lateness: timedelta = timedelta(hours=24),
    report_since: datetime | None = None,
    names: tuple[str | None, str | None] = (None, None),
    source: str = "-",
) -> ReplayReport:
    """Judge ``messages`` under both policies and write the differences into ``out_dir``.

    ``names`` name the two policy files in the outputs; ``source`` the events' source.
    """
    started = time.perf_counter()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create output folder {out_dir}: {exc.strerror}") from exc
    comparison = Comparison(
        baseline,
        candidate,
        redactor=redactor,
        consent_lateness=consent_lateness,
        report_since=report_since,
    )
    outputs = {
        name: out_dir / name
        for name in (
            ALERTS_FILE,
            RECORDS_FILE,
            FLOWS_FILE,
            SUMMARY_FILE,
            PAGE_FILE,
            DEAD_LETTERS_FILE,
        )
    }
    try:
        with outputs[DEAD_LETTERS_FILE].open("wb") as dead:
            for message in messages:
                record = comparison.add(message)
                if record is not None:
                    dead.write(orjson.dumps(record) + b"\n")
    except OSError as exc:
        raise RunError(f"cannot write to {out_dir}: {exc.strerror}") from exc
    comparison.finish()
    flows = flow_lines(comparison)
    summary = summarize(
        comparison,
        flows,
        policy_changes(baseline, candidate),
        names=names,
        source=source,
        seconds=time.perf_counter() - started,
    )
    report = ReplayReport(summary, comparison.alerts, flows, outputs)
    write_lines(
        outputs[ALERTS_FILE], ({"change": c.change, "alert": c.alert} for c in comparison.alerts)
    )
    write_lines(
        outputs[RECORDS_FILE],
        ({"change": c.change, "record": c.record} for c in comparison.records),
    )
    write_lines(outputs[FLOWS_FILE], flows)
    try:
        outputs[SUMMARY_FILE].write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
        outputs[PAGE_FILE].write_text(render_page(report, baseline, candidate), encoding="utf-8")
    except OSError as exc:
        raise RunError(f"cannot write to {out_dir}: {exc.strerror}") from exc
    return report
