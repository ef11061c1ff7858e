"""The worker's topics: the contract's names under a prefix, and their creation.

    events            access and consent events (key: subject, else source)
    alerts            alerts (key: recipient, else source)
    incidents         incidents (key: incident id)
    dead-letter       bad input: original bytes, reason in headers
    provision-records records of provision to third parties (key: recipient; APPI Art. 29)
    incident-partials each partition's share of an incident, for the incident board
    subject-view      the per-subject view's rows, compacted, partitioned like events
                      (rebuilt from it by whoever holds the partition: lineage.view)

Tables keep their state in faust's changelog topics,
``<app id>-<prefix><table>-changelog``, and faust's leader assignor uses
``<app id>-__assignor-__leader``. The worker creates these too, before faust starts:
see :func:`ensure_topics`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lineage.errors import LineageError
from streams.kafka_config import KafkaConfig
from streams.settings import Settings

__all__ = [
    "TABLES",
    "KafkaUnavailable",
    "Topics",
    "changelog_topic",
    "ensure_topics",
    "table_name",
]

#: The worker's tables, each with a changelog topic partitioned like the events topic.
TABLES = ("seen", "subjects", "edges", "incidents", "board")


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
    views: str

    @classmethod
    def of(cls, settings: Settings) -> Topics:
        return cls(
            events=settings.topic("events"),
            alerts=settings.topic("alerts"),
            incidents=settings.topic("incidents"),
            dead_letter=settings.topic("dead-letter"),
            records=settings.topic("provision-records"),
            partials=settings.topic("incident-partials"),
            views=settings.topic("subject-view"),
        )

    def all(self) -> list[str]:
        return [
            self.events,
            self.alerts,
            self.incidents,
            self.dead_letter,
            self.records,
            self.partials,
            self.views,
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
    """Create the worker's topics that do not exist yet, and wait until Kafka lists
    every one with a leader for each partition; return the contract's topics it created.

    The contract's topics: faust creates only its own, and a worker that starts before
    any producer would otherwise subscribe to nothing until its next metadata refresh.
    The provision records topic keeps records ``records_retention_days`` (APPI Art. 29
    (2)); Kafka deletes older ones.

    faust's own topics (the tables' changelogs, compacted; the leader assignor's) as
    faust would create them, so that they exist before any consumer of the group asks
    for metadata. faust creates them at start and its group leader assigns partitions a
    moment later; KRaft answers CreateTopics before the broker lists a new topic, and
    faust's assignor skips a subscribed topic missing from the leader's metadata
    (``Ignoring missing topic``) until its next refresh, minutes later. A changelog
    left out of an assignment is not recovered: its table starts empty on the new
    owner, and the records it then writes replace the old state (docs/upstream.md,
    section 11).
    """
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    from lineage.kafka_client import KafkaAdminClient, NewTopic

    try:
        admin = KafkaAdminClient(
            request_timeout_ms=int(timeout * 1000), **KafkaConfig(settings).kafka_python()
        )
    except KafkaError as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.bootstrap}: {exc.__class__.__name__}"
        ) from exc
    try:
        wanted = _wanted_topics(settings, records_retention_days)
        existing = set(admin.list_topics())
        created = []
        for name, partitions, config in wanted:
            if name in existing:
                continue
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=partitions,
                            replication_factor=settings.replication_factor,
                            topic_configs=config,
                        )
                    ]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another worker was quicker
        _wait_listed(admin, [name for name, _, _ in wanted], timeout)
        contract = set(Topics.of(settings).all())
        return [name for name in created if name in contract]
    finally:
        admin.close()


def _wanted_topics(
    settings: Settings, records_retention_days: int | None
) -> list[tuple[str, int, dict[str, str]]]:
    """(name, partitions, config) of every topic the worker reads or writes."""
    topics = Topics.of(settings)
    wanted: list[tuple[str, int, dict[str, str]]] = []
    for name in topics.all():
        config = {}
        if name == topics.records and records_retention_days:
            config["retention.ms"] = str(records_retention_days * 86_400_000)
        if name == topics.views:
            # The per-subject view's rows, each the latest of its key: the view is rebuilt
            # from it, and a record purged past retention is a deletion (a tombstone).
            config["cleanup.policy"] = "compact"
        wanted.append((name, settings.partitions, config))
    for table in TABLES:
        wanted.append(
            (changelog_topic(settings, table), settings.partitions, {"cleanup.policy": "compact"})
        )
    wanted.append((_assignor_topic(settings), 1, {}))
    return wanted


def _assignor_topic(settings: Settings) -> str:
    """faust's leader assignor topic (faust.assignor.LeaderAssignor)."""
    return f"{settings.app_id}-__assignor-__leader"


def _wait_listed(admin: Any, names: list[str], timeout: float) -> None:
    """Until the broker lists every topic of ``names`` with a leader for each partition."""
    deadline = time.monotonic() + timeout
    missing = names
    while True:
        described = admin.describe_topics(missing)
        missing = [
            t["name"]
            for t in described
            if t["error_code"] != 0
            or not t["partitions"]
            or any(p["error_code"] != 0 or p["leader_id"] < 0 for p in t["partitions"])
        ] + sorted(set(missing) - {t["name"] for t in described})
        if not missing:
            return
        if time.monotonic() > deadline:
            raise KafkaUnavailable(
                f"Kafka does not list these topics {timeout:.0f} s after they were created: "
                f"{', '.join(sorted(missing))}"
            )
        time.sleep(0.1)
