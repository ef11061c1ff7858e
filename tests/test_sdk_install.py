"""A service adopts the SDK: a fresh virtualenv, the base package only, its own modules.

The service has its own ``schemas.py`` and ``streams.py`` (the names our packages once
had) and sends events through :class:`lineage.emitter.Emitter` to a real broker. The
base package must bring no faust and no aiokafka, and ``lineage worker`` there says
what to install instead of failing on an import.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer

from tests.kafka_helpers import made_topic

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[1]

SERVICE = textwrap.dedent(
    """
    import importlib.util
    import sys

    import schemas  # the service's own modules, not ours
    import streams
    from lineage.emitter import Emitter

    assert schemas.ORDER_SCHEMA == "the service's own", schemas.__file__
    assert streams.pipe() == "the service's own", streams.__file__
    for heavy in ("faust", "aiokafka", "pydantic_settings", "prometheus_client"):
        assert importlib.util.find_spec(heavy) is None, heavy + " came with the base package"

    bootstrap, topic, spill = sys.argv[1:4]
    with Emitter(bootstrap, topic=topic, spill_dir=spill) as emitter:
        for i in range(3):
            emitter.emit({
                "source": "checkout", "action": "transfer", "subject": f"user-{i}",
                "categories": ["identity.name"], "purpose": "service_operation",
                "recipient": "payment-processor",
            })
        assert emitter.drain(60), emitter.last_error
    print("sent 3")
    """
)


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("sdk") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    # A copy of the source: pip builds a wheel of it (no editable install, no extras).
    subprocess.run([*pip, "--upgrade", "pip"], check=True, timeout=600)
    subprocess.run([*pip, str(ROOT)], check=True, timeout=900)
    return venv


def test_a_service_with_its_own_schemas_and_streams_sends_through_the_emitter(
    base_venv: Path, kafka_bootstrap: str, tmp_path: Path
) -> None:
    service = tmp_path / "service"
    service.mkdir()
    (service / "schemas.py").write_text('ORDER_SCHEMA = "the service\'s own"\n')
    (service / "streams.py").write_text('def pipe():\n    return "the service\'s own"\n')
    (service / "main.py").write_text(SERVICE)
    topic = made_topic(f"sdk-{uuid.uuid4().hex[:8]}")
    done = subprocess.run(
        [str(base_venv / "bin" / "python"), "main.py", kafka_bootstrap, topic, str(tmp_path)],
        cwd=service,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "sent 3" in done.stdout
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20_000,
    )
    received = [orjson.loads(m.value) for _, m in zip(range(3), consumer, strict=False)]
    consumer.close()
    assert sorted(e["subject"] for e in received) == ["user-0", "user-1", "user-2"]
    assert all(e["event_id"] and e["occurred_at"] for e in received)


def test_the_worker_command_says_what_to_install(base_venv: Path) -> None:
    done = subprocess.run(
        [str(base_venv / "bin" / "lineage"), "worker", "--broker", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "pip install 'privacy-lineage[worker]'" in done.stderr
    assert "Traceback" not in done.stderr
    # The embedded product works with the base package alone.
    check = subprocess.run(
        [str(base_venv / "bin" / "lineage"), "policy", "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
