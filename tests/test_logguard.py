"""No secret and no event content in any log line, at any level (lineage/logguard.py).

Each rule is checked against the library's own source (the format string is one
its module logs) and against a record built from it; then the whole: an embedded
`lineage run --routes` at DEBUG with tokens in every part of its webhook URLs, and
(on a real broker) a worker at `--loglevel debug` judging events that carry marker
strings in their subject, attributes and consent references: neither log holds any.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from lineage.cli import main
from lineage.demo import generate_day
from lineage.logguard import (
    GUARD,
    QUIET_BELOW_INFO,
    RULES,
    LogGuard,
    Rule,
    install_log_guard,
)
from tests.test_notify import HookServer

# -- the rules, against the libraries' sources -------------------------------------------------


def _logged_formats(module_name: str) -> tuple[set[str], list[str]]:
    """(the constant format strings, the f-strings) of every logging call of a module."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    constants: set[str] = set()
    fstrings: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in {"debug", "info", "warning", "error", "exception", "dev"}:
            continue
        if not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            constants.add(first.value)
        elif isinstance(first, ast.JoinedStr):
            fstrings.append(
                "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in first.values)
            )
    return constants, fstrings


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.logger}:{r.fmt[:24]}")
def test_each_rule_names_a_log_call_its_library_makes(rule: Rule) -> None:
    # An upgrade that rewords a message must fail here, not leak quietly.
    constants, fstrings = _logged_formats(rule.logger)
    if rule.cut is None:
        assert rule.fmt in constants, f"{rule.logger} no longer logs {rule.fmt!r}"
    else:
        assert any(f.startswith(rule.fmt) and rule.cut in f for f in fstrings), rule


def _args_for(fmt: str, withheld: tuple[int, ...]) -> tuple[Any, ...]:
    """Arguments for ``fmt``: a marker where the rule withholds, a plain word elsewhere."""
    args: list[Any] = []
    for i, conversion in enumerate(re.findall(r"%[-#0 +]*\d*(?:\.\d+)?([sdrf%])", fmt)):
        if conversion == "%":
            continue
        if conversion in "df":
            args.append(7)
        else:
            args.append(f"MARKER-{i}-secret" if i in withheld else f"shown-{i}")
    return tuple(args)


def _record(name: str, level: int, msg: str, args: tuple[Any, ...] = ()) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


@pytest.mark.parametrize("rule", [r for r in RULES if r.cut is None], ids=lambda r: r.logger)
@pytest.mark.parametrize("label", ["", "[^--Producer]: "])
def test_a_rule_withholds_its_arguments_and_keeps_the_rest(rule: Rule, label: str) -> None:
    args = _args_for(rule.fmt, rule.withhold)
    record = _record(rule.logger, logging.DEBUG, label + rule.fmt, args)
    assert LogGuard().filter(record) is True  # rewritten, not dropped
    text = record.getMessage()
    assert "MARKER" not in text and "withheld>" in text
    for arg in args:
        if isinstance(arg, str) and arg.startswith("shown"):
            assert arg in text  # the line still says what happened
    # Another logger with the same words is not touched (rules name their logger).
    other = _record("somebody.else", logging.DEBUG, rule.fmt, args)
    LogGuard().filter(other)
    assert "MARKER" in other.getMessage()


class ProduceRequest_v7:
    def __repr__(self) -> str:
        return "ProduceRequest_v7(records=b'subject-MARKER')"


class SaslAuthenticateRequest_v1:
    def __repr__(self) -> str:
        return "SaslAuthenticateRequest_v1(auth_bytes=b'\\x00lineage\\x00PASSWORD-MARKER')"


class MetadataRequest_v5:
    def __repr__(self) -> str:
        return "MetadataRequest_v5(topics=['t.events'])"


def test_kafka_requests_with_data_are_withheld_and_the_others_shown() -> None:
    guard = LogGuard()
    for struct in (ProduceRequest_v7(), SaslAuthenticateRequest_v1()):
        record = _record(
            "aiokafka.conn", logging.DEBUG, "Request to %s:%d %d: %s", ("h", 9092, 3, struct)
        )
        guard.filter(record)
        assert "MARKER" not in record.getMessage()
        assert f"<{type(struct).__name__}, withheld>" in record.getMessage()
    shown = _record(
        "kafka.net.connection",
        logging.DEBUG,
        "%s Request %d: %s",
        ("conn", 1, MetadataRequest_v5()),
    )
    guard.filter(shown)
    assert shown.getMessage() == "conn Request 1: MetadataRequest_v5(topics=['t.events'])"


def test_fausts_send_error_warning_is_cut_before_its_message() -> None:
    text = (
        "_on_published error for message topic t.alerts error MessageSizeTooLargeError "
        "message <FutureMessage: PendingMessage(key=b'subject-MARKER', value=b'ref-MARKER')>"
    )
    record = _record("faust.topics", logging.WARNING, text)
    LogGuard().filter(record)
    assert record.getMessage() == (
        "_on_published error for message topic t.alerts error MessageSizeTooLargeError "
        "message (withheld)"
    )


@pytest.mark.parametrize("name", [*QUIET_BELOW_INFO, "apprise.plugins"])
def test_apprise_below_info_is_dropped_and_the_rest_kept(name: str) -> None:
    guard = LogGuard()
    assert not guard.filter(_record(name, logging.DEBUG, "JSON Payload: %s", ("alert",)))
    assert not guard.filter(_record(name, logging.DEBUG - 1, "JSON URL json://u:p@h unpacked"))
    assert guard.filter(_record(name, logging.INFO, "Sent JSON %s notification.", ("POST",)))
    assert guard.filter(_record(name, logging.WARNING, "Failed to send JSON notification"))
    assert guard.filter(_record("apprisex", logging.DEBUG, "not apprise"))


def test_a_protected_secret_is_masked_in_any_record_in_every_form() -> None:
    guard = LogGuard()
    guard.protect("t0k3n/with+plus")
    guard.protect("abc")  # too short to mask without masking unrelated text
    for msg, args in [
        ("url json://h/?token=%s", ("t0k3n/with+plus",)),
        ("encoded %s", ("t0k3n%2Fwith%2Bplus",)),
        ("path %s", ("t0k3n/with%2Bplus",)),
        ("inline t0k3n/with+plus", ()),
    ]:
        record = _record("any.library", logging.ERROR, msg, args)
        guard.filter(record)
        text = record.getMessage()
        assert "t0k3n" not in text and "[secret]" in text, text
    try:
        raise ValueError("connection to https://h/t0k3n/with+plus refused")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    guard.filter(record)
    formatted = logging.Formatter().format(record)
    assert "t0k3n" not in formatted and "[secret]" in formatted and "refused" in formatted
    plain = _record("x", logging.INFO, "abc and abcdef")
    guard.filter(plain)
    assert plain.getMessage() == "abc and abcdef"


def test_install_puts_one_guard_on_root_handlers_last_resort_and_the_named_loggers() -> None:
    handler = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_log_guard()
        install_log_guard()
        assert handler.filters.count(GUARD) == 1
        assert logging.lastResort is not None and GUARD in logging.lastResort.filters
        for name in {r.logger for r in RULES} | set(QUIET_BELOW_INFO):
            assert logging.getLogger(name).filters.count(GUARD) == 1, name
    finally:
        root.removeHandler(handler)


def test_the_worker_puts_both_filters_on_the_handlers_faust_configures(tmp_path: Path) -> None:
    # faust's Worker replaces the root handlers when it starts; its public hook then
    # gets both filters onto the new ones, before any partition is recovered.
    from lineage.policy import load_policy
    from streams.app import LineageWorker
    from streams.runner import RepeatFilter, lineage_runner
    from streams.settings import Settings
    from tests.conftest import DATA

    worker = LineageWorker(Settings(state_dir=tmp_path), load_policy(DATA / "policy.yaml"))
    runner = lineage_runner(worker.app, "debug")
    root = logging.getLogger()
    handler = logging.NullHandler()  # as if mode had just configured it
    root.addHandler(handler)
    try:
        runner.on_setup_root_logger(root, logging.DEBUG)
        assert GUARD in handler.filters
        assert any(isinstance(f, RepeatFilter) for f in handler.filters)
    finally:
        root.removeHandler(handler)


def test_the_kafka_commands_mask_the_secrets_of_their_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lineage.cli.kafka import settings_or_exit

    password, token = f"sasl-{uuid.uuid4().hex[:10]}", f"web-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("LINEAGE_SASL_PASSWORD", password)
    monkeypatch.setenv("LINEAGE_WEB_TOKEN", token)
    settings_or_exit()
    record = _record("aiokafka.conn", logging.ERROR, "auth %s / %s failed", (password, token))
    GUARD.filter(record)
    assert record.getMessage() == "auth [secret] / [secret] failed"


def test_loading_routes_masks_their_tokens_and_passwords_in_every_log_line() -> None:
    from lineage.notify import load_routes_text

    token, password = f"tok-{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex[:10]}"
    load_routes_text(
        "routes:\n  - name: x\n    urls:\n"
        f"      - 'mailtos://dpo:{password}@smtp.example.com?to=a@example.com'\n"
        "      - 'json://hooks.example.com/${TOKEN}'\n",
        "r.yaml",
        {"TOKEN": token},
    )
    record = _record("some.library", logging.WARNING, "%s and %s", (password, token))
    GUARD.filter(record)
    assert record.getMessage() == "[secret] and [secret]"


# -- lineage run --routes at DEBUG ----------------------------------------------------------------


class Everything(logging.Handler):
    """Every record at every level, formatted as a handler would (with tracebacks)."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.lines: list[str] = []
        self.names: set[str] = set()
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.names.add(record.name)

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def everything() -> Iterator[Everything]:
    root = logging.getLogger()
    handler, level = Everything(), root.level
    root.addHandler(handler)
    root.setLevel(1)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_lineage_run_with_routes_at_debug_logs_no_token(
    tmp_path: Path, everything: Everything
) -> None:
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"\n".join(generate_day(events=300, seed=7)) + b"\n")
    routes = tmp_path / "routes.yaml"
    marks = {
        "HOOK_TOKEN": f"hdr{uuid.uuid4().hex[:12]}",
        "HOOK_PATH": f"path{uuid.uuid4().hex[:12]}",
        "HOOK_QUERY": f"qry{uuid.uuid4().hex[:12]}",
    }
    literal_password = f"pw{uuid.uuid4().hex[:12]}"
    with HookServer() as server:
        base = f"127.0.0.1:{server.port}"
        routes.write_text(
            "routes:\n  - name: hooks\n    match: {kinds: [alert]}\n    urls:\n"
            f"      - 'json://dpo:{literal_password}@{base}/a/${{HOOK_PATH}}"
            "?+X-Token=${HOOK_TOKEN}&-q=${HOOK_QUERY}'\n"
            f"      - 'form://{base}/b/${{HOOK_PATH}}?+X-Token=${{HOOK_TOKEN}}'\n"
        )
        result = CliRunner().invoke(
            main,
            [
                "run",
                "--source",
                str(source),
                "--out",
                str(tmp_path / "out"),
                "--routes",
                str(routes),
            ],
            env=marks,
        )
        requests = len(server.requests)
    assert result.exit_code == 0, result.output
    assert requests > 0 and "0 failed" in result.output
    # The test sees what a DEBUG handler sees: apprise and urllib3 did log.
    assert {"apprise", "urllib3.connectionpool"} <= everything.names
    assert any("DEBUG" in line for line in everything.lines)
    text = everything.text()
    for secret in [*marks.values(), literal_password]:
        assert secret not in text, f"{secret} in the log"
    alerts = [
        orjson.loads(x) for x in (tmp_path / "out" / "alerts.jsonl").read_bytes().splitlines()
    ]
    subjects = {a["subject"] for a in alerts if a.get("subject")}
    assert subjects and not any(s in text for s in subjects)  # nor the alerts' subjects


# -- a worker at --loglevel debug, on a real broker ----------------------------------------------


@pytest.mark.kafka
def test_a_worker_at_debug_logs_no_event_content_and_no_token(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from tests.conftest import DATA
    from tests.helpers import access, consent
    from tests.kafka_helpers import Deployment, Worker, wait_until

    tag = uuid.uuid4().hex[:8]
    subject, attribute, reference, key = (
        f"subj{tag}", f"attr{tag}", f"ref{tag}", f"akey{tag}"
    )  # fmt: skip
    token, path = f"tok{tag}", f"path{tag}"
    lines = []
    for i in range(12):
        who = f"{subject}-{i}"
        if i % 2:  # half consented (state with references), half not (alerts)
            lines.append(
                orjson.dumps(consent(event_id=f"c-{i}", subject=who, reference=f"{reference}-{i}"))
            )
        lines.append(
            orjson.dumps(
                access(
                    event_id=f"e-{i}",
                    subject=who,
                    recipient="researchers",
                    purpose="research",
                    attributes={key: f"{attribute}-{i}"},
                )
            )
        )
    deployment = Deployment(kafka_bootstrap, tmp_path)
    with HookServer() as server:
        routes = tmp_path / "routes.yaml"
        routes.write_text(
            "routes:\n  - name: hooks\n    urls: "
            f"['json://127.0.0.1:{server.port}/h/${{HOOK_PATH}}?+X-Token=${{HOOK_TOKEN}}']\n"
        )
        worker = Worker(
            deployment,
            "debug",
            loglevel="debug",
            LINEAGE_POLICY=str(DATA / "policy.yaml"),
            LINEAGE_ROUTES=str(routes),
            HOOK_TOKEN=token,
            HOOK_PATH=path,
        ).start()
        try:
            worker.wait_ready(120)
            deployment.produce(lines)
            alerts = deployment.read("alerts", lambda ms: len(ms) >= 6, 120, alive=[worker])
            wait_until(lambda: len(server.requests) >= 6, 60, "the webhook", alive=[worker])
            # The subjects' state went to their changelog (keys: subjects; values: consent
            # references), and the worker said so at DEBUG, naming the topic only.
            changelog = f"{deployment.app_id}-{deployment.prefix}subjects-changelog"
            wait_until(
                lambda: f"messages for {changelog} [" in worker.text(),
                60,
                "a changelog write in the log",
                alive=[worker],
            )
        finally:
            worker.stop_cleanly()
    assert {orjson.loads(m.value)["subject"] for m in alerts} >= {f"{subject}-0"}
    log = worker.log.read_text(errors="replace")
    # It was a debug log, and the guard was at work in it.
    assert "[DEBUG]" in log and "withheld>" in log and changelog in log
    for marker in (subject, attribute, reference, key, token, path):
        assert marker not in log, f"{marker} in the worker's debug log"


@pytest.mark.kafka
def test_a_service_at_debug_finds_no_event_of_its_own_in_its_log(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The SDK guards kafka-python's loggers, and only those: the service's own handlers
    # get no filter of ours, and kafka-python's DEBUG lines say what happened without
    # the records.
    from lineage.emitter import Emitter
    from tests.helpers import access, debug_records
    from tests.kafka_helpers import made_topic

    marker = f"attr{uuid.uuid4().hex[:8]}"
    with (
        debug_records() as recorder,
        Emitter(
            kafka_bootstrap,
            topic=made_topic(f"sdk{uuid.uuid4().hex[:8]}.events"),
            spill_path=tmp_path / "spill.jsonl",
        ) as emitter,
    ):
        emitter.emit(
            orjson.dumps(access(event_id="e-1", recipient="payco", attributes={"note": marker}))
        )
    assert GUARD not in recorder.filters
    lines = [r.getMessage() for r in recorder.records]
    # (kafka-python's producer module logs nothing more once any producer was collected
    # unclosed in this process: its close() swaps the module's logger for a null one.)
    assert any("produce requests: <dict" in line and "withheld>" in line for line in lines)
    assert not [line for line in lines if marker in line]
