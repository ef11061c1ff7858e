"""The faust app: the stream processors that put the core on Kafka.

    events ──► [evaluate] ──► alerts        (key: recipient)
       │           │    └───► dead-letter   (original bytes; reason in headers)
       │           └────────► incident-partials ──► [board] ──► incidents
       └── tables (changelog-backed, keys carry their partition):
           seen, consents, edges, incidents, board

``evaluate`` takes the events topic's records whole from each fetch
(:mod:`streams.intake`, not one faust event per message), judges them with one
:class:`lineage.Engine` per partition (state read through :mod:`streams.tables`
views) and sends their alerts and dead letters at once. Every ``flush_events``
judged events, or when no fetched events wait, it writes the changed state (each
key once), sends incident partials and acks the offsets, in one step with no await
between: faust commits an offset only after that, so no commit passes an event
whose state is not written, and a rebalance simply drops what was judged but not
written (the next owner judges it again). Exactness under at-least-once delivery
comes from the engine: every record carries the offset it applied up to, so a batch
that is redelivered after a crash re-derives the same alerts (same ids) and counts
nothing twice. ``board`` merges every partition's incident partials into one
incident per (rule, source, recipient) and publishes it when it opens, grows by a
factor, or on a timer when it changed, never once per breaching event.

Web: ``/health``, ``/metrics`` (Prometheus), ``/graph?format=json|html|graphml|dot|mermaid``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import faust
import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from lineage.engine import Engine
from lineage.graph import build_graph
from lineage.incidents import IncidentBoard
from lineage.policy.model import Policy
from lineage.redact import Redactor
from lineage.state import IncidentPartial
from streams.intake import (
    Chunk,
    Intake,
    LineageApp,
    RecoveryWatch,
    ack_offsets,
    current_chunks,
)
from streams.kafka_graph import read_edges, table_name
from streams.settings import Settings
from streams.tables import BoardView, PartitionedTable, PartitionState

__all__ = ["LineageWorker"]

log = logging.getLogger("lineage.worker")

#: Messages (alerts, dead letters, partials, table records) that may wait to be sent.
_MAX_UNSENT = 20_000

_CONTENT_TYPES = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "graphml": "application/xml",
    "dot": "text/vnd.graphviz",
    "mermaid": "text/plain; charset=utf-8",
}


class Metrics:
    """The worker's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "lineage_events", "Messages judged, by type", ["type"], registry=self.registry
        )
        self.alerts = Counter(
            "lineage_alerts",
            "Alerts raised, by article and severity",
            ["article", "severity"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "lineage_dead_letters", "Messages sent to the dead letters", registry=self.registry
        )
        self.duplicates = Counter(
            "lineage_duplicates", "Events dropped as duplicate event ids", registry=self.registry
        )
        self.incidents = Counter(
            "lineage_incident_publications", "Incident publications", registry=self.registry
        )
        self.lag = Gauge(
            "lineage_consumer_lag",
            "Messages of lineage.events not yet judged, by partition",
            ["partition"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "lineage_batch_seconds", "Time to judge one batch", registry=self.registry
        )


def _security(settings: Settings) -> dict[str, Any]:
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return {}
    context = settings.ssl_context()
    if protocol == "SSL":
        return {"broker_credentials": context}
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    return {
        "broker_credentials": faust.SASLCredentials(
            username=settings.sasl_username or "",
            password=password,
            ssl_context=context,
            mechanism=settings.sasl_mechanism,
        )
    }


class LineageWorker:
    """The faust app, its topics, tables, agents and web views, for one policy."""

    def __init__(self, settings: Settings, policy: Policy) -> None:
        self.settings = settings
        self.policy = policy
        key = settings.redaction_key.get_secret_value().encode() if settings.redaction_key else None
        if key is None:
            log.warning(
                "LINEAGE_REDACTION_KEY is not set: redaction tokens are random per process "
                "and will differ between workers"
            )
        self.redactor = Redactor(key)
        self.metrics = Metrics()
        self.app = LineageApp(
            settings.app_id,
            broker=[f"kafka://{host}" for host in settings.bootstrap.split(",")],
            store=settings.store,
            datadir=str(settings.state_dir),
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            table_standby_replicas=0,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            web_enabled=settings.web_port > 0,
            web_port=settings.web_port or 6066,
            web_bind=settings.web_host,
            web_in_thread=False,
            stream_wait_empty=False,
            broker_max_poll_records=settings.batch_size,
            consumer_max_fetch_size=settings.fetch_bytes,
            broker_commit_interval=settings.commit_interval,
            broker_session_timeout=settings.session_timeout,
            broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
            **_security(settings),
        )
        self.events_topic = self._raw_topic("events")
        self.alerts_topic = self._raw_topic("alerts")
        self.incidents_topic = self._raw_topic("incidents")
        self.dead_letter_topic = self._raw_topic("dead-letter")
        self.partials_topic = self._raw_topic("incident-partials")
        self.intake = self.app.intake = Intake(self.events_topic.get_topic_name())
        self.app.fetch_wait_ms = settings.fetch_wait_ms
        self.tables = {
            name: self.app.tables.add(
                PartitionedTable(
                    self.app,
                    name=table_name(settings, name),
                    beacon=self.app.tables.beacon,
                    partitions=settings.partitions,
                    schema=faust.Schema(
                        key_type=str,
                        value_type=bytes,
                        key_serializer="json",
                        value_serializer="raw",
                    ),
                    help=f"lineage {name} state, keys prefixed with their partition",
                )
            )
            for name in ("seen", "consents", "edges", "incidents", "board")
        }
        self._partitions: dict[int, tuple[PartitionState, Engine]] = {}
        # Judged since the state was last written: chunks to ack, incidents to send.
        self._pending: dict[int, list[Chunk]] = {}
        self._touched: dict[int, set[str]] = {}
        self._boards: dict[int, BoardView] = {}
        self._positions: dict[int, int] = {}
        self._register()

    # -- topics --------------------------------------------------------------------------------

    def topic_names(self) -> list[str]:
        return [
            self.settings.topic(name)
            for name in ("events", "alerts", "incidents", "dead-letter", "incident-partials")
        ]

    def ensure_topics(self, timeout: float = 30.0) -> list[str]:
        """Create the contract's topics that do not exist yet; return those it created.

        faust creates only its own internal topics; a worker that starts before any
        producer would otherwise subscribe to nothing until its next metadata refresh.
        """
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import KafkaError, TopicAlreadyExistsError

        from streams.kafka_graph import KafkaGraphError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.settings.bootstrap,
                request_timeout_ms=int(timeout * 1000),
                **self.settings.kafka_python_config(),
            )
        except KafkaError as exc:
            raise KafkaGraphError(
                f"cannot reach Kafka at {self.settings.bootstrap}: {exc.__class__.__name__}"
            ) from exc
        try:
            existing = set(admin.list_topics())
            wanted = [name for name in self.topic_names() if name not in existing]
            created = []
            for name in wanted:
                try:
                    admin.create_topics(
                        [
                            NewTopic(
                                name,
                                num_partitions=self.settings.partitions,
                                replication_factor=self.settings.replication_factor,
                            )
                        ]
                    )
                    created.append(name)
                except TopicAlreadyExistsError:
                    pass  # another worker was quicker
            return created
        finally:
            admin.close()

    # -- wiring --------------------------------------------------------------------------------

    def _raw_topic(self, name: str) -> Any:
        # Bytes in, bytes out: the core decodes and validates, so bad input is data.
        return self.app.topic(
            self.settings.topic(name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    def _register(self) -> None:
        app = self.app
        settings = self.settings

        # The agent subscribes the worker to the events topic (and so to its partitions
        # and the co-partitioned tables); the records themselves never reach its stream:
        # the consumer hands them to the intake, and the evaluate task judges them.
        @app.agent(self.events_topic, name="evaluate")
        async def evaluate(stream: Any) -> None:
            async for event in stream:
                raise RuntimeError(
                    f"an event reached the faust stream at {event.message.tp}"
                    f"@{event.message.offset}; the intake should have taken it"
                )

        @app.task  # type: ignore[untyped-decorator]
        async def evaluate_batches() -> None:
            while not app.should_stop:
                chunks = await self.intake.take(settings.batch_size)
                live, dropped = current_chunks(app, chunks)
                if dropped:
                    log.info("%d events fetched before a rebalance will be read again", dropped)
                if live:
                    self.judge_batch(live)
                # State is written, and offsets acked, every flush_events judged events or
                # when nothing more is waiting: fewer changelog records under load, and
                # no judged event waits for its commit when traffic is light.
                if self.unflushed() >= settings.flush_events or self.intake.empty():
                    self.flush_judged()
                # Outputs wait in faust's producer buffer until sent; when Kafka is slower
                # than judging, wait for it rather than let the buffer grow without end.
                buffer = app.producer.buffer
                while buffer.size > _MAX_UNSENT and not app.should_stop:
                    await buffer.flush_atmost(buffer.size - _MAX_UNSENT)

        @app.agent(self.partials_topic, name="board")
        async def board(stream: Any) -> None:
            async for events in stream.take_events(500, 0.5):
                self.fold_partials(events)

        @app.timer(settings.incident_flush_seconds)  # type: ignore[untyped-decorator]
        async def flush_incidents() -> None:
            self.flush_incidents()

        watch = RecoveryWatch(settings.recovery_stall_seconds)

        @app.timer(max(1.0, settings.recovery_stall_seconds / 4))  # type: ignore[untyped-decorator]
        async def watch_recovery() -> None:
            recovery = app.tables.recovery  # type: ignore[attr-defined]
            stalled = watch.stalled(recovery, time.monotonic())
            if stalled:
                log.warning(
                    "table recovery received nothing from %s for %.0f s: reading them again",
                    ", ".join(f"{tp.topic}[{tp.partition}]@{o}" for tp, o in stalled.items()),
                    settings.recovery_stall_seconds,
                )
                await app.consumer.seek_wait(stalled)

        async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
            revoked: Iterable[Any] = args[0] if args else kwargs.get("revoked", ())
            self.intake.clear()  # fetched before the rebalance: read again after it
            for tp in revoked:
                if tp.topic == self.events_topic.get_topic_name():
                    # Judged but not yet written: neither state nor offsets leave; the
                    # partition's next owner judges those events again.
                    self._partitions.pop(tp.partition, None)
                    self._positions.pop(tp.partition, None)
                    self._pending.pop(tp.partition, None)
                    self._touched.pop(tp.partition, None)
                elif tp.topic == self.partials_topic.get_topic_name():
                    self._boards.pop(tp.partition, None)

        app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]

        @app.page("/health")
        async def health(web: Any, request: Any) -> Any:
            return web.json(
                {
                    "status": "ok",
                    "policy": self.policy.policy.name,
                    "policy_version": self.policy.version,
                    "partitions": self.assigned_partitions(),
                }
            )

        @app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            self._update_lag()
            body = generate_latest(self.metrics.registry).decode()
            return web.text(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

        @app.page("/graph")
        async def graph(web: Any, request: Any) -> Any:
            from lineage.export import FORMATS, export_graph

            fmt = request.query.get("format", "json")
            if fmt not in FORMATS:
                return web.json({"error": f"unknown format {fmt!r}; one of {FORMATS}"}, status=400)
            edges = await read_edges(self.settings)
            text = export_graph(build_graph(self.policy, edges, generated_from="kafka"), fmt)
            return web.text(text, content_type=_CONTENT_TYPES[fmt].split(";")[0])

    # -- evaluate ------------------------------------------------------------------------------

    def _partition(self, partition: int) -> tuple[PartitionState, Engine]:
        found = self._partitions.get(partition)
        if found is None:
            state = PartitionState(
                self.tables,
                partition,
                dedup_window=self.settings.dedup_window,
                cached_subjects=self.settings.cached_subjects,
            )
            engine = Engine(self.policy, state.as_state(), redactor=self.redactor)
            found = self._partitions[partition] = (state, engine)
        return found

    def _events_assignment(self) -> list[Any]:
        """The partitions (faust TPs) of the events topic this worker holds now."""
        consumer = getattr(self.app, "_consumer", None)  # not created before start
        if consumer is None:
            return []
        topic = self.events_topic.get_topic_name()
        return [tp for tp in consumer.assignment() if tp.topic == topic]

    def assigned_partitions(self) -> list[int]:
        """The partitions of the events topic this worker holds now."""
        return sorted(tp.partition for tp in self._events_assignment())

    def judge_batch(self, chunks: list[Chunk]) -> None:
        """Judge records of the events topic (any partitions) and send their alerts.

        Their state changes stay in the partitions' views until :meth:`flush_judged`.
        """
        started = time.perf_counter()
        touched = self._touched
        metrics = self.metrics
        topic = self.events_topic.get_topic_name()
        counts: Tally[str] = Tally()
        alert_counts: Tally[tuple[str, str]] = Tally()
        for chunk in chunks:
            partition = chunk.tp.partition
            _, engine = self._partition(partition)
            process = engine.process
            for record in chunk.records:
                offset = record.offset
                raw = record.value if isinstance(record.value, bytes) else b""
                outcome = process(
                    raw, offset=offset, partition=partition, origin=f"{topic}[{partition}]@{offset}"
                )
                if outcome.dead_letter is not None:
                    counts["dead_letter"] += 1
                    self._send_dead_letter(record.key, raw, outcome.dead_letter)
                    continue
                if outcome.status == "duplicate":
                    counts["duplicate"] += 1
                    continue
                counts[outcome.event.type if outcome.event is not None else "access"] += 1
                for alert in outcome.alerts:
                    alert_counts[alert["article"], alert["severity"]] += 1
                    key = alert["recipient"] or alert["source"]
                    self.alerts_topic.send_soon(key=key.encode(), value=orjson.dumps(alert))
                if outcome.incidents:
                    touched.setdefault(partition, set()).update(outcome.incidents)
            self._positions[partition] = chunk.records[-1].offset
            self._pending.setdefault(partition, []).append(chunk)
        # Metrics once per batch: a labelled counter costs microseconds per call.
        for kind in ("access", "consent"):
            if counts[kind]:
                metrics.events.labels(kind).inc(counts[kind])
        if counts["dead_letter"]:
            metrics.dead_letters.inc(counts["dead_letter"])
        if counts["duplicate"]:
            metrics.duplicates.inc(counts["duplicate"])
        for (article, severity), n in alert_counts.items():
            metrics.alerts.labels(article, severity).inc(n)
        metrics.batch_seconds.observe(time.perf_counter() - started)

    def flush_judged(self) -> None:
        """Send the incident partials, write the state and ack the offsets judged so far.

        In this order and without awaiting: faust commits an acked offset only after
        flushing the producer, so an offset is never committed before the changelog
        records and outputs of its events are sent. Nothing is written while faust has
        stopped the flow: a rebalance is under way, faust has already forgotten the
        partitions' offsets, and what was judged is dropped when they are revoked.
        """
        if not self.app.flow_control.is_active():
            return
        for partition, incident_ids in self._touched.items():
            state, _ = self._partition(partition)
            for iid in sorted(incident_ids):
                partial = state.incidents[iid]
                self.partials_topic.send_soon(
                    key=iid.encode(),
                    value=orjson.dumps({"partition": partition, "partial": partial.to_json()}),
                )
        self._touched.clear()
        for state, _ in self._partitions.values():
            state.flush()
        consumer = self.app.consumer
        generation = self.app.consumer_generation_id
        for chunks in self._pending.values():
            for chunk in chunks:
                if chunk.generation == generation:  # else read again: never a stale ack
                    ack_offsets(consumer, chunk.tp, (r.offset for r in chunk.records))
        self._pending.clear()

    def unflushed(self) -> int:
        """Events judged since the state was last written."""
        return sum(len(c.records) for chunks in self._pending.values() for c in chunks)

    def _send_dead_letter(self, key: bytes | None, raw: bytes, record: dict[str, Any]) -> None:
        # The value is the message as received (masked only if it carried raw personal
        # data); the reason travels in headers and in a JSON envelope header.
        value = raw if not record["redacted"] else record["original"].encode()
        envelope = {k: v for k, v in record.items() if k != "original"}
        headers = [
            ("lineage-reason", record["reason"].encode()),
            ("lineage-kind", record["kind"].encode()),
            ("lineage-field", (record["field"] or "").encode()),
            ("lineage-origin", record["origin"].encode()),
            ("lineage-dead-letter", orjson.dumps(envelope)),
        ]
        self.dead_letter_topic.send_soon(key=key, value=value, headers=headers)

    # -- incidents -----------------------------------------------------------------------------

    def _board(self, partition: int) -> BoardView:
        view = self._boards.get(partition)
        if view is None:
            view = self._boards[partition] = BoardView(self.tables["board"], partition)
        return view

    def _incident_board(self, view: BoardView) -> IncidentBoard:
        return IncidentBoard(view, factor=2.0, quiet=timedelta(hours=1))

    def fold_partials(self, events: list[Any]) -> None:
        """Fold incident partials into the board; publish what the board says to."""
        generation = self.app.consumer_generation_id
        for event in events:
            message = event.message
            if message.generation_id != generation:
                # Buffered before a rebalance: read again from the committed offset, by
                # whichever worker holds the partition now. Marked acked so that faust
                # never counts it as done.
                message.acked = True
                continue
            view = self._board(message.partition)
            data = orjson.loads(message.value)
            partial = IncidentPartial.from_json(data["partial"])
            iid = message.key.decode()
            publication = self._incident_board(view).update(iid, data["partition"], partial)
            if publication is not None:
                self._publish_incident(publication)
        for view in self._boards.values():
            view.flush()

    def flush_incidents(self) -> None:
        """Republish every incident that changed since its last publication."""
        for view in list(self._boards.values()):
            for publication in self._incident_board(view).flush():
                self._publish_incident(publication)
            view.flush()

    def _publish_incident(self, publication: dict[str, Any]) -> None:
        self.metrics.incidents.inc()
        self.incidents_topic.send_soon(
            key=publication["incident_id"].encode(), value=orjson.dumps(publication)
        )

    # -- metrics -------------------------------------------------------------------------------

    def _update_lag(self) -> None:
        for tp in self._events_assignment():
            try:
                highwater = self.app.consumer.highwater(tp)
            except Exception:  # metrics must not fail a scrape
                continue
            if highwater is None:
                continue
            done = self._positions.get(tp.partition, -1) + 1
            self.metrics.lag.labels(str(tp.partition)).set(max(highwater - done, 0))
