"""The build: the modules listed in pyproject.toml's ``[tool.bgpd] compiled`` are compiled to C
extension modules with mypyc (issue 18), unless ``BGPD_PURE_PYTHON=1`` asks for pure Python.

Rules:
1. ``[tool.bgpd] compiled`` is the one list of compiled modules (source paths); the build, the
   Makefile and ``tests/test_compiled.py`` read it, and the rules below, through this file
   (importing it builds nothing: only running it does).
2. Every build is compiled unless ``BGPD_PURE_PYTHON`` is set to a non-empty value other than
   ``0``; the build then has no C compiler step at all.
3. The compiled modules are one mypyc group, ``bgpd``: one shared library, the top-level module
   ``bgpd__mypyc``, plus a small shim per listed module, so calls between listed modules stay
   native. (Inside the package, mypyc would give the modules one imports natively a wrong
   ``__file__``.)
4. An in-place build (``pip install -e .``, ``build_ext --inplace``) first removes the extension
   modules an earlier one left beside the sources: the import system prefers an extension module
   to the ``.py`` of the same name, so one left from a longer list, or before a pure build, would
   shadow the source. A wheel (``pip install .``, ``pip wheel .``) builds apart from the sources
   and leaves them as they are.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from setuptools import Extension

ROOT = Path(__file__).resolve().parent
PACKAGES = ("bgpd", "peers", "encap")
GROUP = "bgpd"
SHARED_LIBRARY = GROUP + "__mypyc"


def compiled_sources() -> list[str]:
    """Rule 1: the list, as source paths relative to the repository root."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["tool"]["bgpd"]["compiled"])


def pure_requested() -> bool:
    """Rule 2."""
    return os.environ.get("BGPD_PURE_PYTHON", "") not in ("", "0")


def builds_in_place(argv: list[str]) -> bool:
    """Rule 4: the setuptools commands that put extension modules beside the sources."""
    return not {"editable_wheel", "develop", "--inplace", "-i"}.isdisjoint(argv)


def remove_in_place_extensions() -> None:
    """Rule 4: our packages hold no extension module but what this build makes."""
    for path in ROOT.glob(SHARED_LIBRARY + ".*.so"):
        path.unlink()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.so"):
            path.unlink()


def ext_modules() -> list[Extension]:
    if builds_in_place(sys.argv):
        remove_in_place_extensions()
    if pure_requested():
        return []
    from mypyc.build import mypycify

    return mypycify(compiled_sources(), group_name=GROUP, opt_level="3")


def main() -> None:
    from setuptools import setup

    setup(ext_modules=ext_modules())


if __name__ == "__main__":
    main()
