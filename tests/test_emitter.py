"""The producer SDK: validates at once, never blocks, spills when Kafka is away, replays after."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer

from lineage.emitter import Emitter
from lineage.schemas import EventRejected
from tests.helpers import access

UNREACHABLE = {"max_block_ms": 500, "request_timeout_ms": 500, "bootstrap_timeout_ms": 500}


def events(n: int) -> list[dict[str, object]]:
    return [access(event_id=f"em-{i}", subject=f"u-{i % 3}", recipient="payco") for i in range(n)]


def test_an_invalid_event_is_refused_before_anything_is_queued(tmp_path: Path) -> None:
    emitter = Emitter(
        "127.0.0.1:1", spill_path=tmp_path / "spill.jsonl", producer_config=UNREACHABLE
    )
    try:
        with pytest.raises(EventRejected, match="occurred_at"):
            emitter.emit({"event_id": "x", "source": "shop"})
        assert emitter.stats.queued == 0
    finally:
        emitter.close(timeout=5)


def test_kafka_away_means_spilled_not_lost_and_not_blocked(tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    emitter = Emitter(
        "127.0.0.1:1", spill_path=spill, producer_config=UNREACHABLE, retry_seconds=0.1
    )
    for event in events(20):
        emitter.emit(event)  # returns at once: the thread does the waiting
    assert emitter.flush(timeout=30) == 0  # nothing left only in memory
    emitter.close(timeout=5)
    assert emitter.stats.spilled == 20
    waiting = [spill.with_name(spill.name + ".head"), spill]
    lines = [line for path in waiting if path.exists() for line in path.read_bytes().splitlines()]
    ids = [
        orjson.loads(base64.b64decode(orjson.loads(line)["value"]))["event_id"] for line in lines
    ]
    assert ids == [f"em-{i}" for i in range(20)]  # all of them, head then tail, in order


@pytest.mark.kafka
def test_events_arrive_keyed_by_subject_in_order(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"emitter-{uuid.uuid4().hex[:8]}"
    sent = events(30)
    with Emitter(kafka_bootstrap, topic=topic, spill_path=tmp_path / "spill.jsonl") as emitter:
        for event in sent:
            emitter.emit(event)
        assert emitter.flush(timeout=60) == 0
    received = read(kafka_bootstrap, topic, len(sent))
    assert [m.key for m in received if m.key == b"u-0"]  # keyed by subject
    for subject in ("u-0", "u-1", "u-2"):
        ids = [orjson.loads(m.value)["event_id"] for m in received if m.key == subject.encode()]
        assert ids == [e["event_id"] for e in sent if e["subject"] == subject]  # in order


@pytest.mark.kafka
def test_spilled_events_are_replayed_when_kafka_is_back(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = f"emitter-{uuid.uuid4().hex[:8]}"
    spill = tmp_path / "spill.jsonl"
    away = Emitter("127.0.0.1:1", topic=topic, spill_path=spill, producer_config=UNREACHABLE)
    for event in events(12):
        away.emit(event)
    away.flush(timeout=30)
    away.close(timeout=5)
    assert spill.exists() or spill.with_name(spill.name + ".head").exists()
    back = Emitter(kafka_bootstrap, topic=topic, spill_path=spill)
    try:
        received = read(kafka_bootstrap, topic, 12)
    finally:
        back.close()
    assert sorted(orjson.loads(m.value)["event_id"] for m in received) == sorted(
        f"em-{i}" for i in range(12)
    )
    assert not spill.exists() and not spill.with_name(spill.name + ".head").exists()


def read(bootstrap: str, topic: str, n: int) -> list[object]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        consumer_timeout_ms=20_000,
    )
    received = []
    for message in consumer:
        received.append(message)
        if len(received) >= n:
            break
    consumer.close()
    return received
