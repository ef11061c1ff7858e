"""The package's layers: the core knows nothing of Kafka's worker or the command line.

    lineage.schemas   the contract's models; imports nothing else of ours
    lineage (core)    policy, rules, engine, graph, exports, embedded run
    lineage.emitter   the producer SDK: the core's errors and schemas, kafka-python
    streams           the stream processors (faust, aiokafka): the ``worker`` extra,
                      a top-level package beside ``lineage``
    lineage.cli       the command line, above all of them

Checked on the source (every ``import`` and ``from ... import``, lazy ones too), and
in a fresh interpreter (what ``from lineage.emitter import Emitter`` loads).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (ROOT / "lineage", ROOT / "streams")
WORKER_ONLY = (
    "faust", "mode", "aiokafka", "aiohttp", "yarl", "pydantic_settings", "prometheus_client"
)  # fmt: skip


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    if module == "lineage.__main__":
        return "lineage.cli"
    for layer in ("lineage.schemas", "lineage.emitter", "streams", "lineage.cli"):
        if module == layer or module.startswith(layer + "."):
            return layer
    return "lineage"


#: What each layer may import of ours, besides itself.
ALLOWED = {
    "lineage.schemas": set(),
    "lineage": {"lineage.schemas"},
    "lineage.emitter": {"lineage", "lineage.schemas"},
    "streams": {"lineage", "lineage.schemas"},
    "lineage.cli": {"lineage", "lineage.schemas", "lineage.emitter", "streams"},
}

MODULES = sorted(p for package in PACKAGES for p in package.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module(p))
def test_each_module_imports_only_the_layers_below_it(path: Path) -> None:
    here = _layer(_module(path))
    wrong = []
    for name in sorted(_imports(path)):
        top = name.split(".")[0]
        if top in ("lineage", "streams"):
            there = _layer(name)
            if there != here and there not in ALLOWED[here]:
                wrong.append(name)
        elif top in WORKER_ONLY and here not in ("streams",):
            wrong.append(name)
    assert not wrong, f"{_module(path)} ({here}) imports {wrong}"


def test_the_emitter_loads_neither_the_worker_nor_the_engine() -> None:
    code = (
        "import sys\n"
        "from lineage.emitter import Emitter\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{WORKER_ONLY!r} or m.startswith(('streams', 'lineage.cli', "
        "'lineage.engine', 'networkx')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_embedded_commands_load_no_worker() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from lineage.cli import main\n"
        "r = CliRunner().invoke(main, ['policy', 'check'])\n"
        "assert r.exit_code == 0, r.output\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{WORKER_ONLY!r} or m.startswith('streams'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_run_imports_no_other_command(tmp_path: Path) -> None:
    """The other commands are imported when named: ``lineage run`` starts without the
    Kafka commands, the replay or the policy tools."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from lineage.cli import main\n"
        f"r = CliRunner().invoke(main, ['run', '--source', '-', '--out', {str(tmp_path)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('lineage.cli.kafka', "
        "'lineage.cli.replay', 'lineage.cli.policy', 'lineage.replay')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert (tmp_path / "summary.json").is_file()
