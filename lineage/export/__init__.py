"""Exports of the lineage graph: GraphML, node-link JSON, DOT, Mermaid and an HTML page.

>>> from lineage.export import export_graph
>>> text = export_graph(graph, "mermaid")  # doctest: +SKIP

One small module per format; each takes the networkx graph of :mod:`lineage.graph`
and returns text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import networkx as nx

from lineage.export.dot import to_dot
from lineage.export.graphml import to_graphml
from lineage.export.html import to_html
from lineage.export.mermaid import to_mermaid
from lineage.export.nodelink import to_node_link

__all__ = ["EXTENSIONS", "FORMATS", "export_graph", "write_exports"]

#: The formats, in the order they are written.
FORMATS = ("graphml", "json", "dot", "mermaid", "html")

#: File extension per format: ``lineage.<ext>``.
EXTENSIONS = {"graphml": "graphml", "json": "json", "dot": "dot", "mermaid": "mmd", "html": "html"}

_WRITERS: dict[str, Callable[[nx.DiGraph], str]] = {
    "graphml": to_graphml,
    "json": to_node_link,
    "dot": to_dot,
    "mermaid": to_mermaid,
    "html": to_html,
}


def export_graph(graph: nx.DiGraph, fmt: str) -> str:
    """The graph as text in one of :data:`FORMATS`; ``ValueError`` for any other format."""
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"unknown export format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return writer(graph)


def write_exports(graph: nx.DiGraph, out_dir: Path, stem: str = "lineage") -> dict[str, Path]:
    """Write every format to ``out_dir/<stem>.<ext>``; returns format -> path written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{EXTENSIONS[fmt]}"
        path.write_text(export_graph(graph, fmt), encoding="utf-8")
        written[fmt] = path
    return written
