"""What every picture of the graph agrees on: recipient kinds, their colours, edge wording.

Kept in one place so the DOT, Mermaid and HTML pictures colour an ad provider the same
way and word a breach the same way ("breaks Art. 6, 9").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import networkx as nx

from lineage.rules.base import art_label, article_key
from lineage.schemas.types import RecipientKind

#: Recipient kinds in the order the pictures list them (the policy's kinds, then "unknown").
RECIPIENT_KINDS = (*(kind.value for kind in RecipientKind), "unknown")


@dataclass(frozen=True, slots=True)
class Palette:
    """Colours of one kind of node: its fill, its border and its accent (text, stripe)."""

    fill: str
    stroke: str
    accent: str


#: The red of a breaching flow; nothing else in the pictures uses it.
BREACH = "#d92d20"
#: Lawful flows and 'holds' edges.
FLOW = "#98a2b3"
HOLDS = "#d0d5dd"

CATEGORY = Palette(fill="#ffffff", stroke="#d0d5dd", accent="#475467")
SYSTEM = Palette(fill="#eef4ff", stroke="#84adff", accent="#2950a8")
KIND_PALETTES = {
    "outsourcer": Palette(fill="#effcf8", stroke="#5fc4b2", accent="#0e7a6d"),
    "affiliate": Palette(fill="#f4f3ff", stroke="#b2a4fb", accent="#6236e0"),
    "ad_provider": Palette(fill="#fff6ea", stroke="#f8b766", accent="#b54708"),
    "info_module": Palette(fill="#eef8ff", stroke="#7cc4f0", accent="#026aa2"),
    "third_party": Palette(fill="#fdf2fa", stroke="#f19fd0", accent="#b0135f"),
    "authority": Palette(fill="#f2f4f7", stroke="#98a2b3", accent="#344054"),
    # Unknown recipients are drawn dashed: no agreement, no kind, often a breach by themselves.
    "unknown": Palette(fill="#ffffff", stroke="#344054", accent="#101828"),
}


def recipient_kind(attrs: Mapping[str, Any]) -> str:
    """The node's recipient kind, with anything unexpected read as "unknown"."""
    kind = str(attrs.get("recipient_kind", "unknown"))
    return kind if kind in KIND_PALETTES else "unknown"


def palette(attrs: Mapping[str, Any]) -> Palette:
    """The colours of a node, from its kind (and recipient kind)."""
    kind = attrs.get("kind")
    if kind == "system":
        return SYSTEM
    if kind == "recipient":
        return KIND_PALETTES[recipient_kind(attrs)]
    return CATEGORY


def arts_label(arts: Iterable[str]) -> str:
    """Several articles in few words: ``Art. 3, 6, 9 · APPI Art. 28``."""
    listed = list(arts)
    own = [a for a in listed if a.isdigit()]
    parts = [f"Art. {', '.join(own)}"] if own else []
    parts += [art_label(a) for a in listed if not a.isdigit()]
    return " · ".join(parts)


def articles(breaches: Mapping[str, int]) -> list[str]:
    """The articles an edge or node breaks, in article order."""
    return sorted((a for a, n in breaches.items() if n), key=article_key)


def breach_label(breaches: Mapping[str, int]) -> str:
    """``{"9": 3, "6": 1}`` -> ``"breaks Art. 6, 9"``; "" when nothing is broken."""
    arts = articles(breaches)
    return f"breaks Art. {', '.join(arts)}" if arts else ""


def abbreviate(items: Iterable[str], limit: int = 3) -> str:
    """The first ``limit`` items joined, and how many more: ``"Name, E-mail +2 more"``."""
    shown = list(items)
    if len(shown) <= limit:
        return ", ".join(shown)
    return f"{', '.join(shown[:limit])} +{len(shown) - limit} more"


def plural(n: int, word: str) -> str:
    """``plural(1, "event")`` -> ``"1 event"``; thousands get separators."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def category_labels(graph: nx.DiGraph, categories: Iterable[str]) -> list[str]:
    """Human labels of category ids, from the category nodes when the graph has them."""
    out = []
    for category in categories:
        attrs = graph.nodes.get(f"category:{category}")
        out.append(str(attrs["label"]) if attrs and attrs.get("label") else category)
    return out


def is_flow(attrs: Mapping[str, Any]) -> bool:
    """True for edges along which personal data left a system or a recipient."""
    return attrs.get("relation") in ("flow", "onward")


def breaching(attrs: Mapping[str, Any]) -> bool:
    """True for a flow with at least one breaching event."""
    return bool(attrs.get("breach_count")) or bool(articles(attrs.get("breaches") or {}))
