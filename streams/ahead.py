"""Events fetched and waiting to be judged, decoded ahead in a process of the worker's own.

Of what judging one message costs the worker's one judging thread, about a quarter
does not depend on anything judged before it: decoding and strictly validating the
JSON, the scan for raw personal data and the content's digest for dedup. Under load,
fetched chunks wait in the :class:`~streams.intake.Intake` while a batch is judged or
a flush awaits Kafka; :class:`Lookahead` sends their records, in the order they will
be judged and in parts of :data:`PART`, to ``python -m lineage.decode_process
messages``, which does that part on another core and answers with one verdict a
record: the validated model in a compact form (:mod:`lineage.schemas.packed`) and its
digest, or None for a record the worker must decode itself (a bad event becomes a dead
letter, raw personal data is masked with the worker's own key, a message the child
failed on is set aside as failing here).

Judging never waits for the child (:meth:`Lookahead.verdicts`): a record whose part
has not been answered is decoded in the judging thread, as it always was, so the
outputs are the same whoever decoded a record. A chunk taken as soon as it was
fetched (the evaluate loop was waiting: no load) is never sent, and no more is sent
while :data:`IN_FLIGHT` parts wait for their answers: the intake offers what waits
again after each take. Verdicts are the chunk's own (kept by the chunk object, whose
records are the bytes the child decoded), and chunks are judged in the order they
were fetched, so those sent before the chunk judged now and not judged are dropped
(given back at a rebalance). A child that stops is started again after
:data:`RETRY_SECONDS`; meanwhile the worker decodes everything itself. On one core no
child is started.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from lineage.child import Child
from lineage.cores import cores
from lineage.decode_process import (
    MESSAGES,
    Verdict,
    answer_number,
    answer_verdicts,
    request,
)
from lineage.errors import RunError
from streams.intake import Chunk

__all__ = ["IN_FLIGHT", "PART", "RETRY_SECONDS", "Lookahead"]

log = logging.getLogger("lineage.worker")

#: Records the child decodes in one part: a chunk's parts are judged from the child's
#: verdicts as they come, so a chunk the child is still decoding is not decoded twice
#: whole.
PART = 512
#: Parts sent and not answered yet, at most: the child's writer thread never makes the
#: judging thread wait (:data:`lineage.child.QUEUED`), and a child that falls behind is
#: not sent what the worker will have judged before it answers.
IN_FLIGHT = 12
#: How long after the child stopped a new one is started.
RETRY_SECONDS = 60.0


class Lookahead:
    """The verdicts of a child decoding chunks of ``topic`` ahead of judging.

    ``wait``: :meth:`verdicts` waits for the chunk's answer (tests: every record the
    child's)."""

    def __init__(self, topic: str, *, wait: bool = False) -> None:
        self.topic = topic
        self.enabled = cores() >= 2  # on one core the child only takes the worker's
        self._wait = wait
        self._child: Child | None = None
        self._retry_at = 0.0
        self._number = 0  # of the last part sent
        #: id(chunk): ((the number and first record of each part sent), the chunk)
        self._sent: dict[int, tuple[list[tuple[int, int]], Chunk]] = {}
        #: A part's number: the child's answer, its verdicts read when the part is judged
        #: (read, they take about ten times the bytes, for every record of the intake).
        self._answers: dict[int, bytes] = {}
        self._unanswered = 0
        #: Parts sent as this number or before are judged or dropped.
        self._floor = 0

    def send(self, chunks: Iterable[Chunk]) -> None:
        """Have the child decode the records of ``chunks`` (waiting to be judged, in the
        order they will be), in parts of :data:`PART` records, as many as there is room
        for; records sent before are not sent again."""
        if not self.enabled:
            return
        self._receive()  # makes room: takes the answers that came
        if self._unanswered >= IN_FLIGHT:
            return
        child = self._started()
        if child is None:
            return
        for chunk in chunks:
            if chunk.topic != self.topic:
                continue
            entry = self._sent.get(id(chunk))
            parts = entry[0] if entry is not None else []
            records = chunk.records
            for start in range(parts[-1][1] + PART if parts else 0, len(records), PART):
                if self._unanswered >= IN_FLIGHT:
                    return
                values = [
                    r.value if isinstance(r.value, bytes) else b""
                    for r in records[start : start + PART]
                ]
                try:
                    child.send(request(self._number + 1, values))
                except RunError as exc:
                    self._lost(exc)
                    return
                self._number += 1
                self._unanswered += 1
                parts.append((self._number, start))
                if entry is None:
                    entry = self._sent[id(chunk)] = (parts, chunk)

    def verdicts(self, chunk: Chunk) -> list[Verdict] | None:
        """One verdict a record of ``chunk`` (None for a record of a part the child has
        not answered for), or None when it answered for none (the worker decodes the
        chunk itself). Call it for each chunk judged, in the order they were fetched."""
        entry = self._sent.pop(id(chunk), None)
        if entry is None or entry[1] is not chunk:
            self._receive()  # frees the room of answers no chunk waits for
            return None
        parts = entry[0]
        first, last = parts[0][0], parts[-1][0]
        self._floor = first - 1  # those sent before it are never judged now
        if self._sent:
            self._sent = {k: v for k, v in self._sent.items() if v[0][0][0] > last}
        self._receive(last)
        records = chunk.records
        verdicts: list[Verdict] | None = None
        for number, start in parts:
            answer = self._answers.pop(number, None)
            if answer is None:
                continue
            found = answer_verdicts(answer)
            if len(found) != len(records[start : start + PART]):
                continue
            if verdicts is None:
                verdicts = [None] * len(records)
            verdicts[start : start + len(found)] = found
        self._floor = last
        if self._answers:
            self._answers = {n: v for n, v in self._answers.items() if n > last}
        return verdicts

    def clear(self) -> None:
        """Forget the chunks sent (the intake dropped them; their answers are dropped as
        they come)."""
        self._sent.clear()
        self._answers.clear()
        self._floor = self._number

    def close(self) -> None:
        """Stop the child, if one runs."""
        child, self._child = self._child, None
        self.clear()
        self._unanswered = 0
        if child is not None:
            child.close()

    def _receive(self, number: int = 0) -> None:
        """Take every answer ready, keeping those of parts still to be judged (with
        ``wait``, until the answer of part ``number`` came)."""
        child = self._child
        try:
            while self._unanswered and child is not None:
                if not child.ready() and not (
                    self._wait and number and number not in self._answers
                ):
                    return
                answer = child.recv()
                self._unanswered -= 1
                answered = answer_number(answer)
                if answered > self._floor:
                    self._answers[answered] = answer
        except RunError as exc:
            self._lost(exc)

    def _started(self) -> Child | None:
        if self._child is None:
            if time.monotonic() < self._retry_at:
                return None
            try:
                self._child = Child(
                    "lineage.decode_process", [MESSAGES], "the worker's decoding process"
                )
            except RunError as exc:
                self._lost(exc)
        return self._child

    def _lost(self, exc: RunError) -> None:
        log.warning(
            "%s; the worker decodes its events itself, and starts another in %.0f s",
            exc,
            RETRY_SECONDS,
        )
        self.close()
        self._retry_at = time.monotonic() + RETRY_SECONDS
