"""The modules that run compiled, and the switch that runs them interpreted instead.

Installed where a C compiler is at hand, the modules in :data:`COMPILED` are also
built as C extensions by mypyc (``setup.py``), from the same source; Python then
imports the extension before the source. They are compiled as one group whose
classes are shared, so they run compiled together or not at all.

They run interpreted, all of them, when

- ``LINEAGE_PURE_PYTHON`` is set (not empty, not 0) in the environment, or
- a source file is newer than its extension (by more than :data:`_SLACK`, the time
  an installer may take between writing the two): changed since the last build, its
  extension would run old code. A warning names the file.

:func:`choose` decides this once, when :mod:`lineage` is first imported, before any
of them is. This module imports only the standard library: ``setup.py`` reads
:data:`COMPILED` from it without importing the package.

A dataclass of these modules that is made for every event writes its ``__init__`` out
(``@dataclass(init=False)``): the one ``dataclass`` generates runs interpreted even
in a compiled class, 0.7-0.8 µs a call against about 0.1 µs compiled.
"""

from __future__ import annotations

import importlib.machinery as machinery
import os
import sys
import warnings
from pathlib import Path

__all__ = [
    "COMPILED",
    "choose",
    "how",
    "interpreted",
    "pure_python_asked",
    "running_compiled",
    "stale",
]

#: Run for every event: the engine's jobs, the state records they fold into, the
#: rules (their docstrings, which a compiled module keeps none of, are read from the
#: sources by :mod:`lineage.rules.catalogue`), the event as they read it, made from
#: what the decoding process sent, the common access event decoded without the models
#: and screened for raw personal data (in that process, and for the lines the run
#: decodes itself), and an embedded run's loop over its lines with the incident board it
#: updates, with the decoding process's verdicts it takes line by line (compiled, the
#: loop calls the engine without the interpreter between them); and the per-subject
#: view, folded in a process of its own (a run's, a worker's) beside judging, fact by
#: fact.
COMPILED: tuple[str, ...] = (
    "lineage/engine/__init__.py",
    "lineage/engine/consents.py",
    "lineage/engine/judging.py",
    "lineage/engine/outputs.py",
    "lineage/engine/partials.py",
    "lineage/incidents.py",
    "lineage/lines.py",
    "lineage/redact/screen.py",
    "lineage/rules/appi28.py",
    "lineage/rules/art10.py",
    "lineage/rules/art2.py",
    "lineage/rules/art3.py",
    "lineage/rules/art6.py",
    "lineage/rules/art7.py",
    "lineage/rules/art8.py",
    "lineage/rules/art9.py",
    "lineage/rules/base.py",
    "lineage/run.py",
    "lineage/scanning.py",
    "lineage/schemas/judged.py",
    "lineage/schemas/packed.py",
    "lineage/schemas/plain.py",
    "lineage/state.py",
    "lineage/verdicts.py",
    "lineage/view.py",
)

#: How much newer than its extension a source may be and still be the one it was built
#: from (an installer writes both, in either order).
_SLACK = 5.0

#: How :func:`choose` chose, for the startup line (:func:`how`).
_how = "interpreted (choose() was not called)"

#: The folder that holds the ``lineage`` package.
_ROOT = Path(__file__).parent.parent


def _extension(source: Path) -> Path | None:
    """The extension built from ``source``, if there is one beside it."""
    stem = source.name.removesuffix(".py")
    for suffix in machinery.EXTENSION_SUFFIXES:
        candidate = source.with_name(stem + suffix)
        if candidate.exists():
            return candidate
    return None


def pure_python_asked() -> bool:
    """``LINEAGE_PURE_PYTHON`` is set, and not empty or 0 (at install: build nothing; at
    run time: run the sources)."""
    return os.environ.get("LINEAGE_PURE_PYTHON", "") not in ("", "0")


def stale(root: Path = _ROOT) -> list[str]:
    """The sources of :data:`COMPILED` under ``root`` changed since their extension was
    built (none when nothing was built)."""
    changed = []
    for name in COMPILED:
        source = root / name
        extension = _extension(source)
        if extension is not None and source.stat().st_mtime > extension.stat().st_mtime + _SLACK:
            changed.append(name)
    return changed


def interpreted(root: Path = _ROOT) -> None:
    """Have Python import the sources of :data:`COMPILED` before their extensions (call
    before any of them is imported)."""
    loaders = (
        (machinery.SourceFileLoader, machinery.SOURCE_SUFFIXES),
        (machinery.SourcelessFileLoader, machinery.BYTECODE_SUFFIXES),
        (machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
    )
    for folder in sorted({str((root / name).parent) for name in COMPILED}):
        # The finder Python asks for modules in this folder (the package's __path__).
        sys.path_importer_cache[folder] = machinery.FileFinder(folder, *loaders)


def choose() -> None:
    """Run :data:`COMPILED` compiled or interpreted (module docstring); :func:`how` says
    which, and why."""
    global _how
    if pure_python_asked():
        _how = "interpreted (LINEAGE_PURE_PYTHON is set)"
        interpreted()
        return
    changed = stale()
    if changed:
        _how = f"interpreted ({', '.join(changed)} changed after it was compiled)"
        warnings.warn(
            f"{', '.join(changed)} changed after it was compiled: running the interpreted "
            "modules (build again with: pip install -e .)",
            RuntimeWarning,
            stacklevel=2,
        )
        interpreted()
        return
    built = _extension(_ROOT / COMPILED[0]) is not None
    _how = "compiled" if built else "interpreted (not compiled at install)"


def how() -> str:
    """How the judging core runs: "compiled", or "interpreted (why)"."""
    return _how


def _module(path: str) -> str:
    """``lineage/engine/__init__.py`` -> ``lineage.engine``."""
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def running_compiled() -> list[str]:
    """The modules of :data:`COMPILED` imported so far that run compiled."""
    names = []
    for name in COMPILED:
        module = sys.modules.get(_module(name))
        if module is not None and not str(module.__file__).endswith(".py"):
            names.append(module.__name__)
    return names
