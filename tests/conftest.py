"""Shared fixtures: the test policy, and a judge that runs events through a fresh engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from lineage.decode_process import DecodeAhead
from lineage.engine import Engine
from lineage.policy import Policy, load_policy

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(DATA / "policy.yaml")


Judge = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def judge(policy: Policy) -> Iterator[Judge]:
    """judge(*events) -> the alerts of the last event, after feeding the earlier ones."""

    def run(*events: dict[str, Any]) -> list[dict[str, Any]]:
        engine = Engine(policy)
        alerts: list[dict[str, Any]] = []
        for offset, event in enumerate(events):
            outcome = engine.process(orjson.dumps(event), offset=offset, origin=f"t:{offset}")
            assert outcome.dead_letter is None, outcome.dead_letter
            alerts = outcome.alerts
        return alerts

    yield run


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Apache Kafka broker: $KAFKA_BOOTSTRAP_SERVERS, testcontainers, or scripts/kafka-local.

    Never a skip: when no way works, the fixture fails with what was tried.
    """
    from tests.broker import kafka_broker
    from tests.kafka_helpers import delete_made_topics

    with kafka_broker() as bootstrap:
        yield bootstrap
        delete_made_topics(bootstrap)  # a broker kept for days keeps none of this session


class TakenAhead:
    """How many lines the runs (or replays) of a test took from the verdicts of the
    process that decodes ahead: what a run judged alone is its messages less these."""

    def __init__(self) -> None:
        self.children: list[DecodeAhead] = []

    def __int__(self) -> int:
        return sum(ahead.verdicts.taken for ahead in self.children)


@pytest.fixture
def taken_ahead(monkeypatch: pytest.MonkeyPatch) -> TakenAhead:
    """Counts the lines taken from each :class:`DecodeAhead` made while the test runs."""
    taken = TakenAhead()
    init = DecodeAhead.__init__

    def recording(self: DecodeAhead, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        taken.children.append(self)

    monkeypatch.setattr(DecodeAhead, "__init__", recording)
    return taken
