"""The worker's topics: the contract's names under a prefix, and their creation.

    events            access and consent events (key: subject, else source)
    alerts            alerts (key: recipient, else source)
    incidents         incidents (key: incident id)
    dead-letter       bad input: original bytes, reason in headers
    provision-records records of provision to third parties (key: recipient; APPI Art. 29)
    incident-partials each partition's share of an incident, for the incident board

Tables keep their state in faust's changelog topics,
``<app id>-<prefix><table>-changelog``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lineage.errors import LineageError
from lineage.worker.kafka_config import KafkaConfig
from lineage.worker.settings import Settings

__all__ = ["KafkaUnavailable", "Topics", "changelog_topic", "ensure_topics", "table_name"]


class KafkaUnavailable(LineageError):
    """Kafka could not be reached, or did not hold what was asked for."""


@dataclass(frozen=True, slots=True)
class Topics:
    """The full names of the worker's topics for one deployment."""

    events: str
    alerts: str
    incidents: str
    dead_letter: str
    records: str
    partials: str

    @classmethod
    def of(cls, settings: Settings) -> Topics:
        return cls(
            events=settings.topic("events"),
            alerts=settings.topic("alerts"),
            incidents=settings.topic("incidents"),
            dead_letter=settings.topic("dead-letter"),
            records=settings.topic("provision-records"),
            partials=settings.topic("incident-partials"),
        )

    def all(self) -> list[str]:
        return [
            self.events,
            self.alerts,
            self.incidents,
            self.dead_letter,
            self.records,
            self.partials,
        ]


def table_name(settings: Settings, name: str) -> str:
    """The name of one of the worker's tables (prefixed, so deployments do not collide)."""
    return f"{settings.topic_prefix}{name}"


def changelog_topic(settings: Settings, name: str) -> str:
    """faust's changelog topic of a table: ``<app id>-<table name>-changelog``."""
    return f"{settings.app_id}-{table_name(settings, name)}-changelog"


def ensure_topics(
    settings: Settings, timeout: float = 30.0, records_retention_days: int | None = None
) -> list[str]:
    """Create the worker's topics that do not exist yet; return those it created.

    faust creates only its own internal topics; a worker that starts before any
    producer would otherwise subscribe to nothing until its next metadata refresh.
    The provision records topic keeps records ``records_retention_days`` (APPI Art. 29
    (2)); Kafka deletes older ones.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(
            request_timeout_ms=int(timeout * 1000), **KafkaConfig(settings).kafka_python()
        )
    except KafkaError as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.bootstrap}: {exc.__class__.__name__}"
        ) from exc
    topics = Topics.of(settings)
    try:
        existing = set(admin.list_topics())
        created = []
        for name in topics.all():
            if name in existing:
                continue
            config = {}
            if name == topics.records and records_retention_days:
                config["retention.ms"] = str(records_retention_days * 86_400_000)
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=settings.partitions,
                            replication_factor=settings.replication_factor,
                            topic_configs=config,
                        )
                    ]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another worker was quicker
        return created
    finally:
        admin.close()
