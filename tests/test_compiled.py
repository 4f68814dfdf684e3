"""The tests run against the build that was asked for (issue 18): the compiled one by default.

Rules (setup.py):
1. Every module of pyproject.toml's ``[tool.bgpd] compiled`` list is imported as a compiled
   extension module, unless ``BGPD_PURE_PYTHON=1`` asked for a pure build; then none is.
2. An extension module built in place (``pip install -e .``) is not older than its source: the
   import system prefers it to the ``.py``, so after an edit the tests would run the old code.
3. Nothing outside the list is compiled.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _setup() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bgpd_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SETUP = _setup()
SOURCES: list[str] = SETUP.compiled_sources()
PURE: bool = SETUP.pure_requested()


def _module_name(source: str) -> str:
    return source.removesuffix(".py").replace("/", ".")


def _is_extension(module: ModuleType) -> bool:
    return str(module.__file__).endswith(tuple(EXTENSION_SUFFIXES))


@pytest.mark.parametrize("source", SOURCES)
def test_listed_module_is_built_as_asked(source: str) -> None:
    assert (ROOT / source).is_file(), f"{source} is listed but not in the repository"
    module = importlib.import_module(_module_name(source))
    if PURE:
        assert not _is_extension(module), f"{module.__file__}: BGPD_PURE_PYTHON=1 was asked for"
    else:
        assert _is_extension(module), (
            f"{module.__name__} is pure Python ({module.__file__}): rebuild with "
            "`pip install -e .` (or `make deps-python`), or set BGPD_PURE_PYTHON=1 for a pure build"
        )
        built = Path(str(module.__file__))
        if built.parent == (ROOT / source).parent:
            assert built.stat().st_mtime >= (ROOT / source).stat().st_mtime, (
                f"{built.name} is older than {source}: rebuild with `pip install -e .`"
            )


def test_nothing_outside_the_list_is_compiled() -> None:
    listed = {(ROOT / source).with_suffix("") for source in SOURCES}
    for package in SETUP.PACKAGES:
        for path in (ROOT / package).rglob("*.so"):
            stem = path.with_name(path.name.split(".", 1)[0])
            assert stem in listed, path
