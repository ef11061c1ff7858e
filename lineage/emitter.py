"""The producer SDK services embed: validate, hand off, never block, never lose an event.

    from lineage.emitter import Emitter

    emitter = Emitter("kafka:9092")                  # one per process; thread-safe
    emitter.emit({"event_id": str(uuid4()), "occurred_at": now_rfc3339(), "source": "checkout",
                  "action": "transfer", "subject": user_ref, "categories": ["identity.name"],
                  "purpose": "service_operation", "recipient": "payment-processor"})
    emitter.close()                                  # at shutdown: flushes what is buffered

``emit`` validates the event against the contract (``schemas``) and raises
:class:`lineage.schemas.EventRejected` at once for a bad one, so a developer sees their bug
where they made it. A valid event goes into a bounded in-memory buffer and is sent by
one background thread (kafka-python, idempotent, ``acks=all``), keyed by subject,
else source (CONTRACT.md s.5). ``emit`` never waits for Kafka: it takes a lock and
either queues the event or appends it to a local spill file.

Order is kept, because the monitor judges a subject's events in the order they
arrive (a consent before the transfer it allows). Events wait in three places,
oldest first: the *head* spill (what the thread held when Kafka failed it), the
in-memory buffer, and the *tail* spill (what ``emit`` wrote while the buffer was
full or a spill was being replayed). The thread sends them in that order, and
``emit`` goes back to the buffer only once both spills are sent. Spill files are
kept across restarts and sent first. An event whose acknowledgement was lost as
the broker went away is sent again (at least once): the monitor counts each event
id once. Logs carry counts and reasons, never event contents.
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

from lineage.errors import LineageError
from lineage.schemas import AccessEvent, ConsentEvent, decode_event

__all__ = ["Emitter", "EmitterError", "EmitterStats", "connect", "emit_lines"]

log = logging.getLogger("lineage.emitter")


class EmitterError(LineageError):
    """Kafka could not be reached or refused us (only :func:`emit_lines` and
    :func:`connect` raise it; ``emit`` spills and says why in ``last_error``)."""


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
        self.head_path = self.spill_path.with_name(self.spill_path.name + ".head")
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
        self._queue: queue.Queue[tuple[bytes | None, bytes]] = queue.Queue(maxsize=buffer_size)
        # Held by emit and by the thread when it moves between buffer and spill: while
        # ``_spilling``, emit appends to the tail spill instead of the buffer.
        self._lock = threading.Lock()
        self._spilling = self.spill_path.exists() or self.head_path.exists()
        self._in_memory = 0  # events in the buffer or in the thread's hands
        self._read_to: dict[Path, int] = {}  # how far each spill file has been sent
        self._settled = threading.Condition()
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._producer: Any = None
        #: Why Kafka could not be reached, when it could not (one sentence, no secrets).
        self.last_error: str | None = None
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
        item = (_key(parsed), raw)
        with self._lock:
            if not self._spilling:
                try:
                    self._queue.put_nowait(item)
                except queue.Full:
                    self._spilling = True
                    log.warning(
                        "the buffer is full: events go to %s until Kafka catches up",
                        self.spill_path,
                    )
                else:
                    with self._settled:
                        self._in_memory += 1
                    self.stats.queued += 1
                    return
            _append(self.spill_path, [item])
            self.stats.spilled += 1

    def flush(self, timeout: float | None = None) -> int:
        """Wait until no event is held in memory (each acknowledged by Kafka or on disk);
        return how many still are (0 when all are settled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._settled:
            while self._in_memory:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._settled.wait(remaining if remaining is not None else 0.5)
            return self._in_memory

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until Kafka acknowledged every event handed off, spilled ones too; False
        when ``timeout`` passed first (what is left is on disk or on its way)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._settled:
            while self._in_memory or self._spilling:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._settled.wait(min(remaining, 0.5) if remaining is not None else 0.5)
            return True

    def close(self, timeout: float = 10.0) -> None:
        """Send what is waiting (up to ``timeout``), stop the thread, close the producer.
        What Kafka did not take by then stays in the spill files, sent first by the next
        Emitter on them."""
        self.drain(timeout)
        self._stop.set()
        self._thread.join(timeout + 15)

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

    def _settle(self, n: int) -> None:
        with self._settled:
            self._in_memory -= n
            self._settled.notify_all()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # The buffer first: while spilling it holds only what came before the spill.
                batch = self._take(timeout=0 if self._spilling else 0.2)
                if batch:
                    if not self._deliver(batch):
                        self._to_head(batch)
                elif self._spilling and not self._replay():
                    self._stop.wait(self._retry)
        finally:
            self._persist_memory()
            if self._producer is not None:
                with contextlib.suppress(Exception):
                    self._producer.flush(5)
            self._drop_producer()

    def _take(self, timeout: float) -> list[tuple[bytes | None, bytes]]:
        try:
            batch = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < 500:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _deliver(self, batch: list[tuple[bytes | None, bytes]]) -> bool:
        """Send a batch from the buffer; True when Kafka acknowledged all of it."""
        if self._connect() and not self._send_all(batch):
            self._settle(len(batch))
            return True
        return False

    def _to_head(self, failed: list[tuple[bytes | None, bytes]]) -> None:
        """Kafka failed a batch: it, and the buffer behind it, go to the head spill.

        From now on ``emit`` appends to the tail spill, so the order is head, tail.
        """
        with self._lock:
            self._spilling = True
            rest = []
            while True:
                try:
                    rest.append(self._queue.get_nowait())
                except queue.Empty:
                    break
        items = failed + rest
        _append(self.head_path, items)
        self.stats.spilled += len(items)
        self._settle(len(items))
        log.warning(
            "Kafka at %s did not take %d events: they wait in %s",
            self.bootstrap_servers,
            len(items),
            self.head_path,
        )

    def _replay(self) -> bool:
        """Send the head spill, then the tail, in order; False when Kafka failed a send."""
        for path in (self.head_path, self.spill_path):
            sent = self._replay_file(path)
            if sent is None:
                return False
            if not sent:
                return True  # emit wrote more meanwhile: go on at once
        with self._lock:
            if not self.spill_path.exists():
                self._spilling = False
                log.info("every spilled event is sent; events go to the buffer again")
        with self._settled:
            self._settled.notify_all()
        return True

    def _replay_file(self, path: Path) -> bool | None:
        """Send a spill file on from where the last pass stopped.

        True when all of it is sent (and the file removed), False when emit wrote more
        meanwhile (the tail), None when Kafka failed a send (sent again from the same
        place next time).
        """
        if not path.exists():
            self._read_to.pop(path, None)
            return True
        if not self._connect():
            return None
        done = self._read_to.get(path, 0)
        with path.open("rb") as spill:
            spill.seek(done)
            while True:
                lines = []
                for _ in range(500):
                    line = spill.readline()
                    if not line.endswith(b"\n"):
                        break  # the end, or a line emit is writing now: read it next pass
                    lines.append(line)
                if not lines:
                    break
                items = []
                for line in lines:
                    record = orjson.loads(line)
                    key = base64.b64decode(record["key"]) if record["key"] is not None else None
                    items.append((key, base64.b64decode(record["value"])))
                if self._send_all(items):
                    return None
                self.stats.replayed += len(items)
                done += sum(len(line) for line in lines)
                self._read_to[path] = done
        with self._lock:  # emit appends to the tail under this lock
            if path.stat().st_size > done:
                return False
            path.unlink()
            self._read_to.pop(path, None)
        return True

    def _persist_memory(self) -> None:
        """At stop: what is still in the buffer goes to the head spill, for the next start."""
        rest = self._take(timeout=0)
        while rest:
            _append(self.head_path, rest)
            self.stats.spilled += len(rest)
            self._settle(len(rest))
            rest = self._take(timeout=0)

    def _connect(self) -> bool:
        if self._producer is not None:
            return True
        try:
            self._producer = connect(self._config)
        except EmitterError as exc:
            if str(exc) != self.last_error:  # each new reason once, not every retry
                log.error("%s; events wait in %s", exc, self.spill_path)
            self.last_error = str(exc)
            return False
        if self.last_error is not None:
            log.info("Kafka at %s answers again", self.bootstrap_servers)
        self.last_error = None
        return True

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
            self.stats.failed_sends += len(items)
            self._drop_producer()
            # A batch fails as a whole for the caller: what Kafka did take is sent again,
            # and the monitor counts each event id once.
            return items
        return failed

    def _drop_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close(timeout=1)
            self._producer = None


def _append(path: Path, items: Iterable[tuple[bytes | None, bytes]]) -> None:
    with path.open("ab") as spill:
        for key, raw in items:
            record = {
                "key": base64.b64encode(key).decode() if key is not None else None,
                "value": base64.b64encode(raw).decode(),
            }
            spill.write(orjson.dumps(record) + b"\n")


def emit_lines(
    lines: Iterable[bytes],
    *,
    broker: str,
    topic_prefix: str = "lineage.",
    producer_config: Mapping[str, Any] | None = None,
) -> int:
    """Send JSON lines as they are (malformed ones too, for the dead letters); return the count.

    Used by ``lineage demo --broker``. Raises :class:`EmitterError` when Kafka took nothing.
    """
    producer = connect(
        {
            "bootstrap_servers": broker,
            "linger_ms": 20,
            "max_block_ms": 10_000,
            "bootstrap_timeout_ms": 10_000,
            **dict(producer_config or {}),
        }
    )
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


# -- connecting --------------------------------------------------------------------------------

#: kafka-python's loggers that speak of one failed bootstrap many times over.
_NET_LOGGERS = ("kafka.net.manager", "kafka.net.connection", "kafka.net.transport")


class _Hush(logging.Filter):
    """Keeps kafka-python's connection records of one thread out of the log, and keeps
    them to say in one sentence what went wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.said: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.said.append(record.getMessage())
        return False


def connect(config: Mapping[str, Any]) -> Any:
    """A kafka-python producer; or :class:`EmitterError` saying why Kafka refused or did
    not answer: wrong credentials, an untrusted certificate, nobody listening."""
    hush = _Hush()
    loggers = [logging.getLogger(name) for name in _NET_LOGGERS]
    for logger in loggers:
        logger.addFilter(hush)
    try:
        return KafkaProducer(**config)
    except KafkaError as exc:
        raise EmitterError(_why(config, hush.said, exc)) from None
    finally:
        for logger in loggers:
            logger.removeFilter(hush)


def _why(config: Mapping[str, Any], said: list[str], exc: BaseException) -> str:
    where = config.get("bootstrap_servers")
    text = " ".join(said)
    if "SaslAuthenticationFailed" in text:
        return (
            f"Kafka at {where} refused the credentials of user "
            f"{config.get('sasl_plain_username')!r} ({config.get('sasl_mechanism')})"
        )
    if "UnsupportedSaslMechanism" in text:
        return f"Kafka at {where} does not offer SASL {config.get('sasl_mechanism')}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"the certificate of Kafka at {where} is not trusted: pass ssl_cafile, the CA "
            "that signed it"
        )
    if "ECONNREFUSED" in text or "Connection refused" in text:
        return f"cannot reach Kafka at {where}: connection refused"
    return f"cannot reach Kafka at {where}: {type(exc).__name__}"
