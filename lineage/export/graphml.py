"""GraphML: the graph for yEd, Gephi, Neo4j and anything else that reads GraphML.

GraphML attributes are scalars, so lists become comma-joined text (``"contact.email,
identity.name"``) and mappings compact JSON (``{"9":3}``); integers, floats, booleans
and strings keep their GraphML types, so ``nx.read_graphml`` gives them back as they were.

Whatever a label or an id holds, the file is well-formed XML 1.0: a character XML
cannot hold (C0 controls other than tab, line feed and carriage return; lone
surrogates; U+FFFE and U+FFFF) is written as visible text, ``\\x1b`` or ``\\ud800``
(:func:`xml_text`). The policy loader refuses such characters in policy text; this
is the second line, for graphs built from anything else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import networkx as nx

__all__ = ["flatten", "to_graphml", "xml_text"]

#: Every character outside XML 1.0's ``Char`` production.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def xml_text(value: str) -> str:
    r"""``value`` with every character XML 1.0 cannot hold written as visible text.

    >>> xml_text("Sales\x1b[2J\x00")
    'Sales\\x1b[2J\\x00'
    """
    return _NOT_XML.sub(_escaped, value)


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


def _xml(value: Any) -> Any:
    return xml_text(value) if isinstance(value, str) else value


def _flat(attrs: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    return {xml_text(str(key)): _xml(flatten(value)) for key, value in attrs.items()}


def to_graphml(graph: nx.DiGraph) -> str:
    """The graph as a GraphML document (UTF-8 text), nodes and edges in a stable order."""
    flat = nx.DiGraph(**_flat(graph.graph))
    # Sorted, so that the same graph always gives the same file (diffable, cacheable).
    for node in sorted(graph.nodes):
        flat.add_node(_xml(node), **_flat(graph.nodes[node]))
    for u, v in sorted(graph.edges):
        flat.add_edge(_xml(u), _xml(v), **_flat(graph.edges[u, v]))
    return "\n".join(nx.generate_graphml(flat, encoding="utf-8", prettyprint=True)) + "\n"
