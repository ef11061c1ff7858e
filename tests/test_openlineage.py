"""The OpenLineage export: valid events, loadable by openlineage-python, true to the graph.

Each line is rebuilt through openlineage-python's own models (their validators check the
event time, the run id, the producer and schema URLs) and must serialise back to the
same JSON; the custom facets are checked against their JSON Schema; and the facts they
carry are compared with the lineage graph of the same run. Every event is also
validated against the OpenLineage spec's own JSON Schemas: the copy in
``tests/data/openlineage-spec`` (see its README), or the ``spec/`` folder that
``OPENLINEAGE_SPEC`` names.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import documentation_job, job_type_job, nominal_time_run
from openlineage.client.serde import Serde

from lineage.demo import generate_day
from lineage.export import write_exports
from lineage.export._openlineage_facets import PrivacyFlowJobFacet, PrivacyNodeDatasetFacet
from lineage.export.openlineage import to_openlineage
from lineage.graph import build_graph
from lineage.policy import load_policy
from lineage.run import run_embedded

ROOT = Path(__file__).resolve().parents[1]
FACETS = json.loads((ROOT / "schemas/openlineage/privacy-lineage-facets.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ol")
    run_embedded(load_policy(), generate_day(events=4000, seed=9), out, source_name="demo")
    return out


def events(out: Path) -> list[dict[str, Any]]:
    lines = (out / "lineage.openlineage.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


# -- loading through openlineage-python's models ---------------------------------------------

_FACET_CLASSES: dict[str, Any] = {
    "documentation": documentation_job.DocumentationJobFacet,
    "jobType": job_type_job.JobTypeJobFacet,
    "nominalTime": nominal_time_run.NominalTimeRunFacet,
    "privacyLineage_flow": PrivacyFlowJobFacet,
    "privacyLineage_node": PrivacyNodeDatasetFacet,
}


def _facet(name: str, data: dict[str, Any]) -> Any:
    fields = {k: v for k, v in data.items() if not k.startswith("_")}
    facet = _FACET_CLASSES[name](**fields, producer=data["_producer"])
    assert facet._schemaURL == data["_schemaURL"]
    return facet


def _facets(data: dict[str, Any]) -> dict[str, Any]:
    return {name: _facet(name, value) for name, value in data.items()}


def load(data: dict[str, Any]) -> RunEvent:
    """A RunEvent built from its JSON through openlineage-python's attrs classes."""
    return RunEvent(
        eventType=RunState(data["eventType"]),
        eventTime=data["eventTime"],
        producer=data["producer"],
        run=Run(runId=data["run"]["runId"], facets=_facets(data["run"]["facets"])),
        job=Job(
            namespace=data["job"]["namespace"],
            name=data["job"]["name"],
            facets=_facets(data["job"]["facets"]),
        ),
        inputs=[
            InputDataset(namespace=d["namespace"], name=d["name"], facets=_facets(d["facets"]))
            for d in data["inputs"]
        ],
        outputs=[
            OutputDataset(namespace=d["namespace"], name=d["name"], facets=_facets(d["facets"]))
            for d in data["outputs"]
        ],
    )


def test_every_line_loads_through_openlineage_python_and_serialises_back(demo: Path) -> None:
    found = events(demo)
    assert found
    for data in found:
        event = load(data)
        assert Serde.to_dict(event) == data
        assert event.schemaURL.startswith("https://openlineage.io/spec/2-0-2/OpenLineage.json")
        assert uuid.UUID(event.run.runId)


def test_the_custom_facets_follow_their_json_schema(demo: Path) -> None:
    flow = Draft202012Validator(
        {**FACETS, "$ref": "#/$defs/PrivacyFlowJobFacet"}, format_checker=FormatChecker()
    )
    node = Draft202012Validator(
        {**FACETS, "$ref": "#/$defs/PrivacyNodeDatasetFacet"}, format_checker=FormatChecker()
    )
    for data in events(demo):
        flow.validate(data["job"]["facets"]["privacyLineage_flow"])
        for dataset in data["inputs"] + data["outputs"]:
            node.validate(dataset["facets"]["privacyLineage_node"])
    bad = {**data["job"]["facets"]["privacyLineage_flow"], "relation": "sideways"}
    assert not flow.is_valid(bad)


def test_the_events_say_what_the_graph_says(demo: Path) -> None:
    graph = json.loads((demo / "lineage.json").read_text())
    nodes = {n["id"]: n for n in graph["nodes"]}
    flows = {
        (e["source"], e["target"]): e for e in graph["links"] if e["relation"] in ("flow", "onward")
    }
    found = events(demo)
    assert len(found) == len(flows)
    abroad = 0
    for data in found:
        (source,), (target,) = data["inputs"], data["outputs"]
        src = ("system:" if source["name"].startswith("systems.") else "recipient:") + source[
            "name"
        ].split(".", 1)[1]
        dst = "recipient:" + target["name"].split(".", 1)[1]
        edge = flows[(src, dst)]
        facet = data["job"]["facets"]["privacyLineage_flow"]
        assert facet["categories"] == edge["categories"]
        assert facet["purposes"] == edge["purposes"]
        assert facet["legalBases"] == edge["legal_bases"]
        assert (facet["events"], facet["breachEvents"]) == (edge["count"], edge["breach_count"])
        assert facet["breaches"] == edge["breaches"] and facet["rules"] == edge["rules"]
        assert (facet["firstSeen"], facet["lastSeen"]) == (edge["first_seen"], edge["last_seen"])
        assert data["eventTime"] == edge["last_seen"]
        recipient = target["facets"]["privacyLineage_node"]
        assert recipient["country"] == nodes[dst]["country"]
        assert recipient["abroad"] == nodes[dst]["abroad"]
        abroad += recipient["abroad"]
    assert abroad  # the demo sends data to the US and Singapore


def test_exporting_the_same_graph_again_gives_the_same_events(demo: Path) -> None:
    policy = load_policy()
    from lineage.engine import Engine

    engine = Engine(policy)
    for offset, line in enumerate(generate_day(events=4000, seed=9)):
        engine.process(line, origin=f"demo:{offset + 1}", offset=offset)
    text = to_openlineage(build_graph(policy, engine.state.edges, generated_from="again"))
    assert text == (demo / "lineage.openlineage.jsonl").read_text(encoding="utf-8")


def test_flows_whose_ids_hold_dots_are_jobs_and_runs_of_their_own() -> None:
    """Ids may hold dots: ``shop.eu`` to ``payco`` and ``shop`` to ``eu.payco`` would
    both be job ``flows.shop.eu.payco``, and with the same window one run."""
    import orjson

    from lineage.engine import Engine
    from lineage.export.openlineage import openlineage_events
    from tests.helpers import access

    policy = load_policy(ROOT / "tests/data/policy.yaml")
    engine = Engine(policy)
    flows = [("shop.eu", "payco"), ("shop", "eu.payco"), ("shop", "payco")]
    for offset, (source, recipient) in enumerate(flows):
        event = access(event_id=f"e-{offset}", source=source, recipient=recipient)
        engine.process(orjson.dumps(event), offset=offset, origin="t")
    found = list(openlineage_events(build_graph(policy, engine.state.edges)))
    names = sorted(event.job.name for event in found)
    assert names == ["flows.shop.eu:payco", "flows.shop.payco", "flows.shop:eu.payco"]
    assert len({event.run.runId for event in found}) == 3


def test_without_openlineage_python_the_other_exports_are_written(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in [m for m in sys.modules if m == "openlineage" or m.startswith("openlineage.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "openlineage", None)  # import openlineage -> ImportError
    graph = build_graph(load_policy(), {}, generated_from="none")
    with caplog.at_level(logging.WARNING, logger="lineage"):
        written = write_exports(graph, tmp_path)
    assert "openlineage" not in written and "html" in written
    assert "pip install 'privacy-lineage[openlineage]'" in caplog.text


_FRESH_EXPORT = """
import sys
from lineage.export.openlineage import to_openlineage
from lineage.graph import build_graph
from lineage.policy import load_policy

edges = {}
text = to_openlineage(build_graph(load_policy(), edges, generated_from="fresh"))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("httpx", "requests", "urllib3"))
loaded += sorted(m for m in sys.modules if m.startswith("openlineage.client.transport"))
print("loaded:", loaded)
from openlineage.client import OpenLineageClient, set_producer
from openlineage.client.transport.noop import NoopTransport
import openlineage.client

client = OpenLineageClient(transport=NoopTransport(None))
print("client:", type(client).__name__, openlineage.client.OpenLineageClient is OpenLineageClient)
"""


def test_the_export_leaves_the_clients_transports_unimported_and_the_client_whole() -> None:
    # A fresh interpreter: the tests' own imports above loaded the whole package.
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_EXPORT], capture_output=True, text=True, check=True,
        cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert "loaded: []" in done.stdout, done.stdout
    assert "client: OpenLineageClient True" in done.stdout, done.stdout


SPEC = Path(__file__).parent / "data" / "openlineage-spec"


def spec_validator() -> Draft202012Validator:
    """A validator of the spec's RunEvent, with every facet schema of the spec."""
    from referencing import Registry, Resource

    spec_dir = Path(os.environ.get("OPENLINEAGE_SPEC") or SPEC)
    resources = []
    for path in [spec_dir / "OpenLineage.json", *sorted((spec_dir / "facets").glob("*.json"))]:
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry: Registry[Any] = Registry().with_resources(resources)
    core = json.loads((spec_dir / "OpenLineage.json").read_text())
    return Draft202012Validator(
        {"$ref": core["$id"] + "#/$defs/RunEvent"},
        registry=registry,
        format_checker=FormatChecker(),
    )


def test_every_event_validates_against_the_openlineage_spec(demo: Path) -> None:
    validator = spec_validator()
    for data in events(demo):
        validator.validate(data)


@pytest.mark.parametrize("broken", ["eventTime", "run", "producer"])
def test_the_spec_check_refuses_an_event_without_a_required_field(demo: Path, broken: str) -> None:
    data = next(iter(events(demo)))
    del data[broken]
    assert list(spec_validator().iter_errors(data))
