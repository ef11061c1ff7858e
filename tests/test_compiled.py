"""The judging core runs compiled where it was built, and interpreted says the same.

``setup.py`` compiles :data:`lineage.compiled.COMPILED` with mypyc where a C compiler
is at hand; :mod:`lineage.compiled` runs the sources instead when asked to
(``LINEAGE_PURE_PYTHON``) or when a source changed after its build. CI requires the
compiled build (``LINEAGE_REQUIRE_COMPILED``), so the rest of the suite runs on it;
the interpreted engine is checked here against the same recorded outputs.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lineage.compiled import COMPILED, _module, running_compiled, stale

ROOT = Path(__file__).resolve().parent.parent


def _import_all() -> None:
    for name in COMPILED:
        importlib.import_module(_module(name))


def test_the_engine_runs_compiled_where_it_was_built() -> None:
    _import_all()
    running = running_compiled()
    if os.environ.get("LINEAGE_REQUIRE_COMPILED"):
        assert running == [_module(n) for n in COMPILED], (
            "LINEAGE_REQUIRE_COMPILED is set and these run interpreted: "
            f"{sorted(set(map(_module, COMPILED)) - set(running))} (no C compiler at install, "
            "LINEAGE_PURE_PYTHON set, or a source changed after the build)"
        )
    else:
        # All or none: they are one compiled group.
        assert running in ([], [_module(n) for n in COMPILED])


def test_the_interpreted_engine_gives_the_recorded_outputs() -> None:
    # The recorded digests (tests/test_engine_equality.py) from the sources themselves,
    # in a process of its own: in this one the compiled modules may be loaded already.
    check = (
        "from lineage.compiled import running_compiled; import lineage.engine, lineage.state; "
        "assert running_compiled() == [], running_compiled()"
    )
    env = {**os.environ, "LINEAGE_PURE_PYTHON": "1"}
    subprocess.run([sys.executable, "-c", check], cwd=ROOT, env=env, check=True)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_engine_equality.py", "-k", "recorded_engines"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout


def _tree(tmp_path: Path, source_age: float, built: bool = True) -> Path:
    """A package tree holding the first compiled module's source and, if ``built``, its
    extension, the source ``source_age`` seconds younger than the extension."""
    source = tmp_path / COMPILED[0]
    source.parent.mkdir(parents=True)
    source.write_text("")
    if built:
        stem = source.name.removesuffix(".py")
        extension = source.with_name(stem + importlib.machinery.EXTENSION_SUFFIXES[0])
        extension.write_bytes(b"")
        os.utime(extension, (1_000_000.0, 1_000_000.0))
        os.utime(source, (1_000_000.0 + source_age, 1_000_000.0 + source_age))
    for name in COMPILED[1:]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    return tmp_path


def test_a_source_changed_after_its_build_is_stale(tmp_path: Path) -> None:
    assert stale(_tree(tmp_path, source_age=60.0)) == [COMPILED[0]]


@pytest.mark.parametrize("age", [-60.0, 0.0, 2.0])
def test_a_source_written_with_its_extension_or_before_it_is_not(
    tmp_path: Path, age: float
) -> None:
    # An installer writes the two in either order, a moment apart.
    assert stale(_tree(tmp_path, source_age=age)) == []


def test_nothing_is_stale_where_nothing_was_built(tmp_path: Path) -> None:
    assert stale(_tree(tmp_path, source_age=0.0, built=False)) == []
