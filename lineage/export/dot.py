"""Graphviz DOT, written by hand (no pygraphviz): ``dot -Tsvg lineage.dot -o lineage.svg``.

Ranks make three columns, left to right: categories | systems | recipients (onward
recipients further right). Recipients are shaped and coloured by their kind; a flow is
labelled with its categories and event count, and a breaching flow is red and bold with
"breaks Art. 6, 9".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import networkx as nx

from lineage.export._shared import (
    BREACH,
    FLOW,
    HOLDS,
    abbreviate,
    breach_label,
    breaching,
    category_labels,
    is_flow,
    palette,
    plural,
    recipient_kind,
)
from lineage.export.layout import columns
from lineage.schemas.types import KIND_LABELS

__all__ = ["quote", "to_dot"]

FONT = "Helvetica,Arial,sans-serif"

# Graphviz has no notion of recipient kinds; a distinct outline per kind still reads in
# black and white print.
SHAPES = {
    "outsourcer": "box",
    "affiliate": "box3d",
    "ad_provider": "hexagon",
    "info_module": "component",
    "third_party": "ellipse",
    "authority": "house",
    "unknown": "octagon",
}


def quote(text: object) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as ``\\n``.

    >>> quote('say "hi"')
    '"say \\\\"hi\\\\""'
    """
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{escaped}"'


def _attrs(items: Mapping[str, object]) -> str:
    return ", ".join(f"{key}={quote(value)}" for key, value in items.items())


def _node(node: str, attrs: Mapping[str, Any]) -> dict[str, object]:
    colours = palette(attrs)
    label = str(attrs.get("label") or node)
    out: dict[str, object] = {
        "fillcolor": colours.fill,
        "color": colours.stroke,
        "fontcolor": "#101828",
    }
    kind = attrs.get("kind")
    if kind == "system":
        out["label"] = f"{label}\n{plural(int(attrs.get('count', 0)), 'event')}"
        out["shape"] = "box"
        out["style"] = "rounded,filled,bold"
    elif kind == "category":
        out["label"] = label
        out["shape"] = "box"
        out["style"] = "rounded,filled"
    else:
        rkind = recipient_kind(attrs)
        where = ", ".join(x for x in (KIND_LABELS[rkind], str(attrs.get("country") or "")) if x)
        out["label"] = f"{label}\n({where})"
        out["shape"] = SHAPES[rkind]
        out["style"] = "filled,dashed" if rkind == "unknown" else "filled"
        if rkind == "outsourcer":
            out["style"] = "rounded,filled"
    return out


def _edge(graph: nx.DiGraph, attrs: Mapping[str, Any], top: int) -> dict[str, object]:
    count = int(attrs.get("count", 0))
    if not is_flow(attrs):
        return {"color": HOLDS, "arrowsize": "0.5", "penwidth": "1"}
    width = 1.0 + 3.0 * math.sqrt(max(count, 0) / max(top, 1))
    lines = [
        abbreviate(category_labels(graph, attrs.get("categories") or [])),
        plural(count, "event"),
    ]
    out: dict[str, object] = {"color": FLOW, "fontcolor": "#475467", "penwidth": f"{width:.2f}"}
    if attrs.get("relation") == "onward":
        out["style"] = "dashed"
    if breaching(attrs):
        lines.append(breach_label(attrs.get("breaches") or {}) or "breaks the policy")
        style = "bold,dashed" if attrs.get("relation") == "onward" else "bold"
        out.update(color=BREACH, fontcolor=BREACH, style=style, penwidth=f"{width + 1:.2f}")
    out["label"] = "\n".join(line for line in lines if line)
    return out


def to_dot(graph: nx.DiGraph) -> str:
    """The graph as Graphviz DOT text."""
    title = " ".join(
        str(x) for x in (graph.graph.get("policy_name"), graph.graph.get("policy_version")) if x
    )
    lines = [
        "digraph lineage {",
        "  graph ["
        + _attrs(
            {
                "rankdir": "LR",
                "ranksep": "1.4",
                "nodesep": "0.25",
                "fontname": FONT,
                "fontsize": "14",
                "labelloc": "t",
                "labeljust": "l",
                "label": f"Personal-data lineage: {title}".rstrip(": ")
                + "\nred, bold: flows that break the policy",
            }
        )
        + "];",
        "  node [" + _attrs({"fontname": FONT, "fontsize": "11", "penwidth": "1.2"}) + "];",
        "  edge [" + _attrs({"fontname": FONT, "fontsize": "9", "arrowsize": "0.7"}) + "];",
    ]
    for index, column in enumerate(columns(graph)):
        lines.append(f"  // {column.title}")
        lines.append(f"  subgraph {quote(f'column_{index}')} {{")
        lines.append("    rank=same;")
        for node in column.nodes:
            lines.append(f"    {quote(node)} [{_attrs(_node(node, graph.nodes[node]))}];")
        lines.append("  }")
    top = max((int(a.get("count", 0)) for *_, a in graph.edges(data=True) if is_flow(a)), default=1)
    for u, v in sorted(graph.edges):
        attrs = _edge(graph, graph.edges[u, v], top)
        lines.append(f"  {quote(u)} -> {quote(v)} [{_attrs(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
