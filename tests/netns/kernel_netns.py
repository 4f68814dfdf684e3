"""Helpers for the kernel / encapsulation namespace tests (not a test module).

Rules:
1. Every namespace is named ``hC-<tag>-<pid>-<n>`` and deleted by ``Namespaces.cleanup``, which
   the tests' fixtures call also on failure.
2. Commands run through ``ip``/``ping`` with ``check=True`` unless a failure is the point.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from typing import Any

_counter = itertools.count()


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def ip_in(namespace: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "-n", namespace, *args, check=check)


def ip_json(namespace: str, *args: str) -> Any:
    out = ip_in(namespace, "-j", *args).stdout
    return json.loads(out) if out.strip() else []


def exec_in(namespace: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", namespace, *args, check=check)


def sysctl(namespace: str, key: str, value: str) -> None:
    exec_in(namespace, "sysctl", "-qw", f"{key}={value}")


def ping(namespace: str, target: str, count: int = 3) -> bool:
    result = exec_in(
        namespace, "ping", "-c", str(count), "-i", "0.2", "-W", "2", target, check=False
    )
    return result.returncode == 0


def ipip_supported() -> tuple[bool, str]:
    """Whether ``ip link add type ipip`` works here (probed in a throwaway namespace)."""
    with Namespaces("probe") as spaces:
        probe = spaces.new()
        result = ip_in(probe, "link", "add", "hcprobe", "type", "ipip", check=False)
        return result.returncode == 0, result.stderr.strip()


class Namespaces:
    """Creates ``hC-`` namespaces and deletes them all on ``cleanup`` (rule 1)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.created: list[str] = []

    def new(self) -> str:
        name = f"hC-{self.tag}-{os.getpid()}-{next(_counter)}"
        sh("ip", "netns", "add", name)
        self.created.append(name)
        ip_in(name, "link", "set", "lo", "up")
        return name

    def cleanup(self) -> None:
        for name in reversed(self.created):
            sh("ip", "netns", "del", name, check=False)
        self.created.clear()

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair with one end in each namespace, both up."""
    ip_in(ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)
    ip_in(ns_a, "link", "set", name_a, "up")
    ip_in(ns_b, "link", "set", name_b, "up")


def routes(namespace: str, *selector: str, version: int = 4) -> list[dict[str, Any]]:
    """``ip -j route show`` (all tables' main by default) filtered by ``selector``."""
    found: list[dict[str, Any]] = ip_json(namespace, f"-{version}", "route", "show", *selector)
    return found
