"""scripts/ports.py: the ports chosen for brokers and workers lie outside the range the
system gives outgoing connections, so no client's connection takes one before it is bound."""

from __future__ import annotations

import socket

import pytest

from scripts import ports


def test_a_free_port_lies_below_the_outgoing_range_and_is_free() -> None:
    start, _ = ports.outgoing_ports()
    for _ in range(50):
        first = ports.free_port(3)
        assert first >= ports.LOWEST and first + 3 <= start
        for port in range(first, first + 3):
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))


def test_the_ports_above_the_range_serve_when_it_starts_too_low(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ports, "outgoing_ports", lambda: (9_000, 50_000))
    for _ in range(50):
        first = ports.free_port(2)
        assert first > 50_000 and first + 1 <= ports.HIGHEST


def test_no_room_either_side_is_said_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "outgoing_ports", lambda: (1_024, 65_535))
    with pytest.raises(RuntimeError, match=r"no 1 ports outside the outgoing range 1024-65535"):
        ports.free_port()
