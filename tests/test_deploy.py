"""The deployment as code: docker-compose.yml, Prometheus' config and alerts, Grafana's dashboard.

Compose and promtool are real tools run on the files. Without them a test skips, unless
LINEAGE_REQUIRE_TOOLS=1 (set by .ci/run): then a missing tool fails the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from streams.front import UP
from streams.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "privacy-lineage.json"

#: The variables compose must refuse to start without, and nothing else may default.
SECRETS = ("LINEAGE_REDACTION_KEY", "LINEAGE_WEB_TOKEN", "GRAFANA_ADMIN_PASSWORD")
#: Series Prometheus makes itself, not the worker.
PROMETHEUS_SERIES = frozenset({"up"})
#: Alert severities (alerts.yml's header says what each means).
SEVERITIES = frozenset({"critical", "warning"})


def missing_tool(why: str) -> NoReturn:
    if os.environ.get("LINEAGE_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{why} (LINEAGE_REQUIRE_TOOLS=1)")
    pytest.skip(why)


# -- docker-compose.yml -------------------------------------------------------------------


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) when it is installed, else Debian's `docker-compose`.

    `config` only reads and interpolates the file: neither needs a Docker engine.
    """
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    missing_tool("neither `docker compose` nor `docker-compose` is installed")


def compose_config(tmp_path: Path, **secrets: str) -> subprocess.CompletedProcess[str]:
    """`compose config -q` with only the given secrets in its environment.

    An empty --env-file keeps a developer's own .env next to the compose file out of it.
    """
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update(secrets)
    empty = tmp_path / "empty.env"
    empty.write_text("")
    return subprocess.run(
        [*compose_command(), "--env-file", str(empty), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


def compose_spec() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return spec


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's volumes, short (src:dst[:mode]) or long syntax."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            found[target] = source
    return found


def test_compose_config_passes_with_the_secrets_set(tmp_path: Path) -> None:
    result = compose_config(tmp_path, **{name: f"test-{name.lower()}" for name in SECRETS})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", SECRETS)
def test_compose_refuses_to_start_without_a_secret(tmp_path: Path, missing: str) -> None:
    given = {name: f"test-{name.lower()}" for name in SECRETS if name != missing}
    result = compose_config(tmp_path, **given)
    assert result.returncode != 0, f"compose accepted the file without {missing}"
    assert missing in result.stdout + result.stderr


def test_compose_has_no_default_for_any_secret() -> None:
    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required >= set(SECRETS)
    defaulted = set(re.findall(r"\$\{(\w+):?-", text))
    secret_like = {v for v in defaulted if re.search(r"KEY|TOKEN|PASSWORD|SECRET", v)}
    assert not secret_like, f"secrets with a default value: {sorted(secret_like)}"


def test_compose_runs_the_pinned_kafka_and_a_healthy_worker() -> None:
    spec = compose_spec()
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)<", pom)
    assert version is not None
    kafka, worker = spec["services"]["kafka"], spec["services"]["worker"]
    assert kafka["image"] == f"apache/kafka:{version.group(1)}"
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "healthcheck" in kafka and "healthcheck" in worker
    assert worker["build"] == "."
    assert worker["environment"]["LINEAGE_BROKER"] == "kafka:9092"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    # Reachable from Prometheus and the host, hence the token.
    assert worker["environment"]["LINEAGE_WEB_HOST"] == "0.0.0.0"
    assert worker["environment"]["LINEAGE_WEB_TOKEN"].startswith("${LINEAGE_WEB_TOKEN:?")


def test_the_readme_says_what_compose_runs_and_the_secrets_it_needs_first() -> None:
    """The README said `docker compose up` runs Kafka and a worker; it runs every service
    of the file, and refuses to start until each required secret is set."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("`docker compose up")
    paragraph = readme[start : readme.index("\n## ", start)]
    names = {"kafka": "Kafka", "worker": "worker", "prometheus": "Prometheus", "grafana": "Grafana"}
    services = set(compose_spec()["services"])
    assert services == set(names), "a service the README does not name"
    for service in services:
        assert names[service] in paragraph, service
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert required == set(SECRETS)
    for secret in required:
        assert secret in paragraph, secret
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert all(secret in operations for secret in required)


def test_kafka_writes_its_data_into_its_volume() -> None:
    """The broker's log.dirs is the mounted named volume, not a path inside the container."""
    spec = compose_spec()
    kafka = spec["services"]["kafka"]
    log_dirs = str(kafka["environment"].get("KAFKA_LOG_DIRS", ""))
    assert log_dirs, "KAFKA_LOG_DIRS unset: the broker writes /tmp/kafka-logs in the container"
    named = mounts(kafka)
    for directory in log_dirs.split(","):
        assert directory in named, f"{directory} is not a mounted volume of the kafka service"
        assert named[directory] in spec.get("volumes", {}), f"{directory}: not a named volume"


def test_monitoring_services_get_the_files_of_deploy() -> None:
    spec = compose_spec()
    prometheus, grafana = spec["services"]["prometheus"], spec["services"]["grafana"]
    config = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_dir = str(Path(config.split("=", 1)[1]).parent)
    assert mounts(prometheus)[config_dir] == "./deploy/prometheus"

    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/privacy-lineage.yml").read_text())
    dashboards_path = provider["providers"][0]["options"]["path"]
    grafana_mounts = mounts(grafana)
    assert grafana_mounts[dashboards_path] == "./deploy/grafana/dashboards"
    for kind in ("datasources", "dashboards"):
        target = f"/etc/grafana/provisioning/{kind}"
        assert grafana_mounts[target] == f"./deploy/grafana/provisioning/{kind}"

    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    [source] = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"


# -- promtool ---------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        missing_tool("promtool is not installed (Debian package prometheus)")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS
    )


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts.test.yml"),
    ],
    ids=lambda args: " ".join(args),
)
def test_promtool_passes(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_says_how_urgent_and_what_to_do() -> None:
    rules = alert_rules()
    assert rules
    for rule in rules:
        name = rule["alert"]
        assert rule.get("for"), f"{name}: no `for:`"
        # Labels set by a rule: the severity only, from its closed vocabulary.
        assert set(rule.get("labels", {})) == {"severity"}, name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name


def test_every_alert_is_fired_and_kept_quiet_by_the_unit_tests() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    checks = [check for test in tests for check in test.get("alert_rule_test", [])]
    fired = {c["alertname"] for c in checks if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in checks if not c.get("exp_alerts")}
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "alerts no unit test fires"
    assert names - quiet == set(), "alerts no unit test keeps quiet"


# -- metric names -------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
      "(?:[^"\\]|\\.)*" | '(?:[^'\\]|\\.)*' | `[^`]*`   # string literals
    | \{[^}]*\}                                         # label matchers
    | \[[^\]]*\]                                        # ranges, subqueries
    | \$\{?\w+\}?                                       # Grafana variables
    | (?<![\w:.])[0-9.]+(?:[eE][+-]?[0-9]+)?(?:ms|[smhdwy]|[0-9])*  # numbers, durations
    | (?P<name>[A-Za-z_:][\w:]*)(?P<call>\s*\()?        # names, and calls
    | .
    """,
    re.VERBOSE | re.DOTALL,
)
# Label lists of grouping and matching clauses: by (le), on (instance), ...
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
    | {"and", "or", "unless", "offset", "atan2", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions and keywords left out)."""
    names: set[str] = set()
    for match in _TOKEN.finditer(_GROUPING.sub(" ", expr)):
        name = match.group("name")
        if name and not match.group("call") and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def exposed_names() -> set[str]:
    """Every series name the worker's registry can expose, from the registry itself.

    A labelled metric has no sample until its first child exists, so the names come from
    each family's type too, with the suffixes prometheus_client gives that type.
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "info": ("_info",),
    }
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    names.add(UP)  # a worker of several processes adds it (streams/front.py)
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def used_expressions() -> dict[str, str]:
    """Where each PromQL expression of alerts.yml, its tests and the dashboard comes from."""
    found = {f"alerts.yml {rule['alert']}": rule["expr"] for rule in alert_rules()}
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    for i, test in enumerate(tests):
        for series in test.get("input_series", []):
            found[f"alerts.test.yml test {i} series {series['series']}"] = series["series"]
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            found[f"dashboard {panel['title']!r} {target['refId']}"] = target["expr"]
    return found


def test_metric_names_are_found_in_promql() -> None:
    expr = (
        'sum by (partition, le) (rate(lineage_a_total{topic="x(y)", job=~"w.*"}[5m] offset 1h))'
        " / on (instance) group_left up > bool 0.5"
        " and absent(lineage_b) or vector(1e-3) * histogram_quantile(0.99, lineage_c_bucket)"
        "[$__rate_interval:1m] unless ${other} + 1-lineage_d - 2e+3*lineage_e offset 1h30m"
    )
    assert metric_names(expr) == {
        "lineage_a_total",
        "up",
        "lineage_b",
        "lineage_c_bucket",
        "lineage_d",
        "lineage_e",
    }


def test_every_metric_used_exists_in_the_worker_registry() -> None:
    known = exposed_names() | PROMETHEUS_SERIES
    assert "lineage_events_total" in known and "lineage_batch_seconds_bucket" in known
    used = {where: metric_names(expr) for where, expr in used_expressions().items()}
    assert any(n.startswith("lineage_") for names in used.values() for n in names)
    unknown = {where: sorted(names - known) for where, names in used.items() if names - known}
    assert not unknown, f"metric names the worker does not expose: {unknown}"


def test_a_misspelt_metric_would_be_caught() -> None:
    known = exposed_names() | PROMETHEUS_SERIES
    assert metric_names("sum(lineage_consumer_lagg)") - known == {"lineage_consumer_lagg"}
    assert metric_names("rate(lineage_events[5m])") - known == {"lineage_events"}


# -- Grafana ----------------------------------------------------------------------------


def test_dashboard_panels_have_a_datasource_and_queries() -> None:
    board = dashboard()
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    ids = [panel["id"] for panel in panels(board)]
    assert ids and len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        title = panel.get("title")
        assert title, f"panel {panel['id']} has no title"
        assert panel.get("datasource", {}).get("uid") == uid, f"{title}: datasource"
        targets = panel.get("targets", [])
        assert targets, f"{title}: no target"
        for target in targets:
            assert target.get("expr", "").strip(), f"{title}: empty query"
            assert target.get("datasource", panel["datasource"])["uid"] == uid, title
