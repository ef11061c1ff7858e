"""The faust app: the stream processors that put the core on Kafka. Wiring only.

    events ──► [evaluate] ──► alerts        (key: recipient)
       │           │    └───► dead-letter   (original bytes; reason in headers)
       │           └────────► incident-partials ──► [evaluate: board] ──► incidents
       └── tables (changelog-backed, keys carry their partition):
           seen, subjects, edges, incidents, board

One task, ``evaluate``, does all the work, so its steps never interleave: it takes
fetched records of the events and incident-partials topics from the intake
(:mod:`streams.intake`), hands them to the :class:`~streams.checkpoint.Checkpoint`
(which judges events, folds partials and says when state is durable), starts a flush
every ``flush_events`` records, or when nothing more waits and the oldest record not
yet flushed was taken ``flush_linger_ms`` ago, and republishes changed incidents
every ``incident_flush_seconds``. A flush awaits Kafka and the view process while the
task judges on; the next flush starts once it has settled, so one is under way at a
time. Alerts do not wait for a flush: they leave as soon as their events are judged.
Chunks that wait in the intake meanwhile are decoded ahead in a process of the
worker's own (:mod:`streams.ahead`). Outputs leave in batches through the
:class:`~streams.outputs.Sender`.

With a routes file (``LINEAGE_ROUTES``), the alerts and incidents Kafka acknowledged
are also handed to a :class:`~lineage.notify.Router` (alert routing), which forwards
them in its own threads, at least once: an event judged again after a crash or a
rebalance forwards its alerts again, with the same ``alert_id``.

Where each part lives: topics in :mod:`streams.topics`, client settings in
:mod:`streams.kafka_config`, the commit protocol in :mod:`streams.checkpoint`, web
pages in :mod:`streams.web`, metrics in :mod:`streams.metrics`, and every private
name of faust or aiokafka in :mod:`streams.faust_internals`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterable
from typing import Any

import faust

from lineage.backoff import Backoff
from lineage.notify import Kind, Router, load_routes, summary_line
from lineage.policy.model import Policy
from lineage.redact import Redactor
from lineage.subjects import answer
from lineage.view import Row
from streams.ahead import Lookahead
from streams.changelog import murmur2_partition, read_view
from streams.checkpoint import Checkpoint, StateNotWritten
from streams.faust_internals import (
    ChangelogWriter,
    LineageApp,
    RecoveryWatch,
    TrackingProducer,
    ack_offsets,
    partition_offsets,
    recovery_stalls,
)
from streams.heap import HeapTrim
from streams.intake import Intake
from streams.kafka_config import KafkaConfig
from streams.metrics import Metrics
from streams.outputs import Sender
from streams.runner import install_repeat_filter
from streams.settings import Settings
from streams.tables import PartitionedTable
from streams.topics import TABLES, KafkaUnavailable, Topics, ensure_topics, table_name
from streams.web import register_pages

__all__ = ["LineageWorker"]

log = logging.getLogger("lineage.worker")

#: How long a graceful stop waits for the last flush.
_STOP_TIMEOUT = 15.0
#: How long, within that, notifications still waiting may take to go out.
_NOTIFY_TIMEOUT = 5.0
#: How often the judging loop brings the gauges up to date (a scrape reads them as set).
_GAUGE_SECONDS = 1.0
#: The first and the longest wait before a view's topic is read again (Kafka away).
_READ_AGAIN_SECONDS = 1.0
_READ_AGAIN_MAX_SECONDS = 30.0


class LineageWorker:
    """The faust app, its topics, tables, evaluate task and web pages, for one policy."""

    def __init__(self, settings: Settings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy
        self.config = KafkaConfig(settings)
        self.topics = Topics.of(settings)
        key = settings.redaction_key.get_secret_value().encode() if settings.redaction_key else None
        if key is None:
            log.warning(
                "LINEAGE_REDACTION_KEY is not set: redaction tokens are random per process "
                "and will differ between workers"
            )
        self.redactor = Redactor(key)
        self.metrics = Metrics()
        self.lookahead = Lookahead(self.topics.events)
        self.intake = Intake({self.topics.events, self.topics.partials}, ahead=self.lookahead)
        self.app = LineageApp(settings.app_id, **self.config.faust_app())
        self.app.intake = self.intake
        self.app.fetch_wait_ms = settings.fetch_wait_ms
        self.events_topic = self._raw_topic(self.topics.events)
        self.partials_topic = self._raw_topic(self.topics.partials)
        self.tables = {
            name: self.app.tables.add(
                PartitionedTable(
                    self.app,
                    name=table_name(settings, name),
                    beacon=self.app.tables.beacon,
                    partitions=settings.partitions,
                    # The table's own types, not only its schema's, name the codec its
                    # changelog topic is read back with: without them recovery decodes
                    # each value as JSON and the memory store holds objects, several
                    # times the size of the bytes.
                    key_type=str,
                    value_type=bytes,
                    schema=faust.Schema(
                        key_type=str,
                        value_type=bytes,
                        key_serializer="json",
                        value_serializer="raw",
                    ),
                    help=f"lineage {name} state, keys prefixed with their partition",
                    options=self.config.table_options(),
                )
            )
            for name in TABLES
        }
        roles = {
            self.topics.alerts: "alerts",
            self.topics.incidents: "incidents",
            self.topics.dead_letter: "dead-letter",
            self.topics.records: "provision-records",
            self.topics.partials: "incident-partials",
        }
        self.sender = Sender(
            lambda: TrackingProducer(**self.config.aiokafka_producer()),
            max_bytes=settings.max_output_bytes,
            on_refused=lambda topic, _: self.metrics.refused.labels(roles.get(topic, "")).inc(),
            on_sent=lambda topic, n: self.metrics.outputs.labels(roles.get(topic, "")).inc(n),
        )
        self.router = self._router(settings)
        # The tables' changelog records go out in the sender's batches, not one by one
        # through faust's producer.
        writer = ChangelogWriter(
            lambda topic, key, value, partition: self.sender.add(
                topic, key, value, partition=partition, required=True
            )
        )
        self.sender.on_acked = writer.acknowledged
        self.checkpoint = Checkpoint(
            policy=policy,
            redactor=self.redactor,
            tables=self.tables,
            sender=self.sender,
            port=FaustPort(self.app, self.intake, settings),
            topics=self.topics,
            views_dir=settings.state_dir / "views",
            writer=writer,
            metrics=self.metrics,
            dedup_window=settings.dedup_window,
            cached_subjects=settings.cached_subjects,
            consent_lateness=settings.consent_lateness,
            on_delivered=self._forward if self.router is not None else None,
            ahead=self.lookahead.verdicts,
        )
        #: The partitions this worker holds, as faust last said.
        self.assignment: frozenset[Any] = frozenset()
        self._lagging: set[int] = set()  # partitions with a lag gauge
        self._loop: asyncio.AbstractEventLoop | None = None
        self._recovered = False  # set when faust finished a rebalance's table recovery
        self._stopping = False
        self._stopped = asyncio.Event()
        self._register()

    # -- alert routing -------------------------------------------------------------------------

    def _router(self, settings: Settings) -> Router | None:
        if settings.routes is None:
            return None
        routes = load_routes(settings.routes)
        counter = self.metrics.notifications
        for route in routes.routes:
            for outcome in ("sent", "failed", "dropped"):
                counter.labels(route.name, outcome)  # every series shows, from 0
        return Router(
            routes, on_outcome=lambda route, outcome, n: counter.labels(route, outcome).inc(n)
        )

    def _forward(self, alerts: list[dict[str, Any]], incidents: list[dict[str, Any]]) -> None:
        """What Kafka acknowledged, to alert routing (never blocks; at least once)."""
        assert self.router is not None
        for alert in alerts:
            self.router.submit(Kind.ALERT, alert)
        for incident in incidents:
            self.router.submit(Kind.INCIDENT, incident)

    # -- topics --------------------------------------------------------------------------------

    def ensure_topics(self, timeout: float = 30.0) -> list[str]:
        """Create the contract's topics that do not exist yet; return those it created."""
        retention = self.policy.policy.records_retention_days
        return ensure_topics(self.settings, timeout, records_retention_days=retention)

    def _raw_topic(self, name: str) -> Any:
        # Bytes in, bytes out: the core decodes and validates, so bad input is data.
        return self.app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    # -- wiring --------------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        # The agents subscribe the worker to its topics (and so to their partitions and
        # the co-partitioned tables); the records themselves never reach their streams:
        # the consumer hands them to the intake, and the evaluate task takes them.
        for topic, name in ((self.events_topic, "evaluate"), (self.partials_topic, "board")):
            app.agent(topic, name=name)(_subscription_only)

        @app.task  # type: ignore[untyped-decorator]
        async def evaluate() -> None:
            await self.evaluate()

        watch = RecoveryWatch(self.settings.recovery_stall_seconds)

        @app.timer(max(1.0, self.settings.recovery_stall_seconds / 4))  # type: ignore[untyped-decorator]
        async def watch_recovery() -> None:
            now = time.monotonic()
            stalled = watch.stalled(
                recovery_stalls(app, self.settings.recovery_stall_seconds, now), now
            )
            if stalled:
                self.metrics.recovery_nudges.inc(len(stalled))
                log.warning(
                    "table recovery received nothing from %s for %.0f s: reading them again",
                    ", ".join(f"{tp.topic}[{tp.partition}]@{o}" for tp, o in stalled.items()),
                    self.settings.recovery_stall_seconds,
                )
                await app.consumer.seek_wait(stalled)

        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        app.on_rebalance_complete.connect(self._on_rebalance_complete)  # type: ignore[arg-type]
        app.before_stop.append(self._stop_evaluate)
        register_pages(
            app,
            settings=self.settings,
            policy=self.policy,
            metrics=self.metrics,
            partitions=self.assigned_partitions,
            subject=self.find_subject,
            on_worker=self._on_worker,
        )

    async def _on_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        revoked = set(args[0] if args else kwargs.get("revoked", ()))
        self.intake.clear()  # fetched before the rebalance: read again after it
        self.checkpoint.revoke(revoked)
        # Replaced, never changed in place: the web server's thread reads it.
        self.assignment = frozenset(self.assignment - revoked)
        self._recovered = False
        self._update_lag()

    async def _on_assigned(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self.assignment = frozenset(args[0] if args else kwargs.get("assigned", ()))
        self._update_lag()

    async def _on_rebalance_complete(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        self._recovered = True

    # -- evaluate ------------------------------------------------------------------------------

    async def evaluate(self) -> None:
        """The one loop that judges, folds, flushes and publishes (module docstring)."""
        install_repeat_filter()
        self._loop = asyncio.get_running_loop()
        await self.sender.start()
        if self.router is not None:
            self.router.start()
        settings, checkpoint, intake = self.settings, self.checkpoint, self.intake
        publish_every = settings.incident_flush_seconds
        next_publish = time.monotonic() + publish_every
        next_gauges = 0.0
        heap = HeapTrim()
        adopted = False
        linger = settings.flush_linger_ms / 1000
        unflushed_since: float | None = None  # when the oldest record not flushed was taken
        try:
            while not (self.app.should_stop or self._stopping):
                wait = 0.2
                if unflushed_since is not None:
                    wait = max(0.0, min(wait, unflushed_since + linger - time.monotonic()))
                if checkpoint.flush_done():
                    await self._settle()  # its failure stops the worker now, not later
                chunks = await intake.take(settings.batch_size, timeout=wait)
                rewinds = checkpoint.rewinds
                live, stale = checkpoint.split(chunks)
                if live:
                    # A partition judged here first has its view rebuilt meanwhile: a
                    # rebalance then may leave its chunks stale too.
                    await checkpoint.prepare(live)
                    live, later = checkpoint.split(live)
                    stale += later
                if stale:
                    await self.app.give_back({c.tp: c.records[0].offset for c in reversed(stale)})
                if checkpoint.rewinds != rewinds:
                    # A flush rewound while these waited: every partition is read again
                    # from its commit, these records with it.
                    live = []
                if live:
                    checkpoint.take(live)
                    await self.sender.send()
                # State is written, and offsets acked, every flush_events records, or when
                # nothing more waits and the oldest was taken flush_linger_ms ago: under a
                # trickle a flush (its round trips, its view and changelog writes) is paid
                # for a linger's worth of events, not for each fetch.
                pending = checkpoint.unflushed()
                now = time.monotonic()
                if pending and unflushed_since is None:
                    unflushed_since = now
                if pending >= settings.flush_events or (
                    pending
                    and intake.empty()
                    and unflushed_since is not None
                    and now - unflushed_since >= linger
                ):
                    await self._start_flush()
                    if checkpoint.unflushed():
                        # Not written: a rebalance is under way. Wait a linger again,
                        # not a spin, for the revocation that drops them.
                        unflushed_since = time.monotonic()
                if not checkpoint.unflushed():
                    unflushed_since = None
                if self._recovered and not adopted:
                    # Boards of the partials partitions held now, from their tables: what
                    # a stopped or crashed worker folded in and did not publish goes out.
                    checkpoint.adopt_boards(self._held(self.topics.partials))
                    adopted = True
                    next_publish = 0.0
                if not self._recovered:
                    adopted = False
                if time.monotonic() >= next_publish:
                    if checkpoint.publish_incidents():
                        await self._start_flush()
                    next_publish = time.monotonic() + publish_every
                if time.monotonic() >= next_gauges:
                    self._update_lag()
                    next_gauges = time.monotonic() + _GAUGE_SECONDS
                # What the worker freed goes back to the system (streams.heap).
                heap.maybe(time.monotonic(), worked=bool(chunks))
            # A graceful stop: make durable what was judged, and publish every incident
            # that changed, before faust stops the consumer and commits.
            await self._settle()
            if checkpoint.unflushed():
                await self._flush()
            if checkpoint.publish_incidents():
                await self._flush()
        finally:
            checkpoint.abandon()  # stopped by an error: a flush under way ends here
            await self.sender.stop()
            self.checkpoint.views.close()
            self.lookahead.close()
            if self.router is not None:
                stats = await asyncio.to_thread(self.router.close, _NOTIFY_TIMEOUT)
                log.info("%s", summary_line(stats))
            self._stopped.set()

    async def _flush(self) -> None:
        """A whole flush, awaited."""
        await self._start_flush()
        await self._settle()

    async def _start_flush(self) -> None:
        """Start a flush, once the one under way has settled."""
        await self._settle()
        self.checkpoint.start_flush()

    async def _settle(self) -> None:
        """Wait for the flush under way; a state Kafka did not take stops the worker."""
        try:
            await self.checkpoint.settled()
        except StateNotWritten as exc:
            log.critical("%s", exc)
            await self.app.crash(exc)
            raise

    async def _stop_evaluate(self) -> None:
        self._stopping = True
        try:
            await asyncio.wait_for(self._stopped.wait(), _STOP_TIMEOUT)
        except TimeoutError:
            log.warning("the last flush did not finish in %.0f s", _STOP_TIMEOUT)

    # -- what this worker holds ----------------------------------------------------------------

    def _held(self, topic: str) -> list[int]:
        return sorted(tp.partition for tp in self.assignment if tp.topic == topic)

    def assigned_partitions(self) -> list[int]:
        """The partitions of the events topic this worker holds now."""
        return self._held(self.topics.events)

    async def find_subject(self, subject: str) -> tuple[str, Any]:
        """Where a subject's lineage is: ("here", the answer), ("there", the URL of the
        worker that holds its partition) or ("unknown", None) during a rebalance."""
        spellings = [subject]
        masked = self.redactor.mask(subject)
        if masked != subject:
            spellings.append(masked)  # written as raw personal data: kept under its token
        topic = self.topics.events
        count = self.app.consumer.topic_partitions(topic) or self.settings.partitions
        partition = murmur2_partition(subject.encode(), count)
        if partition in self.assigned_partitions():
            found, lineage = await self.checkpoint.subject(partition, spellings)
            return "here", answer(found, lineage, self.policy.version)
        own = str(self.app.conf.canonical_url).rstrip("/")
        for url, topics in self.app.router.external_topics_metadata().items():
            if partition in topics.get(topic, ()) and str(url).rstrip("/") != own:
                return "there", str(url)
        return "unknown", None

    def _update_lag(self) -> None:
        """Set ``lineage_consumer_lag`` for each events partition held: its end offset
        less its committed offset (what a crash or a move would judge again), or, before
        anything was committed, less the next offset to judge; never the raw end offset.
        A partition not held any more loses its series."""
        held = {tp.partition: tp for tp in self.assignment if tp.topic == self.topics.events}
        for partition in self._lagging - held.keys():
            self.metrics.lag.remove(str(partition))
        self._lagging &= held.keys()
        for partition, tp in held.items():
            end, committed = partition_offsets(self.app.consumer, tp)
            judged = self.checkpoint.positions.get(partition)
            done = committed if committed is not None else None
            if done is None and judged is not None:
                done = judged + 1
            if end is None or done is None:
                if partition in self._lagging:
                    self.metrics.lag.remove(str(partition))
                    self._lagging.discard(partition)
                continue
            self.metrics.lag.labels(str(partition)).set(max(end - done, 0))
            self._lagging.add(partition)

    async def _on_worker(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` on the worker's loop (from the web server's thread)."""
        loop = self._loop
        if loop is None or loop is asyncio.get_running_loop():
            return await coroutine
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, loop))


class FaustPort:
    """The commit protocol's port (:class:`~streams.port.KafkaPort`) on faust and aiokafka."""

    def __init__(self, app: LineageApp, intake: Intake, settings: Settings) -> None:
        self.app = app
        self.intake = intake
        self.settings = settings

    def generation(self) -> int:
        return int(self.app.consumer_generation_id)

    def flow_active(self) -> bool:
        return bool(self.app.flow_control.is_active())

    def ack(self, tp: Any, offsets: Iterable[int]) -> None:
        ack_offsets(self.app.consumer, tp, offsets)

    async def rewind(self) -> None:
        self.intake.clear()
        await self.app.consumer.perform_seek()

    async def read_view(self, partition: int) -> list[Row]:
        """The rows of a partition's view on its topic, read again until Kafka answers:
        judging that partition waits for its view, and a broker away for a while must
        not stop the worker (a stop ends the wait)."""
        backoff = Backoff(_READ_AGAIN_SECONDS, _READ_AGAIN_MAX_SECONDS)
        while True:
            try:
                return await read_view(self.settings, partition)
            except KafkaUnavailable as exc:
                wait = backoff.next()
                log.warning(
                    "the subjects' view of partition %d could not be read (%s): "
                    "reading it again in %.0f s",
                    partition,
                    exc,
                    wait,
                )
            await asyncio.sleep(wait)


async def _subscription_only(stream: Any) -> None:
    async for event in stream:
        raise RuntimeError(
            f"an event reached the faust stream at {event.message.tp}@{event.message.offset}; "
            "the intake should have taken it"
        )
