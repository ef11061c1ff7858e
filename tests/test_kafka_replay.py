"""`lineage replay --broker` on a real broker: the events topic read as a bystander (every
partition assigned, no group, no commit, nothing published) gives the same differences as
the same events replayed from a file (CONTRACT s.9; incident samples are not compared:
a replay writes no incidents)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from lineage.demo import generate_day
from lineage.policy import DEFAULT_POLICY
from tests.kafka_helpers import Deployment

pytestmark = pytest.mark.kafka

OUTPUTS = ("replay-alerts.jsonl", "replay-records.jsonl", "replay-flows.jsonl")


def revised(tmp: Path) -> Path:
    """The seed policy with breaches that begin and end: an agreement renewed, a third
    party moved abroad, an ad provider's conditions accepted."""
    text = DEFAULT_POLICY.read_text()
    text = text.replace("expires_on: 2026-04-30", "expires_on: 2027-04-30")
    text = text.replace(
        "    kind: third_party\n    country: JP", "    kind: third_party\n    country: US"
    )
    text = text.replace(
        "    name: Example Social Ads Inc.\n    kind: ad_provider\n    country: US\n"
        "    example: true\n",
        "    name: Example Social Ads Inc.\n    kind: ad_provider\n    country: US\n"
        "    example: true\n    conditions: {since: 2026-01-01, use_limited_to: "
        "[targeted_advertising], binds_onward: true}\n",
    )
    path = tmp / "revised.yaml"
    path.write_text(text)
    return path


def replay(deployment: Deployment, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lineage.cli", "replay", "--out", str(out), *args],
        env=deployment.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "replay.json").read_text())
    data.pop("seconds")
    data.pop("source")
    return data


def groups(admin: KafkaAdminClient) -> set[str]:
    """The ids of the broker's consumer groups. Only the ids: the groups of other tests
    go on changing state meanwhile (one whose worker was killed rebalances until its
    session times out), and kafka-python describes each group with its state."""
    ids = set()
    for group in admin.list_groups():
        if isinstance(group, tuple):  # older kafka-python: (group_id, protocol_type)
            ids.add(str(group[0]))
        else:
            ids.add(str(group["group_id"]))
    return ids


def test_a_replay_of_the_topic_equals_a_replay_of_the_same_events_in_a_file(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    deployment = Deployment(kafka_bootstrap, tmp_path)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(deployment.topic("events"), 4, 1)])
        lines = list(generate_day(events=4000, seed=23))
        deployment.produce(lines)
        events_file = tmp_path / "events.jsonl"
        events_file.write_bytes(b"\n".join(lines) + b"\n")
        policy = revised(tmp_path)
        groups_before = groups(admin)
        topics_before = set(admin.list_topics())

        from_kafka = replay(
            deployment, tmp_path / "kafka", "--policy", str(policy), "--broker", kafka_bootstrap
        )
        assert from_kafka.returncode == 0, from_kafka.stderr
        assert "reading events" not in from_kafka.stderr  # no progress bar off a terminal
        from_file = replay(
            deployment, tmp_path / "file", "--policy", str(policy), "--source", str(events_file)
        )
        assert from_file.returncode == 0, from_file.stderr

        kafka_summary, file_summary = summary(tmp_path / "kafka"), summary(tmp_path / "file")
        assert kafka_summary["added"]["alerts"] and kafka_summary["removed"]["alerts"]
        assert kafka_summary == file_summary
        for name in OUTPUTS:
            assert (tmp_path / "kafka" / name).read_bytes() == (
                tmp_path / "file" / name
            ).read_bytes(), name

        def dead(folder: str) -> list[tuple[str, str]]:
            letters = [
                json.loads(x)
                for x in (tmp_path / folder / "dead-letter.jsonl").read_text().split("\n")
                if x
            ]
            return sorted((d["kind"], d["original"]) for d in letters)

        assert dead("kafka") == dead("file")
        assert all(
            "@" in json.loads(x)["origin"]
            for x in (tmp_path / "kafka" / "dead-letter.jsonl").read_text().splitlines()
        )
        # A bystander: no consumer group, no commit, no topic created, nothing published.
        assert groups(admin) == groups_before
        assert set(admin.list_topics()) == topics_before
    finally:
        admin.close()


def test_since_and_until_pick_messages_by_their_kafka_time(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    deployment = Deployment(kafka_bootstrap, tmp_path)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(deployment.topic("events"), 2, 1)])
    finally:
        admin.close()
    day = list(generate_day(events=600, seed=29, malformed=0))
    first, second = day[:300], day[300:]
    deployment.produce(first)
    time.sleep(1.5)
    mark = time.time()
    time.sleep(1.5)
    deployment.produce(second)
    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(mark))
    policy = revised(tmp_path)
    later = replay(
        deployment, tmp_path / "later", "--policy", str(policy), "--broker", kafka_bootstrap,
        "--since", since,
    )  # fmt: skip
    assert later.returncode == 0, later.stderr
    assert json.loads((tmp_path / "later" / "replay.json").read_text())["messages"] == len(second)
    earlier = replay(
        deployment, tmp_path / "earlier", "--policy", str(policy), "--broker", kafka_bootstrap,
        "--until", since,
    )  # fmt: skip
    assert earlier.returncode == 0, earlier.stderr
    assert json.loads((tmp_path / "earlier" / "replay.json").read_text())["messages"] == len(first)
    everything = replay(
        deployment, tmp_path / "all", "--policy", str(policy), "--broker", kafka_bootstrap
    )
    assert everything.returncode == 0, everything.stderr
    assert json.loads((tmp_path / "all" / "replay.json").read_text())["messages"] == len(day)


def test_a_topic_that_is_not_there_is_one_clear_line(kafka_bootstrap: str, tmp_path: Path) -> None:
    deployment = Deployment(kafka_bootstrap, tmp_path)
    result = replay(
        deployment, tmp_path / "out", "--policy", str(DEFAULT_POLICY), "--broker", kafka_bootstrap
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"lineage: error: no topic '{deployment.topic('events')}' on {kafka_bootstrap}: is the "
        "topic prefix right (--topic-prefix, LINEAGE_TOPIC_PREFIX)?"
    ]
