"""A layered left-to-right layout of the lineage graph, computed in Python.

Columns: categories of personal data, internal systems (a system fed by another system
moves one column right), recipients grouped by recipient kind, and recipients that only
receive data onward further right. Within a column, nodes are ordered by a few
barycentre sweeps so that flows cross as little as possible; the groups (category
family, recipient kind) stay together.

The DOT export uses :func:`columns` for its ranks; the HTML export uses :func:`layout`
for the coordinates of its SVG.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import networkx as nx

from lineage.export._shared import RECIPIENT_KINDS, breaching, is_flow, recipient_kind

__all__ = ["LANE", "Box", "Column", "EdgePath", "Heading", "Layout", "columns", "layout"]

# Geometry, in SVG user units (CSS pixels at scale 1).
PAD_X = 14
PAD_TOP = 40  # room for the column titles
PAD_BOTTOM = 16
NODE_H = 36
NODE_GAP = 7
LANE_GAP = 2
GROUP_GAP = 28  # room for a recipient-kind heading above its group
FAMILY_GAP = 6  # a little air between category families
COLUMN_GAP = 104
#: The narrowest box of each role; a picture whose names need more widens the role's boxes.
WIDTHS = {"category": 200, "system": 168, "recipient": 244}
SWEEPS = 8
RELAX = 8
#: Prefix of the lane slots a long edge takes in the columns it crosses (never a node id:
#: those start with "category:", "system:" or "recipient:").
LANE = "lane:"


@dataclass(slots=True)
class Column:
    """One column of the picture: its role, its title and its node ids, top to bottom,
    split into groups (a category family, a recipient kind; one group for systems)."""

    role: str  # "category", "system" or "recipient"
    title: str
    groups: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def slots(self) -> list[str]:
        """Nodes and the lanes of edges crossing the column, top to bottom."""
        return [slot for _, members in self.groups for slot in members]

    @property
    def nodes(self) -> list[str]:
        """The graph's nodes in this column, top to bottom."""
        return [slot for slot in self.slots if not slot.startswith(LANE)]


@dataclass(frozen=True, slots=True)
class Box:
    """Where a node (or a lane) is drawn: its top-left corner and size."""

    x: float
    y: float
    w: float
    h: float
    column: int

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass(frozen=True, slots=True)
class EdgePath:
    """How an edge is drawn: an SVG path, its stroke width, and where a badge can sit."""

    source: str
    target: str
    d: str
    width: float
    badge_x: float
    badge_y: float


@dataclass(frozen=True, slots=True)
class Heading:
    """A column title or a group heading (``group`` is the recipient kind, or "")."""

    x: float
    y: float
    text: str
    group: str


@dataclass(slots=True)
class Layout:
    """Coordinates for every node and edge, and the size of the whole picture.

    ``boxes`` also holds the lanes (ids starting with :data:`LANE`); they are not drawn.
    """

    width: float
    height: float
    columns: list[Column]
    boxes: dict[str, Box]
    edges: list[EdgePath]
    headings: list[Heading]
    widths: dict[str, float] = field(default_factory=lambda: dict(WIDTHS))  # box width by role


# -- columns -----------------------------------------------------------------------------------


def _depths(graph: nx.DiGraph, members: list[str]) -> dict[str, int]:
    """Longest-path depth of each member within the subgraph they induce.

    Strongly connected components share a depth, so a cycle (two systems feeding each
    other) stays in one column instead of looping forever.
    """
    dag = nx.condensation(graph.subgraph(members))
    depth: dict[int, int] = {}
    for comp in nx.topological_sort(dag):
        depth[comp] = max((depth[p] + 1 for p in dag.predecessors(comp)), default=0)
    mapping: dict[str, int] = dag.graph["mapping"]
    return {node: depth[mapping[node]] for node in members}


def _column_of(graph: nx.DiGraph) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Column index per node, and (role, title) per column."""
    kinds = {n: str(a.get("kind", "recipient")) for n, a in graph.nodes(data=True)}
    cats = sorted(n for n, k in kinds.items() if k == "category")
    systems = sorted(n for n, k in kinds.items() if k == "system")
    recipients = sorted(n for n, k in kinds.items() if k not in ("category", "system"))
    col: dict[str, int] = {}
    specs: list[tuple[str, str]] = []
    if cats:
        specs.append(("category", "Personal data"))
        col.update(dict.fromkeys(cats, 0))
    for role, members, titles in (
        ("system", systems, ("Internal systems", "Downstream systems")),
        ("recipient", recipients, ("Recipients", "Onward recipients")),
    ):
        base = len(specs)
        depth = _depths(graph, members)
        for d in range(max(depth.values(), default=-1) + 1):
            specs.append((role, titles[min(d, 1)]))
        col.update({n: base + d for n, d in depth.items()})
    return col, specs


def lane_id(u: str, v: str, column: int) -> str:
    """The lane edge (u, v) takes through ``column``."""
    return f"{LANE}{u}\t{v}\t{column}"


def _chains(graph: nx.DiGraph, col: dict[str, int]) -> dict[tuple[str, str], list[str]]:
    """Per edge, the slots it passes: its source, a lane in each column it crosses, its target.

    Without lanes a flow from a system to a recipient two columns away would be drawn
    straight through the boxes between them, and read as a flow into those boxes.
    """
    chains = {}
    for u, v in sorted(graph.edges):
        lanes = [lane_id(u, v, c) for c in range(col[u] + 1, col[v])]
        chains[u, v] = [u, *lanes, v]
    return chains


def _group_key(graph: nx.DiGraph, role: str) -> Callable[[str], str]:
    if role == "category":
        return lambda n: n.removeprefix("category:").split(".", 1)[0]
    if role == "recipient":
        return lambda n: "" if n.startswith(LANE) else recipient_kind(graph.nodes[n])
    return lambda n: ""


def _group_rank(role: str, group: str) -> tuple[int, str]:
    if role == "recipient":
        # Lanes (group "") pass above the recipient groups.
        return (RECIPIENT_KINDS.index(group) if group in RECIPIENT_KINDS else -1, group)
    return (0, group)


def columns(graph: nx.DiGraph) -> list[Column]:
    """The graph's columns, left to right, each ordered to keep flows from crossing."""
    return _columns(graph)[0]


def _columns(
    graph: nx.DiGraph,
) -> tuple[list[Column], dict[str, int], dict[tuple[str, str], list[str]]]:
    col, specs = _column_of(graph)
    chains = _chains(graph, col)
    neighbours: dict[str, set[str]] = {n: set() for n in graph}
    for chain in chains.values():
        for a, b in itertools.pairwise(chain):
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
            col.setdefault(a, col[chain[0]] + chain.index(a))
            col.setdefault(b, col[chain[0]] + chain.index(b))
    cols = [Column(role, title) for role, title in specs]
    members: list[list[str]] = [[] for _ in cols]
    for slot in sorted(col):
        members[col[slot]].append(slot)
    for c, slots in zip(cols, members, strict=True):
        key = _group_key(graph, c.role)
        grouped: dict[str, list[str]] = {}
        for slot in slots:
            grouped.setdefault(key(slot), []).append(slot)
        c.groups = sorted(grouped.items(), key=lambda kv: _group_rank(c.role, kv[0]))
    for _ in range(SWEEPS):
        for index in range(1, len(cols)):
            _reorder(cols, index, col, neighbours, left=True)
        for index in range(len(cols) - 2, -1, -1):
            _reorder(cols, index, col, neighbours, left=False)
    return cols, col, chains


def _positions(cols: list[Column]) -> dict[str, float]:
    """Each slot's place in its column as a fraction of the column (0 top, 1 bottom)."""
    pos: dict[str, float] = {}
    for c in cols:
        slots = c.slots
        for i, slot in enumerate(slots):
            pos[slot] = (i + 0.5) / len(slots)
    return pos


def _reorder(
    cols: list[Column],
    index: int,
    col: dict[str, int],
    neighbours: dict[str, set[str]],
    *,
    left: bool,
) -> None:
    """Order one column by the mean position of its neighbours on the left (or right),
    the barycentre heuristic."""
    pos = _positions(cols)
    c = cols[index]

    def bary(slot: str) -> float:
        near = [pos[m] for m in neighbours[slot] if (col[m] < index if left else col[m] > index)]
        # fsum: the exact sum, whatever the set's order (it follows the string hash, which
        # differs between processes); a float sum's last bit could break a tie differently.
        return math.fsum(near) / len(near) if near else pos[slot]

    regrouped = [(group, sorted(slots, key=lambda n: (bary(n), n))) for group, slots in c.groups]
    if c.role == "category":
        # Families move as a whole, by where their members want to be.
        regrouped.sort(key=lambda g: (sum(map(bary, g[1])) / len(g[1]), g[0]))
    c.groups = regrouped


# -- geometry ----------------------------------------------------------------------------------


def layout(
    graph: nx.DiGraph,
    box_widths: Mapping[str, float] | None = None,
    gap: float = COLUMN_GAP,
) -> Layout:
    """Coordinates for the HTML picture: boxes, edge curves, headings and overall size.

    ``box_widths`` are the boxes' widths by role (the caller measures its names; at least
    :data:`WIDTHS`); ``gap`` the room between columns, where the badges of breaching flows
    sit (at least :data:`COLUMN_GAP`): a badge is centred in the gap before its flow's end,
    so a gap wider than the widest badge keeps every badge off every box.
    """
    box_w = {role: max(w, (box_widths or {}).get(role, w)) for role, w in WIDTHS.items()}
    gap = max(gap, COLUMN_GAP)
    cols, col, chains = _columns(graph)
    widths = _widths(graph)
    lane_h = {lane: widths[uv] + 3 for uv, chain in chains.items() for lane in chain[1:-1]}
    xs: list[float] = []
    x = float(PAD_X)
    for c in cols:
        xs.append(x)
        x += box_w[c.role] + gap
    width = x - gap + PAD_X if cols else 2 * PAD_X

    stacks = [_stack(c, lane_h) for c in cols]
    inner = max((sum(gap + h for _, gap, h in stack) for stack in stacks), default=0.0)
    height = PAD_TOP + inner + PAD_BOTTOM
    top = _relax(stacks, col, chains, inner)

    boxes: dict[str, Box] = {}
    headings: list[Heading] = []
    for index, (c, x0, stack) in enumerate(zip(cols, xs, stacks, strict=True)):
        headings.append(Heading(x0, PAD_TOP - 18, c.title, ""))
        for slot, _, h in stack:
            boxes[slot] = Box(x0, top[slot], box_w[c.role], h, index)
        if c.role == "recipient":
            for group, slots in c.groups:
                if group:
                    headings.append(Heading(x0, top[slots[0]] - 9, group, group))
    paths = _edges(graph, boxes, chains, widths)
    return Layout(width, height, cols, boxes, paths, headings, box_w)


def _stack(c: Column, lane_h: dict[str, float]) -> list[tuple[str, float, float]]:
    """A column's slots top to bottom with the room each needs above it and its height.

    The room above the first slot of a recipient group holds the group's heading.
    """
    out: list[tuple[str, float, float]] = []
    previous = ""
    for g, (group, slots) in enumerate(c.groups):
        for i, slot in enumerate(slots):
            gap = _gap(previous, slot) if previous else 0.0
            if i == 0 and c.role == "recipient" and group:
                gap += GROUP_GAP
            elif i == 0 and g:
                gap += FAMILY_GAP
            out.append((slot, gap, lane_h.get(slot, NODE_H)))
            previous = slot
    return out


def _relax(
    stacks: list[list[tuple[str, float, float]]],
    col: dict[str, int],
    chains: dict[tuple[str, str], list[str]],
    inner: float,
) -> dict[str, float]:
    """The top of every slot: each moved towards the middle of its neighbours, keeping its
    column's order and spacing (the relaxation of d3-sankey).

    Centring every column instead leaves short columns floating far from what they connect
    to once one column is tall.
    """
    neighbours: dict[str, list[str]] = {}
    for chain in chains.values():
        for a, b in itertools.pairwise(chain):
            neighbours.setdefault(a, []).append(b)
            neighbours.setdefault(b, []).append(a)
    size = {slot: h for stack in stacks for slot, _, h in stack}
    top: dict[str, float] = {}
    for stack in stacks:  # start centred
        y = PAD_TOP + (inner - sum(gap + h for _, gap, h in stack)) / 2
        for slot, gap, h in stack:
            top[slot] = y + gap
            y += gap + h
    order = list(range(len(stacks)))
    for sweep in range(RELAX):
        alpha = 0.5 * 0.85**sweep
        for index in order[1:] if sweep % 2 == 0 else order[-2::-1]:
            left = sweep % 2 == 0
            for slot, _, h in stacks[index]:
                near = [
                    top[m] + size[m] / 2
                    for m in neighbours.get(slot, [])
                    if (col[m] < index if left else col[m] > index)
                ]
                if near:
                    top[slot] += (sum(near) / len(near) - (top[slot] + h / 2)) * alpha
            _resolve(stacks[index], top, inner)
    return top


def _resolve(stack: list[tuple[str, float, float]], top: dict[str, float], inner: float) -> None:
    """Push overlapping slots apart, down from the top, then up from the bottom edge."""
    floor = float(PAD_TOP)
    for slot, gap, h in stack:
        top[slot] = max(top[slot], floor + gap)
        floor = top[slot] + h
    ceiling = PAD_TOP + inner
    for slot, gap, h in reversed(stack):
        top[slot] = min(top[slot], ceiling - h)
        ceiling = top[slot] - gap


def _gap(previous: str, slot: str) -> float:
    return LANE_GAP if previous.startswith(LANE) and slot.startswith(LANE) else NODE_GAP


def _widths(graph: nx.DiGraph) -> dict[tuple[str, str], float]:
    """Stroke width per edge: grows with the square root of its count, per relation family."""
    flows = [int(a.get("count", 0)) for *_, a in graph.edges(data=True) if is_flow(a)]
    holds = [int(a.get("count", 0)) for *_, a in graph.edges(data=True) if not is_flow(a)]
    top_flow, top_holds = max(flows, default=1), max(holds, default=1)
    out = {}
    for u, v, a in graph.edges(data=True):
        n = max(int(a.get("count", 0)), 0)
        if is_flow(a):
            out[u, v] = round(1.6 + 7.0 * math.sqrt(n / max(top_flow, 1)), 2)
        else:
            out[u, v] = round(1.0 + 2.5 * math.sqrt(n / max(top_holds, 1)), 2)
    return out


def _edges(
    graph: nx.DiGraph,
    boxes: dict[str, Box],
    chains: dict[tuple[str, str], list[str]],
    widths: dict[tuple[str, str], float],
) -> list[EdgePath]:
    # Ports: spread the edges leaving (entering) a side of a box over its height, in the
    # order of the other ends, so that bundles fan out instead of crossing at the box.
    ends: dict[tuple[str, str], list[tuple[float, str, str]]] = {}
    sides: dict[tuple[str, str], tuple[str, str]] = {}
    for (u, v), chain in chains.items():
        bu, bv = boxes[u], boxes[v]
        if bu.column < bv.column:
            su, sv = "r", "l"
        elif bu.column == bv.column:
            su, sv = "r", "r"  # within a column: a loop out to the right and back
        else:
            su, sv = "l", "r"
        sides[u, v] = (su, sv)
        ends.setdefault((u, su), []).append((boxes[chain[1]].cy, u, v))
        ends.setdefault((v, sv), []).append((boxes[chain[-2]].cy, u, v))
    port: dict[tuple[str, str, str], float] = {}  # (node, edge source, edge target) -> y
    for (node, _side), items in ends.items():
        items.sort()
        box = boxes[node]
        margin = 6.0
        span = box.h - 2 * margin
        for i, (_, u, v) in enumerate(items):
            port[node, u, v] = box.y + margin + span * (i + 1) / (len(items) + 1)

    paths: list[EdgePath] = []
    badges: list[tuple[float, float]] = []
    # Drawn in this order: 'holds' underneath, lawful flows, breaching flows on top.
    order = sorted(chains, key=lambda e: (is_flow(graph.edges[e]), breaching(graph.edges[e]), e))
    for u, v in order:
        attrs = graph.edges[u, v]
        su, sv = sides[u, v]
        bu, bv = boxes[u], boxes[v]
        x1 = bu.x + bu.w if su == "r" else bu.x
        x2 = bv.x + bv.w if sv == "r" else bv.x
        y1, y2 = port[u, u, v], port[v, u, v]
        if su == sv:
            bulge = 40 + abs(y2 - y1) * 0.15
            d = f"M{x1:.1f},{y1:.1f} C{x1 + bulge:.1f},{y1:.1f} {x2 + bulge:.1f},{y2:.1f} "
            d += f"{x2:.1f},{y2:.1f}"
            bx, by = max(x1, x2) + bulge * 0.75, (y1 + y2) / 2
        else:
            # Through each lane: a curve into it, straight across the column, a curve out.
            points = [(x1, y1)]
            for lane in chains[u, v][1:-1]:
                box = boxes[lane]
                points += [(box.x, box.cy), (box.x + box.w, box.cy)]
            points.append((x2, y2))
            d = f"M{x1:.1f},{y1:.1f}"
            for i in range(0, len(points) - 1, 2):
                (ax, ay), (zx, zy) = points[i], points[i + 1]
                dx = max(abs(zx - ax) * 0.5, 24) * (1 if zx >= ax else -1)
                d += f" C{ax + dx:.1f},{ay:.1f} {zx - dx:.1f},{zy:.1f} {zx:.1f},{zy:.1f}"
                if i + 2 < len(points):
                    d += f" H{points[i + 2][0]:.1f}"
            # The badge sits in the middle of the last stretch's gap, where flows into
            # different recipients have fanned apart and no box is.
            (ax, ay), (zx, zy) = points[-2], points[-1]
            dx = max(abs(zx - ax) * 0.5, 24) * (1 if zx >= ax else -1)
            t = 0.5
            bx = _bezier(ax, ax + dx, zx - dx, zx, t)
            by = _bezier(ay, ay, zy, zy, t)
        if is_flow(attrs) and breaching(attrs):
            by = _free_spot(badges, bx, by)
            badges.append((bx, by))
        paths.append(EdgePath(u, v, d, widths[u, v], round(bx, 1), round(by, 1)))
    return paths


def _bezier(p0: float, p1: float, p2: float, p3: float, t: float) -> float:
    s = 1 - t
    return s * s * s * p0 + 3 * s * s * t * p1 + 3 * s * t * t * p2 + t * t * t * p3


def _free_spot(taken: list[tuple[float, float]], x: float, y: float) -> float:
    """Nudge a badge down until it overlaps no badge placed before it."""
    for _ in range(40):
        if all(abs(x - ox) > 62 or abs(y - oy) > 19 for ox, oy in taken):
            return y
        y += 19
    return y
