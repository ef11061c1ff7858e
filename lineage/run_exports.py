"""The graph exports that end an embedded run, written by the run or by its decoding
process.

``lineage run`` ends by building the lineage graph from the edges it judged (networkx)
and writing it in every format of :mod:`lineage.export`: a tenth of a second of imports
(networkx, the OpenLineage client's events) and as much again of building and writing,
on the run's own core while the other has nothing left to do. A run whose file a child
decoded ahead (:class:`~lineage.decode_process.DecodeAhead`) hands them to that child:
once its file is decoded it imports the export's modules (:func:`prepare`), and at the
run's end it takes the run's policy and edges (:func:`request`), writes the exports
(:func:`answer`) while the run's view finishes the subjects' file, and says what it
wrote (:func:`written`). The bytes are the same either way: :func:`write_exports`
builds and writes them in both processes, from the same edges (their wire form, as a
worker's partials come back from Kafka).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from lineage.child import error_answer, error_of
from lineage.errors import RunError, unwritable

if TYPE_CHECKING:  # the decoding process imports this module before it needs them
    from lineage.policy.model import Policy
    from lineage.state import EdgeAggregate, EdgeKey

__all__ = ["answer", "prepare", "request", "write_exports", "written"]

log = logging.getLogger("lineage")

#: The child's name in its errors.
NAME = "the run's decoding process"


def write_exports(
    policy: Policy, edges: Mapping[EdgeKey, EdgeAggregate], generated_from: str, out_dir: Path
) -> dict[str, Path]:
    """Build the graph of ``edges`` and write every format into ``out_dir``; returns
    format -> path written (:func:`lineage.export.write_exports`)."""
    # Imported here: every other command of the command line imports this module, and
    # starts a tenth of a second sooner without networkx.
    from lineage.export import write_exports as write
    from lineage.graph import build_graph

    return write(build_graph(policy, edges, generated_from=generated_from), out_dir)


def request(
    policy: Policy, edges: Mapping[EdgeKey, EdgeAggregate], generated_from: str, out_dir: Path
) -> bytes:
    """What the run sends its decoding process for the exports of :func:`write_exports`."""
    wire = [(key, aggregate.to_json()) for key, aggregate in edges.items()]
    return pickle.dumps((policy, wire, generated_from, str(out_dir)), pickle.HIGHEST_PROTOCOL)


def prepare() -> None:
    """Import what :func:`answer` will need, in a child with nothing else to do yet."""
    import networkx as nx

    from lineage.export.openlineage import OpenLineageMissing, to_openlineage

    # The client's modules that an export imports; without them, the export says so.
    with contextlib.suppress(OpenLineageMissing):
        to_openlineage(nx.DiGraph())


def answer(message: bytes) -> bytes:
    """In the decoding process: write the exports a :func:`request` asks for, and answer
    what was written, with any warning logged meanwhile (OpenLineage not installed),
    or the error that stopped it."""
    from lineage.state import EdgeAggregate

    policy, wire, generated_from, out = pickle.loads(message)
    out_dir = Path(out)
    warnings = _Kept()
    log.addHandler(warnings)
    try:
        edges = {key: EdgeAggregate.from_json(data) for key, data in wire}
        paths = write_exports(policy, edges, generated_from, out_dir)
    except OSError as exc:
        return orjson.dumps({"error": str(unwritable(out_dir, exc))})
    except Exception as exc:
        return error_answer(exc, NAME)
    finally:
        log.removeHandler(warnings)
    return orjson.dumps(
        {"written": {fmt: str(path) for fmt, path in paths.items()}, "warnings": warnings.said}
    )


def written(message: bytes) -> dict[str, Path]:
    """In the run: what :func:`answer` wrote (format -> path), its warnings logged here
    as the run would have logged them; its error raised as a
    :class:`~lineage.errors.RunError`."""
    error = error_of(message)
    if error is not None:
        raise RunError(error)
    said = orjson.loads(message)
    for warning in said["warnings"]:
        log.warning("%s", warning)
    return {fmt: Path(path) for fmt, path in said["written"].items()}


class _Kept(logging.Handler):
    """The messages logged at WARNING or above, kept for the run to log."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.said.append(record.getMessage())
