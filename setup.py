"""The judging core, compiled to C with mypyc where a C compiler is at hand.

Everything else about the package is in ``pyproject.toml``. The modules in
``lineage.compiled.COMPILED`` are plain, strictly typed Python that mypyc compiles as
they are; the engine then takes about three quarters of its interpreted time, and
``lineage run`` about 0.9 of it (``docs/benchmarks.md``, "Compiled judging"). Without a
compiler, or with ``LINEAGE_PURE_PYTHON=1`` at install, the same modules run
interpreted and give the same outputs byte for byte (``tests/test_compiled.py``);
``lineage.compiled`` also says when the compiled ones run.
"""

from __future__ import annotations

import runpy

from setuptools import setup

#: The modules to compile come from the module that decides at run time whether they run
#: compiled, read as a file: the package is not importable before it is built.
_COMPILED = runpy.run_path("lineage/compiled.py")
COMPILED: list[str] = list(_COMPILED["COMPILED"])

#: mypy's view of the build: the checks are scripts/test's (strict, with the pydantic
#: plugin); here mypyc needs only the types, and the build has none of the runtime's
#: packages but pydantic installed.
_MYPY = ["--follow-imports=silent", "--ignore-missing-imports"]


def _extensions() -> list[object]:
    if _COMPILED["pure_python_asked"]():
        return []
    from mypyc.build import mypycify

    extensions = mypycify([*_MYPY, *COMPILED], opt_level="3")
    for extension in extensions:
        # A machine without a C compiler installs the interpreted modules instead.
        extension.optional = True
    return list(extensions)


setup(ext_modules=_extensions())
