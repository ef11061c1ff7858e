"""The worker's web pages: ``/health``, ``/metrics`` (Prometheus) and ``/graph``.

``/graph?format=json|html|graphml|dot|mermaid`` draws the global lineage graph
from every partition's edge partials in Kafka, so any worker answers for all.

``/graph`` is the map of where personal data went: with a web token set it
answers only ``Authorization: Bearer <token>`` (401 otherwise). The worker binds
127.0.0.1 unless told otherwise, and refuses to listen wider without a token.
``/health`` and ``/metrics`` carry nothing personal and need no token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
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
}


def register_pages(
    app: Any,
    *,
    settings: Settings,
    policy: Policy,
    metrics: Metrics,
    partitions: Callable[[], list[int]],
    before_scrape: Callable[[], None],
) -> None:
    """Add the worker's pages to a faust app.

    ``partitions()`` gives the events partitions the worker holds; ``before_scrape()``
    brings gauges up to date.
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

        denied = refused(web, request)
        if denied is not None:
            return denied
        fmt = request.query.get("format", "json")
        if fmt not in FORMATS:
            return web.json({"error": f"unknown format {fmt!r}; one of {FORMATS}"}, status=400)
        edges = await read_edges(settings)
        text = export_graph(build_graph(policy, edges, generated_from="kafka"), fmt)
        return web.text(text, content_type=_CONTENT_TYPES[fmt])
