"""The lineage graph as OpenLineage events, for the catalogs that speak it (Marquez,
DataHub, Atlan, OpenMetadata): one event a line, built with ``openlineage-python``.

Each flow of personal data (an edge ``system -> recipient``, or ``recipient ->
recipient`` for an onward transfer) is a job that reads its source and writes its
recipient, both datasets. One ``RunEvent`` (``COMPLETE``) a flow says what went over
it during the graph's window, so a catalog draws ``crm -> [flow] -> market-research``:

- the job ``flows.<source>.<recipient>`` (``onward.`` for onward transfers), with
  ``documentation``, ``jobType`` and ``privacyLineage_flow``: categories, purposes,
  legal bases, forms, actions, event counts, first and last seen, breaches by article
  and by rule, the policy and its version;
- the input ``systems.<id>`` (or ``recipients.<id>``) and the output
  ``recipients.<id>``, each with ``privacyLineage_node``: its label, what it is to the
  company (system, outsourcer, affiliate, ad provider, ...), its country and whether
  that is abroad (APPI Art. 28);
- the run: an id derived from the flow and its window (the same graph gives the same
  ids, so exporting again is idempotent) and ``nominalTime`` (first to last seen).

The custom facets are described by ``schemas/openlineage/privacy-lineage-facets.json``.
Nothing personal is in them: ids and labels come from the policy, the rest are counts
and dates. Needs the ``openlineage`` extra (``pip install 'privacy-lineage[openlineage]'``).
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import networkx as nx

from lineage.errors import LineageError

__all__ = [
    "FACET_SCHEMA_URL",
    "NAMESPACE",
    "OpenLineageMissing",
    "openlineage_events",
    "to_openlineage",
]

#: The namespace of the jobs and datasets (one company's privacy lineage).
NAMESPACE = "privacy-lineage"
#: Where the custom facets' JSON Schema is published (its copy: ``schemas/openlineage/``).
FACET_SCHEMA_URL = (
    "https://privacy-lineage.invalid/schemas/openlineage/1-0-0/privacy-lineage-facets.json"
)
_RUN_IDS = uuid.UUID("6f0c7d1e-4c55-4a38-9a51-2b7d9c3e6a10")  # namespace of the run ids


class OpenLineageMissing(LineageError):
    """The OpenLineage export needs ``openlineage-python`` (the ``openlineage`` extra)."""

    def __init__(self) -> None:
        super().__init__(
            "the OpenLineage export needs openlineage-python: "
            "pip install 'privacy-lineage[openlineage]'"
        )


def _without_transports() -> None:
    """Let the client's event, facet and serde modules be imported without the package's
    ``__init__``, which imports every transport first (HTTP with ``requests`` and
    ``httpx``, Kafka, cloud services): 0.17-0.21 s of a run's end on this machine
    against 0.04 s for what the export uses (docs/upstream.md section 18).

    ``openlineage.client`` is put in place as an empty package; the first name asked of
    it that it does not have (``OpenLineageClient``, by code of the same process that
    sends events) runs the real ``__init__`` into it. Once the package is imported,
    whether by this or by anyone else, this does nothing.
    """
    if "openlineage.client" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec("openlineage.client")
    except ImportError:  # no openlineage namespace: the imports that follow say so
        return
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def rest(name: str) -> Any:
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, name)

    package.__dict__["__getattr__"] = rest
    sys.modules["openlineage.client"] = package
    parent: ModuleType | None = sys.modules.get("openlineage")
    if parent is not None:
        parent.client = package  # type: ignore[attr-defined]


def _producer() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("privacy-lineage")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        release = "0"
    return f"https://privacy-lineage.invalid/producer/{release}"


def openlineage_events(graph: nx.DiGraph, namespace: str = NAMESPACE) -> Iterator[Any]:
    """One ``openlineage.client.event_v2.RunEvent`` per flow and onward edge, in order."""
    _without_transports()
    try:
        from openlineage.client.event_v2 import (
            InputDataset,
            Job,
            OutputDataset,
            Run,
            RunEvent,
            RunState,
        )
        from openlineage.client.generated import documentation_job, job_type_job, nominal_time_run
    except ImportError:
        raise OpenLineageMissing() from None
    from lineage.export._openlineage_facets import PrivacyFlowJobFacet

    producer = _producer()
    policy = (str(graph.graph.get("policy_name", "")), str(graph.graph.get("policy_version", "")))
    for src, dst, edge in sorted(graph.edges(data=True), key=lambda e: (e[0], e[1])):
        relation = edge.get("relation")
        if relation not in ("flow", "onward"):
            continue
        source, recipient = graph.nodes[src], graph.nodes[dst]
        job_name = _job_name("flows" if relation == "flow" else "onward", src, dst)
        window = f"{edge['first_seen']}/{edge['last_seen']}/{edge['count']}"
        run_id = uuid.uuid5(_RUN_IDS, f"{namespace}/{job_name}/{window}")
        flow = PrivacyFlowJobFacet(
            relation=relation,
            categories=list(edge["categories"]),
            purposes=list(edge["purposes"]),
            legalBases=list(edge["legal_bases"]),
            forms=list(edge["forms"]),
            actions=list(edge["actions"]),
            events=int(edge["count"]),
            personalEvents=int(edge["personal"]),
            firstSeen=str(edge["first_seen"]),
            lastSeen=str(edge["last_seen"]),
            breachEvents=int(edge["breach_count"]),
            breaches={str(k): int(v) for k, v in edge["breaches"].items()},
            rules={str(k): int(v) for k, v in edge["rules"].items()},
            policyName=policy[0],
            policyVersion=policy[1],
            producer=producer,
        )
        description = (
            f"Personal data ({', '.join(edge['categories'])}) "
            f"{'passed on by' if relation == 'onward' else 'sent from'} "
            f"{source.get('label', src)} to {recipient.get('label', dst)}, "
            f"for {', '.join(edge['purposes'])}; {edge['count']} events, "
            f"{edge['breach_count']} of them breaching the policy."
        )
        yield RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=str(edge["last_seen"]),
            producer=producer,
            run=Run(
                runId=str(run_id),
                facets={
                    "nominalTime": nominal_time_run.NominalTimeRunFacet(
                        nominalStartTime=str(edge["first_seen"]),
                        nominalEndTime=str(edge["last_seen"]),
                        producer=producer,
                    )
                },
            ),
            job=Job(
                namespace=namespace,
                name=job_name,
                facets={
                    "documentation": documentation_job.DocumentationJobFacet(
                        description=description, producer=producer
                    ),
                    "jobType": job_type_job.JobTypeJobFacet(
                        processingType="STREAMING",
                        integration="PRIVACY_LINEAGE",
                        jobType="PERSONAL_DATA_FLOW",
                        producer=producer,
                    ),
                    "privacyLineage_flow": flow,
                },
            ),
            inputs=[
                InputDataset(
                    namespace=namespace,
                    name=_dataset_name(src),
                    facets={"privacyLineage_node": _node_facet(source, producer)},
                )
            ],
            outputs=[
                OutputDataset(
                    namespace=namespace,
                    name=_dataset_name(dst),
                    facets={"privacyLineage_node": _node_facet(recipient, producer)},
                )
            ],
        )


def to_openlineage(graph: nx.DiGraph) -> str:
    """The events of :func:`openlineage_events` as JSON lines (keys sorted)."""
    _without_transports()
    try:
        from openlineage.client.serde import Serde
    except ImportError:
        raise OpenLineageMissing() from None

    return "".join(Serde.to_json(event) + "\n" for event in openlineage_events(graph))


def _ident(node: str) -> str:
    return node.partition(":")[2]


def _job_name(prefix: str, src: str, dst: str) -> str:
    """``<prefix>.<source>.<recipient>``; ``<prefix>.<source>:<recipient>`` when either
    id holds a dot (an id may, and a colon never): else ``shop.eu`` to ``payco`` and
    ``shop`` to ``eu.payco`` would be one job, and one run."""
    source, recipient = _ident(src), _ident(dst)
    if "." in source or "." in recipient:
        return f"{prefix}.{source}:{recipient}"
    return f"{prefix}.{source}.{recipient}"


def _dataset_name(node: str) -> str:
    kind, _, ident = node.partition(":")
    return f"{'systems' if kind == 'system' else 'recipients'}.{ident}"


def _node_facet(node: dict[str, Any], producer: str) -> Any:
    from lineage.export._openlineage_facets import PrivacyNodeDatasetFacet

    kind = node.get("kind")
    return PrivacyNodeDatasetFacet(
        label=str(node.get("label", "")),
        role="system" if kind == "system" else str(node.get("recipient_kind", "unknown")),
        country=str(node.get("country", "")) if kind != "system" else "",
        abroad=bool(node.get("abroad", False)),
        producer=producer,
    )
