"""GraphML: the graph for yEd, Gephi, Neo4j and anything else that reads GraphML.

GraphML attributes are scalars, so lists become comma-joined text (``"contact.email,
identity.name"``) and mappings compact JSON (``{"9":3}``); integers, floats, booleans
and strings keep their GraphML types, so ``nx.read_graphml`` gives them back as they were.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import networkx as nx

__all__ = ["flatten", "to_graphml"]


def flatten(value: Any) -> str | int | float | bool:
    """One attribute value as a GraphML scalar.

    >>> flatten(["a", "b"]), flatten({"9": 3}), flatten(7), flatten(True)
    ('a,b', '{"9":3}', 7, True)
    """
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return ",".join(str(item) for item in items)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    if value is None:
        return ""
    return str(value)


def _flat(attrs: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    return {key: flatten(value) for key, value in attrs.items()}


def to_graphml(graph: nx.DiGraph) -> str:
    """The graph as a GraphML document (UTF-8 text), nodes and edges in a stable order."""
    flat = nx.DiGraph(**_flat(graph.graph))
    # Sorted, so that the same graph always gives the same file (diffable, cacheable).
    for node in sorted(graph.nodes):
        flat.add_node(node, **_flat(graph.nodes[node]))
    for u, v in sorted(graph.edges):
        flat.add_edge(u, v, **_flat(graph.edges[u, v]))
    return "\n".join(nx.generate_graphml(flat, encoding="utf-8", prettyprint=True)) + "\n"
