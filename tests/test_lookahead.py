"""A worker whose waiting chunks a child process decodes ahead sends what a worker
alone sends, whichever of the two decoded a record, never waits for the child, and
goes on alone when the child stops (streams.ahead)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

import streams.ahead as ahead_module
from lineage.policy import Policy
from streams.ahead import IN_FLIGHT, PART, Lookahead
from streams.intake import Chunk, Intake, TopicPartition
from tests.fake_kafka import Sent
from tests.helpers import access
from tests.test_checkpoint import TOPICS, Harness, Record
from tests.test_decode_process import day


@pytest.fixture
def lookahead(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A Lookahead that waits for each answer (every record sent is the child's), on
    whatever cores this machine has; stopped after the test."""
    monkeypatch.setattr(ahead_module, "cores", lambda: 2)
    made = Lookahead(TOPICS.events, wait=True)
    yield made
    made.close()


def chunks_of(lines: list[bytes], size: int, partition: int = 0) -> list[Chunk]:
    tp = TopicPartition(TOPICS.events, partition)
    return [
        Chunk(
            tp, [Record(start + i, line) for i, line in enumerate(lines[start : start + size])], 1
        )
        for start in range(0, len(lines), size)
    ]


def events(n: int, start: int = 0) -> list[bytes]:
    return [
        orjson.dumps(access(event_id=f"e-{i}", subject=f"u-{i % 7}", recipient="payco"))
        for i in range(start, start + n)
    ]


def comparable(sent: list[Sent]) -> list[Any]:
    """What the producer was given, with the dead letters' time of receipt left out."""
    out = []
    for s in sent:
        headers = []
        for name, value in s.headers:
            if name == "lineage-dead-letter":
                envelope = orjson.loads(value)
                envelope.pop("received_at", None)
                value = orjson.dumps(envelope)
            headers.append((name, value))
        out.append((s.topic, s.partition, s.key, s.value, headers))
    return out


def test_a_worker_judging_what_its_child_decoded_sends_what_it_sends_alone(
    policy: Policy, lookahead: Lookahead
) -> None:
    # Every kind of message: lawful and breaching flows, consents, raw personal data to
    # mask, duplicates and conflicting ones, bad JSON, invalid events, a line too long.
    lines = day()
    alone, decoded = Harness(policy), Harness(policy)
    decoded.checkpoint.ahead = lookahead.verdicts
    for harness in (alone, decoded):
        chunks = chunks_of(lines, 256)
        for chunk in chunks:
            lookahead.send([chunk]) if harness is decoded else None
            harness.take(chunk)
        assert harness.flush()
    metrics = decoded.checkpoint.metrics.registry
    from_child = metrics.get_sample_value("lineage_events_decoded_ahead_total")
    # Every valid message without raw personal data came from the child; the checkpoint
    # decoded the others itself.
    assert from_child is not None and 1_400 < from_child < len(lines)
    assert alone.checkpoint.metrics.registry.get_sample_value(
        "lineage_events_decoded_ahead_total"
    ) in (None, 0.0)
    assert len(alone.producer.on(TOPICS.dead_letter)) > 40 and len(alone.alerts()) > 100
    assert comparable(decoded.producer.sent) == comparable(alone.producer.sent)
    assert decoded.tables == alone.tables


def test_a_chunk_is_judged_from_the_verdicts_of_its_own_records_only(
    lookahead: Lookahead,
) -> None:
    c1, c2, c3, c4 = chunks_of(events(40), 10)
    lookahead.send([c1, c2, c3])
    lookahead.send([c2, c3])  # sent once
    found = lookahead.verdicts(c2)
    assert found is not None and len(found) == 10 and all(found)
    # Chunks are judged in the order fetched: one sent before c2 and not judged was
    # given back at a rebalance, and its verdicts are gone.
    assert lookahead.verdicts(c1) is None
    lookahead.clear()  # the intake dropped what it held
    assert lookahead.verdicts(c3) is None
    # A chunk fetched again is another object: decoded afresh.
    again = Chunk(c3.tp, list(c3.records), c3.generation)
    assert lookahead.verdicts(again) is None
    lookahead.send([c4])
    found = lookahead.verdicts(c4)
    assert found is not None and all(found)
    # A chunk of another topic is never sent.
    partials = Chunk(TopicPartition(TOPICS.partials, 0), c4.records, 1)
    lookahead.send([partials])
    assert lookahead.verdicts(partials) is None


def test_a_chunk_larger_than_the_room_left_is_decoded_ahead_in_part(
    lookahead: Lookahead,
) -> None:
    (chunk,) = chunks_of(events(IN_FLIGHT * PART + 100), IN_FLIGHT * PART + 100)
    lookahead.send([chunk])
    found = lookahead.verdicts(chunk)
    assert found is not None
    assert all(found[: IN_FLIGHT * PART]) and not any(found[IN_FLIGHT * PART :])
    # A chunk that waits longer has the rest sent once there is room.
    (waiting,) = chunks_of(events(IN_FLIGHT * PART + 100, start=20_000), IN_FLIGHT * PART + 100)
    lookahead.send([waiting])
    lookahead._receive(lookahead._number)  # every part answered: room again
    lookahead.send([waiting])
    found = lookahead.verdicts(waiting)
    assert found is not None and all(found)
    # The room is free again once the answers came.
    (later,) = chunks_of(events(PART, start=10_000), PART)
    lookahead.send([later])
    assert all(lookahead.verdicts(later) or [None])


def test_a_worker_whose_child_stops_decodes_alone_and_starts_another_later(
    policy: Policy,
    lookahead: Lookahead,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    c1, c2 = chunks_of(events(20), 10)
    lookahead.send([c1])
    child = lookahead._child
    assert child is not None
    child.process.kill()
    child.process.wait()
    with caplog.at_level(logging.WARNING, logger="lineage.worker"):
        assert lookahead.verdicts(c1) is None
    assert "the worker's decoding process" in caplog.text
    assert "the worker decodes its events itself" in caplog.text
    lookahead.send([c2])  # within RETRY_SECONDS: no child, decoded by the worker
    assert lookahead._child is None and lookahead.verdicts(c2) is None
    h = Harness(policy)
    h.checkpoint.ahead = lookahead.verdicts
    h.take(c2)
    assert h.flush() and h.acked == {c2.tp: list(range(10, 20))}
    monkeypatch.setattr(ahead_module, "RETRY_SECONDS", 0.0)
    lookahead._retry_at = 0.0
    (c3,) = chunks_of(events(10, start=100), 10)
    lookahead.send([c3])
    found = lookahead.verdicts(c3)
    assert found is not None and all(found)


def test_on_one_core_no_child_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ahead_module, "cores", lambda: 1)
    lookahead = Lookahead(TOPICS.events, wait=True)
    (chunk,) = chunks_of(events(5), 5)
    lookahead.send([chunk])
    assert lookahead._child is None and lookahead.verdicts(chunk) is None


class _Recording:
    def __init__(self) -> None:
        self.sent: list[list[Chunk]] = []
        self.cleared = 0

    def send(self, chunks: Iterable[Chunk]) -> None:
        self.sent.append(list(chunks))

    def clear(self) -> None:
        self.cleared += 1


def test_the_intake_hands_ahead_the_chunks_that_wait_in_order() -> None:
    async def scenario() -> None:
        recording = _Recording()
        intake = Intake({TOPICS.events}, ahead=recording)
        first, second, third, fourth = chunks_of(events(40), 10)
        taking = asyncio.ensure_future(intake.take(10, timeout=5))
        await asyncio.sleep(0)  # the take waits for a chunk
        await intake.put(first)  # taken as it comes: judged at once, not sent
        await intake.put(second)  # queued behind it in the same fetch
        await intake.put(third)
        assert recording.sent == [[], [second], [second, third]]
        recording.sent.clear()
        assert await taking == [first]  # about 10 records
        assert recording.sent == [[second, third]]  # while the first is judged
        await intake.put(fourth)  # nobody takes: it waits while a batch is judged
        assert recording.sent[-1] == [second, third, fourth]
        assert intake.clear() == 3 and recording.cleared == 1

    asyncio.run(scenario())
