"""The producer SDK services embed: validate, hand off, never block, never lose an event.

    from streams.emitter import Emitter

    emitter = Emitter("kafka:9092")                  # one per process; thread-safe
    emitter.emit({"event_id": str(uuid4()), "occurred_at": now_rfc3339(), "source": "checkout",
                  "action": "transfer", "subject": user_ref, "categories": ["identity.name"],
                  "purpose": "service_operation", "recipient": "payment-processor"})
    emitter.close()                                  # at shutdown: flushes what is buffered

``emit`` validates the event against the contract (``schemas``) and raises
:class:`schemas.EventRejected` at once for a bad one, so a developer sees their bug
where they made it. A valid event goes into a bounded in-memory buffer and is sent by
one background thread (kafka-python, idempotent, ``acks=all``), keyed by subject,
else source (CONTRACT.md s.5). ``emit`` never waits for Kafka: when the buffer is
full, or Kafka cannot be reached, events are appended to a local spill file, which is
sent again, in order, once Kafka answers (and on the next start). A crash in the
middle of a replay may send a few events twice; the monitor drops duplicate event ids.
Logs carry counts and reasons, never event contents.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from schemas import AccessEvent, ConsentEvent, decode_event

__all__ = ["Emitter", "EmitterError", "EmitterStats", "emit_lines"]

log = logging.getLogger("lineage.emitter")

_STOP = object()


class EmitterError(Exception):
    """Events could not be delivered (only :func:`emit_lines` raises it; ``emit`` spills)."""


@dataclass(slots=True)
class EmitterStats:
    """What the emitter did: sent and acknowledged by Kafka, spilled to disk, replayed."""

    queued: int = 0
    acked: int = 0
    spilled: int = 0
    replayed: int = 0
    failed_sends: int = 0


def _key(event: AccessEvent | ConsentEvent) -> bytes:
    return (event.subject or getattr(event, "source", "") or "").encode()


class Emitter:
    """Sends events to ``lineage.events`` from a service, asynchronously and losslessly."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = "lineage.events",
        spill_path: str | Path | None = None,
        buffer_size: int = 10_000,
        producer_config: Mapping[str, Any] | None = None,
        retry_seconds: float = 1.0,
    ) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.spill_path = Path(
            spill_path
            if spill_path is not None
            else Path(tempfile.gettempdir()) / f"lineage-emitter-{topic}.jsonl"
        )
        self.stats = EmitterStats()
        self._config = {
            "bootstrap_servers": bootstrap_servers,
            "acks": "all",
            "linger_ms": 5,
            "retries": 5,
            "request_timeout_ms": 10_000,
            "max_block_ms": 5_000,
            # kafka-python waits 30 s for a first broker by default; the thread retries instead.
            "bootstrap_timeout_ms": 5_000,
            **dict(producer_config or {}),
        }
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=buffer_size)
        self._spill_lock = threading.Lock()
        self._pending = 0
        self._pending_lock = threading.Condition()
        self._retry = retry_seconds
        self._producer: Any = None
        self._thread = threading.Thread(target=self._run, name="lineage-emitter", daemon=True)
        self._thread.start()

    # -- the service's side ---------------------------------------------------------------------

    def emit(self, event: Mapping[str, Any] | AccessEvent | ConsentEvent | bytes) -> None:
        """Validate and hand off one event; raises ``EventRejected`` for an invalid one."""
        if isinstance(event, bytes):
            raw = event
        elif isinstance(event, AccessEvent | ConsentEvent):
            raw = event.model_dump_json(exclude_none=True).encode()
        else:
            raw = orjson.dumps(dict(event))
        parsed = decode_event(raw)
        self._hand_off(_key(parsed), raw)

    def _hand_off(self, key: bytes | None, raw: bytes) -> None:
        with self._pending_lock:
            self._pending += 1
        try:
            self._queue.put_nowait((key, raw))
            self.stats.queued += 1
        except queue.Full:
            self._spill([(key, raw)], reason="buffer full")
            self._done(1)

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every event handed off is acknowledged or spilled; return those still
        pending (0 when all are settled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._pending_lock:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._pending_lock.wait(remaining if remaining is not None else 0.5)
            return self._pending

    def close(self, timeout: float = 10.0) -> None:
        """Flush, stop the thread and close the producer; spilled events stay for next time."""
        self.flush(timeout)
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def __enter__(self) -> Emitter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the background thread ------------------------------------------------------------------

    def _done(self, n: int) -> None:
        with self._pending_lock:
            self._pending -= n
            self._pending_lock.notify_all()

    def _spill(self, items: Iterable[tuple[bytes | None, bytes]], *, reason: str) -> None:
        items = list(items)
        with self._spill_lock, self.spill_path.open("ab") as spill:
            for key, raw in items:
                record = {
                    "key": base64.b64encode(key).decode() if key is not None else None,
                    "value": base64.b64encode(raw).decode(),
                }
                spill.write(orjson.dumps(record) + b"\n")
        self.stats.spilled += len(items)
        log.warning("spilled %d events to %s (%s)", len(items), self.spill_path, reason)

    def _connect(self) -> bool:
        if self._producer is not None:
            return True
        try:
            self._producer = KafkaProducer(**self._config)
        except KafkaError as exc:
            log.warning("Kafka at %s unreachable: %s", self.bootstrap_servers, type(exc).__name__)
            return False
        self._replay()
        return True

    def _replay(self) -> None:
        """Send the spill file again, in order; keep what fails for the next attempt."""
        with self._spill_lock:
            if not self.spill_path.exists():
                return
            replaying = self.spill_path.with_suffix(".replaying")
            if replaying.exists():  # a replay that crashed: its events come first
                with replaying.open("ab") as older:
                    older.write(self.spill_path.read_bytes())
                self.spill_path.unlink()
            else:
                self.spill_path.rename(replaying)
        items = []
        for line in replaying.read_bytes().splitlines():
            if line.strip():
                record = orjson.loads(line)
                key = base64.b64decode(record["key"]) if record["key"] is not None else None
                items.append((key, base64.b64decode(record["value"])))
        failed = self._send_all(items)
        if failed:
            self._spill(failed, reason="replay failed")
        else:
            self.stats.replayed += len(items)
        replaying.unlink(missing_ok=True)
        if items:
            log.info("replayed %d spilled events (%d failed again)", len(items), len(failed))

    def _send_all(
        self, items: list[tuple[bytes | None, bytes]]
    ) -> list[tuple[bytes | None, bytes]]:
        """Send and wait for every ack; return the items Kafka did not take."""
        futures = []
        failed: list[tuple[bytes | None, bytes]] = []
        for key, raw in items:
            try:
                futures.append(((key, raw), self._producer.send(self.topic, key=key, value=raw)))
            except KafkaError:
                failed.append((key, raw))
        for item, future in futures:
            try:
                future.get(timeout=self._config["request_timeout_ms"] / 1000 + 5)
                self.stats.acked += 1
            except KafkaError:
                failed.append(item)
        if failed:
            self.stats.failed_sends += len(failed)
            self._drop_producer()
        return failed

    def _drop_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close(timeout=1)
            self._producer = None

    def _run(self) -> None:
        if self.spill_path.exists() or self.spill_path.with_suffix(".replaying").exists():
            self._connect()  # a spill from an earlier run goes first
        while True:
            try:
                first = self._queue.get(timeout=self._retry * 5)
            except queue.Empty:
                if self.spill_path.exists():
                    self._connect()  # Kafka may be back: replay what was spilled
                continue
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < 500:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
            if not self._connect():
                self._spill(batch, reason="Kafka unreachable")
                self._done(len(batch))
                time.sleep(self._retry)
                continue
            if self.spill_path.exists():
                self._replay()  # spilled earlier events go before these, in order
            failed = self._send_all(batch)
            if failed:
                self._spill(failed, reason="send failed")
            self._done(len(batch))
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.flush(5)
            self._drop_producer()


def emit_lines(lines: Iterable[bytes], *, broker: str, topic_prefix: str = "lineage.") -> int:
    """Send JSON lines as they are (malformed ones too, for the dead letters); return the count.

    Used by ``lineage demo --broker``. Raises :class:`EmitterError` when Kafka took nothing.
    """
    try:
        producer = KafkaProducer(
            bootstrap_servers=broker, linger_ms=20, max_block_ms=10_000, bootstrap_timeout_ms=10_000
        )
    except KafkaError as exc:
        raise EmitterError(f"cannot reach Kafka at {broker}: {type(exc).__name__}") from exc
    sent = 0
    try:
        for line in lines:
            try:
                data = orjson.loads(line)
                key = data.get("subject") or data.get("source") if isinstance(data, dict) else None
            except orjson.JSONDecodeError:
                key = None
            producer.send(
                f"{topic_prefix}events",
                key=key.encode() if isinstance(key, str) else None,
                value=line,
            )
            sent += 1
        producer.flush(60)
    except KafkaError as exc:
        raise EmitterError(f"sending to Kafka at {broker} failed: {type(exc).__name__}") from exc
    finally:
        producer.close(timeout=5)
    return sent
