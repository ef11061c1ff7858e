"""The web port of a worker of several processes (streams/front.py): one /health and one
/metrics for all of its processes, and every other page from one of them.

The processes here are small HTTP servers that answer as a worker's process would
(its /health, its registry's exposition); the front on Kafka, in front of real worker
processes, is tested in tests/test_kafka_processes.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.front import PROBE_SECONDS, UP, Front, merge_metrics, reachable_host
from streams.preflight import WebPortUnavailable, hold_web_port
from streams.settings import Settings


def _exposition(events: float, lag: float) -> str:
    """A process's /metrics: a counter by label, a gauge, a histogram."""
    registry = CollectorRegistry()
    counted = Counter("lineage_events", "Messages judged, by type", ["type"], registry=registry)
    counted.labels("access").inc(events)
    Gauge("lineage_consumer_lag", "Lag", ["partition"], registry=registry).labels("0").set(lag)
    Histogram("lineage_batch_seconds", "Batch", registry=registry).observe(0.2)
    return generate_latest(registry).decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_process_series_is_kept_with_its_process_label() -> None:
    merged = merge_metrics([_exposition(5, 7), _exposition(3, 0)]).decode()
    got = _samples(merged)
    assert got["lineage_events_total", (("process", "0"), ("type", "access"))] == 5
    assert got["lineage_events_total", (("process", "1"), ("type", "access"))] == 3
    assert got["lineage_consumer_lag", (("partition", "0"), ("process", "0"))] == 7
    assert got["lineage_batch_seconds_count", (("process", "1"),)] == 1
    assert got[UP, (("process", "0"),)] == 1 and got[UP, (("process", "1"),)] == 1
    # One family each, as Prometheus reads it: HELP and TYPE once, every sample under it.
    assert merged.count("# TYPE lineage_events_total counter") == 1
    assert merged.count("# HELP lineage_batch_seconds ") == 1
    assert any(name == "lineage_events_created" for name, _ in got)


def test_a_process_that_did_not_answer_is_down_and_has_no_series() -> None:
    got = _samples(merge_metrics([None, _exposition(3, 0)]).decode())
    assert got[UP, (("process", "0"),)] == 0 and got[UP, (("process", "1"),)] == 1
    assert not any(dict(labels).get("process") == "0" for name, labels in got if name != UP)


def test_an_answer_that_is_no_exposition_counts_as_none() -> None:
    got = _samples(merge_metrics(["<html>busy</html>", _exposition(3, 0)]).decode())
    assert got[UP, (("process", "0"),)] == 0 and got[UP, (("process", "1"),)] == 1


def test_asked_for_some_series_the_front_adds_its_own_only_when_asked() -> None:
    assert UP not in merge_metrics([_exposition(1, 1)], ["lineage_events_total"]).decode()
    assert UP in merge_metrics([_exposition(1, 1)], [UP]).decode()


class _Server:
    """An HTTP server on its own thread and loop, on a free loopback port."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port: int = self.runner.addresses[0][1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()


def _process(partitions: list[int], events: float, hang: float = 0.0) -> web.Application:
    """A worker process's pages, as far as the front reads them; ``hang``: seconds each
    answer waits. Any other page says what it was asked."""

    async def health(request: web.Request) -> web.Response:
        await asyncio.sleep(hang)
        return web.json_response(
            {"status": "ok", "policy": "p", "policy_version": "v1", "partitions": partitions}
        )

    async def metrics(request: web.Request) -> web.Response:
        await asyncio.sleep(hang)
        return web.Response(text=_exposition(events, 0), content_type="text/plain")

    async def echo(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer t0ken":
            return web.json_response({"error": "token"}, status=401)
        asked = {"path": request.raw_path, "partitions": partitions}
        return web.json_response(asked, content_type="text/vnd.graphviz")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/{tail:.*}", echo)
    return app


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def front_of() -> Iterator[Any]:
    """front_of(*apps or None): a front before those processes (None: a port nobody
    listens on), and its port."""
    started: list[Any] = []

    def start(*processes: web.Application | None) -> int:
        ports = []
        for app in processes:
            if app is None:
                ports.append(_closed_port())
            else:
                server = _Server(app)
                started.append(server)
                ports.append(server.port)
        socks = hold_web_port(Settings(web_host="127.0.0.1", web_port=_closed_port()))
        front = Front(socks, "127.0.0.1", ports).start()
        started.append(front)
        return int(socks[0].getsockname()[1])

    yield start
    for server in reversed(started):
        server.close() if isinstance(server, Front) else server.stop()


def _get(port: int, path: str, token: str | None = None) -> tuple[int, Any, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, refused.read().decode()


def test_the_worker_is_healthy_when_each_process_is(front_of: Any) -> None:
    port = front_of(_process([2, 0], 5), _process([1, 3], 3))
    status, _, body = _get(port, "/health")
    assert status == 200
    said = json.loads(body)
    assert said["status"] == "ok" and said["partitions"] == [0, 1, 2, 3]
    assert said["policy_version"] == "v1"
    assert [p["partitions"] for p in said["processes"]] == [[2, 0], [1, 3]]


def test_a_process_that_hangs_or_is_gone_fails_the_worker_probe_in_time(front_of: Any) -> None:
    port = front_of(_process([0], 5), _process([1], 3, hang=3 * PROBE_SECONDS), None)
    status, _, body = _get(port, "/health")
    assert status == 503
    said = json.loads(body)
    assert said["status"] == "unavailable" and said["partitions"] == [0]
    assert said["processes"][0]["status"] == "ok"
    assert said["processes"][1]["reason"] == f"no answer within {PROBE_SECONDS} s"
    assert said["processes"][2]["reason"] == "unreachable: ClientConnectorError"


def test_one_scrape_gives_every_process_series(front_of: Any) -> None:
    port = front_of(_process([0], 5), None)
    status, headers, body = _get(port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    got = _samples(body)
    assert got["lineage_events_total", (("process", "0"), ("type", "access"))] == 5
    assert got[UP, (("process", "1"),)] == 0
    status, _, body = _get(port, "/metrics?name[]=lineage_events_total")
    assert UP not in body and "lineage_events_total" in body


def test_other_pages_come_from_a_process_with_the_callers_token(front_of: Any) -> None:
    port = front_of(None, _process([1], 3))  # process 0 is gone: process 1 answers
    path = "/subjects/a%2Fb%23c?format=dot"
    status, headers, body = _get(port, path, token="t0ken")
    assert status == 200 and headers["Content-Type"].startswith("text/vnd.graphviz")
    assert json.loads(body) == {"path": path, "partitions": [1]}  # as asked, not decoded
    assert _get(port, path)[0] == 401  # the process checks the token


def test_no_process_answering_is_said(front_of: Any) -> None:
    port = front_of(None)
    status, _, body = _get(port, "/graph")
    assert status == 503 and "no process of this worker answered" in json.loads(body)["error"]


def test_the_worker_port_is_held_from_its_check() -> None:
    settings = Settings(web_host="127.0.0.1", web_port=_closed_port())
    socks = hold_web_port(settings)
    try:
        with pytest.raises(WebPortUnavailable, match=r"cannot listen on 127\.0\.0\.1:"):
            hold_web_port(settings)
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize(
    ("host", "reached"), [("0.0.0.0", "127.0.0.1"), ("::", "::1"), ("10.1.2.3", "10.1.2.3")]
)
def test_the_front_reaches_the_processes_where_they_listen(host: str, reached: str) -> None:
    assert reachable_host(host) == reached
