"""The commit protocol of the worker's own topics, in one class.

A :class:`Checkpoint` holds what was judged since the state was last written, and
the steps that make it durable. It knows nothing of faust: its tables are
mappings, its outputs go to a :class:`~streams.outputs.Sender`, and everything it
asks of Kafka and faust goes through one small port (:class:`~streams.port.KafkaPort`),
so it is tested on dicts with no broker.

    prepare(chunks) each events partition seen for the first time gets its engine,
                    and its per-subject view rebuilt from the subject-view topic
    judge(chunk)    events: each record is decoded (or taken as the worker's decoding
                    process decoded it, :mod:`streams.ahead`) and judged by its
                    partition's engine; alerts and dead letters go to the sender at
                    once; state changes stay in the partition's tables' views, view
                    facts are folded into the partition's view
    fold(chunk)     incident partials: merged into the incident board, which says
                    what to publish
    start_flush()   1. at once, from what was judged so far: the incident partials of
                       the incidents that changed go to the sender; the view process is
                       asked for the rows each partition's view changed (each once, the
                       provision records past retention deleted); each partition's
                       changed state becomes its table records, each key once, held
                       (:class:`~streams.store.DeferredWriter`); the chunks judged so
                       far become this flush's
                    then, in a task of its own, while the worker judges on:
                    2. the view's rows go to the sender, and the sender delivers every
                       output added before this step (awaited); then
                       ``on_delivered(alerts, incidents)`` is told the alerts and
                       incident publications of this flush (alert routing)
                    3. the held table records are written to the tables and their
                       changelogs (the ``writer`` hands them to the sender), and Kafka
                       acknowledges them
                    4. this flush's offsets are acked: faust commits them at its next
                       commit
    settled()       waits for the flush under way; one flush is under way at a time
    flush()         a whole flush: settled(), start_flush(), settled()
    revoke(tps)     what was judged and not flushed is dropped with the partition:
                    its next owner judges it again from the committed offset

So an offset is committed only after its event's outputs were acknowledged and
its state written, and a table record is written only after the outputs of the
events it holds. What step 1 leaves out (the events judged while the flush waits)
is the next flush's, whole. Reads of the tables see the records held before the
tables (:meth:`~streams.store.DeferredWriter.reader`).

State may run ahead of the commits (a crash between steps 3 and 4): every state
record carries the offset it applied up to, so an event judged again re-derives
its alerts, with the same ids, and counts nothing twice. The view's rows carry it
too.

An alert or incident is forwarded (``on_delivered``) only after Kafka acknowledged
the outputs it went out with, and at least once: an event judged again raises its
alerts again, with the same ids, and they are forwarded again.

When Kafka does not take the outputs in time (:class:`~streams.outputs.OutputsLost`),
the flush drops everything pending (what was judged while it waited too, and every
record held), has the port read every partition again from its committed offset,
takes over the incident boards again from their tables, counts a rewind
(:attr:`Checkpoint.rewinds`: the worker drops the records it took before it) and
settles False. When Kafka refuses a changelog record, the tables in memory are ahead
of their changelog and nothing here can tell which: the flush raises
:class:`StateNotWritten`, and the worker stops rather than commit past it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from lineage.decode_process import Verdict
from lineage.engine import Engine
from lineage.errors import LineageError
from lineage.incidents import IncidentBoard
from lineage.policy.model import Policy
from lineage.redact import Redactor
from lineage.state import IncidentPartial
from lineage.verdicts import as_scanned
from lineage.view import Lineage
from streams.intake import Chunk
from streams.metrics import Metrics
from streams.outputs import OutputsLost, Sender
from streams.port import KafkaPort
from streams.store import DeferredWriter, Held, MappingWriter, Writer
from streams.tables import BoardView, PartitionState
from streams.topics import Topics
from streams.views import PartitionViews

__all__ = ["Checkpoint", "StateNotWritten", "VerdictsOf", "dead_letter_headers"]

log = logging.getLogger("lineage.worker")

#: A chunk's verdicts from another process, one a record, or None: the chunk is
#: decoded here (:meth:`streams.ahead.Lookahead.verdicts`).
VerdictsOf = Callable[[Chunk], list[Verdict] | None]

#: The longest key a dead letter keeps of its message's key.
_DEAD_KEY_BYTES = 1024

#: ``on_delivered(alerts, incidents)``: records Kafka has just acknowledged.
OnDelivered = Callable[[list[dict[str, Any]], list[dict[str, Any]]], object]


class StateNotWritten(LineageError):
    """Kafka refused a record of the tables' changelog or a row of the subject view:
    nothing judged since the last commit may be committed, and the state in memory
    cannot be trusted."""


def dead_letter_headers(record: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """Headers of a dead letter on Kafka: the reason, and a JSON envelope of the record."""
    envelope = {k: v for k, v in record.items() if k != "original"}
    headers = [
        ("lineage-reason", str(record["reason"]).encode()),
        ("lineage-kind", str(record["kind"]).encode()),
        ("lineage-field", str(record["field"] or "").encode()),
        ("lineage-origin", str(record["origin"]).encode()),
        ("lineage-dead-letter", orjson.dumps(envelope)),
    ]
    if record.get("truncated"):
        headers.append(("lineage-size", str(record["size"]).encode()))
        headers.append(("lineage-sha256", str(record["sha256"]).encode()))
    return headers


class Checkpoint:
    """Judged-but-not-durable work of the events and partials topics (module docstring)."""

    def __init__(
        self,
        *,
        policy: Policy,
        redactor: Redactor,
        tables: Mapping[str, Any],
        sender: Sender,
        port: KafkaPort,
        topics: Topics,
        views_dir: Path,
        writer: Writer | None = None,
        metrics: Metrics | None = None,
        dedup_window: int | None = None,
        cached_subjects: int | None = None,
        consent_lateness: timedelta = timedelta(hours=24),
        on_delivered: OnDelivered | None = None,
        ahead: VerdictsOf | None = None,
    ) -> None:
        self.policy = policy
        self.redactor = redactor
        self.tables = tables
        self.sender = sender
        self.port = port
        self.topics = topics
        self.views = PartitionViews(views_dir, port.read_view)
        #: Table records, held from the start of their flush until it may write them.
        self.writer = DeferredWriter(writer if writer is not None else MappingWriter())
        self.metrics = metrics if metrics is not None else Metrics()
        self._dedup_window = dedup_window
        self._cached_subjects = cached_subjects
        self._lateness = consent_lateness
        self._retention_days = policy.policy.records_retention_days
        self._engines: dict[int, tuple[PartitionState, Engine]] = {}
        self._boards: dict[int, BoardView] = {}
        #: Chunks judged or folded since the last flush, by partition of their topic.
        self._pending: dict[Any, list[Chunk]] = {}
        self._boards_held: list[int] = []
        self._touched: dict[int, set[str]] = {}
        #: The last offset judged in each events partition (for the lag metric).
        self.positions: dict[int, int] = {}
        #: Told, after step 2 of :meth:`flush`, of the alerts and incident publications
        #: Kafka acknowledged; kept only while it is set.
        self.on_delivered = on_delivered
        self._sent_alerts: list[dict[str, Any]] = []
        self._sent_incidents: list[dict[str, Any]] = []
        #: A chunk's records decoded by another process, if it has them
        #: (:class:`streams.ahead.Lookahead`).
        self.ahead = ahead
        #: The flush under way, if any (steps 2-4 of the module docstring).
        self._flushing: asyncio.Future[bool] | None = None
        #: Rewinds so far: records taken before one are not judged (they are read
        #: again from the commits).
        self.rewinds = 0

    # -- 1. judge ----------------------------------------------------------------------------------

    def split(self, chunks: list[Chunk]) -> tuple[list[Chunk], list[Chunk]]:
        """(current, stale): chunks fetched in the current generation while the flow is
        on, and the rest, which are not judged (their partitions are read again)."""
        generation = self.port.generation()
        if not self.port.flow_active():
            return [], chunks
        live = [c for c in chunks if c.generation == generation]
        stale = [c for c in chunks if c.generation != generation]
        if stale:
            dropped = sum(len(c.records) for c in stale)
            log.info("%d records fetched before a rebalance will be read again", dropped)
        return live, stale

    def current(self, chunks: list[Chunk]) -> list[Chunk]:
        """The current chunks of :meth:`split`."""
        return self.split(chunks)[0]

    async def prepare(self, chunks: list[Chunk]) -> None:
        """Make ready the partitions of events chunks not judged here yet: an engine on
        the partition's tables, and its view rebuilt from the subject-view topic."""
        for chunk in chunks:
            if chunk.topic == self.topics.events and chunk.partition not in self._engines:
                await self.views.open(chunk.partition)
                self._partition(chunk.partition)

    def take(self, chunks: list[Chunk]) -> None:
        """Judge or fold each current chunk, by its topic (:meth:`prepare` them first)."""
        events = [c for c in chunks if c.topic == self.topics.events]
        if events:
            self.judge(events)
        for chunk in chunks:
            if chunk.topic == self.topics.partials:
                self.fold(chunk)

    def judge(self, chunks: list[Chunk]) -> None:
        """Judge records of the events topic; their alerts and dead letters go out at once."""
        started = time.perf_counter()
        add = self.sender.add
        alerts_topic, dead_topic = self.topics.alerts, self.topics.dead_letter
        records_topic = self.topics.records
        counts: Tally[str] = Tally()
        alert_counts: Tally[tuple[str, str]] = Tally()
        forwarded = self._sent_alerts if self.on_delivered is not None else None
        ahead = self.ahead
        for chunk in chunks:
            partition = chunk.partition
            _, engine = self._partition(partition)
            process, process_scanned = engine.process, engine.process_scanned
            fold_view = self.views.folder(partition)  # prepare() opened it
            touched = self._touched.setdefault(partition, set())
            where = f"{chunk.topic}[{partition}]@"
            verdicts = ahead(chunk) if ahead is not None else None
            if verdicts is not None:
                counts["ahead"] += sum(v is not None for v in verdicts)
            for n, record in enumerate(chunk.records):
                offset = record.offset
                raw = record.value if isinstance(record.value, bytes) else b""
                origin = f"{where}{offset}"
                verdict = verdicts[n] if verdicts is not None else None
                if verdict is None:
                    outcome = process(raw, offset=offset, partition=partition, origin=origin)
                else:  # decoded, validated and scanned as process() would have; the
                    # child passes over a message holding raw personal data (none found)
                    made = as_scanned(*verdict)
                    outcome = process_scanned(raw, made, offset=offset, origin=origin)
                dead = outcome.dead_letter
                if dead is not None:
                    counts["dead_letter"] += 1
                    value = raw if not (dead["redacted"] or dead.get("truncated")) else None
                    if value is None:
                        value = dead["original"].encode()
                    add(dead_topic, self._dead_key(record.key), value, dead_letter_headers(dead))
                    continue
                if outcome.status == "duplicate":
                    counts["duplicate"] += 1
                    continue
                counts[outcome.event.type if outcome.event is not None else "access"] += 1
                for alert in outcome.alerts:
                    if alert.get("status") == "retracted":
                        counts["retracted"] += 1
                    else:
                        alert_counts[alert["article"], alert["severity"]] += 1
                    key = alert["recipient"] or alert["source"]
                    queued = add(alerts_topic, key.encode(), orjson.dumps(alert))
                    if queued and forwarded is not None:
                        forwarded.append(alert)
                for record in outcome.records:
                    counts["record"] += 1
                    add(records_topic, record["recipient"].encode(), orjson.dumps(record))
                if outcome.incidents:
                    touched.update(outcome.incidents)
                if outcome.view:
                    fold_view(outcome.view)
            self.views.ship(partition)
            self.positions[partition] = chunk.records[-1].offset
            self._pending.setdefault(chunk.tp, []).append(chunk)
        metrics = self.metrics
        for kind in ("access", "consent"):
            if counts[kind]:
                metrics.events.labels(kind).inc(counts[kind])
        if counts["dead_letter"]:
            metrics.dead_letters.inc(counts["dead_letter"])
        if counts["duplicate"]:
            metrics.duplicates.inc(counts["duplicate"])
        if counts["retracted"]:
            metrics.retracted.inc(counts["retracted"])
        if counts["record"]:
            metrics.records.inc(counts["record"])
        if counts["ahead"]:
            metrics.decoded_ahead.inc(counts["ahead"])
        for (article, severity), n in alert_counts.items():
            metrics.alerts.labels(article, severity).inc(n)
        metrics.batch_seconds.observe(time.perf_counter() - started)

    def _dead_key(self, key: bytes | None) -> bytes | None:
        """The key as received, unless it holds raw personal data (then masked), in at
        most :data:`_DEAD_KEY_BYTES` bytes. The whole key is looked at, whatever its
        length or encoding (a key cut first could keep half an address the redactor no
        longer knows; bytes that are not UTF-8 around an address hide nothing)."""
        if key is None:
            return None
        text = key.decode("utf-8", errors="replace")
        masked = self.redactor.mask(text)
        if masked == text:
            return key[:_DEAD_KEY_BYTES]
        return masked.encode()[:_DEAD_KEY_BYTES].decode("utf-8", errors="ignore").encode()

    # -- incidents -----------------------------------------------------------------------------

    def fold(self, chunk: Chunk) -> None:
        """Merge a chunk of incident partials into the board; publish what it says to."""
        view = self._board(chunk.partition)
        board = self._incident_board(view)
        for record in chunk.records:
            try:
                data = orjson.loads(record.value)
                partial = IncidentPartial.from_json(data["partial"])
                iid = record.key.decode()
                publication = board.update(iid, int(data["partition"]), partial)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                # Only workers write this topic; a record they cannot read is a bug to
                # see in the log, never a reason to stop.
                log.error(
                    "unreadable incident partial at %s[%d]@%d: %s",
                    chunk.topic,
                    chunk.partition,
                    record.offset,
                    type(exc).__name__,
                )
                continue
            if publication is not None:
                self._publish(publication)
        self._pending.setdefault(chunk.tp, []).append(chunk)

    def publish_incidents(self) -> int:
        """Publish every incident whose count changed since it was last published.

        The board's record of what was published is written only by :meth:`flush`,
        after Kafka acknowledged the publications: a crash in between publishes them
        again, never loses one.
        """
        n = 0
        for view in self._boards.values():
            for publication in self._incident_board(view).flush():
                self._publish(publication)
                n += 1
        return n

    def adopt_boards(self, partitions: Iterable[int]) -> None:
        """Take over the board of each partials partition now held, from its table.

        Called once the partitions' tables are recovered: the next
        :meth:`publish_incidents` republishes what a stopped or crashed worker had
        folded in but not published.
        """
        for partition in partitions:
            self._board(partition)

    def _publish(self, publication: dict[str, Any]) -> None:
        self.metrics.incidents.inc()
        added = self.sender.add(
            self.topics.incidents,
            str(publication["incident_id"]).encode(),
            orjson.dumps(publication),
        )
        if added and self.on_delivered is not None:
            self._sent_incidents.append(publication)

    def _board(self, partition: int) -> BoardView:
        view = self._boards.get(partition)
        if view is None:
            view = self._boards[partition] = BoardView(self.tables["board"], partition, self.writer)
        return view

    @staticmethod
    def _incident_board(view: BoardView) -> IncidentBoard:
        return IncidentBoard(view, factor=2.0, quiet=timedelta(hours=1))

    # -- 2. flush ----------------------------------------------------------------------------------

    def unflushed(self) -> int:
        """Records judged or folded and in no flush yet."""
        return sum(len(c.records) for chunks in self._pending.values() for c in chunks)

    def flush_done(self) -> bool:
        """A flush was under way and has ended: :meth:`settled` returns at once."""
        return self._flushing is not None and self._flushing.done()

    async def flush(self) -> bool:
        """A whole flush: the one under way settled, a new one started and settled.

        Returns False when Kafka did not take the outputs of either: everything
        pending was dropped and is read again.
        """
        earlier = await self.settled()
        self.start_flush()
        return await self.settled() and earlier

    async def settled(self) -> bool:
        """Wait for the flush under way, if any, and return what it returned (True
        when none was under way). :class:`StateNotWritten` is raised here."""
        flushing = self._flushing
        if flushing is None:
            return True
        started = time.perf_counter()
        try:
            return await asyncio.shield(flushing)
        finally:
            if flushing.done():
                self._flushing = None
            self.metrics.flush_loop.inc(time.perf_counter() - started)

    def abandon(self) -> None:
        """Cancel the flush under way, if any (the worker stops on an error): what it
        did not ack is judged again from the commits."""
        flushing, self._flushing = self._flushing, None
        if flushing is not None and not flushing.done():
            flushing.cancel()

    def start_flush(self) -> None:
        """Start a flush of everything judged so far: step 1 at once, the rest in a task
        (the module docstring). The flush before it must have settled."""
        if self._flushing is not None:
            raise RuntimeError("a flush is under way: settled() first")
        if not self.port.flow_active():
            # A rebalance is under way: what was judged is dropped when the partitions
            # are revoked, and judged again by their next owner.
            return
        started = time.perf_counter()
        # 1. the incident partials of what changed
        for partition, incident_ids in self._touched.items():
            found = self._engines.get(partition)
            if found is None:
                continue
            state = found[0]
            for iid in sorted(incident_ids):
                partial = state.incidents.get(iid)
                if partial is None:
                    continue
                self.sender.add(
                    self.topics.partials,
                    iid.encode(),
                    orjson.dumps({"partition": partition, "partial": partial.to_json()}),
                )
        self._touched.clear()
        # ... the rows of each partition's view that changed, asked now. Required as the
        # tables' records are: the view is rebuilt from its topic.
        newest = {p: engine.stats.newest for p, (_, engine) in self._engines.items()}
        rows = self.views.ask_flush(newest, self._retention_days)
        # ... each changed key's record, held until the outputs are acknowledged
        for state, _ in self._engines.values():
            state.flush()
        for board in self._boards.values():
            board.flush()
        records = self.writer.cut()
        chunks, self._pending = self._pending, {}
        delivered = (self._sent_alerts, self._sent_incidents)
        self._sent_alerts, self._sent_incidents = [], []
        self._flushing = asyncio.ensure_future(
            self._finish(started, rows, records, chunks, delivered)
        )
        self.metrics.flush_loop.inc(time.perf_counter() - started)

    async def _finish(
        self,
        started: float,
        rows: Coroutine[Any, Any, list[tuple[int, list[tuple[str, bytes | None]]]]],
        records: list[Held],
        chunks: dict[Any, list[Chunk]],
        delivered: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    ) -> bool:
        """Steps 2-4 of a flush started (:meth:`start_flush`)."""
        try:
            return await self._steps(rows, records, chunks, delivered)
        finally:
            self.metrics.flush_seconds.observe(time.perf_counter() - started)

    async def _acknowledged(self, step: str) -> None:
        """Send what is queued and wait until Kafka acknowledged everything sent, counting
        the time under ``step``."""
        started = time.perf_counter()
        try:
            await self.sender.flush()
        finally:
            self.metrics.kafka_wait.labels(step).inc(time.perf_counter() - started)

    async def _steps(
        self,
        rows: Coroutine[Any, Any, list[tuple[int, list[tuple[str, bytes | None]]]]],
        records: list[Held],
        chunks: dict[Any, list[Chunk]],
        delivered: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    ) -> bool:
        started = time.perf_counter()
        try:
            changed = await rows
        finally:
            self.metrics.view_wait.inc(time.perf_counter() - started)
        for partition, partition_rows in changed:
            for key, value in partition_rows:
                self.sender.add(
                    self.topics.views, key.encode(), value, partition=partition, required=True
                )
        # 2. every output delivered
        try:
            await self._acknowledged("outputs")
        except OutputsLost as exc:
            if exc.refused:
                # A view row Kafka refuses as too large would be refused again after a
                # rewind: stop, as for the tables' records below.
                raise StateNotWritten(
                    "Kafka refused a row of the subject view as too large; stopping before "
                    "committing past it"
                ) from exc
            await self._rewind(exc)
            return False
        self._tell_delivered(*delivered)
        if not self.port.flow_active():
            # Revoked while waiting: nothing of it is ours to write now. Its records stay
            # held and its chunks pending: the revocation drops those it revokes, and
            # the next flush writes the rest.
            self._put_back(chunks)
            return True
        # 3. state written (each changed key once), 4. offsets acked
        generation = self.port.generation()
        self.writer.write(records)
        try:
            await self._acknowledged("state")  # the tables' changelog records, each key once
        except OutputsLost as exc:
            if not exc.required:
                # Only outputs judged since this flush began were lost, and this flush's
                # records were written: its events are judged again on them, as after a
                # crash between steps 3 and 4.
                await self._rewind(exc)
                return False
            raise StateNotWritten(
                "Kafka did not acknowledge a record of the tables' changelog; stopping "
                "before committing past it (the next start recovers the tables and judges "
                "again from the last commit)"
            ) from exc
        self.writer.written()
        for tp, judged in chunks.items():
            offsets = [r.offset for c in judged if c.generation == generation for r in c.records]
            if offsets:
                self.port.ack(tp, offsets)
        return True

    async def _rewind(self, exc: OutputsLost) -> None:
        """Kafka did not take outputs: drop everything pending, and read every partition
        again from its commit, the boards from their tables."""
        log.error("%s", exc)
        self.metrics.rewinds.inc()
        self.rewinds += 1
        self.drop_all()
        await self.port.rewind()
        self.adopt_boards(self._boards_held)

    def _put_back(self, chunks: dict[Any, list[Chunk]]) -> None:
        """A flush's chunks pending again, before those judged since."""
        for tp, judged in chunks.items():
            self._pending[tp] = judged + self._pending.get(tp, [])

    # -- 3. revoke -------------------------------------------------------------------------------

    def revoke(self, tps: Iterable[Any]) -> None:
        """Drop what was judged and not flushed of each revoked partition, its records
        held, and its views."""
        state_tables = [self.tables[name] for name in PartitionState.TABLES]
        for tp in tps:
            topic, partition = tp.topic, tp.partition
            if topic == self.topics.events:
                self._engines.pop(partition, None)
                self.views.drop(partition)
                self._touched.pop(partition, None)
                self.positions.pop(partition, None)
                self._pending.pop(tp, None)
                self.writer.forget(state_tables, partition)
            elif topic == self.topics.partials:
                self._boards.pop(partition, None)
                self._pending.pop(tp, None)
                self.writer.forget([self.tables["board"]], partition)

    def drop_all(self) -> None:
        """Forget everything not yet durable: views, pending chunks, records held,
        queued outputs."""
        self._boards_held = sorted(self._boards)
        self._engines.clear()
        self.views.drop_all()
        self._boards.clear()
        self._pending.clear()
        self._touched.clear()
        self._sent_alerts.clear()
        self._sent_incidents.clear()
        self.writer.discard()
        self.sender.discard()

    def _tell_delivered(
        self, alerts: list[dict[str, Any]], incidents: list[dict[str, Any]]
    ) -> None:
        """Step 2, end: hand ``on_delivered`` what Kafka acknowledged. What it does is
        not part of the commit: a failure there is logged (without the records) and
        the commit goes on."""
        if self.on_delivered is None or not (alerts or incidents):
            return
        try:
            self.on_delivered(alerts, incidents)
        except Exception as exc:
            log.error(
                "forwarding %d alerts and %d incidents failed: %s",
                len(alerts),
                len(incidents),
                type(exc).__name__,
            )

    # -- engines -----------------------------------------------------------------------------------

    def _partition(self, partition: int) -> tuple[PartitionState, Engine]:
        found = self._engines.get(partition)
        if found is None:
            state = PartitionState(
                self.tables,
                partition,
                dedup_window=self._dedup_window,
                cached_subjects=self._cached_subjects,
                writer=self.writer,
            )
            engine = Engine(
                self.policy,
                state.as_state(),
                redactor=self.redactor,
                consent_lateness=self._lateness,
            )
            found = self._engines[partition] = (state, engine)
        return found

    async def subject(self, partition: int, spellings: list[str]) -> tuple[str, Lineage | None]:
        """(the spelling found, the subject's lineage or None) in a partition held here."""
        return await self.views.find(partition, spellings)

    def held_partitions(self) -> list[int]:
        """The events partitions with an engine on this worker."""
        return sorted(self._engines)
