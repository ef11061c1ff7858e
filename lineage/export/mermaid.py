"""Mermaid ``flowchart LR``: the graph for Markdown (GitHub, GitLab, wikis render it).

Mermaid ids cannot hold ':' or '.', so nodes are ``n0, n1, ...`` in a stable order; a
``%%`` comment line per node maps them back to the graph's ids.
Recipients get a ``classDef`` per recipient kind; breaching links are red via ``linkStyle``.
"""

from __future__ import annotations

import networkx as nx

from lineage.export._shared import (
    BREACH,
    CATEGORY,
    HOLDS,
    KIND_PALETTES,
    SYSTEM,
    abbreviate,
    breach_label,
    breaching,
    category_labels,
    is_flow,
    plural,
    recipient_kind,
)
from lineage.export.layout import columns
from lineage.schemas.types import KIND_LABELS

__all__ = ["escape", "to_mermaid"]

# Mermaid decodes "#name;" / "#code;" entities in labels; everything that could end a
# quoted label or open markup or markdown is written that way.
_ENTITIES = {
    "#": "#35;",
    '"': "#quot;",
    "<": "#lt;",
    ">": "#gt;",
    "&": "#amp;",
    "`": "#96;",
    "|": "#124;",
    "\n": " ",
    "\r": " ",
}


def escape(text: object) -> str:
    """Text safe inside a double-quoted Mermaid label.

    >>> escape('a "b" <c>')
    'a #quot;b#quot; #lt;c#gt;'
    """
    return "".join(_ENTITIES.get(ch, ch) for ch in str(text))


def _class(kind: str) -> str:
    return f"k_{kind}"


def to_mermaid(graph: nx.DiGraph) -> str:
    """The graph as a Mermaid flowchart, left to right."""
    cols = columns(graph)
    ids: dict[str, str] = {}
    for column in cols:
        for node in column.nodes:
            ids[node] = f"n{len(ids)}"
    lines = ["flowchart LR"]
    lines.extend(f"  %% {short} = {escape(node)}" for node, short in ids.items())
    for index, column in enumerate(cols):
        lines.append(f'  subgraph c{index}["{escape(column.title)}"]')
        for node in column.nodes:
            attrs = graph.nodes[node]
            label = escape(attrs.get("label") or node)
            kind = attrs.get("kind")
            if kind == "system":
                text = f"{label}<br/><small>{plural(int(attrs.get('count', 0)), 'event')}</small>"
                lines.append(f'    {ids[node]}["{text}"]:::system')
            elif kind == "category":
                lines.append(f'    {ids[node]}(["{label}"]):::category')
            else:
                rkind = recipient_kind(attrs)
                where = ", ".join(
                    escape(x) for x in (KIND_LABELS[rkind], attrs.get("country") or "") if x
                )
                text = f"{label}<br/><small>{where}</small>"
                lines.append(f'    {ids[node]}["{text}"]:::{_class(rkind)}')
        lines.append("  end")

    red: list[int] = []
    grey: list[int] = []
    for link, (u, v) in enumerate(sorted(graph.edges)):
        attrs = graph.edges[u, v]
        if not is_flow(attrs):
            lines.append(f"  {ids[u]} --- {ids[v]}")
            grey.append(link)
            continue
        parts = [
            escape(abbreviate(category_labels(graph, attrs.get("categories") or []))),
            plural(int(attrs.get("count", 0)), "event"),
        ]
        arrow = "-.->" if attrs.get("relation") == "onward" else "-->"
        if breaching(attrs):
            parts.append(escape(breach_label(attrs.get("breaches") or {}) or "breaks the policy"))
            arrow = "==>"
            red.append(link)
        text = " · ".join(p for p in parts if p)
        lines.append(f'  {ids[u]} {arrow}|"{text}"| {ids[v]}')

    lines.append(f"  classDef category fill:{CATEGORY.fill},stroke:{CATEGORY.stroke},color:#101828")
    lines.append(f"  classDef system fill:{SYSTEM.fill},stroke:{SYSTEM.accent},color:#101828")
    for kind, colours in KIND_PALETTES.items():
        dash = ",stroke-dasharray:5 3" if kind == "unknown" else ""
        lines.append(
            f"  classDef {_class(kind)} fill:{colours.fill},stroke:{colours.accent},"
            f"color:#101828{dash}"
        )
    if grey:
        lines.append(f"  linkStyle {','.join(map(str, grey))} stroke:{HOLDS},stroke-width:1px")
    if red:
        lines.append(
            f"  linkStyle {','.join(map(str, red))} stroke:{BREACH},stroke-width:3px,color:{BREACH}"
        )
    return "\n".join(lines) + "\n"
