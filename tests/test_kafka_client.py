"""kafka-python's transport, as ``lineage.kafka_client`` mends it: an answer the peer sends
just before it closes the connection reaches the protocol, and the task waiting for that
answer runs before the connection is lost (docs/upstream.md, section 17).

The transport runs on kafka-python's own event loop over a local socket pair: the fault is
in how one read that ends in the peer's close is handled, and a socket pair makes that read
happen every time. ``tests/test_kafka_secure.py`` shows the same with a real broker that
refuses credentials.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.errors import KafkaConnectionError
from kafka.future import Future
from kafka.net.selector import NetworkSelector
from kafka.net.transport import KafkaTCPTransport

import lineage.kafka_client  # noqa: F401  (importing it is what mends the transport)


class Refused(Exception):
    """What the waiting task fails the connection with, as a refused SASL exchange does."""


class Protocol:
    """Records what the transport hands it, in order."""

    _sensors = None

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.answer = Future()

    def data_received(self, data: bytes) -> None:
        self.seen.append(data)
        self.answer.success(data)

    def connection_lost(self, error: BaseException | None) -> None:
        self.seen.append(error)


@pytest.fixture
def net() -> Iterator[NetworkSelector]:
    net = NetworkSelector()
    yield net
    net.close()


def _pair(net: NetworkSelector) -> tuple[KafkaTCPTransport, Protocol, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    transport = KafkaTCPTransport(net, ours)
    protocol = Protocol()
    transport.set_protocol(protocol)
    return transport, protocol, theirs


def _run_until_lost(net: NetworkSelector, protocol: Protocol) -> None:
    deadline = time.monotonic() + 5
    while not any(isinstance(seen, BaseException) for seen in protocol.seen):
        assert time.monotonic() < deadline, f"the connection was never lost: {protocol.seen}"
        net.poll(timeout_ms=100)


def test_an_answer_sent_just_before_the_close_reaches_the_protocol(net: NetworkSelector) -> None:
    transport, protocol, theirs = _pair(net)
    theirs.sendall(b"the broker's answer")
    theirs.close()  # the answer and the close are both waiting when the client reads
    transport.resume_reading()
    _run_until_lost(net, protocol)
    assert protocol.seen[0] == b"the broker's answer"
    assert isinstance(protocol.seen[1], KafkaConnectionError)
    assert "socket disconnected" in str(protocol.seen[1])


def test_the_task_waiting_for_the_answer_says_why_before_the_connection_is_lost(
    net: NetworkSelector,
) -> None:
    transport, protocol, theirs = _pair(net)

    async def authenticate() -> None:
        # The connection's SASL exchange: wait for the broker's answer, and when it is a
        # refusal, close the connection with the reason.
        await protocol.answer
        transport.abort(error=Refused("the credentials were refused"))

    net.call_soon(authenticate)
    net.poll(timeout_ms=0)  # the task is now waiting for the answer
    theirs.sendall(b"refused")
    theirs.close()
    transport.resume_reading()
    _run_until_lost(net, protocol)
    assert protocol.seen[0] == b"refused"
    assert [type(seen) for seen in protocol.seen[1:]] == [Refused]
