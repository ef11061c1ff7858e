"""The HTML export in a real browser: Debian's headless Chromium runs the page's script,
and the screenshot shows the picture (with the red of a breaching flow).

Skipped where Chromium is missing, unless ``CI`` or ``LINEAGE_REQUIRE_BROWSER`` is set:
there a missing browser fails the run instead of hiding the check.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import networkx as nx
import pytest

from lineage.export import export_graph
from tests.test_export import BREACHING, demo_graph

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1400, 900
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # Let the page's script and the compositor finish before the DOM or pixels are taken.
    "--run-all-compositor-stages-before-draw",
    "--virtual-time-budget=5000",
]


def _chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found:
        return found
    if os.environ.get("CI") or os.environ.get("LINEAGE_REQUIRE_BROWSER"):
        pytest.fail("chromium is not installed (apt-get install -y chromium)")
    pytest.skip("chromium is not installed; set CI=1 to make this a failure")


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    return demo_graph()


@pytest.fixture(scope="module")
def page(graph: nx.DiGraph, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "lineage.html"
    path.write_text(export_graph(graph, "html"), encoding="utf-8")
    return path


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "profile"
    command = [_chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_script_runs_and_the_graph_is_drawn(graph: nx.DiGraph, page: Path, tmp_path: Path) -> None:
    done = _run(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri())
    dom = done.stdout
    assert 'id="app" data-ready="true"' in dom, "the page's script did not run to the end"
    errors = [x for x in done.stderr.splitlines() if ":CONSOLE" in x]
    assert not errors, errors  # the script logs nothing: no exception, no warning
    assert f'data-nodes="{graph.number_of_nodes()}"' in dom
    assert f'data-edges="{graph.number_of_edges()}"' in dom
    for node in graph.nodes:
        assert f'data-node="{html.escape(node)}"' in dom, node
    for source, target in BREACHING:
        assert f'data-source="{source}" data-target="{target}"' in dom
    assert dom.count('class="line breach"') == len(BREACHING)
    assert ">Art. 9</text>" in dom
    assert 'data-filter="all"' in dom


def test_deep_link_filters_and_opens_details(page: Path, tmp_path: Path) -> None:
    link = page.as_uri() + "#article=9&flow=system:crm%3Erecipient:market-research"
    dom = _run(tmp_path, "--dump-dom", link).stdout
    assert 'data-filter="9"' in dom
    assert "Breaks Art. 9" in dom  # the details drawer of the flow
    assert "art9.no-consent" in dom
    # The Art. 10 flow is filtered out; the Art. 9 flows are not.
    assert 'class="edge flow breach off" data-edge' in dom
    assert dom.count('class="edge flow breach hl selected"') == 1


def _pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB(A) rows of an 8-bit truecolour PNG (what Chromium writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        size, kind = struct.unpack(">I4s", png[pos : pos + 8])
        body = png[pos + 8 : pos + 8 + size]
        pos += 12 + size
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i] for i in range(len(r)) if i % bpp < 3) for r in rows]


def _screenshot(page: Path, tmp: Path) -> list[bytes]:
    """The RGB rows of the top WIDTH x HEIGHT pixels of ``page`` as Chromium draws it.

    Headless Chromium 156 can take its screenshot before it has drawn the window's last
    row of tiles (256 px high): about one shot in four of the replay page left part of
    the bottom white, where the first table's red is. The window is taller by more than
    a row, and only its top HEIGHT pixels are read: drawn whole in 24 shots of 24.
    """
    shot = tmp / "shot.png"
    _run(tmp, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT + 400}", page.as_uri())
    assert shot.exists() and shot.stat().st_size > 20_000
    width, height, rows = _pixels(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT + 400)
    return rows[:HEIGHT]


def test_screenshot_shows_the_picture(page: Path, tmp_path: Path) -> None:
    rows = _screenshot(page, tmp_path)
    pixels = [row[i : i + 3] for row in rows[::3] for i in range(0, len(row), 9)]
    colours = set(pixels)
    assert len(colours) > 200, "the screenshot is (nearly) blank"
    # The breach red (#d92d20, anti-aliased) is on screen: breaching flows and badges.
    red = sum(1 for r, g, b in pixels if r > 190 and g < 90 and b < 80)
    assert red > 100, red
    # The recipient kind colours too: the warm fill of the ad providers.
    assert any(r > 240 and 230 < g < 250 and b < 240 for r, g, b in pixels)


# -- the officer's other pages: nothing clipped, nothing over the edge ---------------------------

#: Added to a copy of a page: measures every element and writes what sticks out (past the
#: window, or past the body's content box) into ``data-check`` on <body>.
_MEASURE = """<script>
(function () {
  var view = document.documentElement.clientWidth;
  var body = document.body.getBoundingClientRect();
  var pad = parseFloat(getComputedStyle(document.body).paddingRight) || 0;
  var edge = Math.min(view, body.right - pad) + 0.5;
  var out = { view: view, scroll: document.documentElement.scrollWidth, over: [], clipped: [] };
  document.querySelectorAll("body *").forEach(function (el) {
    if (el.tagName === "SCRIPT") return;
    var r = el.getBoundingClientRect();
    var name = el.tagName + "." + el.className;
    if (r.width > 0 && r.right > edge) out.over.push(name + " " + el.textContent.slice(0, 40));
    var clips = getComputedStyle(el).overflowX !== "visible";
    if (clips && el.scrollWidth > el.clientWidth + 1) out.clipped.push(name);
  });
  document.body.setAttribute("data-check", JSON.stringify(out));
}());
</script>"""


def measured(page: str, tmp: Path, width: int, height: int = 1200) -> dict[str, object]:
    """What sticks out of ``page`` in a window ``width`` CSS pixels wide."""
    copy = tmp / f"measured-{width}.html"
    copy.write_text(page.replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    dom = _run(tmp, f"--window-size={width},{height}", "--dump-dom", copy.as_uri()).stdout
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found, "the measuring script did not run"
    result: dict[str, object] = json.loads(html.unescape(found.group(1)))
    return result


def a_long_subject_answer() -> dict[str, object]:
    """An answer at its widest: long names, ids and subject, many categories and breaches."""
    long_id = "u-" + "7f3c9a" * 20
    recipients = [
        {
            "recipient": f"recipient-with-a-long-identifier-{n}.example-partner.co.jp",
            "name": "Example Overseas Advertising Measurement and Audience Exchange Pte. Ltd.",
            "kind": kind,
            "country": "SG",
            "categories": [f"activity.category_number_{i}" for i in range(10)],
            "purposes": ["targeted_advertising", "statistics", "service_operation"],
            "legal_bases": ["consent", "outsourcing", "unstated"],
            "first_at": "2026-11-20T00:01:47.890000+09:00",
            "last_at": "2026-11-27T23:58:12.120000+09:00",
            "events": 12345,
            "breaches": [
                "art10.no-conditions",
                "art10.onward",
                "art10.identifiable",
                "appi28.foreign-no-basis",
                "art9.unknown-recipient",
                "art6.raw-personal-data",
            ],
            "forms": forms,
        }
        for n, (kind, forms) in enumerate(
            [("ad_provider", ["pseudonymized"]), ("third_party", ["identified", "aggregated"])]
        )
    ]
    return {
        "subject": long_id,
        "policy_version": "2020-07-01",
        "as_of": "2026-11-30T09:00:00+00:00",
        "recipients": recipients,
        "consents": [
            {
                "recipient": "*",
                "purposes": ["targeted_advertising", "statistics"],
                "status": "withdrawn",
                "occurred_at": "2026-11-21T10:00:00+09:00",
                "reference": "cmp-" + "0123456789" * 8,
            }
        ],
        "provision_records": ["8912afefbc7a91b818c0399527c8c474"] * 6,
        "notify_on_correction": [recipients[1]["recipient"]],
    }


@pytest.mark.parametrize("width", [1400, 680], ids=["screen-1400px", "a4-printable-width"])
def test_the_subject_page_fits_its_width(tmp_path: Path, width: int) -> None:
    """680 CSS pixels is the printable width of A4 portrait (210 mm less 2 x 15 mm)."""
    from lineage.subjects import render_html

    check = measured(render_html(a_long_subject_answer()), tmp_path, width)
    assert check["scroll"] == check["view"], check
    assert check["over"] == [] and check["clipped"] == [], check


def test_the_subject_page_prints_on_a4_portrait(tmp_path: Path) -> None:
    from lineage.subjects import render_html

    page = tmp_path / "subject.html"
    page.write_text(render_html(a_long_subject_answer()), encoding="utf-8")
    pdf = tmp_path / "subject.pdf"
    _run(tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri())
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    boxes = set(re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data))
    assert boxes, "no page size in the PDF"
    for w, h in boxes:  # A4 portrait: 595 x 842 points
        assert abs(float(w) - 595.3) < 2 and abs(float(h) - 841.9) < 2, (w, h)


@pytest.fixture(scope="module")
def replay_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """replay.html of the demo day: the seed policy against a revision with breaches that
    begin and end."""
    from lineage.demo import generate_day
    from lineage.policy import DEFAULT_POLICY, load_policy, load_policy_text
    from lineage.redact import Redactor
    from lineage.replay import Message, replay

    text = DEFAULT_POLICY.read_text()
    text = text.replace("expires_on: 2026-04-30", "expires_on: 2027-04-30")
    text = text.replace(
        "    kind: third_party\n    country: JP", "    kind: third_party\n    country: CN"
    )
    revised = load_policy_text(text.replace('version: "2020-07-01"', 'version: "2026-12-01"'))
    out = tmp_path_factory.mktemp("replay")
    lines = generate_day(events=4000, seed=7)
    messages = (Message(raw, f"demo:{n}") for n, raw in enumerate(lines, 1))
    report = replay(load_policy(), revised, messages, out, redactor=Redactor(b"k"))
    return out / "replay.html", report.summary


def test_the_replay_page_reads_as_a_brief_and_fits_the_screen(
    replay_page: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    page, summary = replay_page
    added, removed = summary["added"], summary["removed"]
    assert isinstance(added, dict) and isinstance(removed, dict)
    assert added["alerts"] and removed["alerts"]
    done = _run(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri())
    dom = done.stdout
    assert not [x for x in done.stderr.splitlines() if ":CONSOLE" in x]
    # In the order an officer reads it: the policy, who gains or loses, the flows, records.
    order = [
        dom.index(h)
        for h in (
            "1. What changed in the policy",
            "2. Who gains or loses breaches",
            "3. Flows that change",
            "4. Records of provision",
        )
    ]
    assert order == sorted(order)
    assert f'<div class="stat-value">{added["alerts"]:,}</div>' in dom
    assert 'data-recipient="market-research"' in dom  # gains an APPI Art. 28 breach
    assert 'data-recipient="support-outsourcer"' in dom  # its agreement renewed: breaches end
    assert "appi28.foreign-no-basis" in dom and "art6.no-agreement" in dom
    assert "recipients.<wbr>market-research.<wbr>country" in dom
    assert re.search(r'class="samples">demo-\d+', dom)  # example event ids to look up
    for url in re.findall(r'(?:src|href)="([^"]+)"', page.read_text()):
        raise AssertionError(f"the page loads {url}: it must work offline")
    for width in (1400, 1024):
        check = measured(page.read_text(), tmp_path, width)
        assert check["scroll"] == check["view"], (width, check)
        assert check["over"] == [] and check["clipped"] == [], (width, check)


def test_the_replay_page_screenshot_shows_gains_and_losses(
    replay_page: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    page, _ = replay_page
    rows = _screenshot(page, tmp_path)
    pixels = [row[i : i + 3] for row in rows[::3] for i in range(0, len(row), 9)]
    assert len(set(pixels)) > 100, "the screenshot is (nearly) blank"
    red = sum(1 for r, g, b in pixels if r > 190 and g < 90 and b < 80)  # alerts added
    green = sum(1 for r, g, b in pixels if r < 60 and 100 < g < 140 and b < 100)  # removed
    assert red > 20 and green > 3, (red, green)


_GRAPH_CHECK = """<script>
window.addEventListener("load", function () {
  var out = { overlaps: [], cut: [], overflow: [] };
  var boxes = Array.prototype.map.call(document.querySelectorAll(".node"), function (g) {
    var rect = g.querySelector("rect.box");
    return { id: g.getAttribute("data-node"), r: rect.getBoundingClientRect() };
  });
  document.querySelectorAll(".badge rect").forEach(function (rect) {
    var b = rect.getBoundingClientRect();
    boxes.forEach(function (box) {
      var r = box.r;
      if (b.left < r.right && b.right > r.left && b.top < r.bottom && b.bottom > r.top) {
        out.overlaps.push(rect.parentNode.getAttribute("data-edge") + " on " + box.id);
      }
    });
  });
  document.querySelectorAll(".node").forEach(function (g) {
    var box = g.querySelector("rect.box").getBoundingClientRect();
    g.querySelectorAll("text.label, text.sub").forEach(function (t) {
      if (t.textContent.indexOf("\\u2026") >= 0) out.cut.push(t.textContent);
      if (t.getBoundingClientRect().right > box.right - 4) out.overflow.push(t.textContent);
    });
  });
  document.body.setAttribute("data-check", JSON.stringify(out));
});
</script>"""


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lineage.demo import generate_day
    from lineage.policy import load_policy
    from lineage.redact import Redactor
    from lineage.run import run_embedded

    out = tmp_path_factory.mktemp("demo")
    run_embedded(load_policy(), generate_day(), out, redactor=Redactor(b"k"))
    return out


def test_the_demo_graph_keeps_badges_off_boxes_and_names_whole(
    demo_run: Path, tmp_path: Path
) -> None:
    page = (demo_run / "lineage.html").read_text()
    copy = tmp_path / "checked.html"
    copy.write_text(page.replace("</body>", _GRAPH_CHECK + "</body>"), encoding="utf-8")
    dom = _run(tmp_path, f"--window-size={WIDTH},{HEIGHT}", "--dump-dom", copy.as_uri()).stdout
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found, "the checking script did not run"
    check = json.loads(html.unescape(found.group(1)))
    assert check == {"overlaps": [], "cut": [], "overflow": []}


def test_the_demo_page_counts_alerts_as_the_command_line_does(demo_run: Path) -> None:
    """The header's alerts are the run's alerts less its retractions, article by article."""
    import orjson

    last: dict[str, dict[str, str]] = {}
    for line in (demo_run / "alerts.jsonl").read_bytes().splitlines():
        alert = orjson.loads(line)
        last[alert["alert_id"]] = alert
    standing: dict[str, int] = {}
    for alert in last.values():
        if alert["status"] == "open":
            standing[alert["article"]] = standing.get(alert["article"], 0) + 1
    page = (demo_run / "lineage.html").read_text()
    block = re.search(
        r'<script type="application/json" id="lineage-data">(.*?)</script>', page, re.S
    )
    assert block is not None
    summary = json.loads(block.group(1))["summary"]
    assert summary["alerts"] == sum(standing.values())
    assert {a: row["alerts"] for a, row in summary["by_article"].items()} == standing
    assert "2" in summary["by_article"]  # the demo collects an undeclared category
    assert f'<div class="stat-value">{sum(standing.values()):,}</div>' in page
