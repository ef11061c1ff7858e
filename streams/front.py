"""The web port of a worker of several processes (:mod:`streams.processes`).

A worker answers on ``web_port`` however many processes judge for it: a deployment
declares one port for its probes, its scrapes and its readers. With N processes, process
``i`` serves its own pages on ``web_port + 1 + i``, and the supervising process serves
``web_port`` with this front, in a thread of its own:

- ``/health`` asks every process's ``/health`` at once and answers within
  :data:`PROBE_SECONDS` (a probe's usual timeout is one second): 200 with the
  partitions they hold between them when each answers ``ok``, else 503 naming each
  process that did not and why. A process that hangs fails the worker's probe.
- ``/metrics`` gives every process's series with the label ``process="i"`` (sum them
  for the worker), and ``lineage_process_up{process="i"}``: 1 for a process whose
  series are there, 0 for one that did not answer. The query (``name[]=``) goes on.
- Any other page is asked of process 0 as it was asked (path, query, bearer token),
  else of the next process that answers: each process checks the web token and
  answers ``/graph`` and ``/subjects/...`` for the whole worker.

``/health`` and ``/metrics`` answer without the web token, as a worker's own do
(:data:`streams.web.OPEN_ROUTES`): they carry counts, never a value from an event.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

__all__ = ["PROBE_SECONDS", "Front", "asked_again", "merge_metrics", "reachable_host"]

#: How long ``/health`` waits for the processes' answers, together.
PROBE_SECONDS = 0.8
#: How long ``/metrics`` waits for the processes' series (Prometheus waits 10 s).
SCRAPE_SECONDS = 5.0
#: The front's own series: whether each process's series were read.
UP = "lineage_process_up"
#: The front's client of the processes.
_SESSION = web.AppKey("session", aiohttp.ClientSession)


def reachable_host(web_host: str) -> str:
    """Where the front reaches a process that listens on ``web_host``: loopback for
    every address of the machine, else that address."""
    if web_host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if web_host == "::":
        return "::1"
    return web_host


def asked_again(base: str, raw_path: str) -> URL:
    """The URL that asks the server at ``base`` what ``raw_path`` (a request's path and
    query) asked here. They go on as the caller wrote them: decoded, a subject holding
    ``#``, ``?``, ``/`` or a ``%`` escape would be asked there as another subject, whose
    answer would go to the caller."""
    return URL(f"{base.rstrip('/')}{raw_path}", encoded=True)


def merge_metrics(answers: Sequence[str | None], names: Iterable[str] = ()) -> bytes:
    """One exposition of every process's series (``answers[i]``: process ``i``'s
    ``/metrics``, None when it did not answer), each with its ``process`` label, and
    :data:`UP` for each process (unless ``names`` asks for other series only)."""
    families: dict[str, Metric] = {}
    read: list[bool] = []
    for index, text in enumerate(answers):
        try:
            parsed = list(text_string_to_metric_families(text)) if text is not None else None
        except ValueError:  # not an exposition: as good as no answer
            parsed = None
        read.append(parsed is not None)
        label = {"process": str(index)}
        for family in parsed or ():
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            merged.samples.extend(s._replace(labels={**s.labels, **label}) for s in family.samples)
    wanted = set(names)
    if not wanted or UP in wanted:
        up = Metric(UP, "Whether the worker's process answered for its series", "gauge")
        for index, answered in enumerate(read):
            up.add_sample(UP, {"process": str(index)}, 1.0 if answered else 0.0)
        families[UP] = up
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(list(families.values())))
    return generate_latest(registry)


class _Collected:
    """Metrics read elsewhere, collected as they are."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


class Front:
    """The worker's web port, served in a thread of the supervising process while its
    processes run (module docstring). ``socks`` listen already (one an address of
    ``web_host``): the port is the worker's from the moment it was checked."""

    def __init__(self, socks: Sequence[socket.socket], host: str, ports: Sequence[int]) -> None:
        self._socks = socks
        self._bases = [str(URL.build(scheme="http", host=host, port=port)) for port in ports]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="lineage-front", daemon=True)

    def start(self) -> Front:
        """Serve the port; raise what stopped the server from starting."""
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            raise self._failed
        return self

    def close(self) -> None:
        """Stop serving (answers under way are cut)."""
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)

    # -- the server's thread -----------------------------------------------------------

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        try:
            loop.run_until_complete(runner.setup())
            for sock in self._socks:
                loop.run_until_complete(web.SockSite(runner, sock).start())
        except BaseException as exc:  # said by start(), in the supervising thread
            self._failed = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def _app(self) -> web.Application:
        app = web.Application()
        app.cleanup_ctx.append(self._session)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    async def _session(self, app: web.Application) -> Any:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            app[_SESSION] = session
            yield

    async def _ask(
        self, session: aiohttp.ClientSession, base: str, request: web.Request, seconds: float
    ) -> tuple[int, bytes] | str:
        """(status, body) of one process asked ``request``'s path and query, or why it
        did not answer."""
        try:
            async with session.get(
                asked_again(base, request.raw_path),
                headers={"Accept-Encoding": "identity"},
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                return response.status, await response.read()
        except TimeoutError:
            return f"no answer within {seconds} s"
        except aiohttp.ClientError as exc:
            return f"unreachable: {type(exc).__name__}"

    async def _all(self, request: web.Request, seconds: float) -> list[tuple[int, bytes] | str]:
        session = request.app[_SESSION]
        return list(
            await asyncio.gather(*(self._ask(session, b, request, seconds) for b in self._bases))
        )

    async def _health(self, request: web.Request) -> web.Response:
        processes: list[dict[str, Any]] = []
        partitions: list[int] = []
        policy: dict[str, Any] = {}
        for index, answer in enumerate(await self._all(request, PROBE_SECONDS)):
            said = _health_of(answer)
            if isinstance(said, str):
                processes.append({"process": index, "status": "unavailable", "reason": said})
                continue
            held = said.get("partitions", [])
            processes.append({"process": index, "status": "ok", "partitions": held})
            partitions.extend(held)
            policy = {key: said[key] for key in ("policy", "policy_version") if key in said}
        ok = all(p["status"] == "ok" for p in processes)
        body = {
            "status": "ok" if ok else "unavailable",
            **policy,
            "partitions": sorted(partitions),
            "processes": processes,
        }
        return web.json_response(body, status=200 if ok else 503, dumps=_dumps)

    async def _metrics(self, request: web.Request) -> web.Response:
        answers = [
            a[1].decode() if not isinstance(a, str) and a[0] == 200 else None
            for a in await self._all(request, SCRAPE_SECONDS)
        ]
        names = request.query.getall("name[]", [])
        return web.Response(
            body=merge_metrics(answers, names),
            content_type=CONTENT_TYPE_LATEST.split(";")[0],
            charset="utf-8",
        )

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        session = request.app[_SESSION]
        headers = {
            name: request.headers[name]
            for name in ("Authorization", "Accept", "Accept-Encoding")
            if name in request.headers
        }
        why = ""
        for index, base in enumerate(self._bases):
            try:
                async with session.get(
                    asked_again(base, request.raw_path), headers=headers
                ) as response:
                    passed = {
                        name: response.headers[name]
                        for name in ("Content-Type", "Content-Encoding", "WWW-Authenticate")
                        if name in response.headers
                    }
                    return web.Response(
                        body=await response.read(), status=response.status, headers=passed
                    )
            except aiohttp.ClientConnectionError as exc:
                why = f"process {index}: {type(exc).__name__}"
        return web.json_response(
            {"error": f"no process of this worker answered ({why})"}, status=503, dumps=_dumps
        )


def _health_of(answer: tuple[int, bytes] | str) -> dict[str, Any] | str:
    """A process's ``/health`` when it says ``ok``, else why not."""
    if isinstance(answer, str):
        return answer
    status, body = answer
    try:
        said = orjson.loads(body)
    except orjson.JSONDecodeError:
        said = None
    if status != 200 or not isinstance(said, dict) or said.get("status") != "ok":
        return f"answered {status}"
    return said


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
