"""The worker's web pages: ``/health``, ``/metrics`` (Prometheus), ``/graph``, ``/subjects``.

``/graph?format=json|html|graphml|dot|mermaid|openlineage`` draws the global lineage graph
from every partition's edge partials in Kafka, so any worker answers for all.

``/subjects/{subject}?format=json|html`` answers a disclosure request for one data
subject (policy Art. 11): the worker that holds the subject's partition answers,
and any other forwards the request to it.

The web server has one door (:func:`~streams.faust_internals.guard_web`): with a
web token set, every route answers only ``Authorization: Bearer <token>`` (401
otherwise, before any handler runs, for a path that matches no route too), except
:data:`OPEN_ROUTES`. ``/health`` and ``/metrics`` carry nothing personal (counts,
closed label vocabularies) and are what probes and Prometheus read without a
secret. faust's own pages (tables, router, statistics) are not served at all
(:meth:`streams.kafka_config.KafkaConfig.faust_app`). The worker binds 127.0.0.1
unless told otherwise, and refuses to listen wider without a token.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lineage.graph import build_graph
from lineage.policy.model import Policy
from streams.changelog import read_edges
from streams.faust_internals import guard_web
from streams.front import asked_again
from streams.metrics import Metrics
from streams.settings import Settings

__all__ = ["OPEN_ROUTES", "OnWorker", "register_pages"]

#: ``on_worker(coroutine)``: run it on the worker's loop, from the web server's thread.
OnWorker = Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]]

#: The routes that answer without the web token: probes and Prometheus.
OPEN_ROUTES = ("/health", "/metrics")

_CONTENT_TYPES = {
    "json": "application/json",
    "html": "text/html",
    "graphml": "application/xml",
    "dot": "text/vnd.graphviz",
    "mermaid": "text/plain",
    "openlineage": "application/x-ndjson",  # one OpenLineage RunEvent a line
}


def register_pages(
    app: Any,
    *,
    settings: Settings,
    policy: Policy,
    metrics: Metrics,
    partitions: Callable[[], list[int]],
    subject: Callable[[str], Coroutine[Any, Any, tuple[str, Any]]] | None = None,
    on_worker: OnWorker | None = None,
) -> None:
    """Add the worker's pages to a faust app.

    The pages are served in a thread of their own, apart from the loop that judges
    (faust's ``web_in_thread``): ``/health`` and ``/metrics`` answer however long a
    batch takes. So they read only what is safe from another thread:
    ``partitions()`` gives the events partitions the worker holds (a snapshot), and
    the metrics are brought up to date by the judging loop itself. ``subject(s)``
    finds a subject's answer: ("here", the answer), ("there", the URL of the worker
    that holds it) or ("unknown", None); it reads the worker's state, so it runs on
    the worker's loop through ``on_worker(coroutine)``.
    """
    token = settings.web_token.get_secret_value().encode() if settings.web_token else None

    def allowed(authorization: str) -> bool:
        """True when no token is set, or the header carries it as a bearer token."""
        if token is None:
            return True
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)

    guard_web(app, OPEN_ROUTES, allowed)

    @app.page("/health")  # type: ignore[untyped-decorator]
    async def health(web: Any, request: Any) -> Any:
        return web.json(
            {
                "status": "ok",
                "policy": policy.policy.name,
                "policy_version": policy.version,
                "partitions": partitions(),
            }
        )

    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def scrape(web: Any, request: Any) -> Any:
        # ?name[]=...: only those series, as prometheus_client's own exposition answers
        # (a frequent poller of a few counters costs the judging loop less).
        names = request.query.getall("name[]", [])
        registry = metrics.registry.restricted_registry(names) if names else metrics.registry
        body = generate_latest(registry).decode()
        return web.text(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/graph")  # type: ignore[untyped-decorator]
    async def graph(web: Any, request: Any) -> Any:
        from lineage.export import FORMATS, export_graph
        from lineage.export.openlineage import OpenLineageMissing

        fmt = request.query.get("format", "json")
        if fmt not in FORMATS:
            known = ", ".join(FORMATS)
            return web.json({"error": f"unknown format {fmt!r}; one of {known}"}, status=400)
        edges = await read_edges(settings)
        # Drawn off the web server's loop: a probe meanwhile is answered at once.
        try:
            text = await asyncio.to_thread(
                lambda: export_graph(build_graph(policy, edges, generated_from="kafka"), fmt)
            )
        except OpenLineageMissing as exc:  # the worker extra brings it; a bare install may not
            return web.json({"error": str(exc)}, status=501)
        return web.text(text, content_type=_CONTENT_TYPES[fmt])

    if subject is None:
        return

    @app.page("/subjects/{subject}")  # type: ignore[untyped-decorator]
    async def subject_view(web: Any, request: Any, subject_ref: str = "", **kw: Any) -> Any:
        wanted = request.match_info.get("subject", subject_ref)
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "html"):
            return web.json({"error": f"unknown format {fmt!r}; json or html"}, status=400)
        finding = subject(wanted)
        where, found = await (on_worker(finding) if on_worker is not None else finding)
        if where == "there":
            return await _forward(web, request, found)
        if where == "unknown":
            return web.json({"error": "no worker holds that subject's partition now"}, status=503)
        if fmt == "html":
            from lineage.subjects import render_html

            labels = {cid: c.label for cid, c in policy.categories.items()}
            return web.html(render_html(found, labels))
        return web.json(found)


async def _forward(web: Any, request: Any, url: str) -> Any:
    """Ask the worker at ``url`` the same question (:func:`~streams.front.asked_again`),
    with the same bearer token."""
    target = asked_again(url, request.raw_path)
    headers = (
        {"Authorization": request.headers["Authorization"]}
        if "Authorization" in request.headers
        else {}
    )
    # A session of the web server's own loop (faust's http_client belongs to the worker's).
    async with aiohttp.ClientSession() as session, session.get(target, headers=headers) as response:
        body = await response.text()
        return web.text(body, content_type=response.content_type, status=response.status)
