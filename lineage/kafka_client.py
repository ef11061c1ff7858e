"""kafka-python's clients as the product uses them, with the one fault of kafka-python 3
that the product works around.

Import ``KafkaProducer``, ``KafkaConsumer``, ``KafkaAdminClient``, ``NewTopic`` and
``TopicPartition`` from here, not from ``kafka``: importing this module is what mends them.

**The fault.** kafka-python 3.0.12 reads a socket until it would block; when that read ends
with the peer's close, ``KafkaTCPTransport._read_from_sock`` aborts the connection and
drops the bytes read before the close. A broker that refuses credentials answers the
SaslAuthenticate request with the reason and then closes the connection. If the client
reads after both have arrived (a busy machine), the answer is dropped and the connection
is lost with "socket disconnected": the Emitter could only say it cannot reach Kafka,
never that the credentials were refused.

Delivering the bytes is not enough. The task waiting for the answer (the connection's
SASL exchange) only wakes on the loop's next turn, and losing the connection first fails
the connection with "socket disconnected" before that task can fail it with the reason.
asyncio's transports call ``connection_lost`` on a later turn than ``data_received``,
for the same reason. So the transport below hands the bytes to the protocol, gives the
loop one turn, and only then aborts.

The change is confined to a read that ends in the peer's close: every other read runs as
before. The report for upstream is section 17 of ``docs/upstream.md``. Remove the patch
once a kafka-python release delivers the bytes and the product requires that release.
"""

from __future__ import annotations

import time
from typing import Any

import kafka.net.transport as _transport
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaProtocolError

__all__ = ["KafkaAdminClient", "KafkaConsumer", "KafkaProducer", "NewTopic", "TopicPartition"]


async def _read_from_sock(self: Any) -> None:
    """kafka-python's read loop, except that the bytes read before the peer's close reach
    the protocol, and the tasks they wake run before the connection is lost."""
    while self._read and not self._closed:
        await self._net.wait_read(self._sock)
        data, error = self._sock_recv()
        if data:
            self.last_read = time.monotonic()
            if self._protocol and self._protocol._sensors:
                self._protocol._sensors.bytes_received.record(len(data))
            try:
                self._protocol.data_received(data)
            except KafkaProtocolError as exc:
                self.abort(error=exc)
                return
        if error is not None:
            if data:
                await self._net.sleep(0)
            self.abort(error=error)
            return


_transport.KafkaTCPTransport._read_from_sock = _read_from_sock
