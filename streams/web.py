"""The worker's web pages: ``/health``, ``/metrics`` (Prometheus) and ``/graph``.

``/graph?format=json|html|graphml|dot|mermaid`` draws the global lineage graph
from every partition's edge partials in Kafka, so any worker answers for all.
"""

from __future__ import annotations

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

        fmt = request.query.get("format", "json")
        if fmt not in FORMATS:
            return web.json({"error": f"unknown format {fmt!r}; one of {FORMATS}"}, status=400)
        edges = await read_edges(settings)
        text = export_graph(build_graph(policy, edges, generated_from="kafka"), fmt)
        return web.text(text, content_type=_CONTENT_TYPES[fmt])
