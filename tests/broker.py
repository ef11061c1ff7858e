"""The test suite's Apache Kafka, taken in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` when set (a broker someone else runs; never stopped here);
2. testcontainers when a Docker daemon answers (Confluent's image of the same Kafka line);
3. ``scripts/kafka-local``: Apache Kafka from Maven Central on the machine's Java.

When none works the fixture fails with what was tried: a missing broker is never a skip.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"
#: Confluent Platform 7.9 ships Apache Kafka 3.9, the version scripts/kafka/pom.xml pins.
CONFLUENT_IMAGE = "confluentinc/cp-kafka:7.9.0"

which_broker = "none"


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
    except Exception:  # no daemon, no socket, no permission: all mean "not this way"
        return False
    return True


@contextlib.contextmanager
def _testcontainers() -> Iterator[str]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers before 4.15
        from testcontainers.kafka import KafkaContainer

    with KafkaContainer(CONFLUENT_IMAGE).with_kraft() as kafka:
        yield str(kafka.get_bootstrap_server())


@contextlib.contextmanager
def _kafka_local() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="lineage-test-kafka-"))
    started = subprocess.run(
        [str(KAFKA_LOCAL), "start", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if started.returncode != 0:
        raise RuntimeError(
            "could not start a local Apache Kafka with scripts/kafka-local:\n"
            + started.stdout[-2000:]
            + started.stderr[-2000:]
        )
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop", "--dir", str(folder)], check=False, timeout=60)


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
    """Yield a bootstrap ``HOST:PORT`` of a real broker for the test session."""
    global which_broker
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        which_broker = "KAFKA_BOOTSTRAP_SERVERS"
        yield given
        return
    if _docker_answers():
        which_broker = "testcontainers"
        with _testcontainers() as bootstrap:
            yield bootstrap
        return
    which_broker = "scripts/kafka-local"
    with _kafka_local() as bootstrap:
        yield bootstrap
