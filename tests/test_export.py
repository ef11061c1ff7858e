"""The graph exports: GraphML, node-link JSON, DOT, Mermaid and the HTML page."""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import networkx as nx
import pytest

from lineage.export import EXTENSIONS, FORMATS, export_graph, write_exports
from lineage.export.dot import quote
from lineage.export.graphml import flatten
from lineage.export.layout import LANE, columns, layout
from lineage.export.mermaid import escape
from lineage.graph import build_graph
from lineage.policy import load_policy
from lineage.state import EdgeAggregate, EdgeKey

JST = timezone(timedelta(hours=9))
START = datetime(2026, 7, 1, 8, 0, tzinfo=JST)
XSS = "<script>alert(1)</script>"

# (events, categories, purpose, legal basis, form, [(rule, article)] each event raised)
Batch = tuple[int, list[str], str, str, str, list[tuple[str, str]]]


def batch(
    events: int, categories: str, purpose: str, basis: str = "none", breaks: str = ""
) -> Batch:
    """``batch(25, "identity.name contact.email", "statistics", breaks="art9.no-consent@9")``"""
    form = "pseudonymized" if basis == "consent" and "identity.name" not in categories else ""
    rules = [(rule, article) for rule, article in (r.split("@") for r in breaks.split())]
    return (events, categories.split(), purpose, basis, form or "identified", rules)


def aggregate(*batches: Batch, action: str = "transfer") -> EdgeAggregate:
    """An edge aggregate filled the way the engine fills it, one event at a time."""
    agg = EdgeAggregate()
    for events, categories, purpose, basis, form, rules in batches:
        for i in range(events):
            shape = (tuple(categories), purpose, basis, form, action)
            agg.add(START + timedelta(minutes=7 * i), shape, True, list(rules))
    return agg


NOTICES, OPS, STATS, ADS = (
    "contact_and_notices",
    "service_operation",
    "statistics",
    "targeted_advertising",
)
AD_DATA = "device.id activity.viewing_history"

#: A day of the demo fleet: 7 systems, recipients of every kind (one unknown), 15 flows,
#: 6 of them breaching Art. 6, 7, 9 or 10.
DEMO: dict[EdgeKey, EdgeAggregate] = {
    ("flow", "web-frontend", "analytics-module"): aggregate(
        batch(300, "device.cookie activity.site_history", STATS, "consent")
    ),
    ("flow", "web-frontend", "crm"): aggregate(batch(150, "identity.name contact.email", NOTICES)),
    ("flow", "checkout", "payments"): aggregate(
        batch(120, "identity.name financial.credit_card contact.address", OPS)
    ),
    ("flow", "checkout", "crm"): aggregate(
        batch(118, "identity.name contact.email activity.purchase_history", NOTICES)
    ),
    ("flow", "payments", "payment-processor"): aggregate(
        batch(110, "identity.name financial.credit_card", OPS, "outsourcing")
    ),
    ("onward", "payment-processor", "card-network"): aggregate(
        batch(100, "identity.name financial.credit_card", OPS, "outsourcing")
    ),
    ("flow", "crm", "mail-delivery"): aggregate(
        batch(195, "identity.name contact.email", NOTICES, "outsourcing"),
        batch(5, "contact.email", NOTICES, "outsourcing", breaks="art6.unencrypted@6"),
    ),
    ("flow", "support-desk", "support-outsourcer"): aggregate(
        batch(
            40,
            "identity.name contact.phone contact.email",
            NOTICES,
            "outsourcing",
            breaks="art6.no-agreement@6 art6.unsupervised@6",
        )
    ),
    ("flow", "crm", "audiostock-artists"): aggregate(
        batch(
            68,
            "identity.name contact.email activity.purchase_history",
            "affiliate_services",
            "joint_use",
        ),
        batch(
            12,
            "identity.name identity.date_of_birth",
            "affiliate_services",
            "joint_use",
            breaks="art7.category-not-announced@7",
        ),
    ),
    ("flow", "ad-gateway", "ad-network"): aggregate(
        batch(220, AD_DATA, ADS, "consent"),
        batch(30, AD_DATA, STATS, "consent", breaks="art10.purpose@10"),
    ),
    ("onward", "ad-network", "ad-exchange"): aggregate(batch(90, AD_DATA, ADS, "consent")),
    ("flow", "analytics-sdk", "analytics-module"): aggregate(
        batch(400, "device.id activity.site_history", STATS, "consent")
    ),
    ("flow", "crm", "market-research"): aggregate(
        batch(35, "identity.name identity.sex contact.postal_code", STATS, "consent"),
        batch(
            25,
            "identity.name identity.date_of_birth contact.postal_code",
            STATS,
            breaks="art9.no-consent@9",
        ),
    ),
    ("flow", "support-desk", "police"): aggregate(
        batch(3, "identity.name contact.address contact.phone", "legal_obligation", "exception")
    ),
    ("flow", "analytics-sdk", "tracker.example-cdn.io"): aggregate(
        batch(75, "device.id activity.ip_address", STATS, breaks="art9.unknown-recipient@9")
    ),
    ("system", "checkout", ""): aggregate(
        batch(500, "activity.purchase_history activity.request_time", OPS), action="use"
    ),
}

BREACHING = {
    ("system:crm", "recipient:mail-delivery"),
    ("system:support-desk", "recipient:support-outsourcer"),
    ("system:crm", "recipient:audiostock-artists"),
    ("system:ad-gateway", "recipient:ad-network"),
    ("system:crm", "recipient:market-research"),
    ("system:analytics-sdk", "recipient:tracker.example-cdn.io"),
}


def demo_graph(extra: Iterable[tuple[EdgeKey, EdgeAggregate]] = ()) -> nx.DiGraph:
    """The demo fleet's lineage graph under the shipped default policy."""
    return build_graph(load_policy(), {**DEMO, **dict(extra)}, generated_from="demo-2026-07-01")


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    return demo_graph()


@pytest.fixture(scope="module")
def hostile() -> nx.DiGraph:
    """A graph whose unknown recipient is named like markup, quotes and Mermaid syntax."""
    weird = f'{XSS}"a|b"#x;`'
    agg = aggregate(batch(4, "identity.name", STATS, breaks="art9.unknown-recipient@9"))
    return demo_graph([(("flow", "crm", weird), agg)])


def test_the_demo_graph_is_what_the_tests_think(graph: nx.DiGraph) -> None:
    flows = {(u, v) for u, v, a in graph.edges(data=True) if a["relation"] != "holds"}
    assert len(flows) == 15
    assert {(u, v) for u, v in flows if graph.edges[u, v]["breach_count"]} == BREACHING
    kinds = {a.get("recipient_kind") for _, a in graph.nodes(data=True) if a["kind"] == "recipient"}
    assert kinds >= {
        "outsourcer",
        "affiliate",
        "ad_provider",
        "info_module",
        "third_party",
        "authority",
        "unknown",
    }


# -- dispatch ----------------------------------------------------------------------------------


def test_unknown_format_names_it_and_the_known_ones(graph: nx.DiGraph) -> None:
    with pytest.raises(ValueError, match=r"'png'.*graphml, json, dot, mermaid, html"):
        export_graph(graph, "png")


def test_every_format_has_an_extension() -> None:
    assert set(EXTENSIONS) == set(FORMATS)


def test_write_exports_writes_every_file(graph: nx.DiGraph, tmp_path: Path) -> None:
    written = write_exports(graph, tmp_path / "out")
    assert set(written) == set(FORMATS)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(
        [
            "lineage.graphml",
            "lineage.json",
            "lineage.dot",
            "lineage.mmd",
            "lineage.html",
            "lineage.openlineage.jsonl",
        ]
    )
    for fmt, path in written.items():
        assert path.read_text(encoding="utf-8") == export_graph(graph, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_exports_are_stable(graph: nx.DiGraph, fmt: str) -> None:
    assert export_graph(graph, fmt) == export_graph(demo_graph(), fmt)


# -- GraphML -----------------------------------------------------------------------------------


def test_flatten_keeps_scalars_and_flattens_containers() -> None:
    assert flatten(["a", "b"]) == "a,b"
    assert flatten({"9": 3, "10": 1}) == '{"10":1,"9":3}'
    assert flatten(7) == 7 and flatten(True) is True and flatten("x") == "x"
    assert flatten([]) == ""


def test_graphml_round_trips(graph: nx.DiGraph) -> None:
    text = export_graph(graph, "graphml")
    back = nx.read_graphml(io.BytesIO(text.encode("utf-8")))
    assert set(back.nodes) == set(graph.nodes)
    assert set(back.edges) == set(graph.edges)
    assert back.graph["policy_name"] == "Audiostock Privacy Policy"

    edge = back.edges["system:crm", "recipient:market-research"]
    source = graph.edges["system:crm", "recipient:market-research"]
    assert edge["count"] == 60 and isinstance(edge["count"], int)
    assert edge["categories"] == ",".join(source["categories"])
    assert json.loads(edge["breaches"]) == {"9": 25}
    assert json.loads(edge["rules"]) == {"art9.no-consent": 25}
    assert json.loads(edge["category_counts"]) == source["category_counts"]
    assert edge["first_seen"] == source["first_seen"]

    node = back.nodes["recipient:police"]
    assert node["recipient_kind"] == "authority"
    assert node["example"] is True
    assert back.nodes["system:crm"]["count"] == graph.nodes["system:crm"]["count"]
    assert json.loads(back.nodes["system:crm"]["breaches"]) == {"6": 5, "7": 12, "9": 25}


def test_graphml_of_the_hostile_graph_round_trips(hostile: nx.DiGraph) -> None:
    back = nx.read_graphml(io.BytesIO(export_graph(hostile, "graphml").encode("utf-8")))
    assert set(back.nodes) == set(hostile.nodes)


def test_graphml_is_well_formed_xml_whatever_a_label_holds() -> None:
    # The loader refuses these characters in policy files; a Policy built another way,
    # and ids from anywhere, must still give a file an XML parser reads.
    import xml.etree.ElementTree as ET

    import yaml

    from lineage.policy import DEFAULT_POLICY, Policy

    data = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    data["policy"]["name"] = "Policy\x00\x1b[2J\ufffe"
    data["categories"]["identity.name"]["label"] = "Name\x01\x08\x0b\x0c\uffff\u202e"
    policy = Policy.model_validate(data)
    agg = aggregate(batch(4, "identity.name", STATS, breaks="art9.unknown-recipient@9"))
    hostile = build_graph(
        policy, {**DEMO, ("flow", "crm", "odd\x02\ud800id"): agg}, generated_from="t"
    )
    text = export_graph(hostile, "graphml")
    root = ET.fromstring(text.encode("utf-8"))  # raised "not well-formed (invalid token)"
    assert root.tag.endswith("graphml")
    back = nx.read_graphml(io.BytesIO(text.encode("utf-8")))
    assert back.graph["policy_name"] == "Policy\\x00\\x1b[2J\\ufffe"
    assert back.nodes["category:identity.name"]["label"] == (
        "Name\\x01\\x08\\x0b\\x0c\\uffff\u202e"  # U+202E is XML; kept
    )
    assert "recipient:odd\\x02\\ud800id" in back.nodes
    assert back.number_of_nodes() == hostile.number_of_nodes()


# -- node-link JSON ----------------------------------------------------------------------------


def test_json_has_nodes_links_and_format(graph: nx.DiGraph) -> None:
    data = json.loads(export_graph(graph, "json"))
    assert data["format"] == "privacy-lineage/node-link"
    assert data["version"] == 1
    assert data["policy_version"] == "2020-07-01"
    assert data["graph"]["generated_from"] == "demo-2026-07-01"
    assert [n["id"] for n in data["nodes"]] == sorted(graph.nodes)
    assert len(data["links"]) == graph.number_of_edges()
    link = next(
        e
        for e in data["links"]
        if (e["source"], e["target"]) == ("system:ad-gateway", "recipient:ad-network")
    )
    assert link["categories"] == ["activity.viewing_history", "device.id"]
    assert link["breaches"] == {"10": 30}


def test_json_reads_back_with_networkx(graph: nx.DiGraph) -> None:
    back = nx.node_link_graph(json.loads(export_graph(graph, "json")), edges="links")
    assert set(back.edges) == set(graph.edges)
    assert back.nodes["recipient:tracker.example-cdn.io"]["recipient_kind"] == "unknown"


def test_json_text_is_sorted_and_indented(graph: nx.DiGraph) -> None:
    text = export_graph(graph, "json")
    assert text.startswith("{\n  ")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- DOT ---------------------------------------------------------------------------------------


def test_dot_quotes_and_escapes() -> None:
    assert quote('say "hi"') == '"say \\"hi\\""'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote("two\nlines") == '"two\\nlines"'


def test_dot_has_every_node_and_ranks(graph: nx.DiGraph) -> None:
    text = export_graph(graph, "dot")
    assert text.startswith("digraph lineage {") and text.rstrip().endswith("}")
    assert 'rankdir="LR"' in text
    for node in graph.nodes:
        assert f"{quote(node)} [" in text
    assert text.count("rank=same;") == len(columns(graph))


def test_dot_draws_breaching_flows_red_and_bold(graph: nx.DiGraph) -> None:
    lines = export_graph(graph, "dot").splitlines()
    for u, v in graph.edges:
        line = next(x for x in lines if x.strip().startswith(f"{quote(u)} -> {quote(v)} "))
        red = 'color="#d92d20"' in line
        assert red == ((u, v) in BREACHING), line
    line = next(x for x in lines if '"system:crm" -> "recipient:market-research"' in x)
    assert "bold" in line and "breaks Art. 9" in line and "60 events" in line
    line = next(x for x in lines if '"system:support-desk" -> "recipient:support-outsourcer"' in x)
    assert "breaks Art. 6" in line
    assert "+1 more" not in line  # three categories are shown in full


def test_dot_abbreviates_long_category_lists() -> None:
    cats = "identity.name contact.email contact.phone contact.address identity.sex"
    agg = aggregate(batch(2, cats, "legal_obligation", "exception"))
    text = export_graph(demo_graph([(("flow", "crm", "police"), agg)]), "dot")
    line = next(x for x in text.splitlines() if '"system:crm" -> "recipient:police"' in x)
    assert "+2 more" in line and "2 events" in line


def test_dot_survives_hostile_labels(hostile: nx.DiGraph) -> None:
    text = export_graph(hostile, "dot")
    weird = next(n for n in hostile.nodes if XSS in n)
    assert quote(weird) in text
    # Every double quote inside a quoted string is escaped: quotes pair up per line.
    for line in text.splitlines():
        assert len(re.findall(r'(?<!\\)"', line)) % 2 == 0, line


# -- Mermaid -----------------------------------------------------------------------------------


def test_mermaid_escape() -> None:
    assert escape('a "b" <c>') == "a #quot;b#quot; #lt;c#gt;"
    assert escape("x|y#") == "x#124;y#35;"


def test_mermaid_flowchart(graph: nx.DiGraph) -> None:
    text = export_graph(graph, "mermaid")
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    nodes = [x.strip() for x in lines if re.match(r"\s+n\d+[\[(]", x)]
    assert len(nodes) == graph.number_of_nodes()
    links = [x.strip() for x in lines if re.match(r"\s+n\d+ (-->|==>|-\.->|---)", x)]
    assert len(links) == graph.number_of_edges()
    for link in links:
        source, _, rest = link.partition(" ")
        target = rest.rsplit(" ", 1)[-1]
        assert re.fullmatch(r"n\d+", source) and re.fullmatch(r"n\d+", target), link
    # The comment lines map the short ids back; every real id is there.
    for node in graph.nodes:
        assert f"= {node}" in text


def test_mermaid_styles_kinds_and_breaches(graph: nx.DiGraph) -> None:
    text = export_graph(graph, "mermaid")
    for kind in (
        "outsourcer",
        "affiliate",
        "ad_provider",
        "info_module",
        "third_party",
        "authority",
        "unknown",
    ):
        assert f"classDef k_{kind} " in text
    links = [x.strip() for x in text.splitlines() if re.match(r"\s+n\d+ (-->|==>|-\.->|---)", x)]
    red = next(x for x in text.splitlines() if "stroke:#d92d20" in x)
    indexes = {int(i) for i in red.split()[1].split(",")}
    assert {i for i, link in enumerate(links) if "breaks Art." in link} == indexes
    assert len(indexes) == len(BREACHING)


def test_mermaid_survives_hostile_labels(hostile: nx.DiGraph) -> None:
    text = export_graph(hostile, "mermaid")
    assert XSS not in text and "#lt;script#gt;" in text
    for line in text.splitlines():
        if not line.strip().startswith("%%"):
            assert line.count('"') % 2 == 0, line


# -- HTML --------------------------------------------------------------------------------------


def _data_block(page: str) -> str:
    found = re.search(
        r'<script type="application/json" id="lineage-data">(.*?)</script>', page, re.S
    )
    assert found, "no data block"
    return found.group(1)


def test_html_is_self_contained(graph: nx.DiGraph) -> None:
    page = export_graph(graph, "html")
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(//|[a-z]+:)""", page, re.I)
    assert "<link" not in page and "@import" not in page and "url(http" not in page
    assert "{{" not in page  # every template slot was filled


def test_html_embeds_the_graph_as_json(graph: nx.DiGraph) -> None:
    data = json.loads(_data_block(export_graph(graph, "html")))
    assert {n["id"] for n in data["nodes"]} == set(graph.nodes)
    assert {(e["source"], e["target"]) for e in data["edges"]} == set(graph.edges)
    assert data["graph"]["policy_name"] == "Audiostock Privacy Policy"
    assert data["summary"]["flows"] == 15
    assert data["summary"]["breaching_flows"] == len(BREACHING)
    assert data["summary"]["by_article"]["9"] == {"flows": 2, "events": 100, "alerts": 100}


def test_html_draws_every_node_and_the_breaches(graph: nx.DiGraph) -> None:
    page = export_graph(graph, "html")
    for node in graph.nodes:
        assert f'data-node="{node}"' in page
    assert page.count('class="line breach"') == len(BREACHING)
    assert page.count('<g class="badge"') == len(BREACHING)
    assert ">Art. 10</text>" in page and ">Art. 9</text>" in page
    # The header summary: policy, version, breaching flows per article.
    assert "Audiostock Privacy Policy" in page and "version 2020-07-01" in page
    assert '<li data-article="9">' in page


def test_html_counts_alerts_as_lineage_run_does_and_breaches_of_own_use() -> None:
    """The header names both counts: events that broke an article, and alerts (one per
    event and rule, what `lineage run` counts less retractions); a system's own use (Art. 2
    here: an undeclared category collected) has its row though it is no flow."""
    edges = dict(DEMO)
    edges["system", "web-frontend", ""] = aggregate(
        batch(35, "identity.my_number", OPS, breaks="art2.undeclared-category@2"), action="collect"
    )
    edges["flow", "crm", "audiostock-artists"] = aggregate(
        batch(
            12,
            "identity.name identity.date_of_birth",
            "affiliate_services",
            "joint_use",
            breaks="art7.category-not-announced@7 art7.purpose-not-announced@7",
        )
    )
    summary = json.loads(_data_block(export_graph(build_graph(load_policy(), edges), "html")))[
        "summary"
    ]
    assert summary["by_article"]["2"] == {"flows": 0, "events": 35, "alerts": 35}
    assert summary["by_article"]["7"] == {"flows": 1, "events": 12, "alerts": 24}
    rules = sum(len(agg.rules) and sum(agg.rules.values()) for agg in edges.values())
    assert summary["alerts"] == rules
    events = sum(agg.breaching for key, agg in edges.items())
    assert summary["alert_events"] == events
    page = export_graph(build_graph(load_policy(), edges), "html")
    assert '<li class="own-use"><span class="art">Art. 2</span>' in page
    assert '<option value="2">' not in page  # nothing to filter the picture by


def test_boxes_grow_to_whole_names_and_badges_sit_between_columns(graph: nx.DiGraph) -> None:
    from lineage.export.html import _badge_text, _badge_w, box_widths, column_gap

    policy = load_policy()
    long_name = "Audiostock Artists service operator"
    assert policy.recipients["audiostock-artists"].name == long_name
    page = export_graph(graph, "html")
    labels = re.findall(r'<text class="label"[^>]*>([^<]*)</text>', page)
    assert labels and not [x for x in labels if x.endswith("…")]
    assert f">{long_name}</text>" in page
    lay = layout(graph, box_widths(graph), column_gap(graph))
    boxes = [b for n, b in lay.boxes.items() if not n.startswith(LANE)]
    badges = 0
    for path in lay.edges:
        attrs = graph.edges[path.source, path.target]
        if not attrs.get("breach_count"):
            continue
        badges += 1
        half = _badge_w(_badge_text(attrs)) / 2
        for box in boxes:
            apart_x = path.badge_x + half <= box.x or path.badge_x - half >= box.x + box.w
            apart_y = path.badge_y + 9 <= box.y or path.badge_y - 9 >= box.y + box.h
            assert apart_x or apart_y, (path.source, path.target, box)
    assert badges == len(BREACHING)


def test_html_escapes_data(hostile: nx.DiGraph) -> None:
    page = export_graph(hostile, "html")
    assert XSS not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    block = _data_block(page)
    assert "</" not in block and "<" not in block
    weird = next(n for n in json.loads(block)["nodes"] if XSS in n["id"])
    assert weird["label"].startswith(XSS)


def test_html_without_breaches_says_so() -> None:
    lawful = {k: v for k, v in DEMO.items() if v.breaching == 0}
    page = export_graph(build_graph(load_policy(), lawful), "html")
    assert "No flow broke the policy." in page
    assert 'class="line breach"' not in page


def test_html_of_an_empty_graph() -> None:
    page = export_graph(build_graph(load_policy(), {}), "html")
    assert "<svg" in page and json.loads(_data_block(page))["nodes"] == []


# -- layout ------------------------------------------------------------------------------------


def test_layout_columns_run_left_to_right(graph: nx.DiGraph) -> None:
    cols = columns(graph)
    roles = [c.role for c in cols]
    assert roles == ["category", "system", "system", "recipient", "recipient"]
    where = {node: i for i, c in enumerate(cols) for node in c.nodes}
    assert where["system:checkout"] < where["system:payments"]  # fed by checkout
    assert where["recipient:payment-processor"] < where["recipient:card-network"]  # onward
    kinds = [graph.nodes[n]["recipient_kind"] for n in cols[3].nodes]
    assert kinds == sorted(
        kinds,
        key=[
            "outsourcer",
            "affiliate",
            "ad_provider",
            "info_module",
            "third_party",
            "authority",
            "unknown",
        ].index,
    )


def test_layout_boxes_do_not_overlap(graph: nx.DiGraph) -> None:
    lay = layout(graph)
    boxes = sorted(lay.boxes.values(), key=lambda b: (b.column, b.y))
    for a, b in itertools.pairwise(boxes):
        if a.column == b.column:
            assert a.y + a.h <= b.y
    assert all(b.x + b.w <= lay.width and b.y + b.h <= lay.height for b in boxes)
    # A flow that skips a column passes through a lane there, not through a box.
    assert any(slot.startswith(LANE) for slot in lay.boxes)
    assert len(lay.edges) == graph.number_of_edges()


def test_the_pictures_are_the_same_in_every_process(tmp_path: Path) -> None:
    # The layout orders boxes by the mean place of their neighbours, held in sets whose
    # order follows the string hash, which differs from one process to the next: the
    # pictures of one day must not.
    import os
    import subprocess
    import sys

    from bench.traffic import generate

    root = Path(__file__).resolve().parent.parent
    policy = root / "bench" / "policies" / "sakura-retail.yaml"
    day = tmp_path / "storm.jsonl"
    day.write_bytes(b"\n".join(generate(load_policy(policy), 3000, 0.9)) + b"\n")
    pictures = []
    for seed in ("1", "2", "3", "4"):
        out = tmp_path / f"out-{seed}"
        subprocess.run(
            [sys.executable, "-m", "lineage.cli", "run", "--policy", str(policy),
             "--source", str(day), "--out", str(out)],
            cwd=root, env={**os.environ, "PYTHONHASHSEED": seed}, check=True,
            capture_output=True,
        )  # fmt: skip
        names = ("lineage.dot", "lineage.mmd", "lineage.html")
        pictures.append({n: (out / n).read_bytes() for n in names})
    assert all(p == pictures[0] for p in pictures[1:])
