"""The commit protocol without a broker: dict tables, a stand-in producer, recorded acks.

Each test says one rule of streams.checkpoint: an offset is acked only after its
outputs were delivered and its state written; what is revoked or lost is judged
again, and judging again counts nothing twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from lineage.engine import record_id
from lineage.policy import Policy
from lineage.redact import Redactor
from lineage.schemas import MAX_EVENT_BYTES
from lineage.state import IncidentPartial
from streams.checkpoint import Checkpoint, StateNotWritten
from streams.intake import Chunk, TopicPartition
from streams.outputs import Sender
from streams.store import reader
from streams.topics import Topics
from tests.fake_kafka import FakeProducer
from tests.helpers import access

TOPICS = Topics(
    events="t.events",
    alerts="t.alerts",
    incidents="t.incidents",
    dead_letter="t.dead-letter",
    records="t.provision-records",
    partials="t.incident-partials",
    views="t.subject-view",
)


class Record:
    def __init__(self, offset: int, value: bytes, key: bytes | None = b"u-1") -> None:
        self.offset = offset
        self.value = value
        self.key = key


class FakePort:
    """The commit protocol's port to Kafka (streams.port.KafkaPort), faked: a generation
    and a flow switch the test sets, recorded acks and rewinds, a changelog that
    acknowledges or not, and the subject-view topic as what the producer was given."""

    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer
        self.acked: dict[Any, list[int]] = {}
        self.gen = 1
        self.active = True
        self.rewinds = 0

    def generation(self) -> int:
        return self.gen

    def flow_active(self) -> bool:
        return self.active

    def ack(self, tp: Any, offsets: Any) -> None:
        self.acked.setdefault(tp, []).extend(offsets)

    async def rewind(self) -> None:
        self.rewinds += 1

    async def read_view(self, partition: int) -> list[tuple[str, bytes | None]]:
        return [
            (s.key.decode(), s.value)
            for s in self.producer.on(TOPICS.views)
            if s.partition == partition and s.key is not None
        ]


CHANGELOG = "t.changelog"


class Writer:
    """Tables written as mappings, their changelog records sent on one topic."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.written_calls = 0

    def set(self, table: Any, key: str, value: bytes) -> None:
        table[key] = value
        self.sender.add(CHANGELOG, key.encode(), value, required=True)

    def delete(self, table: Any, key: str) -> None:
        del table[key]
        self.sender.add(CHANGELOG, key.encode(), None, required=True)

    def written(self) -> None:
        self.written_calls += 1

    def reader(self, table: Any) -> Callable[[str], Any]:
        return reader(table)


class Harness:
    """A Checkpoint on dict tables, with a fake producer and a fake port to Kafka."""

    def __init__(
        self,
        policy: Policy,
        tables: dict[str, dict[str, Any]] | None = None,
        producer: FakeProducer | None = None,
    ) -> None:
        self.tables = (
            tables
            if tables is not None
            else {name: {} for name in ("seen", "subjects", "edges", "incidents", "board")}
        )
        self.producer = producer if producer is not None else FakeProducer()
        self.sender = Sender(self.producer, max_bytes=1_000_000)
        self.port = FakePort(self.producer)
        self.writer = Writer(self.sender)
        self.checkpoint = Checkpoint(
            policy=policy,
            redactor=Redactor(b"k" * 32),
            tables=self.tables,
            sender=self.sender,
            port=self.port,
            topics=TOPICS,
            views_dir=Path(tempfile.mkdtemp(prefix="views-")),
            writer=self.writer,
        )

    @property
    def acked(self) -> dict[Any, list[int]]:
        return self.port.acked

    @property
    def generation(self) -> int:
        return self.port.gen

    @generation.setter
    def generation(self, value: int) -> None:
        self.port.gen = value

    @property
    def active(self) -> bool:
        return self.port.active

    @active.setter
    def active(self, value: bool) -> None:
        self.port.active = value

    @property
    def changelog_ok(self) -> bool:
        return CHANGELOG not in self.producer.failing

    @changelog_ok.setter
    def changelog_ok(self, value: bool) -> None:
        if value:
            self.producer.failing.discard(CHANGELOG)
        else:
            self.producer.failing.add(CHANGELOG)

    @property
    def barriers(self) -> int:
        return self.writer.written_calls

    def chunk(self, partition: int, *events: dict[str, Any] | bytes, start: int = 0) -> Chunk:
        records = [
            Record(start + i, e if isinstance(e, bytes) else orjson.dumps(e))
            for i, e in enumerate(events)
        ]
        return Chunk(TopicPartition(TOPICS.events, partition), records, self.generation)

    def take(self, *chunks: Chunk) -> None:
        live = self.checkpoint.current(list(chunks))
        asyncio.run(self.checkpoint.prepare(live))
        self.checkpoint.take(live)

    def flush(self) -> bool:
        return asyncio.run(self.checkpoint.flush())

    def alerts(self) -> list[dict[str, Any]]:
        return [orjson.loads(s.value) for s in self.producer.on(TOPICS.alerts)]


def breach(i: int) -> dict[str, Any]:
    # Unencrypted transfer to an outsourcer: art6.unencrypted, among others.
    return access(event_id=f"e-{i}", recipient="payco", encrypted_in_transit=False)


def test_an_offset_is_acked_only_after_outputs_and_state(policy: Policy) -> None:
    h = Harness(policy)
    h.take(h.chunk(0, breach(0), breach(1)))
    assert h.sender.pending and not h.producer.sent  # queued, not yet handed over
    assert h.tables["edges"] == {} and h.acked == {}  # nothing durable, nothing acked
    assert h.flush()
    assert h.alerts() and h.producer.on(TOPICS.partials)  # delivered first
    assert "0|flow|shop|payco" in h.tables["edges"]  # then the state
    assert h.acked == {TopicPartition(TOPICS.events, 0): [0, 1]}  # then the offsets
    assert h.checkpoint.unflushed() == 0


def test_a_flush_counts_its_time_and_its_waits_for_kafka(policy: Policy) -> None:
    # What an operator reads to tell a worker that computes from one that waits on Kafka.
    h = Harness(policy)
    h.producer.ack_delay = 0.05
    metrics = h.checkpoint.metrics.registry
    h.take(h.chunk(0, breach(0), breach(1)))
    assert h.flush()
    waits = {
        step: metrics.get_sample_value("lineage_kafka_wait_seconds_total", {"step": step})
        for step in ("outputs", "state")
    }
    assert all(wait is not None and wait >= 0.05 for wait in waits.values()), waits
    view = metrics.get_sample_value("lineage_view_wait_seconds_total")
    assert view is not None and view > 0  # the rows of the views asked of their process
    assert metrics.get_sample_value("lineage_flush_seconds_count") == 1
    flushed = metrics.get_sample_value("lineage_flush_seconds_sum")
    assert flushed is not None and flushed >= sum(w for w in waits.values() if w is not None) + view


def test_outputs_kafka_did_not_take_leave_their_offsets_unacked(policy: Policy) -> None:
    h = Harness(policy)
    h.take(h.chunk(0, breach(0)))
    h.producer.away = True
    assert not h.flush()  # and the partitions are read again from their commits
    assert h.port.rewinds == 1
    assert h.acked == {} and h.tables["edges"] == {}
    assert h.checkpoint.unflushed() == 0 and h.sender.pending == 0
    # Judged again once Kafka is back: the same alerts, the same ids.
    h.producer.away = False
    h.take(h.chunk(0, breach(0)))
    assert h.flush()
    assert {a["event_id"] for a in h.alerts()} == {"e-0"}
    assert h.acked == {TopicPartition(TOPICS.events, 0): [0]}


def test_offsets_wait_for_the_changelog_and_a_refused_record_stops_the_worker(
    policy: Policy,
) -> None:
    h = Harness(policy)
    h.take(h.chunk(0, breach(0)))
    assert h.flush() and h.barriers == 1 and h.acked  # state acknowledged, then acks
    h.take(h.chunk(0, breach(1), start=1))
    h.changelog_ok = False
    with pytest.raises(StateNotWritten):
        h.flush()
    assert h.acked == {TopicPartition(TOPICS.events, 0): [0]}  # nothing past the refusal


@pytest.mark.parametrize("where", ["the broker", "the sender"])
def test_a_changelog_record_refused_as_too_large_stops_the_worker(
    policy: Policy, where: str
) -> None:
    # An output refused as too large is dropped and the stream goes on; a record of a
    # table's changelog must not be: the state it carries would be committed past.
    h = Harness(policy)
    h.take(h.chunk(0, breach(0)))
    assert h.flush()
    h.take(h.chunk(0, breach(1), start=1))
    if where == "the broker":
        # Anything over 100 bytes: the alerts are dropped, as outputs are, and the
        # table records stop the worker.
        h.producer.max_message = 100
    else:
        h.sender.max_bytes = 200  # refused when added (the alerts too)
    with pytest.raises(StateNotWritten):
        h.flush()
    assert h.acked == {TopicPartition(TOPICS.events, 0): [0]}  # nothing past the refusal
    assert h.writer.written_calls == 1  # the stores were told of the first flush only


def test_a_view_row_refused_stops_the_worker(policy: Policy) -> None:
    # The subject-view topic is the store the subjects' answers are rebuilt from: a row
    # Kafka refuses is not dropped as an alert would be, or an answer would miss it.
    h = Harness(policy)
    h.take(h.chunk(0, breach(0)))
    assert h.flush()
    h.take(h.chunk(0, breach(1), start=1))
    h.producer.too_large = {TOPICS.views}
    with pytest.raises(StateNotWritten):
        h.flush()
    assert h.acked == {TopicPartition(TOPICS.events, 0): [0]}  # nothing past the refusal


def test_a_revoked_partition_keeps_nothing_judged_and_acks_nothing(policy: Policy) -> None:
    h = Harness(policy)
    h.take(h.chunk(0, breach(0)), h.chunk(1, breach(1)))
    h.checkpoint.revoke({TopicPartition(TOPICS.events, 0)})
    assert h.flush()
    assert list(h.acked) == [TopicPartition(TOPICS.events, 1)]
    assert all(not key.startswith("0|") for t in h.tables.values() for key in t)


def test_chunks_fetched_before_a_rebalance_are_not_judged(policy: Policy) -> None:
    h = Harness(policy)
    stale = h.chunk(0, breach(0))
    h.generation = 2
    h.take(stale, h.chunk(0, breach(1), start=1))
    assert h.flush()
    assert h.acked == {TopicPartition(TOPICS.events, 0): [1]}
    assert {a["event_id"] for a in h.alerts()} == {"e-1"}


def test_nothing_is_written_while_the_flow_is_stopped(policy: Policy) -> None:
    h = Harness(policy)
    h.take(h.chunk(0, breach(0)))
    h.active = False  # a rebalance began: the revocation will drop what was judged
    assert h.flush()
    assert h.acked == {} and h.tables["edges"] == {} and h.checkpoint.unflushed() == 1


def test_a_crash_between_state_and_ack_counts_nothing_twice(policy: Policy) -> None:
    first = Harness(policy)
    first.take(first.chunk(0, *(breach(i) for i in range(3))))
    assert first.flush()
    # The acks never reached a commit: a new owner reads the same records again, on
    # the state the first one wrote.
    second = Harness(policy, tables=first.tables)
    second.take(second.chunk(0, *(breach(i) for i in range(3))))
    assert second.flush()
    assert {a["alert_id"] for a in second.alerts()} == {a["alert_id"] for a in first.alerts()}
    edge = orjson.loads(second.tables["edges"]["0|flow|shop|payco"])
    assert edge["count"] == 3
    partial = orjson.loads(second.producer.on(TOPICS.partials)[-1].value)["partial"]
    assert partial["count"] == 3


def test_a_message_over_the_limit_is_a_small_dead_letter_with_size_and_digest(
    policy: Policy,
) -> None:
    h = Harness(policy)
    huge = b'{"event_id": "big", "note": "' + b"x" * (4 * MAX_EVENT_BYTES) + b'"}'
    h.take(h.chunk(0, huge, breach(1)))
    assert h.flush()
    (dead,) = h.producer.on(TOPICS.dead_letter)
    headers = dict(dead.headers)
    assert headers["lineage-size"] == str(len(huge)).encode()
    assert headers["lineage-sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert len(dead.value) <= 64 * 1024 and huge.startswith(dead.value)
    envelope = orjson.loads(headers["lineage-dead-letter"])
    assert envelope["truncated"] and envelope["kind"] == "oversized"
    assert h.acked == {TopicPartition(TOPICS.events, 0): [0, 1]}  # and the stream goes on


@pytest.mark.parametrize(
    "key",
    [
        b"hanako@example.jp",
        b"hanako@example.jp" + b"x" * 1_100,  # longer than a dead letter's key may be
        b"x" * 1_010 + b" hanako@example.jp",  # the address across that length
        b"hanako@example.jp\xff",  # not UTF-8
    ],
)
def test_a_dead_letter_key_holding_personal_data_is_masked(policy: Policy, key: bytes) -> None:
    h = Harness(policy)
    chunk = Chunk(TopicPartition(TOPICS.events, 0), [Record(0, b"not json", key=key)], 1)
    h.take(chunk)
    assert h.flush()
    (dead,) = h.producer.on(TOPICS.dead_letter)
    assert dead.key is not None and b"hanako" not in dead.key and b"redacted" in dead.key
    assert len(dead.key) <= 1_024


def test_a_dead_letter_key_without_personal_data_is_kept_as_sent(policy: Policy) -> None:
    h = Harness(policy)
    keys = [b"order-17", b"\x00\xff\x10binary", b"k" * 1_100]
    h.take(Chunk(TopicPartition(TOPICS.events, 0), [Record(n, b"{", key=k) for n, k in
                                                    enumerate(keys)], 1))  # fmt: skip
    assert h.flush()
    assert [d.key for d in h.producer.on(TOPICS.dead_letter)] == [*keys[:2], b"k" * 1_024]


def test_a_message_no_broker_takes_is_dropped_and_the_rest_go_out(policy: Policy) -> None:
    h = Harness(policy)
    h.producer.max_message = 1500  # the broker refuses anything longer than this
    h.take(h.chunk(0, b"x" * 2000, breach(1)))
    assert h.flush()  # the dead letter is refused alone; the alerts of e-1 went out
    assert not h.producer.on(TOPICS.dead_letter)
    assert {a["event_id"] for a in h.alerts()} == {"e-1"}
    assert h.acked == {TopicPartition(TOPICS.events, 0): [0, 1]}


def partial_record(offset: int, iid: str, partition: int, count: int) -> Record:
    partial = IncidentPartial(rule="art6.unencrypted", source="shop", recipient="payco")
    for i in range(count):
        partial.add(
            datetime(2025, 6, 1, 3, i, tzinfo=UTC),
            f"e-{i}",
        )
    partial.applied = count
    value = orjson.dumps({"partition": partition, "partial": partial.to_json()})
    return Record(offset, value, key=iid.encode())


def test_incidents_are_folded_published_and_repaired_after_a_restart(policy: Policy) -> None:
    h = Harness(policy)
    tp = TopicPartition(TOPICS.partials, 2)
    h.take(Chunk(tp, [partial_record(0, "inc-1", 0, 1)], 1))
    assert h.flush()
    opened = [orjson.loads(s.value) for s in h.producer.on(TOPICS.incidents)]
    assert [(i["count"], i["status"]) for i in opened] == [(1, "open")]
    # Grows by less than the factor: folded, not yet published.
    h.take(Chunk(tp, [partial_record(1, "inc-1", 0, 3)], 1))
    h.take(Chunk(tp, [partial_record(2, "inc-1", 1, 0 + 1)], 1))
    assert h.flush()
    # A graceful stop or a crash now: the board's table knows count 4, published 1.
    restarted = Harness(policy, tables=h.tables)
    restarted.checkpoint.adopt_boards([2])
    assert restarted.checkpoint.publish_incidents() == 1
    assert restarted.flush()
    (again,) = [orjson.loads(s.value) for s in restarted.producer.on(TOPICS.incidents)]
    assert again["count"] == 4 and again["status"] == "updated"
    # Published and recorded: nothing more to publish.
    assert restarted.checkpoint.publish_incidents() == 0


def test_an_incident_publication_kafka_did_not_take_is_published_again(policy: Policy) -> None:
    h = Harness(policy)
    tp = TopicPartition(TOPICS.partials, 0)
    h.take(Chunk(tp, [partial_record(0, "inc-9", 0, 2)], 1))
    h.producer.away = True
    assert not h.flush()  # the board is taken over again from its table
    h.producer.away = False
    h.take(Chunk(tp, [partial_record(0, "inc-9", 0, 2)], 1))
    assert h.flush()
    assert [orjson.loads(s.value)["count"] for s in h.producer.on(TOPICS.incidents)] == [2]


@pytest.mark.parametrize("n", [1, 150, 1000])
def test_the_sender_batches_per_partition_and_keeps_each_keys_order(n: int) -> None:
    producer = FakeProducer(partitions=3, batch_records=100)
    sender = Sender(producer, max_bytes=10_000)

    async def scenario() -> None:
        for i in range(n):
            sender.add("t", f"k{i % 7}".encode(), str(i).encode())
        await sender.flush()

    asyncio.run(scenario())
    assert len(producer.sent) == n
    assert producer.batches <= 3 + n // 100 + 1  # whole batches, not one send per message
    for k in range(7):
        mine = [s for s in producer.sent if s.key == f"k{k}".encode()]
        assert len({s.partition for s in mine}) <= 1
        assert [int(s.value) for s in mine] == sorted(int(s.value) for s in mine)


def test_the_sender_refuses_a_message_over_its_limit_at_once() -> None:
    refused: list[tuple[str, str]] = []
    sender = Sender(FakeProducer(), max_bytes=1000, on_refused=lambda t, r: refused.append((t, r)))
    assert not sender.add("t", None, b"x" * 2000)
    assert sender.add("t", None, b"x" * 100)
    assert refused and refused[0][0] == "t" and sender.pending == 1


def disclosure(i: int, day: int = 1) -> dict[str, Any]:
    # To a third party without consent: an alert, and a provision record.
    return access(
        event_id=f"d-{i}",
        recipient="researchers",
        purpose="research",
        occurred_at=f"2025-06-{day:02d}T12:{i:02d}:00+09:00",
    )


def test_the_view_is_rebuilt_from_its_topic_and_counts_nothing_twice(policy: Policy) -> None:
    events = [disclosure(i) for i in range(3)]
    first = Harness(policy)
    first.take(first.chunk(0, *events))
    assert first.flush()
    rows = first.producer.on(TOPICS.views)
    assert rows and {s.partition for s in rows} == {0}  # the partition of the events
    # The acks never reached a commit: the next owner rebuilds the view from its topic,
    # and judges the same records again on the tables the first one wrote.
    second = Harness(policy, tables=first.tables, producer=first.producer)
    second.take(second.chunk(0, *events))
    assert second.flush()
    found, lineage = asyncio.run(second.checkpoint.subject(0, ["u-1"]))
    assert found == "u-1" and lineage is not None
    facts = lineage.recipients["researchers"]
    assert facts.events == 3 and facts.breaches == {"art9.no-consent": 3}
    assert lineage.records == [record_id(f"d-{i}") for i in range(3)]


def test_a_subjects_answer_between_flushes_keeps_the_view_topic_whole(policy: Policy) -> None:
    """``GET /subjects/...`` while events are judged and not yet flushed: the next owner
    of the partition rebuilds from the topic what the first one answered."""
    events = [disclosure(i) for i in range(3)]
    first = Harness(policy)
    first.take(first.chunk(0, *events[:1]))
    assert first.flush()
    first.take(first.chunk(0, *events[1:], start=1))
    _, answered = asyncio.run(first.checkpoint.subject(0, ["u-1"]))
    assert answered is not None and answered.recipients["researchers"].events == 3
    assert first.flush()
    second = Harness(policy, tables=first.tables, producer=first.producer)
    _, rebuilt = asyncio.run(second.checkpoint.subject(0, ["u-1"]))
    assert rebuilt == answered


def test_a_revoked_partitions_view_is_dropped_with_what_was_not_flushed(policy: Policy) -> None:
    h = Harness(policy)
    h.take(h.chunk(0, disclosure(0)))
    assert h.flush()
    h.take(h.chunk(0, disclosure(1), start=1))
    h.checkpoint.revoke({TopicPartition(TOPICS.events, 0)})
    # Assigned again: the view holds what its topic holds, not the unflushed event.
    _, lineage = asyncio.run(h.checkpoint.subject(0, ["u-1"]))
    assert lineage is not None and lineage.recipients["researchers"].events == 1


def test_records_past_retention_are_deleted_from_the_view_topic(policy: Policy) -> None:
    short = policy.model_copy(
        update={"policy": policy.policy.model_copy(update={"records_retention_days": 30})}
    )
    h = Harness(short)
    h.take(h.chunk(0, disclosure(0, day=1), disclosure(1, day=20)))
    assert h.flush()
    h.take(h.chunk(0, access(event_id="late", action="use",
                             occurred_at="2025-07-05T12:00:00+09:00"), start=2))  # fmt: skip
    assert h.flush()
    # 2025-06-01 is more than 30 days before 2025-07-05: its record is gone, with a
    # tombstone for the compacted topic; 2025-06-20 is within.
    tombstones = [s for s in h.producer.on(TOPICS.views) if s.value is None]
    assert [s.key for s in tombstones] == [f"r\x1fu-1\x1f{record_id('d-0')}".encode()]
    _, lineage = asyncio.run(h.checkpoint.subject(0, ["u-1"]))
    assert lineage is not None and lineage.records == [record_id("d-1")]


# -- a flush under way while the worker judges on ---------------------------------------------


async def judged(h: Harness, *chunks: Chunk) -> None:
    """Judge chunks inside a running loop, as the worker's evaluate task does."""
    live = h.checkpoint.current(list(chunks))
    await h.checkpoint.prepare(live)
    h.checkpoint.take(live)
    await h.sender.send()


def acking_late(policy: Policy) -> Harness:
    """A harness whose Kafka acknowledges each batch half a second after taking it: a
    flush started waits that long for its outputs, whatever else the machine runs."""
    h = Harness(policy)
    h.producer.ack_delay = 0.5
    return h


async def flush_under_way(h: Harness, *chunks: Chunk) -> None:
    """Judge ``chunks`` and start a flush of them; return once it awaits Kafka's
    acknowledgement of its outputs (it has handed over the view's rows)."""
    await judged(h, *chunks)
    h.checkpoint.start_flush()
    deadline = time.monotonic() + 10
    while not h.producer.on(TOPICS.views):
        assert time.monotonic() < deadline, "the flush did not hand over the view's rows"
        await asyncio.sleep(0.005)


def edge_count(h: Harness) -> int | None:
    raw = h.tables["edges"].get("0|flow|shop|payco")
    return None if raw is None else int(orjson.loads(raw)["count"])


def test_events_judged_while_a_flush_waits_are_the_next_flushs(policy: Policy) -> None:
    h = acking_late(policy)
    tp = TopicPartition(TOPICS.events, 0)

    async def scenario() -> None:
        await flush_under_way(h, h.chunk(0, breach(0), breach(1)))
        assert h.checkpoint.unflushed() == 0  # the two are the flush's now
        await judged(h, h.chunk(0, breach(2), breach(3), start=2))
        assert h.checkpoint.unflushed() == 2
        assert await h.checkpoint.settled()
        # Only the first two: their offsets, and the state as judged when it began.
        assert h.acked == {tp: [0, 1]}
        assert edge_count(h) == 2
        assert h.checkpoint.unflushed() == 2
        assert await h.checkpoint.flush()
        assert h.acked == {tp: [0, 1, 2, 3]} and edge_count(h) == 4

    asyncio.run(scenario())
    assert {a["event_id"] for a in h.alerts()} == {f"e-{i}" for i in range(4)}


def test_a_table_record_waits_for_its_outputs_and_is_read_meanwhile(policy: Policy) -> None:
    # The dedup index reads the records of a flush back: held, they are read where they
    # are held, so a producer's retry judged while the flush waits is still a duplicate.
    h = acking_late(policy)

    async def scenario() -> None:
        await flush_under_way(h, h.chunk(0, breach(0)))
        assert h.tables["seen"] == {} and h.tables["edges"] == {}  # held, not written
        assert h.checkpoint.writer.held > 0
        await judged(h, h.chunk(0, breach(0), start=1))  # the same event again
        assert await h.checkpoint.settled()
        assert h.tables["seen"] and edge_count(h) == 1
        assert await h.checkpoint.flush()
        assert h.checkpoint.writer.held == 0

    asyncio.run(scenario())
    assert h.checkpoint.metrics.registry.get_sample_value("lineage_duplicates_total") == 1
    assert edge_count(h) == 1
    ids = [a["alert_id"] for a in h.alerts()]
    assert ids and len(ids) == len(set(ids))  # the retry raised nothing


def test_a_flush_that_loses_its_outputs_drops_what_was_judged_while_it_waited(
    policy: Policy,
) -> None:
    h = Harness(policy)
    tp = TopicPartition(TOPICS.events, 0)

    async def scenario() -> None:
        await judged(h, h.chunk(0, breach(0), breach(1)))
        h.producer.away = True
        h.checkpoint.start_flush()
        await judged(h, h.chunk(0, breach(2), start=2))
        assert not await h.checkpoint.settled()
        assert h.checkpoint.rewinds == 1 and h.port.rewinds == 1
        assert h.checkpoint.unflushed() == 0 and h.checkpoint.writer.held == 0
        assert h.acked == {} and h.tables["edges"] == {} and h.tables["seen"] == {}
        # Read again from the commit once Kafka is back: counted once.
        h.producer.away = False
        await judged(h, h.chunk(0, breach(0), breach(1), breach(2)))
        assert await h.checkpoint.flush()

    asyncio.run(scenario())
    assert h.acked == {tp: [0, 1, 2]} and edge_count(h) == 3


def test_outputs_lost_after_a_flushs_own_are_judged_again_not_a_stop(policy: Policy) -> None:
    # The flush's outputs are acknowledged and its records written; outputs of events
    # judged since are lost as it awaits the changelog. Its state is ahead of its
    # commit, as after a crash between steps 3 and 4: a rewind, not a stop.
    h = acking_late(policy)
    tp = TopicPartition(TOPICS.events, 0)

    async def scenario() -> None:
        await flush_under_way(h, h.chunk(0, breach(0), breach(1)))
        h.producer.failing.add(TOPICS.alerts)
        await judged(h, h.chunk(0, breach(2), start=2))
        assert not await h.checkpoint.settled()
        assert h.checkpoint.rewinds == 1 and h.acked == {}
        assert edge_count(h) == 2  # the flush's own records were written
        h.producer.failing.clear()
        await judged(h, h.chunk(0, breach(0), breach(1), breach(2)))
        assert await h.checkpoint.flush()

    asyncio.run(scenario())
    assert h.acked == {tp: [0, 1, 2]} and edge_count(h) == 3


def test_a_partition_revoked_while_its_flush_waits_writes_and_acks_nothing(
    policy: Policy,
) -> None:
    h = acking_late(policy)

    async def scenario() -> None:
        await flush_under_way(h, h.chunk(0, breach(0)), h.chunk(1, breach(1)))
        h.active = False  # a rebalance: every partition is revoked
        h.checkpoint.revoke({TopicPartition(TOPICS.events, 0), TopicPartition(TOPICS.events, 1)})
        assert await h.checkpoint.settled()

    asyncio.run(scenario())
    assert h.acked == {} and h.checkpoint.writer.held == 0
    assert all(not table for name, table in h.tables.items())


def test_alerts_are_forwarded_with_the_flush_that_delivered_them(policy: Policy) -> None:
    h = acking_late(policy)
    told: list[list[str]] = []
    h.checkpoint.on_delivered = lambda alerts, _: told.append(
        sorted({a["event_id"] for a in alerts})
    )

    async def scenario() -> None:
        await flush_under_way(h, h.chunk(0, breach(0)))
        await judged(h, h.chunk(0, breach(1), start=1))
        assert await h.checkpoint.settled()
        assert told == [["e-0"]]  # e-1's alerts were not in this flush's outputs
        assert await h.checkpoint.flush()

    asyncio.run(scenario())
    assert told == [["e-0"], ["e-1"]]


def test_the_sender_flush_waits_for_what_was_added_before_it() -> None:
    producer = FakeProducer()
    producer.ack_delay = 0.05
    sender = Sender(producer, max_bytes=10_000)

    async def scenario() -> None:
        sender.add("t", b"k", b"1")
        flushing = asyncio.ensure_future(sender.flush())
        await asyncio.sleep(0.01)
        sender.add("t", b"k", b"2")
        await sender.send()
        await flushing
        assert sender.pending == 1  # the second: the next flush's
        await sender.flush()
        assert sender.pending == 0

    asyncio.run(scenario())
    assert [s.value for s in producer.sent] == [b"1", b"2"]
