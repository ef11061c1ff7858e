"""Choosing free ports on loopback for brokers and workers that bind them later.

Shared by ``scripts/kafka-local`` (the broker's ports), the tests' workers
(``tests/kafka_helpers.py``) and the benchmarks' workers (``bench/kafka_bench.py``).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: Below it, the ports that services are commonly given.
LOWEST = 10_000
HIGHEST = 65_535


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive ports free on 127.0.0.1, outside the range the
    system hands out to outgoing connections.

    A port is chosen here and bound seconds later by another process (a broker, a
    worker's web server). A port of the outgoing range, free when checked, may be taken
    in that gap by any connection a client opens, and the Kafka clients of a test or a
    benchmark open many: a worker then stopped on "address already in use". Ports below
    the range are never given to outgoing connections; if the range starts too low to
    leave room, the ports above it are used.
    """
    start, end = outgoing_ports()
    if start - count > LOWEST:
        low, high = LOWEST, start - count
    elif HIGHEST - count + 1 > end + 1:
        low, high = end + 1, HIGHEST - count + 1
    else:
        raise RuntimeError(
            f"no {count} ports outside the outgoing range {start}-{end} "
            "(/proc/sys/net/ipv4/ip_local_port_range)"
        )
    while True:
        first = random.randrange(low, high)
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first


def outgoing_ports() -> tuple[int, int]:
    """The first and last port Linux hands out to outgoing connections."""
    try:
        first, last = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(first), int(last)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default
