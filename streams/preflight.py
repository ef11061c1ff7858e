"""Before a worker or a command starts its clients: can it reach Kafka, and on what terms?

The clients retry quietly and then say only "Unable to bootstrap" whether the
broker is down, the password is wrong or the certificate is not trusted. This
module opens one connection to each bootstrap server with the same settings
(aiokafka's public ``create_conn``), and turns what went wrong into one sentence
that names the broker and what to fix, never a secret.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError

from lineage.errors import LineageError
from streams.kafka_config import KafkaConfig
from streams.settings import Settings
from streams.topics import KafkaUnavailable

__all__ = [
    "KafkaRefused",
    "WebPortUnavailable",
    "check_connection",
    "check_web_port",
    "hold_web_port",
]


class KafkaRefused(KafkaUnavailable):
    """Kafka answered and refused us: credentials or certificate (retrying will not help)."""


class WebPortUnavailable(LineageError):
    """The worker's web server cannot listen where it is told to (a port in use)."""


def _explain(settings: Settings, where: str, exc: BaseException) -> KafkaUnavailable:
    text = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return KafkaRefused(
            f"the certificate of Kafka at {where} is not trusted ({exc.verify_message}): set "
            "LINEAGE_SSL_CAFILE to the CA that signed it"
        )
    if isinstance(exc, ssl.SSLError):
        return KafkaRefused(f"TLS with Kafka at {where} failed: {exc.reason or type(exc).__name__}")
    if "Authentication failed" in text or type(exc).__name__.startswith("SaslAuthentication"):
        return KafkaRefused(
            f"Kafka at {where} refused the credentials of user {settings.sasl_username!r} "
            f"({settings.sasl_mechanism}): check LINEAGE_SASL_USERNAME and the password"
        )
    if "UnsupportedSaslMechanism" in type(exc).__name__ or "mechanism" in text.lower():
        return KafkaRefused(
            f"Kafka at {where} does not offer SASL {settings.sasl_mechanism}: "
            f"check LINEAGE_SASL_MECHANISM ({text[:120]})"
        )
    hint = (
        " (does it expect TLS or SASL? check LINEAGE_SECURITY_PROTOCOL)"
        if settings.security_protocol == "PLAINTEXT" and not isinstance(exc, OSError)
        else ""
    )
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return KafkaUnavailable(f"cannot reach Kafka at {where}: no answer in time{hint}")
    if isinstance(exc, ConnectionRefusedError):
        return KafkaUnavailable(f"cannot reach Kafka at {where}: connection refused")
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return KafkaUnavailable(f"cannot reach Kafka at {where}: {reason}{hint}")


async def _probe(settings: Settings, timeout: float) -> None:
    config = KafkaConfig(settings).aiokafka()
    config.pop("bootstrap_servers")
    last: KafkaUnavailable | None = None
    for host in settings.bootstrap.split(","):
        name, _, port = host.rpartition(":")
        where = f"{name}:{port}"
        try:
            conn = await asyncio.wait_for(
                create_conn(name, int(port), request_timeout_ms=int(timeout * 1000), **config),
                timeout,
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            last = _explain(settings, where, exc)
            if isinstance(last, KafkaRefused):
                raise last from None
            continue
        conn.close()
        return  # one broker answered on our terms: the clients can bootstrap
    assert last is not None
    raise last


def check_connection(settings: Settings, timeout: float = 15.0) -> None:
    """Raise :class:`KafkaRefused` or :class:`KafkaUnavailable` with one clear sentence
    when no bootstrap server can be reached with these settings."""
    asyncio.run(_probe(settings, timeout))


def check_web_port(settings: Settings) -> None:
    """Raise :class:`WebPortUnavailable` with one sentence when the web server could not
    listen on ``web_host:web_port``, before the worker starts anything.

    faust would find out only once it had joined the group and recovered its tables,
    and say it in a traceback. The address is bound as aiohttp binds it (address reuse
    on), so only a port another process listens on, or an address not of this machine,
    is refused.
    """
    for sock in _bound(settings):
        sock.close()


def hold_web_port(settings: Settings) -> list[socket.socket]:
    """Listen on ``web_host:web_port`` (each of its addresses) now, for a server that
    starts later (:class:`streams.front.Front`); refused as :func:`check_web_port`
    says."""
    socks = _bound(settings)
    for sock in socks:
        sock.listen(128)
        sock.setblocking(False)
    return socks


def _bound(settings: Settings) -> list[socket.socket]:
    if not settings.web_port:
        return []
    host, port = settings.web_host, settings.web_port
    where = f"{host}:{port}"
    advice = "stop it, or set --web-port or LINEAGE_WEB_PORT (0 turns the web server off)"
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise WebPortUnavailable(
            f"the web server cannot listen on {where}: {exc.strerror or exc} "
            "(check --web-host or LINEAGE_WEB_HOST)"
        ) from None
    socks: list[socket.socket] = []
    for family, kind, proto, _, address in found:
        sock = socket.socket(family, kind, proto)
        socks.append(sock)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # as aiohttp: each family its own socket
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            for opened in socks:
                opened.close()
            busy = " (another worker on this machine?): " + advice
            why = busy if exc.errno == errno.EADDRINUSE else " (check --web-host)"
            raise WebPortUnavailable(
                f"the web server cannot listen on {where}: {exc.strerror}{why}"
            ) from None
    return socks
