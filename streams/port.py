"""What the commit protocol needs of Kafka and faust, as one small port.

:class:`~streams.checkpoint.Checkpoint` knows nothing of faust: everything it asks of
the consumer, the producer of the tables' changelogs and the topics goes through a
:class:`KafkaPort`. The worker's is :class:`streams.app.FaustPort`; the tests of the
protocol fake it once (``tests/test_checkpoint.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from lineage.view import Row

__all__ = ["KafkaPort"]


class KafkaPort(Protocol):
    def generation(self) -> int:
        """The consumer generation now: records fetched in another are stale."""
        ...

    def flow_active(self) -> bool:
        """False while a rebalance is under way (nothing is judged or written then)."""
        ...

    def ack(self, tp: Any, offsets: Iterable[int]) -> None:
        """Mark offsets done: they are committed at the next commit."""
        ...

    async def rewind(self) -> None:
        """Read every partition held again from its committed offset (what was fetched
        and not judged is dropped): Kafka did not take the outputs of what was judged."""
        ...

    async def read_view(self, partition: int) -> list[Row]:
        """Every row of the subject-view topic's ``partition``, in order."""
        ...
