"""The demo fleet: deterministic, mostly lawful, and every rule of the catalogue shows up."""

from __future__ import annotations

import re

import orjson

from lineage.demo import FLEET, MALFORMED, generate_day
from lineage.engine import Engine
from lineage.graph import build_graph
from lineage.policy import load_policy
from lineage.rules import CATALOGUE
from lineage.schemas import EventRejected, decode_event

EMAIL = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z]{2,}")


def test_the_day_is_deterministic_for_a_seed() -> None:
    assert list(generate_day(events=500, seed=3)) == list(generate_day(events=500, seed=3))
    assert list(generate_day(events=500, seed=3)) != list(generate_day(events=500, seed=4))


def test_every_line_is_an_event_or_one_of_the_malformed_kinds() -> None:
    lines = list(generate_day(events=3000, seed=5))
    bad = []
    for line in lines:
        try:
            decode_event(line)
        except EventRejected:
            bad.append(line)
    assert sorted(bad) == sorted(MALFORMED)


def test_the_engine_finds_every_rule_in_a_mostly_lawful_day() -> None:
    engine = Engine(load_policy())
    fired: set[str] = set()
    alerting = judged = 0
    alerts = []
    for offset, line in enumerate(generate_day(events=3000, seed=5)):
        outcome = engine.process(line, offset=offset, origin=f"demo:{offset}")
        if outcome.status != "judged":
            continue
        judged += 1
        alerting += bool(outcome.alerts)
        fired |= {a["rule"] for a in outcome.alerts}
        alerts.extend(outcome.alerts)
    assert fired == set(CATALOGUE)
    assert alerting / judged < 0.10
    assert engine.stats.dead_letters == len(MALFORMED)
    assert engine.stats.duplicates > 0  # re-sent events were dropped, not judged twice
    assert not EMAIL.search(orjson.dumps(alerts))  # the raw e-mail in the stream is redacted


def test_the_graph_shows_every_system_of_the_fleet() -> None:
    engine = Engine(load_policy())
    for offset, line in enumerate(generate_day(events=2000, seed=5)):
        engine.process(line, offset=offset, origin="demo")
    graph = build_graph(load_policy(), engine.state.edges)
    systems = {n.removeprefix("system:") for n in graph if n.startswith("system:")}
    assert systems == set(FLEET)  # payments only reports onward transfers, and still shows
    onward = [e for e in graph.edges(data=True) if e[2]["relation"] == "onward"]
    assert onward and all(not src.startswith("system:") for src, _, _ in onward)
