"""End to end on a real Apache Kafka: the worker agrees with the embedded run, exactly.

Each test is its own deployment on the session broker (uuid topic prefix and app id)
and runs real `lineage worker` processes. The reference is `run_embedded` on the same
lines with the same redaction key. Faults (crashes, rebalances, floods of bad input,
restarts) are in tests/test_faults.py; broker outages in tests/test_kafka_outage.py.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest

from lineage.demo import generate_day
from lineage.emitter import Emitter
from lineage.schemas import EventRejected
from tests.kafka_helpers import (
    Deployment,
    Reference,
    Worker,
    assert_disk_holds_the_changelog,
    assert_subjects_agree,
    embedded_answer,
    graph_facts,
    wait_until,
    without_time,
)

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"], ids=["memory", "rocksdb"])
def test_emitter_events_give_the_embedded_alerts_and_graph(
    kafka_bootstrap: str, tmp_path: Path, store: str
) -> None:
    day = list(generate_day(events=1500, seed=5))
    reference = Reference(day, tmp_path / "embedded")
    deployment = Deployment(kafka_bootstrap, tmp_path, env={"LINEAGE_STORE": store})
    worker = Worker(deployment, "a").start()
    try:
        worker.wait_ready()
        malformed = []
        with Emitter(
            kafka_bootstrap, topic=deployment.topic("events"), spill_path=tmp_path / "spill.jsonl"
        ) as emitter:
            for line in day:
                try:
                    emitter.emit(line)
                except EventRejected:
                    malformed.append(line)
        deployment.produce(malformed)  # the Emitter refuses them; a careless producer would not

        ids = deployment.alert_ids(reference.alert_ids, 180, alive=[worker])
        assert ids == reference.alert_ids, worker.tail()

        dead = deployment.read(
            "dead-letter", lambda ms: len(ms) >= len(reference.dead), 60, alive=[worker]
        )
        assert len(dead) == len(reference.dead) == len(malformed)
        for message in dead:
            headers = dict(message.headers)
            assert headers["lineage-reason"]
            envelope = orjson.loads(headers["lineage-dead-letter"])
            assert envelope["kind"] == headers["lineage-kind"].decode()
            if not envelope["redacted"]:
                assert message.value in malformed  # the original bytes, untouched

        incidents = deployment.final_incidents(reference.incidents, 120, alive=[worker])
        assert incidents == reference.incidents
        statuses = deployment.alert_statuses(reference.statuses, 60, alive=[worker])
        assert "retracted" in statuses.values()  # the demo's consent platform syncs late

        # The worker's web server: health, Prometheus metrics and the same global graph.
        health = worker.health()
        assert health["status"] == "ok" and health["policy_version"]
        raised = [a for a in reference.alerts if a["status"] == "open"]
        assert worker.metric("lineage_alerts_total") >= len(raised)
        assert worker.metric("lineage_alerts_retracted_total") >= 1
        metrics = worker.get("/metrics")
        assert "lineage_consumer_lag{" in metrics and "lineage_dead_letters_total" in metrics
        assert worker.metric("lineage_outputs_total") > 0
        served = json.loads(worker.get("/graph?format=json"))
        assert graph_facts(served) == graph_facts(reference.graph)
        page = worker.get("/graph?format=html")
        assert page.lstrip().lower().startswith("<!doctype html")
        # OpenLineage from Kafka's tables, with no worker involved: the embedded run's events.
        exported = tmp_path / "kafka.openlineage.jsonl"
        result = deployment.export("openlineage", exported)
        assert result.returncode == 0, result.stderr
        embedded = (reference.out / "lineage.openlineage.jsonl").read_text(encoding="utf-8")
        assert exported.read_text(encoding="utf-8") == embedded
        # Subjects answered by the worker (from its per-subject view of each partition).
        assert_subjects_agree(reference, worker)
    finally:
        worker.stop()
    assert worker.stop() == 0, worker.tail()  # SIGTERM: its last flush succeeded
    if store == "rocksdb://":
        assert_disk_holds_the_changelog(deployment, worker.state_dir, range(4))
    # With no worker running, the graph comes back from Kafka alone, and so do the
    # provision records and each subject's lineage.
    assert graph_facts(deployment.exported_graph()) == graph_facts(reference.graph)
    done = cli(deployment, "records", "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    records = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert sorted(records, key=lambda r: r["record_id"]) == sorted(
        reference.records, key=lambda r: r["record_id"]
    )
    for subject in {r["subject"] for r in reference.records[:5]}:
        done = cli(deployment, "subject", subject)
        assert done.returncode == 0, done.stderr
        assert without_time(orjson.loads(done.stdout)) == embedded_answer(reference, subject)


def cli(deployment: Deployment, *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "lineage.cli", *args],
        env=deployment.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_any_worker_answers_for_any_subject(kafka_bootstrap: str, tmp_path: Path) -> None:
    day = list(generate_day(events=1500, seed=6))
    # Refs that a decoded URL would make other refs: forwarded so, "u#1" was asked as "u".
    odd = ["u", "u#1", "u?x=1", "u%231", "u/1"]
    transfer = next(orjson.loads(e) for e in day if b'"transfer"' in e and b'"subject"' in e)
    day += [
        orjson.dumps({**transfer, "event_id": f"odd-{n}", "subject": ref})
        for n, ref in enumerate(odd)
    ]
    reference = Reference(day, tmp_path / "embedded")
    deployment = Deployment(kafka_bootstrap, tmp_path)
    workers = [Worker(deployment, name, LINEAGE_WEB_TOKEN="t0ken") for name in ("a", "b")]
    try:
        for worker in workers:
            worker.start().wait_ready()
        wait_until(
            lambda: all(w.health()["partitions"] for w in workers),
            60,
            "both workers to hold partitions",
            alive=workers,
        )
        deployment.produce(day)
        deployment.alert_statuses(reference.statuses, 180, alive=workers)
        subjects = sorted({r["subject"] for r in reference.records if r["subject"]})[:6]
        for subject in [*subjects, *odd]:
            want = embedded_answer(reference, subject)
            assert want["recipients"], subject
            # Each worker answers for every subject: its own, or forwarded to the other.
            for worker in workers:
                got = json.loads(worker.get(f"/subjects/{urllib.parse.quote(subject, safe='')}"))
                assert without_time(got) == want, (worker.name, subject)
        page = workers[0].get(f"/subjects/{subjects[0]}?format=html")
        assert page.startswith("<!doctype html>")
    finally:
        for worker in workers:
            worker.stop()


def test_hostile_messages_leak_nothing_on_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Personal data planted in ids, keys, attribute keys and bad messages, in ASCII,
    full-width and international forms, reaches no topic, header, export, page or log."""
    from tests.test_no_leak import leaks, plant, without_timer_times

    values = [
        ("hanako.suzuki@example.jp", "hanako.suzuki@example.jp"),
        ("ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐ", "hanako@example.jp"),
        ("ha\u200bna\u00adko@example.jp", "hanako@example.jp"),
        ("hanako [at] example [dot] jp", "hanako@example.jp"),
        ("aGFuYWtvQGV4YW1wbGUuanA=", "hanako@example.jp"),
        ("090-8765-4321", "09087654321"),
        ("０９０－８７６５－４３２１", "09087654321"),
        ("〇九〇－八七六五－四三二一", "09087654321"),
        ("+81 90 8765 4321", "9087654321"),
        ("tel09087654321", "09087654321"),
        ("4111-1111-1111-1111", "4111111111111111"),
        ("1234 5678 9018", "123456789018"),  # My Number
        ("TK1234567", "tk1234567"),  # passport
        ("〒150-0041", "1500041"),
    ]
    places = ["subject", "event_id", "attribute key", "attribute value", "source", "recipient",
              "category", "consent subject", "unknown field value", "truncated json"]  # fmt: skip
    lines, keys = [], []
    for n, ((written, _), place) in enumerate((v, p) for v in values for p in places):
        lines.append(plant(place, written, n))
        keys.append(written.encode())  # the key, too, is what a careless producer sent
    deployment = Deployment(kafka_bootstrap, tmp_path)
    worker = Worker(deployment, "a", loglevel="debug", LINEAGE_WEB_TOKEN="t0ken")
    try:
        worker.start().wait_ready()
        deployment.produce(lines, keys=keys)
        dead = deployment.read("dead-letter", lambda ms: len(ms) >= 12, 120, alive=[worker])

        def judged() -> float:
            return sum(
                worker.metric(f"lineage_{name}_total")
                for name in ("events", "dead_letters", "duplicates")
            )

        wait_until(lambda: judged() >= len(lines), 120, "every message judged", alive=[worker])
        texts: dict[str, str] = {}
        for name in ("alerts", "incidents", "dead-letter", "provision-records"):
            messages = deployment.read(name, lambda ms: True, 30)
            texts[name] = "\n".join(
                repr((m.key, m.value, m.headers)) for m in messages
            ) + "\n".join(
                (m.key or b"").decode(errors="replace")
                + (m.value or b"").decode(errors="replace")
                + "".join(v.decode(errors="replace") for _, v in m.headers)
                for m in messages
            )
        assert dead
        texts["metrics"] = worker.get("/metrics")
        texts["health"] = worker.get("/health")
        # The subjects, asked for as written: the answer is kept under the token.
        for n, (written, _) in enumerate(values):
            quoted = urllib.parse.quote(written, safe="")
            texts[f"subjects {n}"] = worker.get(f"/subjects/{quoted}")
            texts[f"subjects {n} html"] = worker.get(f"/subjects/{quoted}?format=html")
        for fmt in ("json", "html", "graphml", "dot", "mermaid"):
            texts[f"graph.{fmt}"] = worker.get(f"/graph?format={fmt}")
        texts["log"] = without_timer_times(worker.text())
    finally:
        worker.stop()
    for fmt in ("json", "html", "graphml", "dot", "mermaid"):
        out = tmp_path / f"export.{fmt}"
        assert deployment.export(fmt, out).returncode == 0
        texts[f"export.{fmt}"] = out.read_text()
    for written, canonical in values:
        for name, text in texts.items():
            assert not leaks(text, canonical), f"{written!r} leaks into {name}"


def test_every_route_but_health_and_metrics_needs_the_web_token(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """One door: every route the running worker registered, faust's included, answers
    401 without the token, but the open ones; faust's table and router pages are off."""
    import re
    import urllib.error

    deployment = Deployment(kafka_bootstrap, tmp_path)
    worker = Worker(deployment, "a", LINEAGE_WEB_TOKEN="s3cret-token")

    def status(path: str, token: str) -> int:
        try:
            worker.get(path, token=token)
        except urllib.error.HTTPError as error:
            return error.code
        return 200

    try:
        worker.start().wait_ready()
        logged = re.search(r"web server routes: (.+)", worker.text())
        assert logged, worker.tail()
        routes = logged.group(1).strip().split(", ")
        assert {"/health", "/metrics", "/graph", "/subjects/{subject}"} <= set(routes), routes
        assert not [r for r in routes if r.startswith(("/table", "/router", "/stats"))], routes
        for route in routes:
            path = route.replace("{subject}", "u-1")
            if route in ("/health", "/metrics"):
                assert status(path, "-") == 200, route
                continue
            for token in ("-", "wrong", "s3cret-token-but-longer"):
                assert status(path, token) == 401, (route, token)
            assert status(path, "s3cret-token") != 401, route
        # faust's pages, and paths that match no route, give nothing away without the token.
        for path in ("/table/", "/table/lineage.subjects/0%7Cu-1/", "/router/", "/stats/", "/x"):
            assert status(path, "-") == 401, path
            assert status(path, "s3cret-token") == 404, path
        assert json.loads(worker.get("/graph?format=json"))["nodes"] is not None
        assert "s3cret-token" not in worker.text()
    finally:
        worker.stop()


def test_a_worker_forwards_its_alerts_to_a_webhook_and_a_syslog_listener(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from tests.test_notify import HookServer, parse_cef, syslog_parts

    day = list(generate_day(events=600, seed=17))
    reference = Reference(day, tmp_path / "embedded")
    opened = {a["alert_id"] for a in reference.alerts if a["status"] == "open"}
    assert opened
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(1)
    with HookServer() as hook:
        routes = tmp_path / "routes.yaml"
        routes.write_text(
            "routes:\n"
            "  - name: hooks\n"
            "    match: {kinds: [alert], statuses: [open]}\n"
            f"    urls: ['json://127.0.0.1:{hook.port}/alerts']\n"
            "  - name: siem\n"
            "    match: {kinds: [alert], statuses: [open]}\n"
            f"    syslog: [{{host: 127.0.0.1, port: {collector.getsockname()[1]}}}]\n"
            "delivery: {queue_size: 100000}\n"
        )
        deployment = Deployment(kafka_bootstrap, tmp_path, env={"LINEAGE_ROUTES": str(routes)})
        worker = Worker(deployment, "routed").start()
        try:
            worker.wait_ready()
            deployment.produce(day)
            posted: set[str] = set()
            logged: set[str] = set()

            def all_arrived() -> bool:
                posted.update(json.loads(e["message"])["alert_id"] for e in hook.envelopes())
                while True:
                    try:
                        message = collector.recv(65536)
                    except TimeoutError:
                        break
                    _, extension = parse_cef(syslog_parts(message)["msg"])
                    logged.add(extension["externalId"])
                return opened <= posted and opened <= logged

            wait_until(
                all_arrived,
                180,
                "every open alert at the webhook and the collector",
                alive=[worker],
            )
            sent = [
                float(line.rsplit(" ", 1)[1])
                for line in worker.get("/metrics").splitlines()
                if line.startswith("lineage_notifications_total{")
                and 'route="hooks"' in line
                and 'outcome="sent"' in line
            ]
            assert sent and sent[0] >= len(opened)
        finally:
            worker.stop()
            collector.close()


def test_the_worker_creates_every_topic_faust_subscribes_to_before_it_starts(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    from streams.settings import Settings
    from streams.topics import TABLES, changelog_topic, ensure_topics

    deployment = Deployment(kafka_bootstrap, tmp_path)
    settings = Settings(
        broker=kafka_bootstrap,
        topic_prefix=deployment.prefix,
        app_id=deployment.app_id,
        partitions=4,
    )
    created = ensure_topics(settings, records_retention_days=1095)
    assert sorted(created) == sorted(deployment.topic(n) for n in (
        "events", "alerts", "incidents", "dead-letter", "provision-records", "incident-partials",
        "subject-view",
    ))  # fmt: skip
    changelogs = [changelog_topic(settings, table) for table in TABLES]
    assignor = f"{deployment.app_id}-__assignor-__leader"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        # Listed with a leader for every partition as soon as ensure_topics returns.
        described = {t["name"]: t for t in admin.describe_topics([*changelogs, assignor])}
        assert {name: len(t["partitions"]) for name, t in described.items()} == {
            **{name: 4 for name in changelogs},
            assignor: 1,
        }
        assert all(p["leader_id"] >= 0 for t in described.values() for p in t["partitions"])
        for compacted in (changelogs[0], deployment.topic("subject-view")):
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, compacted)])
            assert configs["topic"][compacted]["cleanup.policy"]["value"] == "compact"
        records = deployment.topic("provision-records")
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, records)])
        # CONTRACT section 10: the records topic keeps records as long as retention says.
        assert configs["topic"][records]["retention.ms"]["value"] == str(1095 * 86_400_000)
    finally:
        admin.close()
    assert ensure_topics(settings) == []  # the second time, nothing to create
    worker = Worker(deployment, "a").start()
    try:
        worker.wait_ready()  # which also checks that faust skipped no subscribed topic
        assert "created." not in worker.text()  # faust found every topic it declares
    finally:
        worker.stop()
