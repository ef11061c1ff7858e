"""Exports of the lineage graph: GraphML, node-link JSON, DOT, Mermaid, an HTML page and
OpenLineage events (JSON lines; needs the ``openlineage`` extra).

>>> from lineage.export import export_graph
>>> text = export_graph(graph, "mermaid")  # doctest: +SKIP

One small module per format; each takes the networkx graph of :mod:`lineage.graph`
and returns text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import networkx as nx

from lineage.export.dot import to_dot
from lineage.export.graphml import to_graphml
from lineage.export.html import to_html
from lineage.export.mermaid import to_mermaid
from lineage.export.nodelink import to_node_link
from lineage.export.openlineage import OpenLineageMissing, to_openlineage

__all__ = ["EXTENSIONS", "FORMATS", "export_graph", "write_exports"]

log = logging.getLogger("lineage")

#: The formats, in the order they are written.
FORMATS = ("graphml", "json", "dot", "mermaid", "html", "openlineage")

#: File extension per format: ``lineage.<ext>``.
EXTENSIONS = {
    "graphml": "graphml",
    "json": "json",
    "dot": "dot",
    "mermaid": "mmd",
    "html": "html",
    "openlineage": "openlineage.jsonl",
}

_WRITERS: dict[str, Callable[[nx.DiGraph], str]] = {
    "graphml": to_graphml,
    "json": to_node_link,
    "dot": to_dot,
    "mermaid": to_mermaid,
    "html": to_html,
    "openlineage": to_openlineage,
}


def export_graph(graph: nx.DiGraph, fmt: str) -> str:
    """The graph as text in one of :data:`FORMATS`; ``ValueError`` for any other format,
    :class:`~lineage.export.openlineage.OpenLineageMissing` for OpenLineage without its
    extra."""
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"unknown export format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return writer(graph)


def write_exports(graph: nx.DiGraph, out_dir: Path, stem: str = "lineage") -> dict[str, Path]:
    """Write every format to ``out_dir/<stem>.<ext>``; returns format -> path written.

    OpenLineage is left out, with a warning that says what to install, when
    ``openlineage-python`` is not installed (the base package does not bring it).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fmt in FORMATS:
        path = out_dir / f"{stem}.{EXTENSIONS[fmt]}"
        try:
            text = export_graph(graph, fmt)
        except OpenLineageMissing as exc:
            log.warning("%s.%s not written: %s", stem, EXTENSIONS[fmt], exc)
            continue
        path.write_text(text, encoding="utf-8")
        written[fmt] = path
    return written
