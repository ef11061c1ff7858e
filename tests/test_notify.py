"""Alert routing: routes files, CEF over syslog, apprise webhooks, the router, and its wiring.

Real endpoints on 127.0.0.1: an HTTP server (apprise's json:// and form:// post to it),
a UDP and a TCP syslog listener. Retries are asserted by counting attempts, never by
timing sleeps.
"""

from __future__ import annotations

import http.server
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson
import pytest
from click.testing import CliRunner

from lineage.cli import main
from lineage.demo import generate_day
from lineage.notify import Kind, Router, RoutesError, load_routes, load_routes_text
from lineage.notify.cef import cef_line, escape_extension, escape_header, syslog_message
from lineage.notify.errors import DeliveryFailed
from lineage.notify.router import backoff_delay, summary_line
from lineage.notify.routes import Delivery, Route, substitute, validate_route_name
from lineage.notify.text import body, title
from lineage.policy import Policy
from lineage.schemas import Alert, Incident
from tests.test_checkpoint import TOPICS, Harness, breach, partial_record

# -- records -----------------------------------------------------------------------------------


def alert(**fields: Any) -> dict[str, Any]:
    """An alert as published (checked against the contract's model)."""
    record: dict[str, Any] = {
        "alert_id": "a-1",
        "rule": "art9.no-consent",
        "article": "9",
        "severity": "high",
        "event_id": "e-1",
        "occurred_at": "2026-11-20T10:02:11+09:00",
        "source": "crm",
        "recipient": "market-research",
        "recipient_kind": "third_party",
        "subject": "u-secret-42",
        "categories": ["health.condition", "identity.name"],
        "policy_version": "2026-04-01",
        "message": "Health data went to market-research without consent (Art. 9).",
        "evidence": {"day": "2026-11-20"},
        "status": "open",
    }
    record.update(fields)
    Alert.model_validate(record)
    return record


def incident(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "incident_id": "inc-1",
        "rule": "art9.no-consent",
        "article": "9",
        "severity": "high",
        "source": "crm",
        "recipient": "market-research",
        "count": 12,
        "first_seen": "2026-11-20T01:00:00+09:00",
        "last_seen": "2026-11-20T10:00:00+09:00",
        "sample_event_ids": ["e-1", "e-2"],
        "status": "open",
    }
    record.update(fields)
    Incident.model_validate(record)
    return record


# -- endpoints ----------------------------------------------------------------------------------


class HookServer:
    """An HTTP server on 127.0.0.1 that records each request; it can fail the first
    ``fail_first`` with HTTP 500, or hold every request until ``release`` is set."""

    def __init__(self, fail_first: int = 0, hang: bool = False) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.times: list[float] = []  # time.monotonic() of each request
        self.fail_first = fail_first
        self.hang = hang
        self.release = threading.Event()
        self.arrived = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", 0))
                payload = self.rfile.read(size)
                server.requests.append((self.path, dict(self.headers), payload))
                server.times.append(time.monotonic())
                server.arrived.set()
                if server.hang:
                    server.release.wait(30)
                    return
                failing = len(server.requests) <= server.fail_first
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def envelopes(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for _, _, payload in self.requests]


class TcpListener:
    """A syslog collector on TCP: one message a line."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.data = b""
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            while chunk := conn.recv(65536):
                self.data += chunk

    def lines(self, n: int, timeout: float = 5.0) -> list[bytes]:
        end = time.monotonic() + timeout
        while self.data.count(b"\n") < n and time.monotonic() < end:
            time.sleep(0.01)
        return self.data.split(b"\n")[:n]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


# -- CEF, parsed back independently ---------------------------------------------------------

SYSLOG = re.compile(
    r"^<(?P<pri>\d+)>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\d+) (?P<msgid>\S+) - "
    r"(?P<msg>CEF:0\|.*)$",
    re.DOTALL,
)


def syslog_parts(message: bytes) -> dict[str, str]:
    """The RFC 5424 header fields and the MSG of one syslog message."""
    found = SYSLOG.match(message.decode())
    assert found is not None, message
    return found.groupdict()


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """(the 6 header fields after 'CEF:0', the extension) of a CEF line, unescaped."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while len(fields) < 7:
        char = line[i]
        if char == "\\":
            current.append(line[i + 1])
            i += 2
        elif char == "|":
            fields.append("".join(current))
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    assert fields[0] == "CEF:0"
    extension = line[i:]
    keys = list(re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", extension))
    out: dict[str, str] = {}
    for n, found in enumerate(keys):
        end = keys[n + 1].start() if n + 1 < len(keys) else len(extension)
        raw = extension[found.end() : end]
        out[found.group(1)] = re.sub(
            r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), raw
        )
    return fields[1:], out


# -- routes files -------------------------------------------------------------------------------

HOOK = """
routes:
  - name: hooks
    urls: ["json://127.0.0.1:{port}/alerts?+X-Token=${{HOOK_TOKEN}}"]
delivery:
  attempts: {attempts}
  backoff: {backoff}
"""


def hook_routes(port: int, attempts: int = 5, backoff: float = 0.02) -> Any:
    text = HOOK.format(port=port, attempts=attempts, backoff=backoff)
    return load_routes_text(text, "hooks.yaml", {"HOOK_TOKEN": "s3cret-t0ken"})


def problems_of(text: str, environ: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(RoutesError) as caught:
        load_routes_text(text, "routes.yaml", environ or {})
    return [str(p) for p in caught.value.problems]


def test_a_bad_key_or_type_is_refused_with_file_line_and_key() -> None:
    text = """routes:
  - name: pagers
    match:
      min_severity: urgent
      colour: red
    syslog:
      - host: siem.example.com
        port: "514"
"""
    assert problems_of(text) == [
        "routes.yaml:4: routes[0].match.min_severity: Input should be 'critical', 'high', "
        "'medium' or 'low' (got a string)",
        "routes.yaml:5: routes[0].match.colour: unknown key",
        "routes.yaml:8: routes[0].syslog[0].port: Input should be a valid integer (got a string)",
    ]


def test_names_rules_and_articles_are_checked_against_the_catalogue() -> None:
    text = """routes:
  - name: a
    match: {rules: [art9.no-consnt], articles: [9, 77]}
    syslog: [{host: siem}]
  - name: a
    syslog: [{host: siem}]
  - name: Bad Name
    syslog: [{host: siem}]
  - name: nowhere
"""
    name, nowhere = problems_of(text)  # shape first: references are checked on a good shape
    assert name.startswith("routes.yaml:7: routes[2].name: ") and "a route name is" in name
    assert nowhere.startswith("routes.yaml:9: routes[3]: ")
    assert nowhere.endswith("a route needs a destination: urls, syslog or both")
    found = problems_of(text.split("  - name: Bad Name")[0])
    assert found == [
        "routes.yaml:3: routes[0].match.rules[0]: not a rule id of the catalogue "
        "(did you mean 'art9.no-consent'?)",
        "routes.yaml:3: routes[0].match.articles[1]: not an article of the rules "
        "(they cover 2, 3, 6, 7, 8, 9, 10, APPI-28)",
        "routes.yaml:5: routes[1].name: this route name is used twice (first on line 2)",
    ]


def test_unsafe_yaml_is_refused_as_in_policy_files() -> None:
    text = "routes:\n  - &r {name: a, syslog: [{host: s}]}\n  - *r\n"
    (only,) = problems_of(text)
    assert only.startswith("routes.yaml:2: (yaml): anchor &r: routes files take no anchors")
    assert problems_of("routes: []\nroutes: []\n")[0].endswith("routes: duplicate key")


def test_variables_are_substituted_and_a_missing_one_is_refused_by_name(tmp_path: Path) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(
        "routes:\n"
        "  - name: chat\n"
        "    urls:\n"
        '      - "json://hooks.example.com/${HOOK_PATH}?+Authorization=Bearer%20${TOKEN}"\n'
        '      - "json://hooks.example.com/$${literal}"\n'
    )
    loaded = load_routes(file, {"HOOK_PATH": "p/1", "TOKEN": "t0k3n"})
    urls = [u.get_secret_value() for u in loaded.routes[0].urls]
    assert urls == [
        "json://hooks.example.com/p/1?+Authorization=Bearer%20t0k3n",
        "json://hooks.example.com/${literal}",
    ]
    assert "t0k3n" not in repr(loaded) and "t0k3n" not in str(loaded)  # SecretStr
    with pytest.raises(RoutesError) as caught:
        load_routes(file, {"HOOK_PATH": "p/1"})
    assert [str(p) for p in caught.value.problems] == [
        f"{file}:4: routes[0].urls[0]: environment variable TOKEN is not set"
    ]
    with pytest.raises(RoutesError) as caught:
        load_routes(file, {"HOOK_PATH": "p/1", "TOKEN": ""})
    assert "environment variable TOKEN is empty" in str(caught.value)


def test_a_url_apprise_cannot_use_is_refused_without_showing_it() -> None:
    text = 'routes:\n  - name: x\n    urls: ["nosuch://${SECRET}@host"]\n'
    (only,) = problems_of(text, {"SECRET": "hunter2"})
    assert only.startswith("routes.yaml:3: routes[0].urls[0]: apprise cannot use this nosuch://")
    assert "hunter2" not in only


#: Where a password pasted into a routes file could stand, each one a mistake.
LEAKY_ROUTES = [
    # urls as one string rather than a list
    ('    urls: "mailtos://dpo:{pw}@smtp.example.com"\n', "routes[0].urls", "valid list"),
    ("    urls: [{{token: {pw}}}]\n", "routes[0].urls[0]", "valid string"),
    ("    urls: ['json://h/${{{pw}}}']\n", "routes[0].urls[0]", "not a variable name"),
    ("    syslog: [{{host: '{pw}!'}}]\n", "routes[0].syslog[0].host", "should match pattern"),
    ("    syslog: [{{host: s, port: '{pw}'}}]\n", "routes[0].syslog[0].port", "valid integer"),
    ("    syslog: {pw}\n", "routes[0].syslog", "valid list"),
    ("    match: {{rules: ['{pw}']}}\n    syslog: [{{host: s}}]\n", "match.rules[0]", "rule id"),
    ("    match: {{articles: ['{pw}']}}\n    syslog: [{{host: s}}]\n", "articles[0]", "article"),
    ("    match: {{min_severity: {pw}}}\n    syslog: [{{host: s}}]\n", "min_severity", "'low'"),
    ("    match: {{kinds: [{pw}]}}\n    syslog: [{{host: s}}]\n", "kinds[0]", "'incident'"),
    ("    syslog: [{{host: s}}]\ndelivery: {{backoff: {pw}}}\n", "delivery.backoff", "duration"),
    ("    syslog: [{{host: s}}]\ndelivery: {{attempts: {pw}}}\n", "delivery.attempts", "integer"),
]


@pytest.mark.parametrize(("body", "key", "says"), LEAKY_ROUTES)
def test_a_routes_problem_never_repeats_a_value_of_the_file(body: str, key: str, says: str) -> None:
    password = "Hunter2-s3cret"
    text = "routes:\n  - name: mail\n" + body.format(pw=password)
    (problem,) = problems_of(text, {"SET": "x"})
    assert problem.startswith("routes.yaml:") and f"{key}: " in problem
    assert says in problem, problem
    assert password.lower() not in problem.lower()


def test_a_routes_file_with_urls_as_a_string_is_refused_without_its_password(
    tmp_path: Path,
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "routes:\n  - name: mail\n    urls: 'mailtos://dpo:Hunter2-s3cret@smtp.example.com'\n"
    )
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"")
    result = CliRunner().invoke(
        main,
        ["run", "--source", str(source), "--out", str(tmp_path / "out"), "--routes", str(routes)],
    )
    assert result.exit_code == 2
    assert result.output == (
        f"lineage: routes error: {routes}:3: routes[0].urls: Input should be a valid list "
        "(got a string)\n"
    )


def test_substitute_and_route_names_on_their_own() -> None:
    assert substitute("a${X}b$${Y}", {"X": "1"}) == "a1b${Y}"
    with pytest.raises(ValueError, match="not a variable name"):
        substitute("${1x}", {})
    assert validate_route_name("siem.eu-1") == "siem.eu-1"
    with pytest.raises(ValueError):
        validate_route_name("-x")


# -- CEF ----------------------------------------------------------------------------------------


def test_cef_escapes_header_and_extension_as_the_spec_says() -> None:
    assert escape_header("a|b\\c\nd") == "a\\|b\\\\c d"
    assert escape_extension("a=b|c\\d\r\ne\nf") == "a\\=b|c\\\\d\\ne\\nf"
    tricky = "x=1 | y\\z\nnext line"
    line = cef_line(Kind.ALERT, alert(message=tricky, source="crm|eu"), "9.9")
    assert "\n" not in line
    header, ext = parse_cef(line)
    assert header == [
        "privacy-lineage",
        "lineage",
        "9.9",
        "art9.no-consent",
        "Art. 9 art9.no-consent: crm|eu -> market-research",
        "8",
    ]
    assert ext["msg"] == tricky
    assert ext["cs1"] == "crm|eu" and ext["cs1Label"] == "source"


def test_syslog_over_udp_carries_one_cef_message(udp: socket.socket) -> None:
    port = udp.getsockname()[1]
    routes = load_routes_text(
        f"routes:\n  - name: siem\n    syslog: [{{host: 127.0.0.1, port: {port}}}]\n",
        "r.yaml",
        {},
    )
    tricky = "a|b=c\\d\ne"
    with Router(routes) as router:
        assert router.submit("alert", alert(message=tricky)) == 1
        datagram = udp.recv(65536)
    found = syslog_parts(datagram)
    assert int(found["pri"]) == 16 * 8 + 3  # local0, err (high)
    assert found["app"] == "privacy-lineage" and found["msgid"] == "alert"
    assert datetime.fromisoformat(found["ts"].replace("Z", "+00:00")).tzinfo is not None
    header, ext = parse_cef(found["msg"])
    assert header[3:] == ["art9.no-consent", "Art. 9 art9.no-consent: crm -> market-research", "8"]
    assert ext["msg"] == tricky
    assert ext["externalId"] == "a-1" and ext["cs5"] == "e-1" and ext["act"] == "open"
    assert ext["cs3"] == "health.condition,identity.name" and ext["cs4"] == "2026-04-01"
    occurred = datetime(2026, 11, 20, 1, 2, 11, tzinfo=UTC)
    assert ext["rt"] == str(int(occurred.timestamp() * 1000))
    assert "u-secret-42" not in datagram.decode()  # no subject in a SIEM line


def test_syslog_over_tcp_sends_one_line_per_record() -> None:
    listener = TcpListener()
    try:
        routes = load_routes_text(
            "routes:\n  - name: siem\n    syslog: "
            f"[{{host: 127.0.0.1, port: {listener.port}, protocol: tcp, facility: authpriv}}]\n",
            "r.yaml",
            {},
        )
        with Router(routes) as router:
            router.submit("alert", alert(message="line one\nline two"))
            router.submit("alert", alert(alert_id="a-2", status="retracted", retracted_by="c-9"))
            router.submit("incident", incident())
            lines = listener.lines(3)
        stats = router.stats()["siem"]
    finally:
        listener.close()
    assert stats.sent == 3 and stats.failed == 0
    parsed = [syslog_parts(line) for line in lines]
    first, retracted, grouped = (parse_cef(p["msg"]) for p in parsed)
    assert first[1]["msg"] == "line one\nline two"
    assert retracted[1]["act"] == "retracted" and retracted[0][-1] == "1"  # good news
    assert retracted[1]["reason"] == "retracted by consent event c-9"
    assert int(parsed[1]["pri"]) == 10 * 8 + 6  # authpriv, info
    assert grouped[1]["cn1"] == "12" and grouped[1]["externalId"] == "inc-1"
    assert grouped[1]["cs5"] == "e-1,e-2" and parsed[2]["msgid"] == "incident"


def test_cef_sample_event_ids_split_back_into_the_ids() -> None:
    # Event ids are free text: joined plainly, ["o-1,o-2", "o-3"] and ["o-1", "o-2,o-3"]
    # were one and the same cs5.
    cases = (["o-1,o-2", "o-3"], ["o-1", "o-2,o-3"], ["o-1%2C", "o-2"], ["e-1", "e-2"])
    fields = [
        parse_cef(cef_line(Kind.INCIDENT, incident(sample_event_ids=ids), "1"))[1]["cs5"]
        for ids in cases
    ]
    assert len(set(fields)) == len(cases)
    assert fields[-1] == "e-1,e-2"  # ids without ',' or '%' as they are
    for ids, cs5 in zip(cases, fields, strict=True):
        assert [unquote(item) for item in cs5.split(",")] == ids


def test_syslog_header_fields_are_plain_ascii() -> None:
    message = syslog_message(
        Kind.ALERT, alert(), version="1", hostname="h ö st", now=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert message.startswith(b"<131>1 2026-01-01T00:00:00.000Z hst privacy-lineage ")


# -- apprise ------------------------------------------------------------------------------------


def test_a_json_webhook_receives_the_record_itself() -> None:
    with HookServer() as server:
        with Router(hook_routes(server.port)) as router:
            router.submit("alert", alert())
            router.submit("incident", incident())
        stats = router.stats()["hooks"]
    assert stats.sent == 2 and stats.failed == 0 and stats.retries == 0
    (path, headers, _), _ = server.requests
    assert path == "/alerts" and headers["X-Token"] == "s3cret-t0ken"
    first, second = server.envelopes()
    sent = dict(alert())
    del sent["subject"]
    assert json.loads(first["message"]) == sent  # the record as published, less its subject
    assert "u-secret-42" not in server.requests[0][2].decode()
    assert first["title"] == "[high] Art. 9 art9.no-consent: crm -> market-research"
    assert first["type"] == "failure"
    assert json.loads(second["message"])["incident_id"] == "inc-1"


def test_people_get_a_title_and_a_body_without_the_subject() -> None:
    with HookServer() as server:
        routes = load_routes_text(
            f"routes:\n  - name: people\n    urls: ['form://127.0.0.1:{server.port}/']\n",
            "r.yaml",
            {},
        )
        with Router(routes) as router:
            router.submit("alert", alert())
    ((_, _, payload),) = server.requests
    form = {k: v[0] for k, v in parse_qs(payload.decode()).items()}
    assert form["title"] == "[high] Art. 9 art9.no-consent: crm -> market-research"
    text = form["message"]
    assert text.startswith("Health data went to market-research without consent (Art. 9).")
    for fact in ("alert_id: a-1", "event_id: e-1", "health.condition", "policy_version: 2026"):
        assert fact in text
    assert "u-secret-42" not in payload.decode()


def test_titles_say_what_happened() -> None:
    assert title(Kind.ALERT, alert(recipient=None)) == "[high] Art. 9 art9.no-consent: crm"
    assert title(Kind.ALERT, alert(status="retracted", retracted_by="c-1")).startswith(
        "[retracted] Art. 9"
    )
    assert title(Kind.INCIDENT, incident()) == (
        "[high] incident Art. 9 art9.no-consent: crm -> market-research (12 events)"
    )
    assert "incident_id: inc-1" in body(Kind.INCIDENT, incident())


# -- what notifications may show: no forged lines, no mentions, no subject ----------------------

#: Characters that break a line or hide text, each inside a field a producer controls.
HOSTILE = {
    "event_id": "e-1\nalert_id: forged-1",
    "source": "crm\r\npolicy_version: forged-2",
    "recipient": "ads\u2028categories: forged-3",
    "message": "Data went out.\x85status: forged-4\x1b[2J\x00",
    "categories": ["health.condition\u2029forged-5", "identity.name\u202egnp.exe"],
    "policy_version": "2026-04-01\x0bforged-6\x0c",
}
#: The only characters a body for people may hold besides printable text.
ALLOWED_HIDDEN = {"\n", "\u200b"}


def hidden_characters(text: str) -> set[str]:
    import unicodedata

    return {
        c for c in text if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp", "Cs"}
    } - ALLOWED_HIDDEN


def test_a_line_break_or_control_character_in_a_field_forges_no_line() -> None:
    record = alert(**HOSTILE)
    text = body(Kind.ALERT, record)
    lines = text.split("\n")
    assert [line.split(":")[0] for line in lines[1:]] == [
        "alert_id", "event_id", "categories", "policy_version", "occurred_at"
    ]  # fmt: skip
    assert len(lines) == 6 and hidden_characters(text) == set()
    assert lines[2] == "event_id: e-1\\nalert_id: forged-1"  # shown, as an escape
    assert "\\u202e" in lines[3] and "\\x85" in lines[0] and "\\x1b[2J\\x00" in lines[0]
    head = title(Kind.ALERT, record)
    assert "\n" not in head and hidden_characters(head) == set()
    assert head == (
        "[high] Art. 9 art9.no-consent: crm\\r\\npolicy_version: forged-2 -> "
        "ads\\u2028categories: forged-3"
    )
    retracted = body(Kind.ALERT, alert(status="retracted", retracted_by="c-1\nforged-7"))
    assert len(retracted.split("\n")) == 7 and "consent event c-1\\nforged-7 was" in retracted
    grouped = incident(
        source="crm\nforged-8", sample_event_ids=["e-1\nincident_id: forged-9", "e-2\r"]
    )
    text = body(Kind.INCIDENT, grouped)
    assert [line.split(":")[0] for line in text.split("\n")[1:]] == [
        "incident_id", "status", "sample_event_ids"
    ]  # fmt: skip
    assert hidden_characters(text + title(Kind.INCIDENT, grouped)) == set()


def test_a_body_delivered_by_apprise_has_only_the_templates_lines() -> None:
    with HookServer() as server:
        routes = load_routes_text(
            f"routes:\n  - name: people\n    urls: ['form://127.0.0.1:{server.port}/']\n",
            "r.yaml",
            {},
        )
        with Router(routes) as router:
            router.submit("alert", alert(**HOSTILE))
        assert router.stats()["people"].sent == 1
    ((_, _, payload),) = server.requests
    form = {k: v[0] for k, v in parse_qs(payload.decode()).items()}
    assert len(form["message"].splitlines()) == 6
    assert hidden_characters(form["message"]) == hidden_characters(form["title"]) == set()
    for n in range(1, 7):
        assert not any(line.startswith(f"forged-{n}") for line in form["message"].splitlines())


MENTIONS = [
    "@everyone", "@here", "@channel", "@all", "<@U123ABC>", "<@!123>", "<@&42>", "<!channel>",
    "<!here>", "<!everyone>", "<!subteam^S1>", "<#C0123>", "<at>Ann</at>",
    "<http://evil.example|click>",
]  # fmt: skip


@pytest.mark.parametrize("mention", MENTIONS)
def test_a_chat_mention_in_a_field_notifies_no_one(mention: str) -> None:
    record = alert(
        event_id=f"e-{mention}",
        source=f"crm{mention}",
        message=f"Sent to {mention} today.",
        categories=[f"health.{mention}"],
        retracted_by=mention,
        status="retracted",
    )
    for text in (title(Kind.ALERT, record), body(Kind.ALERT, record)):
        assert mention not in text
        # Every '@' and '<' is followed by a zero-width space: no chat parses a mention.
        assert re.search("[@<](?!\u200b)", text) is None, text
        # ... and reads the same: the text is shown, only made inert.
        assert mention.replace("@", "@\u200b").replace("<", "<\u200b") in text
    grouped = incident(source=mention, sample_event_ids=[mention])
    for text in (title(Kind.INCIDENT, grouped), body(Kind.INCIDENT, grouped)):
        assert mention not in text and re.search("[@<](?!\u200b)", text) is None


SUBJECT = "u-secret-42"
#: The subject, planted in every field a producer or a rule's message fills.
CARRYING = {
    "subject": SUBJECT,
    "event_id": f"e-{SUBJECT}-1",
    "message": f"Health data of {SUBJECT} went to market-research (Art. 9).",
    "source": f"crm-{SUBJECT}",
    "categories": ["health.condition", f"x.{SUBJECT}"],
    "evidence": {"day": "2026-11-20", "who": SUBJECT, SUBJECT: 1},
    "retracted_by": f"c-{SUBJECT}",
    "status": "retracted",
}


def test_no_subject_in_any_title_body_or_cef_field() -> None:
    for record in (alert(), alert(**CARRYING)):
        texts = [
            title(Kind.ALERT, record),
            body(Kind.ALERT, record),
            cef_line(Kind.ALERT, record, "1"),
            syslog_message(Kind.ALERT, record, version="1").decode(),
        ]
        for text in texts:
            assert SUBJECT not in text
            assert "subject" not in text.replace("[subject]", "")  # no subject field either
        header, ext = parse_cef(texts[2])
        assert SUBJECT not in "".join(header) + "".join(ext.values())
    shown = body(Kind.ALERT, alert(**CARRYING))
    assert "Health data of [subject] went to market-research" in shown
    assert "event_id: e-[subject]-1" in shown
    # The monitor's own fields stay as they are: receivers deduplicate on alert_id.
    own = alert(alert_id=f"{SUBJECT}-hash", subject=SUBJECT)
    assert f"alert_id: {SUBJECT}-hash" in body(Kind.ALERT, own)
    assert parse_cef(cef_line(Kind.ALERT, own, "1"))[1]["externalId"] == f"{SUBJECT}-hash"


def test_no_subject_reaches_a_webhook_a_chat_or_a_collector(udp: socket.socket) -> None:
    port = udp.getsockname()[1]
    with HookServer() as server:
        routes = load_routes_text(
            "routes:\n  - name: all\n    urls:\n"
            f"      - 'json://127.0.0.1:{server.port}/machine'\n"
            f"      - 'form://127.0.0.1:{server.port}/people'\n"
            f"    syslog: [{{host: 127.0.0.1, port: {port}}}]\n",
            "r.yaml",
            {},
        )
        with Router(routes) as router:
            router.submit("alert", alert(**CARRYING))
            datagram = udp.recv(65536)
        assert router.stats()["all"].sent == 3
    payloads = {path: payload.decode() for path, _, payload in server.requests}
    assert set(payloads) == {"/machine", "/people"}
    for text in [*payloads.values(), datagram.decode()]:
        assert SUBJECT not in text
    record = json.loads(json.loads(payloads["/machine"])["message"])
    assert "subject" not in record and record["alert_id"] == "a-1"
    assert record["evidence"] == {"day": "2026-11-20", "who": "[subject]", "[subject]": 1}


def test_cef_shows_control_characters_as_text() -> None:
    record = alert(message="a\x00b\x1bc\x85d\u2028e\u202ef", source="crm\x00|\u2029")
    line = cef_line(Kind.ALERT, record, "1")
    assert hidden_characters(line) == set() and "\n" not in line
    header, ext = parse_cef(line)
    assert ext["msg"] == "a\\x00b\\x1bc\\x85d\\u2028e\\u202ef"
    assert ext["cs1"] == "crm\\x00|\\u2029"
    assert header[4] == "Art. 9 art9.no-consent: crm\\x00|\\u2029 -> market-research"


def test_a_failing_endpoint_is_retried_with_backoff_and_then_succeeds() -> None:
    with HookServer(fail_first=2) as server:
        with Router(hook_routes(server.port, backoff=0.02)) as router:
            router.submit("alert", alert())
        stats = router.stats()["hooks"]
    assert len(server.requests) == 3  # two HTTP 500s, then 200
    assert (stats.sent, stats.failed, stats.retries) == (1, 0, 2)
    # Equal jitter: at least half of each step (0.02, then 0.04) is waited, at most all.
    assert 0.03 <= stats.backoff_seconds <= 0.06
    first, second = (b - a for a, b in zip(server.times, server.times[1:], strict=False))
    assert first >= 0.01 and second >= 0.02  # and the retries did wait (a lower bound only)


def test_an_endpoint_that_keeps_failing_is_given_up_in_one_line_without_its_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="lineage.notify"), HookServer(9) as server:
        with Router(hook_routes(server.port, attempts=3, backoff=0.001)) as router:
            router.submit("alert", alert())
        stats = router.stats()["hooks"]
    assert len(server.requests) == 3 and (stats.sent, stats.failed) == (0, 1)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "lineage.notify"]
    assert line.startswith("route hooks: destination 1 (json): gave up")
    assert "after 3 attempts" in line
    assert "s3cret" not in line and str(server.port) not in line and "a-1" not in line


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    import random

    rng = random.Random(7)
    for retry, step in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 60.0), (99, 60.0)]:
        for _ in range(50):
            assert step / 2 <= backoff_delay(retry, 1.0, 60.0, rng) <= step


# -- the router ---------------------------------------------------------------------------------


class Recorder:
    """A destination that records what it is sent; it can hold every send until released."""

    def __init__(self, label: str = "fake", gate: threading.Event | None = None) -> None:
        self.label = label
        self.gate = gate
        self.sent: list[tuple[Kind, str]] = []
        self.started = threading.Event()

    def send(self, kind: Kind, record: Mapping[str, Any]) -> None:
        self.started.set()
        if self.gate is not None and not self.gate.wait(10):
            raise DeliveryFailed("fake: held")
        self.sent.append((kind, str(record.get("alert_id") or record.get("incident_id"))))

    def close(self) -> None:
        pass


ROUTING = """
routes:
  - name: art9-high
    match: {min_severity: high, articles: ["9"], statuses: [open]}
    syslog: [{host: siem}]
  - name: incidents
    match: {kinds: [incident], rules: [art6.unencrypted]}
    syslog: [{host: siem}]
  - name: everything
    syslog: [{host: siem}]
"""


def test_routing_by_severity_article_kind_rule_and_status() -> None:
    made: dict[str, Recorder] = {}

    def destinations(route: Route, delivery: Delivery) -> list[Any]:
        made[route.name] = Recorder()
        return [made[route.name]]

    routes = load_routes_text(ROUTING, "r.yaml", {})
    with Router(routes, destinations=destinations) as router:
        router.submit("alert", alert(alert_id="high-9"))
        router.submit("alert", alert(alert_id="crit-9", severity="critical"))
        router.submit("alert", alert(alert_id="medium-9", severity="medium"))
        router.submit("alert", alert(alert_id="high-6", article="6", rule="art6.unencrypted"))
        router.submit("alert", alert(alert_id="retracted-9", status="retracted", retracted_by="c"))
        router.submit("incident", incident(incident_id="inc-9"))
        router.submit(
            "incident", incident(incident_id="inc-6", article="6", rule="art6.unencrypted")
        )
    assert {i for _, i in made["art9-high"].sent} == {"high-9", "crit-9", "inc-9"}
    assert made["incidents"].sent == [(Kind.INCIDENT, "inc-6")]
    assert len(made["everything"].sent) == 7
    stats = router.stats()
    assert (stats["art9-high"].sent, stats["incidents"].sent, stats["everything"].sent) == (3, 1, 7)


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    gate = threading.Event()
    fake = Recorder(gate=gate)
    routes = load_routes_text(
        "routes:\n  - name: slow\n    syslog: [{host: siem}]\ndelivery: {queue_size: 3}\n",
        "r.yaml",
        {},
    )
    outcomes: list[tuple[str, str, int]] = []
    router = Router(
        routes, destinations=lambda r, d: [fake], on_outcome=lambda *o: outcomes.append(o)
    )
    router.start()
    router.submit("alert", alert(alert_id="first"))
    assert fake.started.wait(5)  # "first" is being sent, held at the gate
    for i in range(10):
        router.submit("alert", alert(alert_id=f"n{i}"))
    gate.set()
    stats = router.close(timeout=5)["slow"]
    assert [i for _, i in fake.sent] == ["first", "n7", "n8", "n9"]  # the newest kept
    assert (stats.sent, stats.dropped, stats.failed) == (4, 7, 0)
    assert outcomes.count(("slow", "dropped", 1)) == 7
    assert router.submit("alert", alert()) == 0 and router.stats()["slow"].dropped == 8


def test_a_destination_that_never_answers_does_not_block_submit() -> None:
    with HookServer(hang=True) as server:
        routes = load_routes_text(
            f"routes:\n  - name: stuck\n    urls: ['json://127.0.0.1:{server.port}/']\n"
            "delivery: {queue_size: 100}\n",
            "r.yaml",
            {},
        )
        router = Router(routes)
        router.start()
        router.submit("alert", alert(alert_id="first"))
        assert server.arrived.wait(5)  # the thread is stuck in its first request
        started = time.perf_counter()
        for i in range(10_000):
            router.submit("alert", alert(alert_id=f"burst-{i}"))
        burst = time.perf_counter() - started
        assert burst < 2.0, f"10,000 submits took {burst:.2f} s"
        assert router.stats()["stuck"].dropped == 10_000 - 100
        closing = time.perf_counter()
        stats = router.close(timeout=0.2)["stuck"]
        assert time.perf_counter() - closing < 2.0
    # Every notification is accounted for: 100 waiting dropped at close, 1 given up.
    assert (stats.sent, stats.failed, stats.dropped) == (0, 1, 10_000)
    assert summary_line({"stuck": stats}) == (
        "notifications: route stuck: 0 sent, 1 failed, 10000 dropped"
    )


def test_router_outcomes_feed_the_worker_metric() -> None:
    from streams.metrics import Metrics

    metrics = Metrics()
    routes = load_routes_text("routes:\n  - name: m\n    syslog: [{host: siem}]\n", "r.yaml", {})
    counter = metrics.notifications
    with Router(
        routes,
        destinations=lambda r, d: [Recorder()],
        on_outcome=lambda route, outcome, n: counter.labels(route, outcome).inc(n),
    ) as router:
        router.submit("alert", alert())
    value = metrics.registry.get_sample_value(
        "lineage_notifications_total", {"route": "m", "outcome": "sent"}
    )
    assert value == 1.0


# -- wiring: lineage run --routes, the worker's checkpoint and settings ------------------------


def test_lineage_run_forwards_every_alert_and_prints_the_summary(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(generate_day(events=400, seed=7)) + b"\n")
    routes = tmp_path / "routes.yaml"
    out = tmp_path / "out"
    with HookServer() as server:
        routes.write_text(
            "routes:\n  - name: hooks\n    match: {kinds: [alert]}\n"
            f"    urls: ['json://127.0.0.1:{server.port}/a?+X-Token=${{HOOK_TOKEN}}']\n"
        )
        result = CliRunner().invoke(
            main,
            ["run", "--source", str(source), "--out", str(out), "--routes", str(routes)],
            env={"HOOK_TOKEN": "t0k3n"},
        )
    assert result.exit_code == 0, result.output
    written = [
        orjson.loads(x)["alert_id"] for x in (out / "alerts.jsonl").read_bytes().splitlines()
    ]
    received = [json.loads(e["message"])["alert_id"] for e in server.envelopes()]
    assert written and sorted(received) == sorted(written)
    assert {h["X-Token"] for _, h, _ in server.requests} == {"t0k3n"}
    assert f"notifications: route hooks: {len(written)} sent, 0 failed, 0 dropped" in result.output


def test_lineage_run_refuses_a_bad_routes_file_before_judging(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  - name: x\n    urls: ['json://h/${NOT_SET_ANYWHERE}']\n")
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"")
    result = CliRunner().invoke(
        main,
        ["run", "--source", str(source), "--out", str(tmp_path / "out")],
        env={"LINEAGE_ROUTES": str(routes)},
    )
    assert result.exit_code == 2
    assert (
        f"lineage: routes error: {routes}:3: routes[0].urls[0]: environment variable "
        "NOT_SET_ANYWHERE is not set"
    ) in result.output
    assert not (tmp_path / "out").exists()


def test_the_checkpoint_forwards_only_what_kafka_acknowledged(policy: Policy) -> None:
    h = Harness(policy)
    calls: list[tuple[list[str], list[str], list[str], bool]] = []

    def on_delivered(alerts: list[dict[str, Any]], incidents: list[dict[str, Any]]) -> None:
        on_kafka = [a["alert_id"] for a in h.alerts()]
        calls.append(
            (
                [a["alert_id"] for a in alerts],
                [i["incident_id"] for i in incidents],
                on_kafka,
                bool(h.acked),
            )
        )

    h.checkpoint.on_delivered = on_delivered
    h.take(h.chunk(0, breach(0)))
    h.producer.away = True
    assert not h.flush()  # Kafka did not take them: nothing is forwarded
    assert calls == []
    h.producer.away = False
    h.take(h.chunk(0, breach(0)))
    assert h.flush()
    ((alerts, incidents, on_kafka, acked),) = calls
    assert alerts and set(alerts) <= set(on_kafka)  # on Kafka before it was forwarded
    assert not acked  # and before the offsets were acked (step 4)
    assert incidents == []
    # Incident publications are forwarded too, once delivered.
    from streams.intake import Chunk, TopicPartition

    h.take(Chunk(TopicPartition(TOPICS.partials, 0), [partial_record(0, "inc-7", 0, 1)], 1))
    assert h.flush()
    assert calls[-1][:2] == ([], ["inc-7"])


def test_a_failing_forward_does_not_stop_the_commit(policy: Policy) -> None:
    h = Harness(policy)

    def broken(alerts: list[dict[str, Any]], incidents: list[dict[str, Any]]) -> None:
        raise RuntimeError("bug")

    h.checkpoint.on_delivered = broken
    h.take(h.chunk(0, breach(0)))
    assert h.flush() and h.acked  # logged, and the offsets still acked


def test_the_worker_refuses_a_bad_routes_file_and_export_ignores_it(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lineage.cli import main

    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  - name: x\n    sylog: []\n")
    env = {"LINEAGE_ROUTES": str(routes), "LINEAGE_WEB_PORT": "0"}
    result = CliRunner().invoke(main, ["worker", "--broker", "127.0.0.1:1"], env=env)
    assert result.exit_code == 2
    assert f"{routes}:3: routes[0].sylog: unknown key" in result.output
    # The Kafka commands that only read share the settings, not the routes: this one
    # gets as far as the broker.
    result = CliRunner().invoke(
        main, ["export", "--broker", "127.0.0.1:1", "--out", "-", "--timeout", "2"], env=env
    )
    assert result.exit_code == 1 and "cannot reach Kafka" in result.output


def test_the_worker_forwards_to_its_router_and_counts_in_its_metric(
    tmp_path: Path, udp: socket.socket, policy: Policy
) -> None:
    from streams.app import LineageWorker
    from streams.settings import Settings

    routes = tmp_path / "routes.yaml"
    port = udp.getsockname()[1]
    routes.write_text(f"routes:\n  - name: siem\n    syslog: [{{host: 127.0.0.1, port: {port}}}]\n")
    worker = LineageWorker(Settings(routes=routes, state_dir=tmp_path / "state"), policy)
    assert worker.router is not None and worker.checkpoint.on_delivered is not None
    worker.router.start()
    worker.checkpoint.on_delivered([alert()], [incident()])
    assert {syslog_parts(udp.recv(65536))["msgid"] for _ in range(2)} == {"alert", "incident"}
    assert worker.router.close(5)["siem"].sent == 2
    sample = worker.metrics.registry.get_sample_value
    assert sample("lineage_notifications_total", {"route": "siem", "outcome": "sent"}) == 2.0
    assert sample("lineage_notifications_total", {"route": "siem", "outcome": "dropped"}) == 0.0
