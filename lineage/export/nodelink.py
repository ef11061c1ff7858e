"""Node-link JSON: the graph for scripts, notebooks and D3 (``nx.node_link_graph`` reads it).

Lists and mappings stay JSON; nodes sorted by id and links by (source, target), keys
sorted, so that the same graph always gives the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

import networkx as nx

__all__ = ["FORMAT", "VERSION", "node_link", "to_node_link"]

#: Tells a reader what it holds; ``version`` grows when the shape changes.
FORMAT = "privacy-lineage/node-link"
VERSION = 1


def node_link(graph: nx.DiGraph) -> dict[str, Any]:
    """The node-link mapping with the format marker and the graph attributes on top."""
    data: dict[str, Any] = nx.node_link_data(graph, edges="links")
    data["nodes"] = sorted(data["nodes"], key=lambda n: str(n["id"]))
    data["links"] = sorted(data["links"], key=lambda e: (str(e["source"]), str(e["target"])))
    data["format"] = FORMAT
    data["version"] = VERSION
    # Also at the top level (not only under "graph") so a reader sees which policy judged it.
    for key, value in graph.graph.items():
        data.setdefault(key, value)
    return data


def to_node_link(graph: nx.DiGraph) -> str:
    """The graph as indented, key-sorted node-link JSON text."""
    return (
        json.dumps(node_link(graph), indent=2, sort_keys=True, ensure_ascii=False, default=str)
        + "\n"
    )
