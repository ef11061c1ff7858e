"""The worker's Prometheus metrics, in a registry of its own.

Labels carry only closed vocabularies (event type, article, severity, topic role,
a reason word, a partition number, a route name from the routes file): never an id,
a subject or a value from an event, so a scrape shows nothing of what the monitor
watches.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    """Counters, gauges and histograms of one worker."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("lineage_events", "Messages judged, by type", ["type"], registry=r)
        self.alerts = Counter(
            "lineage_alerts",
            "Alerts raised, by article and severity",
            ["article", "severity"],
            registry=r,
        )
        self.decoded_ahead = Counter(
            "lineage_events_decoded_ahead",
            "Messages judged from what the worker's decoding process made of them, not "
            "decoded by the judging thread",
            registry=r,
        )
        self.dead_letters = Counter(
            "lineage_dead_letters", "Messages sent to the dead letters", registry=r
        )
        self.duplicates = Counter(
            "lineage_duplicates", "Events dropped as duplicate event ids", registry=r
        )
        self.retracted = Counter(
            "lineage_alerts_retracted",
            "Alerts retracted because a consent in force at the event's time came late",
            registry=r,
        )
        self.records = Counter(
            "lineage_provision_records", "Provision records written (APPI Art. 29)", registry=r
        )
        self.incidents = Counter(
            "lineage_incident_publications", "Incident publications", registry=r
        )
        self.outputs = Counter(
            "lineage_outputs", "Messages Kafka acknowledged, by topic", ["topic"], registry=r
        )
        self.refused = Counter(
            "lineage_outputs_refused",
            "Outputs dropped because no broker would take them (too large)",
            ["topic"],
            registry=r,
        )
        self.rewinds = Counter(
            "lineage_rewinds",
            "Times the worker read events again because Kafka did not take their outputs",
            registry=r,
        )
        self.recovery_nudges = Counter(
            "lineage_recovery_nudges",
            "Changelog partitions read again because table recovery heard nothing of them",
            registry=r,
        )
        self.notifications = Counter(
            "lineage_notifications",
            "Alerts and incidents forwarded by alert routing, per destination, by route and "
            "outcome (sent, failed, dropped)",
            ["route", "outcome"],
            registry=r,
        )
        self.lag = Gauge(
            "lineage_consumer_lag",
            "Messages of lineage.events not yet judged, by partition",
            ["partition"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "lineage_batch_seconds", "Time to judge one batch", registry=r
        )
        self.flush_seconds = Histogram(
            "lineage_flush_seconds",
            "Time of one flush, from its start to its offsets acked: outputs delivered, "
            "state written (the worker judges on meanwhile)",
            registry=r,
        )
        self.flush_loop = Counter(
            "lineage_flush_loop_seconds",
            "Time the judging loop spent on flushes: starting each (its table records "
            "made) and waiting for the one under way to end",
            registry=r,
        )
        self.kafka_wait = Counter(
            "lineage_kafka_wait_seconds",
            "Time flushes spent handing their messages to Kafka and waiting for its "
            "acknowledgements, by step (outputs, state)",
            ["step"],
            registry=r,
        )
        self.view_wait = Counter(
            "lineage_view_wait_seconds",
            "Time flushes spent waiting for the view process to answer with the rows the "
            "per-subject views changed",
            registry=r,
        )
