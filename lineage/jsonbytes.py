"""JSON bytes for values that are kept a while, sized to fit.

orjson 3.12 and later return bytes whose allocation is the serializer's whole
buffer: at least 4 KiB, and up to about 15 times their length, never shrunk
(ijl/orjson#483; docs/upstream.md, section 9). That is harmless for bytes that are
written and dropped, and costly for bytes that are held: a table value per subject,
a queue of events waiting for Kafka. :func:`dumps_kept` copies the result into bytes
of its own length (about 0.2 µs for a small value).
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps_kept"]


def dumps_kept(obj: Any) -> bytes:
    """``orjson.dumps(obj)`` in bytes that take the memory of their length."""
    return bytes(memoryview(orjson.dumps(obj)))
