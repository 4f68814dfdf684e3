"""The build: the modules listed in pyproject.toml's ``[tool.bgpd] compiled`` are compiled to C
extension modules with mypyc (issue 18), unless ``BGPD_PURE_PYTHON=1`` asks for pure Python.

Rules:
1. ``[tool.bgpd] compiled`` is the one list of compiled modules (source paths); the build, the
   Makefile and ``tests/test_compiled.py`` all read it.
2. Every build is compiled unless ``BGPD_PURE_PYTHON`` is set to a non-empty value other than
   ``0``; the build then has no C compiler step at all.
3. The compiled modules are one mypyc group, ``bgpd._compiled``: one shared library inside the
   package plus a small shim per module, so native calls between listed modules stay native.
4. Every build first removes the extension modules an earlier in-place build (``pip install -e
   .``) left beside the sources: the import system prefers an extension module to the ``.py`` of
   the same name, so one left from a longer list, or before a pure build, would shadow the source.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent
PACKAGES = ("bgpd", "peers", "encap")


def compiled_sources() -> list[str]:
    """Rule 1: the list, as source paths relative to the repository root."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        return list(tomllib.load(f)["tool"]["bgpd"]["compiled"])


def pure_requested() -> bool:
    """Rule 2."""
    return os.environ.get("BGPD_PURE_PYTHON", "") not in ("", "0")


def remove_in_place_extensions() -> None:
    """Rule 4: our packages hold no extension module but what this build makes."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.so"):
            path.unlink()


def ext_modules() -> list[Extension]:
    remove_in_place_extensions()
    if pure_requested():
        return []
    from mypyc.build import mypycify

    return mypycify(compiled_sources(), group_name="bgpd._compiled", opt_level="3")


setup(ext_modules=ext_modules())
