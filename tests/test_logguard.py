"""No secret and no event content in any log line, at any level (lineage/logguard.py).

Each rule is checked against the library's own source (the format string is one
its module logs) and against a record built from it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import re
from typing import Any

import pytest

from lineage.logguard import (
    GUARD,
    QUIET_BELOW_INFO,
    RULES,
    LogGuard,
    Rule,
    install_log_guard,
)

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
