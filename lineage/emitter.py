"""The producer SDK services embed: validate, hand off, never block, never lose an event.

    from lineage.emitter import Emitter

    emitter = Emitter("kafka:9092")                  # one per process; thread-safe
    emitter.emit({"source": "checkout", "action": "transfer", "subject": user_ref,
                  "categories": ["identity.name"], "purpose": "service_operation",
                  "recipient": "payment-processor"})
    emitter.close()                                  # at shutdown: sends what is waiting

``emit`` fills in what the service need not say (``event_id``: a random UUID;
``occurred_at``: now, in UTC), validates the event against the contract
(:mod:`lineage.schemas`) and raises :class:`lineage.schemas.EventRejected` at once for a bad
one, so a developer sees their bug where they made it. Given a policy, the Emitter
also warns once for each category, purpose, recipient or system the policy does not
declare (a misspelling found before it becomes an alert). A valid event goes into a
bounded in-memory buffer and is sent by one background thread (kafka-python,
idempotent, ``acks=all``), keyed by subject, else source. ``emit`` never waits for
Kafka: it takes a lock and either queues the event or appends it to a spill file.

Order is kept, because the monitor judges a subject's events in the order they
arrive (a consent before the transfer it allows). Events wait in three places,
oldest first: the *head* spill (what the thread held when Kafka failed it), the
in-memory buffer, and the *tail* spill (what ``emit`` wrote while the buffer was
full or a spill was being replayed). The thread sends them in that order, and
``emit`` goes back to the buffer only once both spills are sent.

Spill files are the process's own: by default they live in a private directory
(mode 0700; ``$LINEAGE_SPILL_DIR``, else ``$XDG_STATE_HOME/privacy-lineage/spill``,
else ``~/.local/state/privacy-lineage/spill``), named after the topic and the
process, and locked while it runs. A new Emitter adopts the spill files of
processes that ended with events still on disk (their lock is free) and sends those
first. An event whose acknowledgement was lost as the broker went away is sent again
(at least once): the monitor counts each event id once. Logs carry counts and
reasons, never event contents.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import queue
import re
import stat
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import orjson
from kafka.errors import KafkaError

from lineage.backoff import RECONNECT_BACKOFF_MAX_MS, RECONNECT_BACKOFF_MS, Backoff
from lineage.errors import LineageError
from lineage.jsonbytes import dumps_kept
from lineage.kafka_client import KafkaProducer
from lineage.logguard import guard_loggers
from lineage.redact import Redactor
from lineage.schemas import AccessEvent, ConsentEvent, decode_event

if TYPE_CHECKING:
    from lineage.policy.model import Policy

try:  # POSIX: a spill file's lock says whether the process that wrote it still runs
    import fcntl
except ImportError:  # pragma: no cover - Windows: no adoption of other processes' spills
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "Emitter",
    "EmitterError",
    "EmitterStats",
    "connect",
    "default_spill_dir",
    "emit_lines",
]

log = logging.getLogger("lineage.emitter")
#: Masks raw personal data in what the Emitter logs (a key of its own: logs only).
_LOG_REDACTOR = Redactor()


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
    adopted: int = 0  # events found in the spill files of processes that had ended


def _key(event: AccessEvent | ConsentEvent) -> bytes:
    return (event.subject or getattr(event, "source", "") or "").encode()


class Emitter:
    """Sends events to ``lineage.events`` from a service, asynchronously and losslessly."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = "lineage.events",
        spill_dir: str | Path | None = None,
        spill_path: str | Path | None = None,
        buffer_size: int = 10_000,
        producer_config: Mapping[str, Any] | None = None,
        retry_seconds: float = 1.0,
        policy: Policy | str | Path | None = None,
    ) -> None:
        """``spill_dir``: where this process's spill files go (default
        :func:`default_spill_dir`); ``spill_path``: one fixed spill file instead (no
        adoption; refused while another process holds it). ``policy``: a
        :class:`~lineage.policy.model.Policy` or a policy file, to warn on ids it does not
        declare. ``producer_config``: kafka-python settings (TLS, SASL, ...)."""
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.stats = EmitterStats()
        self._policy = _load_policy(policy)
        self._warned: set[tuple[str, str]] = set()
        if spill_path is not None:
            self.spill_path = Path(spill_path)
            self._lock_file = _hold(self.spill_path.with_name(self.spill_path.name + ".lock"))
            if self._lock_file is None:
                raise EmitterError(
                    f"spill file {self.spill_path} is in use by another process; give each "
                    "process its own (or leave spill_path unset)"
                )
        else:
            folder = _private_dir(Path(spill_dir) if spill_dir is not None else None)
            name = f"{_safe_name(topic)}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            self.spill_path = folder / f"{name}.jsonl"
            self._lock_file = _hold(folder / f"{name}.lock")
        self.head_path = self.spill_path.with_name(self.spill_path.name + ".head")
        if spill_path is None:
            self.stats.adopted = _adopt(self.spill_path.parent, _safe_name(topic), self.head_path)
            if self.stats.adopted:
                log.info(
                    "%d events spilled by processes that have ended are sent first",
                    self.stats.adopted,
                )
        self._config = {
            "bootstrap_servers": bootstrap_servers,
            "acks": "all",
            "linger_ms": 5,
            "retries": 5,
            "request_timeout_ms": 10_000,
            "max_block_ms": 5_000,
            # kafka-python waits 30 s for a first broker by default; the thread retries instead.
            "bootstrap_timeout_ms": 5_000,
            # Between attempts to reach a broker: 100 ms, doubling, jittered, at most 2 s.
            "reconnect_backoff_ms": RECONNECT_BACKOFF_MS,
            "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
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
        self._backoff = Backoff(retry_seconds, cap=max(retry_seconds, 10 * retry_seconds))
        self._stop = threading.Event()
        self._producer: Any = None
        #: Why Kafka could not be reached, when it could not (one sentence, no secrets).
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="lineage-emitter", daemon=True)
        self._thread.start()

    # -- the service's side ---------------------------------------------------------------------

    def emit(self, event: Mapping[str, Any] | AccessEvent | ConsentEvent | bytes) -> None:
        """Validate and hand off one event; raises ``EventRejected`` for an invalid one.

        A mapping without ``event_id`` gets a random UUID, without ``occurred_at`` the
        time now (UTC); bytes and models are sent as they are.
        """
        if isinstance(event, bytes):
            raw = event
        elif isinstance(event, AccessEvent | ConsentEvent):
            raw = event.model_dump_json(exclude_none=True).encode()
        else:
            data = dict(event)
            if "event_id" not in data:
                data["event_id"] = str(uuid.uuid4())
            if "occurred_at" not in data:
                data["occurred_at"] = _now()
            raw = dumps_kept(data)  # it may wait in the buffer while Kafka is away
        parsed = decode_event(raw)
        if self._policy is not None:
            for what, value in self.check(parsed):
                if (what, value) not in self._warned:
                    self._warned.add((what, value))
                    # An id may be raw personal data a careless producer put there.
                    shown = _LOG_REDACTOR.mask(value)
                    log.warning("the policy does not declare the %s %r", what, shown)
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

    def check(self, event: AccessEvent | ConsentEvent) -> list[tuple[str, str]]:
        """What the Emitter's policy does not declare in ``event``: (what, id) pairs, such
        as ``("category", "contact.emial")``; empty without a policy. The event is still
        sent: the monitor raises the findings (Arts. 2, 3) the policy calls for."""
        policy = self._policy
        if policy is None:
            return []
        unknown: list[tuple[str, str]] = []
        if isinstance(event, ConsentEvent):
            if event.recipient != "*" and event.recipient not in policy.recipients:
                unknown.append(("recipient", event.recipient))
            for purpose in event.purposes or ():
                if purpose not in policy.purposes:
                    unknown.append(("purpose", purpose))
            return unknown
        if policy.systems and event.source not in policy.systems:
            unknown.append(("system", event.source))
        for category in event.categories:
            if category not in policy.categories:
                unknown.append(("category", category))
        if event.purpose not in policy.purposes:
            unknown.append(("purpose", event.purpose))
        for rid in (event.recipient, event.via):
            if rid is not None and rid not in policy.recipients and rid not in policy.systems:
                unknown.append(("recipient", rid))
        return unknown

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
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock: the spill files may be adopted
            self._lock_file = None

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
                    self._stop.wait(self._backoff.next())
                    continue
                self._backoff.reset()
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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _load_policy(policy: Policy | str | Path | None) -> Policy | None:
    if policy is None or not isinstance(policy, str | Path):
        return policy
    from lineage.policy import load_policy  # only services that ask for the check load it

    return load_policy(Path(policy))


# -- spill files --------------------------------------------------------------------------------


def default_spill_dir() -> Path:
    """``$LINEAGE_SPILL_DIR``, else ``$XDG_STATE_HOME/privacy-lineage/spill``, else
    ``~/.local/state/privacy-lineage/spill``; a per-user folder in the temporary
    directory when there is no home."""
    given = os.environ.get("LINEAGE_SPILL_DIR")
    if given:
        return Path(given)
    state = os.environ.get("XDG_STATE_HOME")
    if state:
        return Path(state) / "privacy-lineage" / "spill"
    home = Path.home() if "HOME" in os.environ else None
    if home is not None and os.access(home, os.W_OK):
        return home / ".local" / "state" / "privacy-lineage" / "spill"
    return Path(tempfile.gettempdir()) / f"privacy-lineage-{os.getuid()}" / "spill"


def _private_dir(folder: Path | None) -> Path:
    """The spill folder, made if missing (0700), refused if others may write to it."""
    folder = folder if folder is not None else default_spill_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        raise EmitterError(f"cannot make the spill folder {folder}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise EmitterError(f"the spill folder {folder} is not a folder (a link?)")
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise EmitterError(
            f"the spill folder {folder} is not private (owner uid {info.st_uid}, mode "
            f"{stat.S_IMODE(info.st_mode):o}): spilled events would be readable or "
            "replaceable by others; give a folder only this user can write"
        )
    return folder


def _safe_name(topic: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in topic)


def _hold(lock_path: Path) -> IO[bytes] | None:
    """Open and lock ``lock_path``; None when another process holds it."""
    handle = lock_path.open("ab")
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _adopt(folder: Path, topic: str, head: Path) -> int:
    """Move the spills of ended processes (same topic, lock free) into ``head``, oldest
    process first, each one's head before its tail; return how many events moved."""
    if fcntl is None:
        return 0
    moved = 0
    locks = sorted(folder.glob(f"{topic}.*.lock"), key=lambda p: p.stat().st_mtime)
    for lock_path in locks:
        stem = lock_path.name[: -len(".lock")]
        if stem[len(topic) + 1 :].count(".") != 1:
            continue  # another topic whose name starts like ours
        held = _hold(lock_path)
        if held is None:
            continue  # its process still runs (or it is our own)
        try:
            tail = lock_path.with_name(stem + ".jsonl")
            for path in (tail.with_name(tail.name + ".head"), tail):
                if path.exists():
                    data = path.read_bytes()
                    complete = data[: data.rfind(b"\n") + 1]  # a line cut by a crash is lost
                    with head.open("ab") as out:
                        out.write(complete)
                    moved += complete.count(b"\n")
                    path.unlink()
            lock_path.unlink()
        finally:
            held.close()
    return moved


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
    # kafka-python prints each record it sends, and each produce request, at DEBUG: a
    # service that turns DEBUG on must not find its events in its own log.
    guard_loggers("kafka.")
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
    if "Invalid frame length" in text:
        # A Kafka answer opens with its length; an HTTP server's with "HTTP", which
        # read as a length is 1213486160.
        speaks = " (it speaks HTTP)" if "Invalid frame length: 1213486160" in text else ""
        return f"what answers at {where} is not a Kafka broker{speaks}"
    last = _last_cause(said)
    return f"cannot reach Kafka at {where}: {type(exc).__name__}" + (f" ({last})" if last else "")


#: How kafka-python's connection records say why a connection ended.
_LOST = ("Connection lost: ", "Connection failed: ")
#: The object a connection record starts with (``<KafkaConnection node_id=...>: ``).
_WHO = re.compile(r"^<[^>]*>: ")


def _last_cause(said: list[str]) -> str | None:
    """What kafka-python last said ended a connection, or that a request timed out: the
    reason behind a bootstrap that timed out, else None. Its records of a bootstrap name
    the broker and the error, never what a request carried."""
    for record in reversed(said):
        for lost in _LOST:
            if lost in record:
                return "the connection was lost: " + record.split(lost, 1)[1][:200]
        if "timed out" in record:
            return _WHO.sub("", record)[:200]
    return None
