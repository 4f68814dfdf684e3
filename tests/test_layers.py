"""Import-layer contract: the sans-IO core stays pure.

Rules (../shared/design/architecture.md §2):
1. Pure modules import no asyncio, socket, selectors, threading, pyroute2, aetcd, grpc,
   subprocess, and read no clock (``time``, ``datetime.now``) and no unseeded ``random``.
2. ``peers`` and ``encap`` never import ``bgpd``.
3. ``bgpd.session`` and ``bgpd.rib`` do not import each other.
4. A pure module imports no IO module of ours either (purity holds transitively).
5. The routing core (``bgpd.wire``, ``bgpd.session``, ``bgpd.rib``, ``bgpd.speaker``,
   ``bgpd.router``) never imports Calico's rules (``bgpd.calico``) or its model (``peers``).
6. ``bgpd.bfd`` imports nothing of ours but itself.
Edge modules (the IO shell) are listed explicitly in ``IO_MODULES``; everything else is pure.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bgpd", "peers", "encap")

# Modules allowed to do IO. A module not listed here is pure.
IO_MODULES = {
    "bgpd.__main__",
    "bgpd.cli",
    "bgpd.daemon",
    "bgpd.log",
    "bgpd.metrics",
    "bgpd.net",
    "bgpd.control.server",
    "bgpd.control.commands",
    "bgpd.control.presence",
    "bgpd.datastore.etcd",
    "bgpd.datastore.file",
    "bgpd.datastore.kubernetes",
    "bgpd.datastore.source",
    "bgpd.kernel.netlink",
    "bgpd.kernel.linkwatch",
    "bgpd.kernel.routewatch",
    "bgpd.kernel.sync",
    "encap.devices",
}

ROUTING_CORE = ("bgpd.wire", "bgpd.session", "bgpd.rib", "bgpd.speaker", "bgpd.router")
CALICO = ("bgpd.calico", "peers")

FORBIDDEN_IN_PURE = {
    "asyncio",
    "socket",
    "selectors",
    "threading",
    "subprocess",
    "time",
    "random",
    "pyroute2",
    "aetcd",
    "grpc",
    "structlog",
    "prometheus_client",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _within(module: str, packages: tuple[str, ...] | set[str]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in packages)


def _is_io(module: str) -> bool:
    return _within(module, IO_MODULES)


def _imports(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_layer_rules(path: Path) -> None:
    module = _module_name(path)
    imported = _imports(ast.parse(path.read_text(), filename=str(path)))
    roots = {name.split(".")[0] for name in imported}
    if not _is_io(module):
        bad = sorted(roots & FORBIDDEN_IN_PURE)
        assert not bad, f"pure module {module} imports {bad}"
        clock = [n for n in imported if n in ("datetime.datetime", "datetime.date")]
        assert not clock, f"pure module {module} reads a clock via {clock}"
        ours = sorted(n for n in imported if n.split(".")[0] in PACKAGES and _is_io(n))
        assert not ours, f"pure module {module} imports IO modules {ours}"
    if module.split(".")[0] in ("peers", "encap"):
        assert "bgpd" not in roots, f"{module} must not import bgpd"
    if module.startswith("bgpd.session"):
        assert not any(n.startswith("bgpd.rib") for n in imported), module
    if module.startswith("bgpd.rib"):
        assert not any(n.startswith("bgpd.session") for n in imported), module
    if _within(module, ("bgpd.bfd",)):
        others = sorted(n for n in imported if n.split(".")[0] in PACKAGES)
        assert all(_within(n, ("bgpd.bfd",)) for n in others), f"{module} imports {others}"
    if _within(module, ROUTING_CORE):
        calico = sorted(n for n in imported if _within(n, CALICO))
        assert not calico, f"routing core module {module} imports {calico}"


def test_every_package_is_scanned() -> None:
    assert len(_sources()) > 0
