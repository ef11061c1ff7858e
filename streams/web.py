"""The worker's web pages: ``/health``, ``/metrics`` (Prometheus), ``/graph``, ``/subjects``.

``/graph?format=json|html|graphml|dot|mermaid|openlineage`` draws the global lineage graph
from every partition's edge partials in Kafka, so any worker answers for all.

``/subjects/{subject}?format=json|html`` answers a disclosure request for one data
subject (policy Art. 11): the worker that holds the subject's partition answers,
and any other forwards the request to it.

``/graph`` and ``/subjects`` are the map of where personal data went: with a web
token set they answer only ``Authorization: Bearer <token>`` (401 otherwise). The
worker binds 127.0.0.1 unless told otherwise, and refuses to listen wider without
a token. ``/health`` and ``/metrics`` carry nothing personal and need no token.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lineage.graph import build_graph
from lineage.policy.model import Policy
from streams.changelog import read_edges
from streams.metrics import Metrics
from streams.settings import Settings

__all__ = ["register_pages"]

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
    before_scrape: Callable[[], None],
    subject: Callable[[str], Awaitable[tuple[str, Any]]] | None = None,
) -> None:
    """Add the worker's pages to a faust app.

    ``partitions()`` gives the events partitions the worker holds; ``before_scrape()``
    brings gauges up to date; ``subject(s)`` finds a subject's answer: ("here", the
    answer), ("there", the URL of the worker that holds it) or ("unknown", None).
    """
    token = settings.web_token.get_secret_value().encode() if settings.web_token else None

    def refused(web: Any, request: Any) -> Any | None:
        """A 401 response unless the request carries the bearer token (when one is set)."""
        if token is None:
            return None
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token):
            return None
        response = web.json({"error": "a bearer token is required"}, status=401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="privacy-lineage"'
        return response

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
        before_scrape()
        body = generate_latest(metrics.registry).decode()
        return web.text(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/graph")  # type: ignore[untyped-decorator]
    async def graph(web: Any, request: Any) -> Any:
        from lineage.export import FORMATS, export_graph
        from lineage.export.openlineage import OpenLineageMissing

        denied = refused(web, request)
        if denied is not None:
            return denied
        fmt = request.query.get("format", "json")
        if fmt not in FORMATS:
            known = ", ".join(FORMATS)
            return web.json({"error": f"unknown format {fmt!r}; one of {known}"}, status=400)
        edges = await read_edges(settings)
        try:
            text = export_graph(build_graph(policy, edges, generated_from="kafka"), fmt)
        except OpenLineageMissing as exc:  # the worker extra brings it; a bare install may not
            return web.json({"error": str(exc)}, status=501)
        return web.text(text, content_type=_CONTENT_TYPES[fmt])

    if subject is None:
        return

    @app.page("/subjects/{subject}")  # type: ignore[untyped-decorator]
    async def subject_view(web: Any, request: Any, subject_ref: str = "", **kw: Any) -> Any:
        denied = refused(web, request)
        if denied is not None:
            return denied
        wanted = request.match_info.get("subject", subject_ref)
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "html"):
            return web.json({"error": f"unknown format {fmt!r}; json or html"}, status=400)
        where, found = await subject(wanted)
        if where == "there":
            return await _forward(app, web, request, found)
        if where == "unknown":
            return web.json({"error": "no worker holds that subject's partition now"}, status=503)
        if fmt == "html":
            from lineage.subjects import render_html

            labels = {cid: c.label for cid, c in policy.categories.items()}
            return web.html(render_html(found, labels))
        return web.json(found)


async def _forward(app: Any, web: Any, request: Any, url: str) -> Any:
    """Ask the worker at ``url`` the same question (with the same bearer token)."""
    target = f"{url.rstrip('/')}{request.url.path}"
    if request.query_string:
        target += f"?{request.query_string}"
    headers = (
        {"Authorization": request.headers["Authorization"]}
        if "Authorization" in request.headers
        else {}
    )
    async with app.http_client.get(target, headers=headers) as response:
        body = await response.text()
        return web.text(body, content_type=response.content_type, status=response.status)
