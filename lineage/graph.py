"""The lineage graph (networkx): which data went from which system to which recipient.

Nodes (id -> attributes):

- ``category:<id>``  kind="category", label, identifying ("direct"/"indirect"/"none"/"unknown")
- ``system:<id>``    kind="system", label, count (events it emitted), breaches {article: events},
  rules {rule: events}, breach_count (events that broke at least one rule): what its own use
  and its flows broke (rules counts standing alerts: one per event and rule, less those a
  late consent retracted)
- ``recipient:<id>`` kind="recipient", label, recipient_kind (outsourcer, affiliate, ad_provider,
  info_module, third_party, authority, or "unknown"), country ("" when unknown), abroad (bool:
  outside the policy's home country), example (bool)

Edges:

- ``category -> system`` relation="holds": the system handled that category (used it or
  passed it on); count
- ``system -> recipient|system`` relation="flow": personal data left the system
- ``recipient -> recipient`` relation="onward": a recipient passed data on (``via``)

Flow and onward edges carry: count, personal (events with personal data), categories,
purposes, legal_bases, forms, actions (sorted lists), per-item counts (``category_counts`` ...),
first_seen and last_seen (ISO 8601), breaches {article: events}, rules {rule: events},
breach_count (events that broke at least one article), days and breach_days {day: events}
(days in the policy's calendar).

Graph attributes: policy_name, policy_version, generated_from, home_country.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx

from lineage.policy.model import Policy
from lineage.state import EdgeAggregate, EdgeKey

__all__ = ["build_graph", "merge_partials", "node_id"]


def node_id(kind: str, ident: str) -> str:
    return f"{kind}:{ident}"


def merge_partials(
    partials: Iterable[tuple[EdgeKey, EdgeAggregate]],
) -> dict[EdgeKey, EdgeAggregate]:
    """Merge per-partition partials into one aggregate per edge (order does not matter)."""
    merged: dict[EdgeKey, EdgeAggregate] = {}
    for key, aggregate in partials:
        current = merged.get(key)
        merged[key] = (
            aggregate.merge(EdgeAggregate()) if current is None else current.merge(aggregate)
        )
    return merged


def _endpoint(policy: Policy, ident: str) -> tuple[str, dict[str, Any]]:
    if ident in policy.recipients:
        r = policy.recipients[ident]
        return node_id("recipient", ident), {
            "kind": "recipient",
            "label": r.name,
            "recipient_kind": r.kind.value,
            "country": r.country_code,
            "abroad": policy.abroad(r),
            "example": r.example,
        }
    if ident in policy.systems:
        return node_id("system", ident), {"kind": "system", "label": policy.systems[ident].label}
    return node_id("recipient", ident), {
        "kind": "recipient",
        "label": ident,
        "recipient_kind": "unknown",
        "country": "",
        "abroad": False,
        "example": False,
    }


def _system_node(policy: Policy, ident: str) -> tuple[str, dict[str, Any]]:
    label = policy.systems[ident].label if ident in policy.systems else ident
    return node_id("system", ident), {
        "kind": "system",
        "label": label,
        "count": 0,
        "breaches": {},
        "rules": {},
        "breach_count": 0,
    }


def _add_holdings(graph: nx.DiGraph, policy: Policy, system: str, agg: EdgeAggregate) -> None:
    """A system node, its event count and breaches, and a 'holds' edge per category it had."""
    sid, attrs = _system_node(policy, system)
    if sid not in graph:
        graph.add_node(sid, **attrs)
    node = graph.nodes[sid]
    node["count"] = node.get("count", 0) + agg.count
    node["breach_count"] = node.get("breach_count", 0) + agg.breaching
    breaches = dict(node.get("breaches", {}))
    for article, n in agg.breaches.items():
        breaches[article] = breaches.get(article, 0) + n
    node["breaches"] = dict(sorted(breaches.items()))
    rules = dict(node.get("rules", {}))
    for rule, n in agg.rules.items():
        rules[rule] = rules.get(rule, 0) + n
    node["rules"] = dict(sorted(rules.items()))
    for category, n in agg.categories.items():
        cid = node_id("category", category)
        known = policy.categories.get(category)
        if cid not in graph:
            graph.add_node(
                cid,
                kind="category",
                label=known.label if known else category,
                identifying=known.identifying if known else "unknown",
            )
        if graph.has_edge(cid, sid):
            graph.edges[cid, sid]["count"] += n
        else:
            graph.add_edge(cid, sid, relation="holds", count=n)


def build_graph(
    policy: Policy, edges: Mapping[EdgeKey, EdgeAggregate], *, generated_from: str = ""
) -> nx.DiGraph:
    """The lineage graph of merged edge aggregates, with node facts from the policy."""
    graph = nx.DiGraph(
        policy_name=policy.policy.name,
        policy_version=policy.version,
        generated_from=generated_from,
        home_country=policy.policy.home_country,
    )
    for (relation, src, dst), agg in sorted(edges.items()):
        if relation in ("system", "flow"):
            _add_holdings(graph, policy, src, agg)
        if relation == "system":
            continue
        src_id, src_attrs = (
            _endpoint(policy, src) if relation == "onward" else _system_node(policy, src)
        )
        dst_id, dst_attrs = _endpoint(policy, dst)
        for nid, attrs in ((src_id, src_attrs), (dst_id, dst_attrs)):
            if nid not in graph:
                graph.add_node(nid, **attrs)
        graph.add_edge(
            src_id,
            dst_id,
            relation=relation,
            count=agg.count,
            personal=agg.personal,
            categories=sorted(agg.categories),
            purposes=sorted(agg.purposes),
            legal_bases=sorted(agg.legal_bases),
            forms=sorted(agg.forms),
            actions=sorted(agg.actions),
            category_counts=agg.categories,
            purpose_counts=agg.purposes,
            legal_basis_counts=agg.legal_bases,
            first_seen=agg.first_seen.isoformat() if agg.first_seen else "",
            last_seen=agg.last_seen.isoformat() if agg.last_seen else "",
            breaches=dict(sorted(agg.breaches.items())),
            rules=dict(sorted(agg.rules.items())),
            breach_count=agg.breaching,
            days=dict(sorted(agg.days.items())),
            breach_days=dict(sorted(agg.breach_days.items())),
        )
    return graph
