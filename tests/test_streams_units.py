"""The stream processors' parts that need no broker: settings, table views, the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import platform
import tracemalloc
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from lineage.cli import main
from lineage.engine import Engine
from lineage.policy import Policy
from lineage.state import EdgeAggregate
from lineage.view import Row
from streams.dedup import SeenIndex
from streams.heap import HeapTrim
from streams.runner import RepeatFilter, awaiting, install_repeat_filter
from streams.settings import Settings
from streams.store import DeferredWriter, MappingWriter, partition_of
from streams.tables import CachedView, PartitionState, edge_records
from streams.views import PartitionViews
from tests.helpers import access
from tests.helpers import consent as consent_event


def tables() -> dict[str, dict[str, bytes]]:
    # A dict stands in for a faust table here: the views use get, items and item assignment.
    return {name: {} for name in ("seen", "subjects", "edges", "incidents", "board")}


def test_settings_read_the_environment_and_hide_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEAGE_BROKER", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("LINEAGE_TOPIC_PREFIX", "acme.")
    monkeypatch.setenv("LINEAGE_SASL_PASSWORD", "hunter2")
    settings = Settings()
    assert settings.bootstrap == "kafka-1:9092,kafka-2:9092"
    assert settings.topic("events") == "acme.events"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    with pytest.raises(ValidationError, match="HOST:PORT"):
        Settings(broker="no-port")


def test_partition_state_writes_each_key_once_per_batch(policy: Policy) -> None:
    backing = tables()
    state = PartitionState(backing, 2)
    engine = Engine(policy, state.as_state())
    for offset in range(5):
        event = access(event_id=f"e-{offset}", recipient="payco", encrypted_in_transit=False)
        engine.process(orjson.dumps(event), offset=offset, origin="t")
    assert backing["edges"] == {}  # nothing reaches the table before the flush
    state.flush()
    # The edge's record, and its counts of one month by day.
    assert [k.partition("#")[0] for k in backing["edges"]] == ["2|flow|shop|payco"] * 2
    assert all(partition_of(key) == 2 for table in backing.values() for key in table)
    stored = EdgeAggregate.from_json(orjson.loads(backing["edges"]["2|flow|shop|payco"]))
    assert stored.count == 5 and stored.applied == 4
    assert len(backing["seen"]) == 1  # one dedup record for the whole batch


def test_state_is_rebuilt_from_the_tables_and_redelivery_counts_nothing(policy: Policy) -> None:
    backing = tables()
    first = PartitionState(backing, 0)
    engine = Engine(policy, first.as_state())
    lines = [orjson.dumps(access(event_id=f"e-{i}", recipient="payco")) for i in range(3)]
    for offset, line in enumerate(lines):
        engine.process(line, offset=offset, origin="t")
    first.flush()
    # A new owner of partition 0 (after a crash) sees the same state and the same offsets.
    second = PartitionState(backing, 0)
    again = Engine(policy, second.as_state())
    outcome = again.process(lines[2], offset=2, origin="t")
    assert outcome.status == "judged" and outcome.redelivered
    second.flush()
    stored = EdgeAggregate.from_json(orjson.loads(backing["edges"]["0|flow|shop|payco"]))
    assert stored.count == 3
    # A producer's duplicate (same id, later offset) is dropped.
    assert again.process(lines[0], offset=9, origin="t").status == "duplicate"


def test_table_values_take_the_memory_of_their_length(policy: Policy) -> None:
    # orjson (3.12 on) returns bytes holding its whole serializer buffer, at least
    # 4 KiB: kept as table values, 100,000 subjects would cost 400 MiB more.
    tables: dict[str, dict[str, bytes]] = {
        n: {} for n in ("seen", "subjects", "edges", "incidents")
    }
    state = PartitionState(tables, 0)
    engine = Engine(policy, state.as_state())
    tracemalloc.start()
    try:
        for offset in range(2_000):
            event = access(event_id=f"e-{offset}", subject=f"u-{offset}", recipient="payco")
            engine.process(orjson.dumps(event), offset=offset, origin=f"t:{offset}")
            if offset % 500 == 499:
                state.flush()
        held = sum(
            stat.size
            for stat in tracemalloc.take_snapshot().statistics("lineno")
            if stat.traceback[0].filename.endswith("tables.py")
        )
    finally:
        tracemalloc.stop()
    values = [v for table in tables.values() for v in table.values()]
    assert len(tables["subjects"]) == 2_000 and len(tables["seen"]) == 4
    length = sum(len(v) for v in values)
    assert held < 2 * length + 64 * len(values), (held, length)


def test_the_dedup_index_keeps_no_object_per_id_and_gives_back_what_it_was_given() -> None:
    table: dict[str, bytes] = {}
    index = SeenIndex(table, 0)
    entries = {"a": (0, "00000000000000ff"), "b": (7, "ffffffffffffffff"), "c": (9, ""),
               "d": (3, "not-hex-digest!!"), "e": (2**40, "0123456789abcdef")}  # fmt: skip
    for event_id, seen in entries.items():
        index[event_id] = seen
    assert {k: index[k] for k in entries} == entries == {k: index.get(k) for k in entries}
    index.flush()
    assert {k: SeenIndex(table, 0).get(k) for k in entries} == entries  # rebuilt from the table
    ids = [f"p1-e-{i}" for i in range(20_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index = SeenIndex({}, 1)
        for offset, event_id in enumerate(ids):
            index[event_id] = (
                offset,
                hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest(),
            )
            if offset % 500 == 499:
                index.flush()
        held = (tracemalloc.get_traced_memory()[0] - before) / len(ids)
    finally:
        tracemalloc.stop()
    # An id is an 8-byte slot of the index (at most two thirds of the slots are used)
    # and its share of a batch record in the table (about 29 bytes here). As a dict of
    # the id to a tuple of an int and a str it was about 230 bytes beyond the id's
    # string, which the index kept too; with 16-byte slots and records of
    # {id: [offset, digest]}, 68.
    assert held < 60, f"{held:.0f} B per id"


def test_seen_index_only_loads_its_partition() -> None:
    backing: dict[str, bytes] = {
        "0|00000000000000000001": orjson.dumps({"a": 1}),
        "1|00000000000000000001": orjson.dumps({"b": 1}),
    }
    index = SeenIndex(backing, 0)
    assert index.get("a") == (1, "") and index.get("b") is None  # an entry from before digests


def test_the_dedup_index_forgets_ids_beyond_its_window_in_memory_and_table() -> None:
    backing: dict[str, bytes] = {}
    index = SeenIndex(backing, 0, window=100)
    for batch in range(5):  # batches of 50 offsets: 0-49, 50-99, ..., 200-249
        for offset in range(batch * 50, batch * 50 + 50):
            index[f"e-{offset}"] = (offset, "d")
        index.flush()
    # The newest offset is 249: records wholly before 149 are gone, the rest kept.
    assert index.get("e-99") is None and index.get("e-100") == (100, "d")
    assert sorted(backing) == [f"0|{n:020d}" for n in (100, 150, 200)]
    rebuilt = SeenIndex(backing, 0, window=100)  # after a rebalance: the same ids
    assert set(rebuilt) == set(index) and len(rebuilt) == 150


def test_a_duplicate_within_the_window_is_dropped_and_redelivery_still_counts_once(
    policy: Policy,
) -> None:
    backing = tables()
    state = PartitionState(backing, 0, dedup_window=10)
    engine = Engine(policy, state.as_state())
    line = orjson.dumps(access(event_id="dup", recipient="payco"))
    assert engine.process(line, offset=0, origin="t").status == "judged"
    assert engine.process(line, offset=5, origin="t").status == "duplicate"
    state.flush()
    for offset in range(6, 40):  # other events move the window past offset 0
        other = orjson.dumps(access(event_id=f"e-{offset}", recipient="payco"))
        engine.process(other, offset=offset, origin="t")
        state.flush()
    assert state.seen.get("dup") is None
    edge = state.edges[("flow", "shop", "payco")]
    assert edge.count == 35  # the duplicate was not counted


def test_the_consent_view_stays_bounded_and_still_answers_from_the_table(
    policy: Policy,
) -> None:
    backing = tables()
    state = PartitionState(backing, 3, cached_subjects=10)
    engine = Engine(policy, state.as_state())
    for n in range(30):
        consent = consent_event(subject=f"u-{n}", recipient="payco", event_id=f"c-{n}")
        engine.process(orjson.dumps(consent), offset=n, origin="t")
        state.flush()
    assert len(state.subjects) <= 10
    assert len([k for k in backing["subjects"] if "#" not in k]) == 30  # and a decision each
    assert state.subjects["u-0"].decisions[0].event_id == "c-0"  # read back from the table


def test_worker_help_shows_environment_variables() -> None:
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0
    # Every setting of the model is in the help, as an option or in the list below them.
    for name in Settings.model_fields:
        assert f"LINEAGE_{name.upper()}" in result.output


def test_export_without_a_broker_fails_clearly() -> None:
    result = CliRunner().invoke(
        main,
        ["export", "--broker", "127.0.0.1:1", "--format", "json", "--out", "-", "--timeout", "3"],
    )
    assert result.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in result.output


def test_edge_json_round_trip_keeps_times() -> None:
    aggregate = EdgeAggregate()
    at = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    aggregate.add(at, (("a.b",), "p", "consent", "identified", "transfer"), True, [("r", "9")])
    back = EdgeAggregate.from_json(orjson.loads(orjson.dumps(aggregate.to_json())))
    assert back.to_json() == aggregate.to_json()
    assert back.first_seen == at and back.categories == {"a.b": 1}


def test_state_restored_by_faust_as_decoded_json_reads_the_same(policy: Policy) -> None:
    # faust's changelog codec hands restored values back already decoded from JSON
    # (the dedup records, compressed, are read by the tables' raw codec alone).
    backing = tables()
    first = PartitionState(backing, 1)
    engine = Engine(policy, first.as_state())
    engine.process(orjson.dumps(access(recipient="payco")), offset=0, origin="t")
    first.flush()
    restored = {
        name: {k: v if name == "seen" else orjson.loads(v) for k, v in t.items()}
        for name, t in backing.items()
    }
    again = PartitionState(restored, 1)
    assert again.edges[("flow", "shop", "payco")].count == 1
    assert again.seen.get("e-1")[0] == 0


def test_a_view_asks_its_table_once_per_missing_key_and_sees_its_own_writes() -> None:
    class CountingTable(dict[str, bytes]):
        gets = 0

        def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
            CountingTable.gets += 1
            return super().get(key, default)

    table = CountingTable()
    view: CachedView[str, EdgeAggregate] = CachedView(
        table, 1, str, EdgeAggregate.from_json, lambda a: orjson.dumps(a.to_json())
    )
    assert view.get("u-1") is None and view.get("u-1") is None
    assert CountingTable.gets == 1  # a miss is remembered
    view["u-1"] = EdgeAggregate()
    assert view.get("u-1") is not None  # a write ends the miss
    view.flush()
    assert list(table) == ["1|u-1"]
    del view["u-1"]
    assert "u-1" not in view and "1|u-1" not in table


def test_the_task_dump_names_every_await_and_shows_no_data() -> None:
    async def inner(secret: str) -> None:
        await asyncio.sleep(10)

    async def outer() -> None:
        await inner("alice@example.com")

    async def scenario() -> list[str]:
        task = asyncio.ensure_future(outer())
        await asyncio.sleep(0)
        lines = awaiting(task.get_coro())
        task.cancel()
        return lines

    lines = asyncio.run(scenario())
    assert [line.split()[-1] for line in lines][:3] == ["outer", "inner", "sleep"]
    assert not any("alice" in line for line in lines)


STUCK = """
import sys, threading
from streams.runner import install_stack_dump

install_stack_dump()
inside, release = threading.Event(), threading.Event()


def waits_in_a_thread() -> None:
    inside.set()
    release.wait()


def blocked_main() -> None:
    inside.wait()
    print("ready", flush=True)
    sys.stdin.readline()  # blocked in a call, as a loop joining a thread is


threading.Thread(target=waits_in_a_thread, daemon=True).start()
blocked_main()
release.set()
print("went on", flush=True)
"""


def test_sigquit_writes_every_threads_stack_while_the_main_thread_is_blocked() -> None:
    """A worker whose event loop is blocked runs no task dump (SIGUSR1); SIGQUIT still
    shows where each thread is, and the process goes on."""
    import signal
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", STUCK],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    assert child.stdin is not None and child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    child.send_signal(signal.SIGQUIT)
    out, err = child.communicate(b"\n", timeout=30)
    assert child.returncode == 0, err
    assert out == b"went on\n"
    stacks = err.decode()
    assert stacks.count("(most recent call first)") == 2, stacks
    assert "in blocked_main" in stacks and "in waits_in_a_thread" in stacks, stacks


def test_repeated_library_errors_are_let_through_once_per_interval_per_kind() -> None:
    def record(msg: str, at: float, name: str = "aiokafka.client") -> logging.LogRecord:
        rec = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, ("1", "err"), None)
        rec.created = at
        return rec

    gate = RepeatFilter(every=30)
    unable = "Unable connect to node with id %s: %s"
    passed = [gate.filter(record(unable, t)) for t in (0, 1, 2, 31)]
    assert passed == [True, False, False, True]
    last = record(unable, 62)
    assert gate.filter(last) and "more like it" not in str(last.msg)
    assert not gate.filter(record(unable, 62.5))
    again = record(unable, 100)
    assert gate.filter(again) and "and 1 more like it" in str(again.msg)
    # Each kind (logger and format string) has its own interval.
    assert gate.filter(record("Heartbeat failed: %r", 100.1, "aiokafka.consumer.group_coordinator"))
    # Our own records, and anything below WARNING, always pass.
    assert all(gate.filter(record(unable, 100.2 + i, "lineage.worker")) for i in range(3))
    info = record(unable, 100.3)
    info.levelno = logging.INFO
    assert gate.filter(info)


def test_the_filter_sits_on_the_root_handlers_where_library_records_arrive() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)
    try:
        install_repeat_filter(every=30)
        install_repeat_filter(every=30)  # once per handler, however often it is called
        assert sum(isinstance(f, RepeatFilter) for f in handler.filters) == 1
    finally:
        root.removeHandler(handler)


def test_a_worker_listening_beyond_this_machine_needs_a_web_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LINEAGE_WEB_HOST", "0.0.0.0")
    result = CliRunner().invoke(main, ["worker", "--broker", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert "LINEAGE_WEB_TOKEN" in result.output and "Traceback" not in result.output


def test_secrets_come_from_the_environment_or_a_file_never_argv_and_never_show(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LINEAGE_SASL_PASSWORD", "hunter2-password")
    monkeypatch.setenv("LINEAGE_WEB_TOKEN", "hunter2-token")
    help_text = CliRunner().invoke(main, ["worker", "--help"]).output
    assert "--sasl-password " not in help_text and "--sasl-password-file" in help_text
    assert "hunter2" not in help_text
    refused = CliRunner().invoke(main, ["worker", "--sasl-password", "x"])
    assert refused.exit_code == 2  # no such option: a secret on argv shows in ps
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    monkeypatch.delenv("LINEAGE_SASL_PASSWORD")
    monkeypatch.setenv("LINEAGE_SASL_PASSWORD_FILE", str(secret))
    settings = Settings()
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == "from-a-file"
    assert "from-a-file" not in repr(settings)
    monkeypatch.setenv("LINEAGE_SASL_PASSWORD_FILE", str(tmp_path / "missing"))
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "sasl_password_file: cannot read" in result.output


def test_tls_files_that_do_not_load_are_a_setting_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ValidationError, match="TLS files"):
        Settings(security_protocol="SSL", ssl_cafile=bad)


class _Web:
    """What faust's ``web`` gives a page: a JSON or a text response."""

    def json(self, data: object, status: int = 200) -> tuple[int, str, object]:
        return status, "application/json", data

    def text(
        self, text: str, content_type: str = "text/plain", status: int = 200
    ) -> tuple[int, str, object]:
        return status, content_type, text


class _Request:
    def __init__(self, **query: str) -> None:
        self.query = query
        self.headers: dict[str, str] = {}


class _App:
    def __init__(self) -> None:
        self.pages: dict[str, object] = {}
        # faust's aiohttp driver keeps its application here; the door is a middleware of it.
        self.web = types.SimpleNamespace(web_app=types.SimpleNamespace(middlewares=[]))

    def page(self, path: str) -> object:
        def register(handler: object) -> object:
            self.pages[path] = handler
            return handler

        return register


def test_graph_serves_every_export_format_with_its_content_type(
    policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/graph?format=openlineage answered HTTP 500 (no content type for it), while the 400
    of an unknown format listed it as valid."""
    import streams.web as web_module
    from lineage.export import FORMATS
    from streams.metrics import Metrics
    from tests.test_export import DEMO

    async def edges(settings: Settings, **kw: object) -> dict[object, EdgeAggregate]:
        return dict(DEMO)

    monkeypatch.setattr(web_module, "read_edges", edges)
    app = _App()
    web_module.register_pages(
        app,
        settings=Settings.model_construct(web_token=None),
        policy=policy,
        metrics=Metrics(),
        partitions=list,
    )
    graph = app.pages["/graph"]
    assert set(web_module._CONTENT_TYPES) == set(FORMATS)
    for fmt in FORMATS:
        status, content_type, body = asyncio.run(graph(_Web(), _Request(format=fmt)))  # type: ignore[operator]
        assert status == 200, (fmt, body)
        assert content_type == web_module._CONTENT_TYPES[fmt]
    status, content_type, body = asyncio.run(graph(_Web(), _Request(format="openlineage")))  # type: ignore[operator]
    assert content_type == "application/x-ndjson"
    lines = str(body).splitlines()
    assert lines and all(orjson.loads(line)["eventType"] for line in lines)
    status, _, error = asyncio.run(graph(_Web(), _Request(format="pdf")))  # type: ignore[operator]
    assert status == 400
    assert error == {"error": f"unknown format 'pdf'; one of {', '.join(FORMATS)}"}


def test_a_busy_web_port_stops_the_worker_at_once_in_one_line(tmp_path: Path) -> None:
    """It took 18 s, three lines and a 45-line traceback (faust found out after joining)."""
    import socket
    import time

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = CliRunner().invoke(
            main,
            [
                "worker",
                "--broker",
                "127.0.0.1:1",
                "--web-port",
                str(port),
                "--state-dir",
                str(tmp_path / "state"),
            ],
        )
        took = time.monotonic() - started
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"lineage: error: the web server cannot listen on 127.0.0.1:{port}: Address already "
        "in use (another worker on this machine?): stop it, or set --web-port or "
        "LINEAGE_WEB_PORT (0 turns the web server off)"
    ]
    assert took < 5


def test_workers_sharing_a_state_folder_keep_their_views_apart(tmp_path: Path) -> None:
    # Replicas on one volume: each worker's views in a folder of its own, and a folder
    # whose worker is gone (its lock free) removed by the next worker that starts.
    async def no_rows(partition: int) -> list[Row]:
        return []

    first = PartitionViews(tmp_path, no_rows)
    second = PartitionViews(tmp_path, no_rows)
    assert first.directory != second.directory
    asyncio.run(first.open(2))
    asyncio.run(second.open(2))
    assert (first.directory / "partition-2.sqlite").exists()
    first.drop(2)  # revoked from the first: the second's file stays
    assert (second.directory / "partition-2.sqlite").exists()
    os.close(first._lock)  # the first worker dies without cleaning up
    third = PartitionViews(tmp_path, no_rows)
    assert not first.directory.exists()
    assert second.directory.exists() and third.directory.exists()
    second.close()
    assert not second.directory.exists()


class _Recording(MappingWriter):
    """A writer that records what a flush writes, in order, and can lose the records of
    one table whose keys hold a '#' or not (what a crash between them keeps from Kafka)."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.lose: tuple[Any, bool] | None = None  # (table, lose the '#' keys?)

    def set(self, table: Any, key: str, value: bytes) -> None:
        self.order.append(key)
        if self.lose is not None and table is self.lose[0] and ("#" in key) == self.lose[1]:
            return
        table[key] = value

    def delete(self, table: Any, key: str) -> None:
        table.pop(key, None)


def _days_of(backing: dict[str, dict[str, bytes]], partition: int) -> dict[Any, Any]:
    state = PartitionState(backing, partition)
    return {
        key: (edge.count, edge.days, edge.breach_days)
        for key, edge in (
            (k, state.edges[k]) for k in [("flow", "shop", "payco"), ("flow", "shop", "adco")]
        )
    }


@pytest.mark.parametrize("lost", ["nothing", "the months"])
def test_an_edge_keeps_its_days_by_month_and_a_crash_between_loses_none(
    policy: Policy, lost: str
) -> None:
    # Days a flush changed reach the month records after the edge's own record, which
    # holds them too: the months a crash kept from Kafka are put back from it.
    backing = tables()
    writer = _Recording()
    state = PartitionState(backing, 1, writer=writer)
    engine = Engine(policy, state.as_state())
    offset = 0
    for day in ("2026-01-30", "2026-01-31", "2026-02-01", "2026-03-15"):
        for recipient in ("payco", "adco"):
            event = access(
                event_id=f"e-{offset}", recipient=recipient, occurred_at=f"{day}T12:00:00+09:00"
            )
            engine.process(orjson.dumps(event), offset=offset, origin="t")
            offset += 1
        if day == "2026-03-15" and lost == "the months":
            writer.lose = (backing["edges"], True)
        writer.order.clear()
        state.flush()
        keys = [k for k in writer.order if k.startswith("1|flow|")]
        bases = [i for i, k in enumerate(keys) if "#" not in k]
        assert bases and max(bases) < min(i for i, k in enumerate(keys) if "#" in k)
    record = orjson.loads(backing["edges"]["1|flow|shop|payco"])
    assert "days" not in record and record["months"] == ["2026-01", "2026-02", "2026-03"]
    assert record["recent"]["days"] == {"2026-03-15": 1}  # this flush's days only
    expected = {
        key: (4, {"2026-01-30": 1, "2026-01-31": 1, "2026-02-01": 1, "2026-03-15": 1})
        for key in [("flow", "shop", "payco"), ("flow", "shop", "adco")]
    }
    found = _days_of(backing, 1)
    assert {k: (n, days) for k, (n, days, _) in found.items()} == expected
    # From Kafka (lineage export), the same.
    exported = dict(edge_records(sorted(backing["edges"].items())))
    assert {k: (e.count, e.days) for k, e in exported.items()} == expected


def test_an_edge_record_of_an_earlier_worker_keeps_its_days(policy: Policy) -> None:
    backing = tables()
    edge = EdgeAggregate()
    edge.add(datetime(2026, 1, 5, tzinfo=UTC), ((), "p", "consent", "identified", "transfer"),
             True, [], day="2026-01-05")  # fmt: skip
    backing["edges"]["0|flow|shop|payco"] = orjson.dumps(edge.to_json())  # days inside
    state = PartitionState(backing, 0)
    assert state.edges[("flow", "shop", "payco")].days == {"2026-01-05": 1}
    state.edges[("flow", "shop", "payco")] = state.edges[("flow", "shop", "payco")]
    state.flush()
    assert "0|flow|shop|payco#2026-01" in backing["edges"]
    assert PartitionState(backing, 0).edges[("flow", "shop", "payco")].days == {"2026-01-05": 1}


@pytest.mark.parametrize("lost", ["nothing", "the subject's record"])
def test_consent_decisions_go_before_their_subject_and_a_crash_between_counts_none(
    policy: Policy, lost: str
) -> None:
    backing = tables()
    writer = _Recording()
    state = PartitionState(backing, 2, writer=writer)
    engine = Engine(policy, state.as_state())
    for n in range(20):  # a second record of decisions
        consent = consent_event(subject="u-1", recipient="payco", event_id=f"c-{n}")
        engine.process(orjson.dumps(consent), offset=n, origin="t")
        if n == 19 and lost != "nothing":
            writer.lose = (backing["subjects"], False)
        writer.order.clear()
        state.flush()
        keys = [k for k in writer.order if k.startswith("2|u-1")]
        assert keys[-1] == "2|u-1" and all("#" in k for k in keys[:-1])
    reloaded = PartitionState(backing, 2).subjects["u-1"]
    # Lost: the record says 19 decisions and the last one's event is judged again.
    assert len(reloaded.decisions) == (20 if lost == "nothing" else 19)
    assert [d.event_id for d in reloaded.decisions] == [f"c-{n}" for n in range(20)][
        : len(reloaded.decisions)
    ]


def test_records_held_are_read_first_and_written_in_the_order_made() -> None:
    table: dict[str, bytes] = {"0|a": b"old", "0|b": b"gone"}
    held = DeferredWriter(MappingWriter())
    read = held.reader(table)
    held.set(table, "0|a", b"first")
    first = held.cut()
    held.set(table, "0|a", b"second")
    held.delete(table, "0|b")
    second = held.cut()
    held.set(table, "0|c", b"third")  # the flush being made
    assert table == {"0|a": b"old", "0|b": b"gone"}  # nothing written yet
    assert (read("0|a"), read("0|b"), read("0|c"), read("0|z")) == (b"second", None, b"third", None)
    assert held.write(second) == 3  # the first flush's record too, before it
    assert table == {"0|a": b"second"}
    assert read("0|c") == b"third" and held.held == 1
    assert held.write(first) == 0  # written already
    held.write(held.cut())
    assert table == {"0|a": b"second", "0|c": b"third"} and held.held == 0
    assert read("0|a") == b"second"  # from the table now


def test_records_held_of_a_revoked_partition_are_dropped_and_the_rest_kept() -> None:
    seen: dict[str, bytes] = {}
    board: dict[str, bytes] = {}
    held = DeferredWriter(MappingWriter())
    for partition in (0, 1):
        held.set(seen, f"{partition}|x", b"s")
        held.set(board, f"{partition}|x", b"b")
    under_way = held.cut()
    held.set(seen, "1|y", b"s")
    assert held.forget([seen], 1) == 2  # in the flush under way and in the next
    assert held.reader(seen)("1|x") is None and held.reader(board)("1|x") == b"b"
    held.write(under_way)
    assert seen == {"0|x": b"s"} and board == {"0|x": b"b", "1|x": b"b"}
    held.set(seen, "0|z", b"s")
    cut = held.cut()
    assert held.discard() == 1 and held.write(cut) == 0  # a rewind: nothing written
    assert held.reader(seen)("0|z") is None and "0|z" not in seen


def test_the_intake_hands_over_queued_chunks_when_no_time_is_left() -> None:
    # The evaluate loop asks with no time left once a linger has passed: a queued chunk
    # must come out then, or the worker spins with a full intake and judges nothing.
    from streams.intake import Chunk, Intake

    async def scenario() -> tuple[int, int, int]:
        intake = Intake({"events"})
        empty = len(await intake.take(100, timeout=0))
        await intake.put(Chunk(("events", 0), [1, 2], 0))
        await intake.put(Chunk(("events", 1), [3], 0))
        taken = await intake.take(100, timeout=0)
        waited = len(await intake.take(100, timeout=0.01))
        return empty, sum(len(c.records) for c in taken), waited

    assert asyncio.run(scenario()) == (0, 3, 0)


def test_the_heap_is_trimmed_every_interval_of_work_and_when_work_stops() -> None:
    calls: list[float] = []
    now = 100.0

    def trim(pad: int) -> int:
        assert pad == 0
        calls.append(now)
        return 1

    heap = HeapTrim(every=10.0, trim=trim, idle=1.0)
    heap.maybe(now)  # the first turn trims
    now = 109.9
    heap.maybe(now)
    now = 110.0
    heap.maybe(now)
    assert calls == [100.0, 110.0]
    # Work stops: the first turn with nothing to do trims, once a second at most, and
    # only after turns that did work.
    for now, worked in [(110.5, False), (111.0, False), (111.5, True), (111.8, False),
                        (112.2, False), (112.4, True), (112.6, True), (112.7, False),
                        (113.0, False), (118.0, False), (123.3, False)]:  # fmt: skip
        heap.maybe(now, worked)
    assert calls == [100.0, 110.0, 111.8, 113.0, 123.3]


def test_the_heap_trim_is_glibcs_where_malloc_is_glibcs() -> None:
    heap = HeapTrim()
    assert heap.available == (platform.libc_ver()[0] == "glibc")
    heap.maybe(0.0)  # the real call: nothing to assert but that it returns


def test_a_view_kafka_cannot_serve_is_read_again_until_it_can(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker away while the worker rebuilds a partition's view (its first events
    just came) made the read time out after 30 s, and the worker crash: it now reads
    again, waiting longer each time, until Kafka answers."""
    import streams.app as worker_app
    from streams.topics import KafkaUnavailable

    rows: list[Row] = [("s-1", b"{}")]
    attempts: list[int] = []

    async def read_view(settings: Settings, partition: int) -> list[Row]:
        attempts.append(partition)
        if len(attempts) < 3:
            raise KafkaUnavailable("cannot reach Kafka at 127.0.0.1:9: KafkaTimeoutError")
        return rows

    waits: list[float] = []
    sleep = asyncio.sleep

    async def record_sleep(seconds: float) -> None:
        waits.append(seconds)
        await sleep(0)

    monkeypatch.setattr(worker_app, "read_view", read_view)
    monkeypatch.setattr(worker_app.asyncio, "sleep", record_sleep)
    monkeypatch.setattr("lineage.backoff.random.uniform", lambda low, high: 1.0)
    port = worker_app.FaustPort(None, None, Settings())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="lineage.worker"):
        assert asyncio.run(port.read_view(2)) == rows
    assert attempts == [2, 2, 2]
    assert waits == [1.0, 2.0]
    assert caplog.text.count("the subjects' view of partition 2 could not be read") == 2


@pytest.mark.parametrize("failing", ["seek_to_beginning", "end_offsets", "getmany", "position"])
def test_a_topic_kafka_stops_serving_mid_read_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Any step of a topic's read can meet a broker gone away; each becomes the one
    error the callers handle (KafkaUnavailable), and the reading consumer is stopped."""
    from aiokafka.errors import KafkaConnectionError
    from aiokafka.structs import TopicPartition

    import streams.changelog as changelog
    from streams.topics import KafkaUnavailable

    stopped: list[bool] = []

    class Consumer:
        def __init__(self, **config: Any) -> None:
            self._client = types.SimpleNamespace()

        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            stopped.append(True)

        def assign(self, tps: list[TopicPartition]) -> None:
            pass

        def _step(self, name: str) -> None:
            if name == failing:
                raise KafkaConnectionError(f"{name}: broker away")

        async def seek_to_beginning(self, *tps: TopicPartition) -> None:
            self._step("seek_to_beginning")

        async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            self._step("end_offsets")
            return dict.fromkeys(tps, 1)

        async def getmany(self, *tps: TopicPartition, timeout_ms: int) -> dict[Any, Any]:
            self._step("getmany")
            return {}

        async def position(self, tp: TopicPartition) -> int:
            self._step("position")
            return 1

    async def partitions_of(settings: Settings, topic: str, *, timeout: float) -> list[int]:
        return [0]

    monkeypatch.setattr(changelog, "AIOKafkaConsumer", Consumer)
    monkeypatch.setattr(changelog, "partitions_of", partitions_of)
    monkeypatch.setattr(changelog, "reconnect_backoff", lambda client: None)
    with pytest.raises(KafkaUnavailable, match="cannot read lineage-subject-view from"):
        asyncio.run(changelog.read_topic(Settings(), "lineage-subject-view"))
    assert stopped == [True]
