"""The producer SDK: validates at once, never blocks, spills when Kafka is away, replays after."""

from __future__ import annotations

import base64
import logging
import socket
import subprocess
import sys
import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from lineage.emitter import Emitter, EmitterError, connect
from lineage.policy import load_policy
from lineage.schemas import EventRejected
from tests.helpers import access
from tests.kafka_helpers import made_topic

UNREACHABLE = {"max_block_ms": 500, "request_timeout_ms": 500, "bootstrap_timeout_ms": 500}


def events(n: int) -> list[dict[str, object]]:
    return [access(event_id=f"em-{i}", subject=f"u-{i % 3}", recipient="payco") for i in range(n)]


def test_an_invalid_event_is_refused_before_anything_is_queued(tmp_path: Path) -> None:
    emitter = Emitter(
        "127.0.0.1:1", spill_path=tmp_path / "spill.jsonl", producer_config=UNREACHABLE
    )
    try:
        with pytest.raises(EventRejected, match="action: required field is missing"):
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
    topic = made_topic(f"emitter-{uuid.uuid4().hex[:8]}")
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
    topic = made_topic(f"emitter-{uuid.uuid4().hex[:8]}")
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


def spilled(folder: Path) -> list[dict[str, Any]]:
    """The events waiting in a folder's spill files, head before tail."""
    found = []
    for tail in sorted(folder.glob("*.jsonl")):
        for path in (tail.with_name(tail.name + ".head"), tail):
            if path.exists():
                for line in path.read_bytes().splitlines():
                    found.append(orjson.loads(base64.b64decode(orjson.loads(line)["value"])))
    for head in folder.glob("*.jsonl.head"):
        if not head.with_name(head.name[: -len(".head")]).exists():
            for line in head.read_bytes().splitlines():
                found.append(orjson.loads(base64.b64decode(orjson.loads(line)["value"])))
    return found


def away(folder: Path, **options: Any) -> Emitter:
    return Emitter(
        "127.0.0.1:1", spill_dir=folder, producer_config=UNREACHABLE, retry_seconds=60, **options
    )


def test_event_id_and_occurred_at_default_to_a_uuid_and_now(tmp_path: Path) -> None:
    emitter = away(tmp_path)
    event = access(recipient="payco")
    del event["event_id"], event["occurred_at"]
    emitter.emit(event)
    emitter.emit(access(event_id="given", recipient="payco"))
    emitter.flush(timeout=30)
    emitter.close(timeout=1)
    first, second = spilled(tmp_path)
    assert uuid.UUID(first["event_id"]).version == 4
    when = datetime.fromisoformat(first["occurred_at"])
    assert when.utcoffset() is not None
    assert abs((datetime.now(when.tzinfo) - when).total_seconds()) < 60
    assert second["event_id"] == "given"  # what the service says is kept


def test_each_process_spills_to_its_own_private_files(tmp_path: Path) -> None:
    one, two = away(tmp_path), away(tmp_path)
    try:
        assert one.spill_path != two.spill_path
        assert one.spill_path.parent == tmp_path
        private = tmp_path / "made"
        made = away(private)
        made.close(timeout=1)
        assert private.stat().st_mode & 0o777 == 0o700
    finally:
        one.close(timeout=1)
        two.close(timeout=1)


def test_a_spill_folder_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(EmitterError, match="not private"):
        away(shared)


def test_a_fixed_spill_file_in_use_is_refused(tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    first = Emitter("127.0.0.1:1", spill_path=spill, producer_config=UNREACHABLE)
    try:
        with pytest.raises(EmitterError, match="in use by another process"):
            Emitter("127.0.0.1:1", spill_path=spill, producer_config=UNREACHABLE)
    finally:
        first.close(timeout=1)


def test_the_spills_of_a_killed_process_are_adopted_and_sent_first(tmp_path: Path) -> None:
    living = away(tmp_path)  # a process still running: its spill stays its own
    living.emit(access(event_id="alive-0", recipient="payco"))
    living.flush(timeout=30)
    # A process that spilled three events dies without closing its Emitter.
    script = (
        "import os\n"
        "from lineage.emitter import Emitter\n"
        "from tests.helpers import access\n"
        f"e = Emitter('127.0.0.1:1', spill_dir={str(tmp_path)!r}, retry_seconds=60,\n"
        f"            producer_config={UNREACHABLE!r})\n"
        "for i in range(3):\n"
        "    e.emit(access(event_id=f'dead-{i}', recipient='payco'))\n"
        "e.flush(timeout=30)\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[1])
    try:
        heir = away(tmp_path)
        try:
            assert heir.stats.adopted == 3
            heir.emit(access(event_id="new-0", recipient="payco"))
            heir.flush(timeout=30)
            mine = [
                orjson.loads(base64.b64decode(orjson.loads(line)["value"]))["event_id"]
                for path in (heir.head_path, heir.spill_path)
                if path.exists()
                for line in path.read_bytes().splitlines()
            ]
            assert mine == ["dead-0", "dead-1", "dead-2", "new-0"]
            assert living.spill_path.exists() or living.head_path.exists()
        finally:
            heir.close(timeout=1)
    finally:
        living.close(timeout=1)
    # The dead process's files are gone; each Emitter of this one keeps its own.
    ours = {e.spill_path.name.removesuffix(".jsonl") + ".lock" for e in (living, heir)}
    assert {p.name for p in tmp_path.glob("*.lock")} == ours


def test_the_policy_check_warns_once_per_undeclared_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emitter = away(tmp_path, policy=load_policy())
    try:
        typo = access(categories=["contact.emial"], recipient="payco")
        assert ("category", "contact.emial") in emitter.check(decode(typo))
        with caplog.at_level(logging.WARNING, logger="lineage.emitter"):
            for i in range(3):
                emitter.emit({**typo, "event_id": f"t-{i}"})
        warned = [r.getMessage() for r in caplog.records if "does not declare" in r.getMessage()]
        assert warned.count("the policy does not declare the category 'contact.emial'") == 1
        assert emitter.stats.spilled + emitter.stats.queued == 3  # warned, and still sent
        # An undeclared id that is raw personal data is named by its token only.
        with caplog.at_level(logging.WARNING, logger="lineage.emitter"):
            emitter.emit({**typo, "event_id": "t-9", "source": "09012345678"})
        said = " ".join(r.getMessage() for r in caplog.records)
        assert "09012345678" not in said, said
        assert "the system '[redacted:phone:" in said
    finally:
        emitter.close(timeout=1)


def decode(event: dict[str, Any]) -> Any:
    from lineage.schemas import decode_event

    return decode_event(orjson.dumps(event))


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


class _Listener:
    """A local TCP server that answers every connection the same way, in a thread."""

    def __init__(self, answer: bytes) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:  # closed
                return
            with conn:
                conn.recv(4096)  # the client's first request
                if self.answer:
                    conn.sendall(self.answer)

    def close(self) -> None:
        self.server.close()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            "what answers at {} is not a Kafka broker (it speaks HTTP)",
        ),
        (
            b"",  # reads the request, then hangs up
            "cannot reach Kafka at {}: KafkaTimeoutError (the connection was lost: "
            "KafkaConnectionError: socket disconnected)",
        ),
    ],
)
def test_a_producer_that_cannot_start_says_what_answered(answer: bytes, said: str) -> None:
    listener = _Listener(answer)
    try:
        with pytest.raises(EmitterError) as refused:
            connect({"bootstrap_servers": listener.address, "bootstrap_timeout_ms": 1500})
        assert str(refused.value) == said.format(listener.address)
    finally:
        listener.close()
