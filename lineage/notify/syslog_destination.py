"""Syslog to a SIEM, with the standard library: CEF in RFC 5424 messages over UDP or TCP.

UDP: one datagram a message (RFC 5426), on a connected socket so that a collector
that is not listening is seen (the kernel reports the refusal on a later send).
TCP: one connection, kept open, one message a line (RFC 6587 s.3.4.2, the framing
CEF collectors read); a CEF line never holds a raw line break
(:mod:`lineage.notify.cef`), so a line is always a whole message. A connection the
collector closed is seen before sending and opened again; a send that fails drops
the connection, and the router's retry opens a new one.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from lineage.notify.cef import syslog_message
from lineage.notify.errors import DeliveryFailed
from lineage.notify.routes import Kind, SyslogTarget, Transport

__all__ = ["SyslogDestination"]


class SyslogDestination:
    """One syslog collector (see the module docstring)."""

    def __init__(self, target: SyslogTarget, *, timeout: float, version: str) -> None:
        self.target = target
        self.label = f"syslog/{target.protocol.value}"
        self._timeout = timeout
        self._version = version
        self._sock: socket.socket | None = None

    def send(self, kind: Kind, record: Mapping[str, Any]) -> None:
        message = syslog_message(kind, record, version=self._version, facility=self.target.facility)
        tcp = self.target.protocol is Transport.TCP
        try:
            sock = self._connected()
            if tcp:
                sock.sendall(message + b"\n")
            else:
                sock.send(message)
        except OSError as exc:
            self.close()
            why = exc.strerror or type(exc).__name__
            raise DeliveryFailed(f"{self.label}: {why}") from None

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()

    def _connected(self) -> socket.socket:
        if self._sock is not None and self.target.protocol is Transport.TCP and self._closed():
            self.close()
        if self._sock is None:
            host, port = self.target.host, self.target.port
            if self.target.protocol is Transport.TCP:
                self._sock = socket.create_connection((host, port), timeout=self._timeout)
            else:
                family, kind, proto, _, address = socket.getaddrinfo(
                    host, port, type=socket.SOCK_DGRAM
                )[0]
                sock = socket.socket(family, kind, proto)
                try:
                    sock.settimeout(self._timeout)
                    sock.connect(address)
                except OSError:
                    sock.close()
                    raise
                self._sock = sock
        return self._sock

    def _closed(self) -> bool:
        """True when the collector closed the TCP connection (it never sends us data)."""
        sock = self._sock
        assert sock is not None
        sock.settimeout(0)  # a look, not a wait
        try:
            return sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(self._timeout)
