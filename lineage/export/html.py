"""One self-contained HTML page: the lineage picture a privacy officer opens in a browser.

The page works offline: no CDN, no web fonts, no requests. The picture is drawn here, in
Python, as inline SVG (so it exists even with scripts off, in a mail preview, in print);
a small inline script then makes it explorable: hover or click a node or a flow for its
details, show only breaching flows, pick an article. The graph itself travels in a
``<script type="application/json">`` block for that script (and for anyone who wants the
data back out of a saved page).

Everything taken from the data is HTML-escaped in the markup, and ``<``, ``>`` and ``&`` are
``\\u`` escapes in the JSON block, so a label such as ``</script>`` can neither end the
block nor inject markup.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from html import escape
from typing import Any

import networkx as nx

from lineage.export._shared import (
    BREACH,
    KIND_PALETTES,
    RECIPIENT_KINDS,
    abbreviate,
    articles,
    arts_label,
    breaching,
    category_labels,
    is_flow,
    palette,
    plural,
    recipient_kind,
)
from lineage.export.layout import COLUMN_GAP, NODE_H, Layout, layout
from lineage.rules import CATALOGUE
from lineage.rules.base import art_label, article_key
from lineage.schemas.types import KIND_LABELS

__all__ = ["Summary", "page_style", "summarize", "to_html"]

LABEL_PX = 13.0
SUB_PX = 11.0
# Average glyph advance as a share of the font size for the system sans-serif fonts
# (Segoe UI, SF, Roboto, Liberation/Arial); a little generous so text never overflows.
# Labels are semi-bold, a little wider.
GLYPH = 0.54
GLYPH_BOLD = 0.58
#: Room in a box besides its text: the stripe and the padding on both sides.
TEXT_PAD = 22
#: The country badge of a recipient abroad.
COUNTRY_W = 30
#: Boxes grow to fit their names up to this width; a longer name is cut, and shown whole
#: on hover and in the details.
MAX_BOX_W = 380.0
IDENTIFYING = {
    "direct": "Directly identifying",
    "indirect": "Indirectly identifying",
    "none": "Not identifying by itself",
    "unknown": "Not in the policy",
}


@dataclass(slots=True)
class Summary:
    """The numbers in the page header."""

    events: int = 0
    flows: int = 0
    breaching_flows: int = 0
    breaching_events: int = 0  # on flows only
    recipients: int = 0
    unknown_recipients: int = 0
    systems: int = 0
    categories: int = 0
    #: Standing alerts (one per event and rule broken; retracted ones left out), as
    #: ``lineage run`` counts them less its retractions; and the events that raised them,
    #: on flows and in the systems' own use.
    alerts: int = 0
    alert_events: int = 0
    #: article -> (breaching flows, breaching events, alerts)
    by_article: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The summary as JSON for the page's script."""
        return {
            "events": self.events,
            "flows": self.flows,
            "breaching_flows": self.breaching_flows,
            "breaching_events": self.breaching_events,
            "recipients": self.recipients,
            "unknown_recipients": self.unknown_recipients,
            "systems": self.systems,
            "categories": self.categories,
            "alerts": self.alerts,
            "alert_events": self.alert_events,
            "by_article": {
                a: {"flows": f, "events": e, "alerts": n}
                for a, (f, e, n) in self.by_article.items()
            },
        }


def _article_of(rule: str) -> str:
    spec = CATALOGUE.get(rule)
    return spec.article if spec is not None else rule.split(".", 1)[0].removeprefix("art")


def summarize(graph: nx.DiGraph) -> Summary:
    """Counts for the header: events (what the systems emitted), flows, and the breaches by
    article three ways: flows that broke it, events that did (on flows or in a system's own
    use), and alerts (one per event and rule: what ``lineage run`` counts, less retractions).

    Breaches are read where each is counted once: on a system (its own use and its flows)
    and on an onward edge (a recipient passing data on).
    """
    out = Summary()
    events: dict[str, int] = {}
    alerts: dict[str, int] = {}
    flows: dict[str, int] = {}

    def tally(breaches: Mapping[str, int], rules: Mapping[str, int]) -> None:
        for article, n in breaches.items():
            events[str(article)] = events.get(str(article), 0) + int(n)
        for rule, n in rules.items():
            article = _article_of(rule)
            alerts[article] = alerts.get(article, 0) + int(n)
            out.alerts += int(n)

    for _, attrs in graph.nodes(data=True):
        kind = attrs.get("kind")
        if kind == "system":
            out.systems += 1
            out.events += int(attrs.get("count", 0))
            tally(attrs.get("breaches") or {}, attrs.get("rules") or {})
        elif kind == "category":
            out.categories += 1
        else:
            out.recipients += 1
            out.unknown_recipients += recipient_kind(attrs) == "unknown"
    for *_, attrs in graph.edges(data=True):
        if not is_flow(attrs):
            continue
        out.flows += 1
        if breaching(attrs):
            out.breaching_flows += 1
            out.breaching_events += int(attrs.get("breach_count", 0))
        if attrs.get("relation") == "onward":
            tally(attrs.get("breaches") or {}, attrs.get("rules") or {})
        for article, n in (attrs.get("breaches") or {}).items():
            if n:
                flows[str(article)] = flows.get(str(article), 0) + 1
    out.alert_events = _breaching_events(graph)
    articles = sorted({a for a, n in {**events, **alerts}.items() if n}, key=article_key)
    out.by_article = {a: (flows.get(a, 0), events.get(a, 0), alerts.get(a, 0)) for a in articles}
    return out


def _breaching_events(graph: nx.DiGraph) -> int:
    """Events that broke at least one rule: of the systems, and of onward edges."""
    total = 0
    for _, attrs in graph.nodes(data=True):
        if attrs.get("kind") == "system":
            total += int(attrs.get("breach_count", 0))
    for *_, attrs in graph.edges(data=True):
        if attrs.get("relation") == "onward":
            total += int(attrs.get("breach_count", 0))
    return total


# -- small helpers -----------------------------------------------------------------------------


def _text_w(text: str, px: float, bold: bool = False) -> float:
    """About how wide ``text`` is drawn at font size ``px`` (a little generous)."""
    return len(text) * px * (GLYPH_BOLD if bold else GLYPH)


def _fit(text: str, width: float, px: float, bold: bool = False) -> str:
    """The text, cut with an ellipsis to fit ``width`` pixels at font size ``px``."""
    room = max(int(width / (px * (GLYPH_BOLD if bold else GLYPH))), 4)
    return text if len(text) <= room else text[: room - 1].rstrip() + "…"


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def _json_for_script(data: object) -> str:
    """JSON that is safe inside ``<script>``: no ``</script>``, no ``<!--``, no entities."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _arts(breaches: Mapping[str, int]) -> str:
    return arts_label(articles(breaches))


def _label(graph: nx.DiGraph, node: str) -> str:
    return str(graph.nodes[node].get("label") or node)


# -- the SVG -----------------------------------------------------------------------------------


def _node_texts(node: str, attrs: Mapping[str, Any]) -> tuple[str, str, str]:
    """What a box says: its label, the line under it, and the articles it breaks (systems)."""
    kind = str(attrs.get("kind", "recipient"))
    label = str(attrs.get("label") or node)
    if kind == "system":
        events = plural(int(attrs.get("count", 0)), "event")
        return label, events, _arts(attrs.get("breaches") or {})
    if kind == "category":
        return label, IDENTIFYING.get(str(attrs.get("identifying", "unknown")), ""), ""
    rkind = recipient_kind(attrs)
    if rkind == "unknown":
        return label, "Not in the policy", ""
    bits = [KIND_LABELS[rkind], str(attrs.get("country") or "")]
    sub = " · ".join(b for b in bits if b)
    return label, sub + (" · example" if attrs.get("example") else ""), ""


def _abroad(attrs: Mapping[str, Any]) -> bool:
    return attrs.get("kind") not in ("system", "category") and bool(attrs.get("abroad"))


def box_widths(graph: nx.DiGraph) -> dict[str, float]:
    """The width each role's boxes need for every name and line to be whole."""
    need: dict[str, float] = {}
    for node, attrs in graph.nodes(data=True):
        label, sub, breach = _node_texts(node, attrs)
        line = sub + (f" · {breach}" if breach else "")
        text = max(_text_w(label, LABEL_PX, bold=True), _text_w(line, SUB_PX))
        width = text + TEXT_PAD + (COUNTRY_W if _abroad(attrs) else 0)
        role = _role(str(attrs.get("kind", "recipient")))
        need[role] = max(need.get(role, 0.0), min(width, MAX_BOX_W))
    # Whole pixels, rounded up, and one more: what _fit measures must fit what was measured.
    return {role: float(math.ceil(w) + 1) for role, w in need.items()}


def _badge_text(attrs: Mapping[str, Any]) -> str:
    return arts_label(articles(attrs.get("breaches") or {})) or "breach"


def _badge_w(text: str) -> float:
    return 14 + len(text) * 6.3


def column_gap(graph: nx.DiGraph) -> float:
    """Room between columns for the widest badge of a breaching flow, clear of the boxes."""
    widest = max(
        (
            _badge_w(_badge_text(a))
            for *_, a in graph.edges(data=True)
            if is_flow(a) and breaching(a)
        ),
        default=0.0,
    )
    return max(COLUMN_GAP, widest + 28)


def _node_svg(node: str, attrs: Mapping[str, Any], lay: Layout) -> str:
    """One box; a recipient abroad (APPI Art. 28) carries its country as a badge."""
    box = lay.boxes[node]
    colours = palette(attrs)
    kind = str(attrs.get("kind", "recipient"))
    label, sub, sub_breach = _node_texts(node, attrs)
    classes = ["node", kind]
    if kind not in ("system", "category"):
        classes.append(f"kind-{recipient_kind(attrs)}")
    dashed = ' stroke-dasharray="5 3"' if "kind-unknown" in classes else ""
    title = f"{label} ({node})"
    w, h = box.w, box.h
    is_abroad = _abroad(attrs)
    text_w = w - TEXT_PAD - (COUNTRY_W if is_abroad else 0)
    if sub_breach and _text_w(f"{sub} · {sub_breach}", SUB_PX) > text_w:
        sub_text = _fit(sub, text_w * 0.55, SUB_PX)
        sub_breach = _fit(sub_breach, text_w * 0.45, SUB_PX)
    else:
        sub_text = _fit(sub, text_w, SUB_PX)
    breach_tspan = (
        f'<tspan class="sub-breach" fill="{BREACH}"> · {escape(sub_breach)}</tspan>'
        if sub_breach
        else ""
    )
    abroad = ""
    if is_abroad:
        classes.append("abroad")
        code = escape(str(attrs.get("country") or ""))
        abroad = (
            f'<g class="country" transform="translate({w - COUNTRY_W},{4})">'
            f'<rect width="26" height="15" rx="4"/><text x="13" y="11">{code}</text></g>'
        )
    return (
        f'<g class="{" ".join(classes)}" data-node="{_attr(node)}" tabindex="0" role="button" '
        f'aria-label="{_attr(title)}" transform="translate({box.x:.1f},{box.y:.1f})">'
        f"<title>{escape(title)}</title>"
        f'<rect class="box" width="{w}" height="{h}" rx="7" fill="{colours.fill}" '
        f'stroke="{colours.stroke}"{dashed}/>'
        f'<rect class="stripe" width="5" height="{h}" fill="{colours.accent}" '
        f'clip-path="url(#clip-{_role(kind)})"/>'
        f'<text class="label" x="13" y="15.5">'
        f"{escape(_fit(label, text_w, LABEL_PX, bold=True))}</text>"
        f'<text class="sub" x="13" y="29.5">{escape(sub_text)}{breach_tspan}</text>'
        f"{abroad}</g>"
    )


def _role(kind: str) -> str:
    return kind if kind in ("category", "system") else "recipient"


def _svg(graph: nx.DiGraph, lay: Layout, edge_ids: Mapping[tuple[str, str], str]) -> str:
    parts = [
        f'<svg id="lineage-graph" class="graph" viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" '
        f'width="{lay.width:.0f}" height="{lay.height:.0f}" role="group" '
        f'aria-label="Lineage graph: personal data, internal systems and recipients">',
        "<defs>",
        *(
            f'<clipPath id="clip-{role}"><rect width="{w}" height="{NODE_H}" rx="7"/></clipPath>'
            for role, w in lay.widths.items()
        ),
        "</defs>",
        '<g class="headings">',
    ]
    for heading in lay.headings:
        if heading.group:
            colours = KIND_PALETTES.get(heading.group, KIND_PALETTES["unknown"])
            parts.append(
                f'<g class="group-heading" transform="translate({heading.x:.1f},{heading.y:.1f})">'
                f'<circle cx="4" cy="-4" r="4" fill="{colours.accent}"/>'
                f'<text x="13" y="0" fill="{colours.accent}">'
                f"{escape(KIND_LABELS.get(heading.group, heading.group))}</text></g>"
            )
        else:
            parts.append(
                f'<text class="column-title" x="{heading.x:.1f}" y="{heading.y:.1f}">'
                f"{escape(heading.text)}</text>"
            )
    parts.append("</g>")

    parts.append('<g class="edges">')
    badges = []
    for path in lay.edges:
        attrs = graph.edges[path.source, path.target]
        eid = edge_ids[path.source, path.target]
        relation = str(attrs.get("relation", "flow"))
        bad = is_flow(attrs) and breaching(attrs)
        arts = articles(attrs.get("breaches") or {}) if bad else []
        classes = ["edge", relation] + (["breach"] if bad else [])
        title = f"{_label(graph, path.source)} → {_label(graph, path.target)}"
        if is_flow(attrs):
            title += f": {plural(int(attrs.get('count', 0)), 'event')}"
            cats = abbreviate(category_labels(graph, attrs.get("categories") or []))
            title += f" ({cats})" if cats else ""
        if bad:
            title += f", breaks {arts_label(arts)}"
        dash = ' stroke-dasharray="7 5"' if relation == "onward" else ""
        parts.append(
            f'<g class="{" ".join(classes)}" data-edge="{eid}" data-source="{_attr(path.source)}" '
            f'data-target="{_attr(path.target)}" data-articles="{_attr(" ".join(arts))}">'
            f"<title>{escape(title)}</title>"
            f'<path class="hit" d="{path.d}"/>'
            f'<path class="line{" breach" if bad else ""}" d="{path.d}" '
            f'stroke-width="{path.width}"{dash}/></g>'
        )
        if bad:
            text = _badge_text(attrs)
            bw = _badge_w(text)
            badges.append(
                f'<g class="badge" data-edge="{eid}" '
                f'transform="translate({path.badge_x:.1f},{path.badge_y:.1f})">'
                f'<rect x="{-bw / 2:.1f}" y="-9" width="{bw:.1f}" height="18" rx="9"/>'
                f'<text y="4">{escape(text)}</text></g>'
            )
    parts.append("</g>")
    parts.append('<g class="nodes">')
    for node in sorted(graph.nodes):
        parts.append(_node_svg(node, graph.nodes[node], lay))
    parts.append("</g>")
    parts.append('<g class="badges">' + "".join(badges) + "</g>")
    parts.append("</svg>")
    return "\n".join(parts)


# -- the page around it ------------------------------------------------------------------------


def _stat(value: str, label: str, extra: str = "", cls: str = "", ident: str = "") -> str:
    named = f' id="stat-{ident}"' if ident else ""
    return (
        f'<div class="stat {cls}"{named}><div class="stat-value">{escape(value)}</div>'
        f'<div class="stat-label">{escape(label)}</div>{extra}</div>'
    )


def _header(graph: nx.DiGraph, summary: Summary) -> str:
    name = str(graph.graph.get("policy_name") or "Privacy policy")
    version = str(graph.graph.get("policy_version") or "")
    source = str(graph.graph.get("generated_from") or "")
    meta = [f"Policy: {name}"] + ([f"version {version}"] if version else [])
    if source:
        meta.append(f"from {source}")
    unknown = ""
    if summary.unknown_recipients:
        count = plural(summary.unknown_recipients, "unknown recipient")
        unknown = f'<div class="stat-note warn">{count}</div>'
    rows = []
    for a, (flows, events, alerts) in summary.by_article.items():
        # A row with breaching flows filters the picture when clicked; one without (what
        # systems collect or use themselves, such as Art. 2) has no flow to show.
        clickable = f' data-article="{_attr(a)}"' if flows else ' class="own-use"'
        rows.append(
            f'<li{clickable}><span class="art">{escape(art_label(a))}</span>'
            f'<span class="art-alerts">{alerts:,}</span>'
            f'<span class="art-events">{events:,}</span>'
            f'<span class="art-count">{flows:,}</span></li>'
        )
    breaches = (
        '<div class="stat breaches"><div class="stat-label">Breaches by article</div>'
        '<ul class="articles"><li class="head"><span></span><span title="one per event and '
        'rule broken">alerts</span><span title="events that broke a rule of the article">'
        'events</span><span title="flows with such events; what systems collect or use '
        'themselves is no flow">flows</span></li>'
        f"{''.join(rows)}</ul></div>"
        if rows
        else '<div class="stat ok"><div class="stat-value">0</div>'
        '<div class="stat-label">Breaches: none found</div></div>'
    )
    return (
        '<header class="top"><div class="title">'
        '<div class="eyebrow">privacy-lineage</div>'
        "<h1>Where personal data went</h1>"
        f'<p class="meta">{escape(" · ".join(meta))}</p></div>'
        '<div class="stats">'
        + _stat(
            f"{summary.events:,}",
            "Events",
            f'<div class="stat-note">from {plural(summary.systems, "system")}</div>',
        )
        + _stat(
            f"{summary.flows:,}",
            "Flows",
            f'<div class="stat-note">to {plural(summary.recipients, "recipient")}</div>',
        )
        + _stat(
            f"{summary.breaching_flows:,}",
            "Breaching flows",
            f'<div class="stat-note">{plural(summary.breaching_events, "breaching event")}'
            " on them</div>" + unknown,
            "bad" if summary.breaching_flows else "ok",
        )
        + _stat(
            f"{summary.alerts:,}",
            "Alerts",
            f'<div class="stat-note" title="one alert per event and rule broken; alerts a '
            'consent that came late retracted are not counted">on '
            f"{plural(summary.alert_events, 'event')}, less retractions</div>",
            "bad" if summary.alerts else "ok",
            "alerts",
        )
        + breaches
        + "</div></header>"
    )


def _toolbar(summary: Summary, kinds: Iterable[str]) -> str:
    options = "".join(
        f'<option value="{_attr(a)}">{escape(art_label(a))} ({plural(flows, "flow")})</option>'
        for a, (flows, _, _) in summary.by_article.items()
        if flows
    )
    legend = "".join(
        f'<li><span class="swatch" style="background:{KIND_PALETTES[k].fill};'
        f'border-color:{KIND_PALETTES[k].accent}"></span>{escape(KIND_LABELS[k])}</li>'
        for k in kinds
    )
    return (
        '<div class="toolbar" role="toolbar">'
        '<div class="row">'
        '<div class="filters">'
        '<label class="toggle"><input type="checkbox" id="only-breaches"> '
        "Only breaching flows</label>"
        '<label class="select">Article <select id="article">'
        f'<option value="">any</option>{options}</select></label>'
        '<label class="select">From <input type="date" id="day-from"></label>'
        '<label class="select">to <input type="date" id="day-to"></label>'
        '<button type="button" id="reset" class="link">Reset</button>'
        "</div>"
        '<ul class="legend lines">'
        '<li><span class="line-key flow"></span>Flow: width grows with events</li>'
        '<li><span class="line-key breach"></span>Breaks the policy</li>'
        '<li><span class="line-key onward"></span>Onward transfer</li>'
        '<li><span class="line-key holds"></span>Category a system holds</li>'
        '<li><span class="country-key">US</span>Recipient abroad (APPI Art. 28)</li>'
        "</ul></div>"
        '<ul class="legend kinds">'
        '<li><span class="swatch system"></span>Internal system</li>'
        '<li><span class="swatch category"></span>Category of personal data</li>'
        f"{legend}</ul></div>"
    )


def _breach_table(graph: nx.DiGraph, edge_ids: Mapping[tuple[str, str], str]) -> str:
    rows = []
    flows = [(u, v, a) for u, v, a in graph.edges(data=True) if is_flow(a) and breaching(a)]
    flows.sort(key=lambda e: (-int(e[2].get("breach_count", 0)), e[0], e[1]))
    for u, v, attrs in flows:
        target = graph.nodes[v]
        kind = (
            KIND_LABELS[recipient_kind(target)] if target.get("kind") == "recipient" else "System"
        )
        rules = ", ".join(f"{r} ({n:,})" for r, n in sorted((attrs.get("rules") or {}).items()))
        cats = abbreviate(category_labels(graph, attrs.get("categories") or []), 4)
        rows.append(
            f'<tr data-edge="{edge_ids[u, v]}" tabindex="0">'
            f'<td><span class="flow-name">{escape(_label(graph, u))} → {escape(_label(graph, v))}'
            f'</span><span class="kind-tag">{escape(kind)}</span></td>'
            f'<td class="arts">{escape(_arts(attrs.get("breaches") or {}))}</td>'
            f'<td class="num">{int(attrs.get("breach_count", 0)):,} / '
            f"{int(attrs.get('count', 0)):,}</td>"
            f"<td>{escape(cats)}</td>"
            f'<td class="rules">{escape(rules)}</td></tr>'
        )
    if not rows:
        return (
            '<section class="panel table-panel"><h2>Breaching flows</h2>'
            '<p class="empty">No flow broke the policy.</p></section>'
        )
    return (
        '<section class="panel table-panel"><h2>Breaching flows '
        f'<span class="count">{len(rows)}</span></h2>'
        '<table class="flows"><thead><tr><th>Flow</th><th>Articles</th>'
        '<th class="num">Breaching / all events</th><th>Categories</th><th>Rules</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _payload(
    graph: nx.DiGraph, lay: Layout, edge_ids: Mapping[tuple[str, str], str], summary: Summary
) -> dict[str, Any]:
    return {
        "graph": dict(graph.graph),
        "summary": summary.to_json(),
        "kinds": KIND_LABELS,
        "identifying": IDENTIFYING,
        "nodes": [
            {"id": node, "column": lay.boxes[node].column, **graph.nodes[node]}
            for node in sorted(graph.nodes)
        ],
        "edges": [
            {"id": edge_ids[u, v], "source": u, "target": v, **graph.edges[u, v]}
            for u, v in sorted(graph.edges, key=lambda e: edge_ids[e])
        ],
    }


@cache
def _template() -> str:
    return (importlib.resources.files("lineage.export") / "template.html").read_text("utf-8")


_SLOT = re.compile(r"\{\{(\w+)\}\}")


def page_style() -> str:
    """The stylesheet of lineage.html (inside its ``<style>``), for the other pages that
    should look like it (``replay.html``): one look, kept in one place."""
    template = _template()
    return template[template.index("<style>") + len("<style>") : template.index("</style>")]


def to_html(graph: nx.DiGraph) -> str:
    """The graph as one self-contained HTML page (inline CSS, SVG, data and script)."""
    lay = layout(graph, box_widths(graph), column_gap(graph))
    edge_ids = {(p.source, p.target): f"e{i}" for i, p in enumerate(lay.edges)}
    summary = summarize(graph)
    present = {recipient_kind(a) for _, a in graph.nodes(data=True) if a.get("kind") == "recipient"}
    kinds = [k for k in RECIPIENT_KINDS if k in present]
    title = " · ".join(
        str(x)
        for x in ("Lineage", graph.graph.get("policy_name"), graph.graph.get("policy_version"))
        if x
    )
    slots = {
        "title": escape(title),
        "header": _header(graph, summary),
        "toolbar": _toolbar(summary, kinds),
        "svg": _svg(graph, lay, edge_ids),
        "table": _breach_table(graph, edge_ids),
        "data": _json_for_script(_payload(graph, lay, edge_ids, summary)),
    }
    # One pass over the template: text from the data that looks like "{{slot}}" is not
    # substituted again.
    return _SLOT.sub(lambda m: slots[m.group(1)], _template())
