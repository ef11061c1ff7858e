"""Policy what-if: replay kept events against a revised policy (``lineage replay``).

Before a revised policy is published, an agreement is signed or a recipient added, a
privacy officer asks which real flows would break and which breaches would end. Both
policies judge the same events, each on fresh state, as ``lineage run`` would; what
only one of them raises is the answer.

    report = replay(load_policy(old), load_policy(new), file_messages(lines, "week.jsonl"),
                    Path("out"))
    report.summary["added"]["alerts"], report.new_at_or_above(Severity.HIGH)

Modules: :mod:`~lineage.replay.compare` judges and keeps the differences,
:mod:`~lineage.replay.report` shapes the files, :mod:`~lineage.replay.page` draws
``replay.html``, :mod:`~lineage.replay.run` ties them together. Reading the events from
Kafka is the stream processors' part (``streams.replay_source``).
"""

from lineage.replay.compare import Comparison, Message
from lineage.replay.report import ReplayReport
from lineage.replay.run import decoded_ahead, file_messages, replay

__all__ = ["Comparison", "Message", "ReplayReport", "decoded_ahead", "file_messages", "replay"]
