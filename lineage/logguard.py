"""No secret and no event content in any log line, at any level: one filter, installed once.

Our own log lines carry counts, ids and code locations only. The libraries under the
worker and the notifications do not hold back: at DEBUG, aiokafka and kafka-python
print every request and response (records, changelog values, a SASL PLAIN password),
faust prints every message it sends (changelog keys and values: subjects, consent
references), apprise prints every URL with its tokens and every payload, and urllib3
every request path. :class:`LogGuard` is a :class:`logging.Filter` that rewrites or
drops those records and only those; :func:`install_log_guard` puts the one instance
on every handler of the root logger (where every library's records arrive), on
``logging.lastResort``, and on the exact loggers its rules name (so that records are
guarded before any handler sees them, whatever handlers an embedding program adds
later). The worker installs it when faust configures logging, ``lineage run`` when it
starts.

What is rewritten, by logger and format string (an argument withheld is replaced by
its kind and size, ``<bytes: 312, withheld>``, so the line still says what happened):

- ``aiokafka.conn``: ``Request to %s:%d %d: %s`` and ``Response from %s:%d %d: %s``,
  the request or response (*): produced and fetched records, SASL PLAIN bytes.
- ``aiokafka.producer.producer``: ``Sending (key=%s value=%s) to %s``, key and value.
- ``kafka.net.connection``: ``%s Request %d: %s`` and ``%s: Response %d (%s ms): %s``,
  and ``kafka.protocol.parser``: ``%s Received response %d %s`` and ``%s Sending
  request %d %s``, the request or response (*); ``%s Send: %r`` and ``%s Recv: %r``,
  the bytes on the wire; ``Response %d [...]: Unable to decode %d-byte buffer: %r``,
  the buffer.
- ``kafka.producer.kafka``: ``%s: Sending (key=%r value=%r headers=%r) to %s``, key,
  value and headers; ``kafka.producer.sender``: ``%s: Created %d produce requests: %s``
  and ``%s: Sending Produce Request: %r``, the requests (their records).
- ``faust.topics`` and ``faust.transport.drivers.aiokafka``: ``send: topic=%r k=%r
  v=%r timestamp=%r partition=%r``, key and value (changelog keys hold subjects,
  values consent references).
- ``faust.topics``: the WARNING ``_on_published error for message topic ... error ...
  message ...`` (an f-string), cut before its message.
- ``faust.agents.agent``: ``%r yielded: %r``, the value; ``faust.transport.consumer``:
  ``DROPPED MESSAGE ROFF %r: k=%r v=%r``, key and value; ``faust.streams``:
  ``Skipping message %r with generation_id ...``, the message.
- ``urllib3.connectionpool``: ``%s://%s:%s "%s %s %s" %s %s``, the path and query
  (a Slack or Teams webhook's token is there); ``Retrying (%r) after connection
  broken by '%r': %s``, ``Redirecting %s -> %s`` and ``Retry: %s``, the URLs;
  ``urllib3.util.retry``: ``Incremented Retry for (url='%s'): %r`` and
  ``urllib3.poolmanager``: ``Redirecting %s -> %s``, the URLs.

(*) Except the kinds that hold no records and no credentials, shown in full for
debugging a connection (:data:`KAFKA_WITHOUT_DATA`: metadata, group membership,
offsets, topic administration, ``ProduceResponse``, ``FetchRequest``); every other
kind (``ProduceRequest``, ``FetchResponse``, ``SaslAuthenticateRequest``, and any kind
a later client adds) is withheld.

faust and mode log through labelled loggers that put ``[^--Producer]: `` before the
format string: a rule matches the end of the format string.

What is dropped: every record of the ``apprise`` logger below INFO (DEBUG and its
TRACE). Its plugins build their messages with f-strings, so there is no format string
to match, and at those levels they print the URL as parsed with its password, tokens
and headers, each payload (the alert text) and each response body. INFO and above
(``Sent JSON POST notification``, ``Failed to send ...: 500``) name the service and
the status, and stay.

What is masked everywhere: the secrets the process knows (:func:`protect`: the
values ``${NAME}`` put in a routes URL, a URL's password, the SASL password, the web
token, the redaction key), wherever they appear in any record's message, exception
or stack text, become ``[secret]``, in their raw and percent-encoded forms. This is
the net under the rules, for a library message no rule foresaw.

The rules were written against the versions pyproject.toml pins (faust-streaming
0.15.3, aiokafka < 0.15, kafka-python 3, apprise 2.3) and the urllib3 2 that apprise's
requests brings; tests/test_logguard.py checks each rule against the library's own
source, so that an upgrade that changes a format string fails a test rather than
leaks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = [
    "GUARD",
    "KAFKA_WITHOUT_DATA",
    "MIN_SECRET",
    "QUIET_BELOW_INFO",
    "RULES",
    "LogGuard",
    "Rule",
    "guard_loggers",
    "install_log_guard",
    "protect",
]

#: A secret shorter than this is not masked: it would mask unrelated text everywhere.
MIN_SECRET = 4
#: What stands where a secret was.
MASK = "[secret]"


class _Withheld:
    """Stands in a record's arguments for a value that is not shown (``%s`` and ``%r``)."""

    __slots__ = ("text",)

    def __init__(self, value: Any) -> None:
        if isinstance(value, bytes | bytearray | memoryview):
            self.text = f"<bytes: {len(value)}, withheld>"
        elif isinstance(value, str):
            self.text = f"<text: {len(value)} chars, withheld>"
        else:
            self.text = f"<{type(value).__name__}, withheld>"

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


@dataclass(frozen=True, slots=True)
class Rule:
    """One library log record that carries data, and what of it is withheld.

    ``fmt`` is the record's format string (matched at the end of ``record.msg``, after
    any label mode puts before it). ``withhold`` lists the arguments replaced by their
    kind and size. A message the library formats itself (an f-string) has no
    arguments: ``cut`` then names the text from which, after ``fmt``, it is cut.
    """

    logger: str
    fmt: str
    withhold: tuple[int, ...] = ()
    cut: str | None = None
    #: An argument this says yes to is shown after all (a request that holds no data).
    shown: Callable[[Any], bool] | None = None

    def apply(self, record: logging.LogRecord, msg: str) -> bool:
        """Rewrite ``record`` when the rule is about it; True when it was."""
        if self.cut is not None:
            start = msg.find(self.fmt)
            if start < 0:
                return False
            end = msg.find(self.cut, start + len(self.fmt))
            if end >= 0:
                record.msg = msg[:end] + self.cut + "(withheld)"
                record.args = ()
            return True
        if not msg.endswith(self.fmt):
            return False
        args, shown = record.args, self.shown
        if isinstance(args, tuple):
            record.args = tuple(
                _Withheld(a)
                if i in self.withhold and a is not None and not (shown and shown(a))
                else a
                for i, a in enumerate(args)
            )
        return True


#: Kafka requests and responses that hold no records and no credentials (shown in full,
#: for debugging a connection): every other kind is withheld, a new one too.
KAFKA_WITHOUT_DATA = (
    "ApiVersion", "Metadata", "FindCoordinator", "Heartbeat", "JoinGroup", "SyncGroup",
    "LeaveGroup", "OffsetFetch", "OffsetCommit", "ListOffset", "OffsetForLeaderEpoch",
    "CreateTopics", "DeleteTopics", "CreatePartitions", "DescribeConfigs", "DescribeGroups",
    "ListGroups", "DescribeCluster", "InitProducerId", "AddPartitionsToTxn",
    "AddOffsetsToTxn", "EndTxn", "ProduceResponse", "FetchRequest", "SaslHandshake",
)  # fmt: skip


def _without_data(value: Any) -> bool:
    return type(value).__name__.startswith(KAFKA_WITHOUT_DATA)


_SEND = "send: topic=%r k=%r v=%r timestamp=%r partition=%r"

#: The records that carry data, by logger (see the module docstring for why each).
RULES: tuple[Rule, ...] = (
    Rule("aiokafka.conn", "Request to %s:%d %d: %s", (3,), shown=_without_data),
    Rule("aiokafka.conn", "Response from %s:%d %d: %s", (3,), shown=_without_data),
    Rule("aiokafka.producer.producer", "Sending (key=%s value=%s) to %s", (0, 1)),
    Rule("kafka.net.connection", "%s Request %d: %s", (2,), shown=_without_data),
    Rule("kafka.net.connection", "%s: Response %d (%s ms): %s", (3,), shown=_without_data),
    Rule("kafka.protocol.parser", "%s Received response %d %s", (2,), shown=_without_data),
    Rule("kafka.protocol.parser", "%s Sending request %d %s", (2,), shown=_without_data),
    Rule("kafka.protocol.parser", "%s Send: %r", (1,)),
    Rule("kafka.protocol.parser", "%s Recv: %r", (1,)),
    Rule(
        "kafka.protocol.parser",
        "Response %d [ResponseType: %s RequestHeader: %s]: Unable to decode %d-byte buffer: %r",
        (4,),
    ),
    Rule("kafka.producer.kafka", "%s: Sending (key=%r value=%r headers=%r) to %s", (1, 2, 3)),
    Rule("kafka.producer.sender", "%s: Created %d produce requests: %s", (2,)),
    Rule("kafka.producer.sender", "%s: Sending Produce Request: %r", (1,)),
    Rule("faust.topics", _SEND, (1, 2)),
    Rule("faust.transport.drivers.aiokafka", _SEND, (1, 2)),
    Rule("faust.topics", "_on_published error for message topic ", cut=" message "),
    Rule("faust.agents.agent", "%r yielded: %r", (1,)),
    Rule("faust.transport.consumer", "DROPPED MESSAGE ROFF %r: k=%r v=%r", (1, 2)),
    Rule(
        "faust.streams",
        "Skipping message %r with generation_id %r because app generation_id is %r "
        "flow_control.is_active %r",
        (0,),
    ),
    Rule("urllib3.connectionpool", '%s://%s:%s "%s %s %s" %s %s', (4,)),
    Rule("urllib3.connectionpool", "Retrying (%r) after connection broken by '%r': %s", (2,)),
    Rule("urllib3.connectionpool", "Redirecting %s -> %s", (0, 1)),
    Rule("urllib3.connectionpool", "Retry: %s", (0,)),
    Rule("urllib3.util.retry", "Incremented Retry for (url='%s'): %r", (0,)),
    Rule("urllib3.poolmanager", "Redirecting %s -> %s", (0, 1)),
)

#: Loggers whose records below INFO are all dropped (see the module docstring).
QUIET_BELOW_INFO: tuple[str, ...] = ("apprise",)


class LogGuard(logging.Filter):
    """Rewrites or drops the library records that carry data, and masks known secrets.

    One instance may sit on several handlers and loggers: a record is guarded once.
    """

    def __init__(
        self, rules: Iterable[Rule] = RULES, quiet: tuple[str, ...] = QUIET_BELOW_INFO
    ) -> None:
        super().__init__()
        self.rules: dict[str, tuple[Rule, ...]] = {}
        for rule in rules:
            self.rules[rule.logger] = (*self.rules.get(rule.logger, ()), rule)
        self.quiet = quiet
        self._quiet_children = tuple(name + "." for name in quiet)
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def protect(self, secret: str | None) -> None:
        """Mask ``secret`` (and its percent-encoded forms) in every record from now on."""
        if not secret or len(secret) < MIN_SECRET:
            return
        with self._lock:
            known = set(self._secrets)
            known.update({secret, quote(secret), quote(secret, safe=""), quote_plus(secret)})
            # Longest first, so that a secret inside another is not half-masked.
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_lineage_guarded", False):
            return True
        name = record.name
        if record.levelno < logging.INFO and (
            name in self.quiet or name.startswith(self._quiet_children)
        ):
            return False
        rules = self.rules.get(name)
        if rules and isinstance(record.msg, str):
            for rule in rules:
                if rule.apply(record, record.msg):
                    break
        if self._secrets:
            self._mask(record)
        setattr(record, "_lineage_guarded", True)  # noqa: B010 (not a LogRecord field)
        return True

    def _mask(self, record: logging.LogRecord) -> None:
        secrets = self._secrets
        try:
            text = record.getMessage()
        except Exception:  # a broken format: the handler reports it; show nothing of it
            record.msg, record.args = "(a log record that could not be formatted)", ()
            return
        if any(s in text for s in secrets):
            record.msg, record.args = _masked(text, secrets), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and any(s in record.exc_text for s in secrets):
            record.exc_text = _masked(record.exc_text, secrets)
        if record.stack_info and any(s in record.stack_info for s in secrets):
            record.stack_info = _masked(record.stack_info, secrets)


def _masked(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


#: The process's one guard: the rules, and the secrets it learns.
GUARD = LogGuard()


def protect(secret: str | None) -> None:
    """Mask ``secret`` in every log record of this process from now on (see
    :meth:`LogGuard.protect`); a secret shorter than :data:`MIN_SECRET` is ignored."""
    GUARD.protect(secret)


def guard_loggers(prefix: str, guard: LogGuard = GUARD) -> None:
    """Put ``guard`` on the loggers its rules name under ``prefix`` (``"kafka."``) and
    nowhere else: what a library embedded in another program does (the SDK), leaving
    that program's handlers alone; idempotent."""
    for name in (*guard.rules, *guard.quiet):
        if name.startswith(prefix):
            logger = logging.getLogger(name)
            if guard not in logger.filters:
                logger.addFilter(guard)


def install_log_guard(guard: LogGuard = GUARD) -> LogGuard:
    """Put ``guard`` on every handler of the root logger, on ``logging.lastResort``, and
    on each logger its rules name; idempotent. Call it again once logging is configured
    (faust configures it when its Worker starts): handlers added later are not covered
    by the first call, the named loggers are."""
    places: list[logging.Handler | logging.Logger] = list(logging.getLogger().handlers)
    if logging.lastResort is not None:
        places.append(logging.lastResort)
    places += [logging.getLogger(name) for name in (*guard.rules, *guard.quiet)]
    for place in places:
        if guard not in place.filters:
            place.addFilter(guard)
    return guard
