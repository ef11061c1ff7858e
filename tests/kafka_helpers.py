"""Running `lineage worker` processes against the test broker, and reading topics back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

REDACTION_KEY = "test-redaction-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Deployment:
    """One isolated deployment on the shared broker: its own topic prefix and app id."""

    def __init__(self, bootstrap: str, tmp: Path) -> None:
        tag = uuid.uuid4().hex[:10]
        self.bootstrap = bootstrap
        self.prefix = f"t{tag}."
        self.app_id = f"lineage-test-{tag}"
        self.tmp = tmp

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LINEAGE_")}
        env.update(
            LINEAGE_BROKER=self.bootstrap,
            LINEAGE_TOPIC_PREFIX=self.prefix,
            LINEAGE_APP_ID=self.app_id,
            LINEAGE_REDACTION_KEY=REDACTION_KEY,
            LINEAGE_PARTITIONS="4",
            LINEAGE_SESSION_TIMEOUT="10",
            LINEAGE_INCIDENT_FLUSH_SECONDS="2",
            LINEAGE_BATCH_SIZE="200",
        )
        env.update(extra)
        return env

    def produce(self, lines: list[bytes]) -> None:
        """Send lines as a plain kafka-python producer would: key subject, else source."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        for line in lines:
            producer.send(self.topic("events"), key=event_key(line), value=line)
        producer.flush(30)
        producer.close()

    def read(
        self, name: str, until: Callable[[list[Any]], bool], timeout: float = 120
    ) -> list[Any]:
        """Every message of a topic, read until ``until(messages)`` holds or time runs out."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        consumer.subscribe([self.topic(name)])
        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    messages.extend(records)
                if until(messages):
                    break
        finally:
            consumer.close()
        return messages

    def committed(self, name: str) -> dict[int, int]:
        """The worker group's committed offset of each partition of a topic (if any)."""
        from kafka import TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.app_id, enable_auto_commit=False
        )
        try:
            topic = self.topic(name)
            found = {}
            for partition in consumer.partitions_for_topic(topic) or ():
                offset = consumer.committed(TopicPartition(topic, partition))
                if offset is not None:
                    found[partition] = offset
            return found
        finally:
            consumer.close()

    def export(self, fmt: str, out: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lineage.cli", "export", "--format", fmt, "--out", str(out)],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )


def event_key(line: bytes) -> bytes | None:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    key = data.get("subject") or data.get("source")
    return key.encode() if isinstance(key, str) else None


class Worker:
    """A `lineage worker` subprocess."""

    def __init__(self, deployment: Deployment, name: str, **env: str) -> None:
        self.deployment = deployment
        self.name = name
        self.extra_env = env
        self.web_port = free_port()
        self.log = deployment.tmp / f"worker-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self) -> Worker:
        env = self.deployment.env(
            LINEAGE_STATE_DIR=str(self.deployment.tmp / f"state-{self.name}"),
            LINEAGE_WEB_PORT=str(self.web_port),
            LINEAGE_WEB_HOST="127.0.0.1",
            **self.extra_env,
        )
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lineage.cli", "worker", "--loglevel", "info"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log.open("rb") as log:
                log.seek(self._log_start)  # this start's lines only
                text = log.read().decode(errors="replace")
            if "Worker]: Ready" in text:
                return
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited:\n{text[-3000:]}")
            time.sleep(0.5)
        raise AssertionError(f"worker {self.name} not ready in {timeout}s:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown, no final commit."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            if sys.exc_info()[0] is not None:
                # Stopped because the test failed: first have mode log every task's stack
                # (its SIGUSR1 handler) into the worker's log, for the post-mortem.
                os.kill(self.process.pid, signal.SIGUSR1)
                time.sleep(2)
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
