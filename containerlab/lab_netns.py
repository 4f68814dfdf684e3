"""Network namespaces and veth links for the lab runner (root only).

Rules:
1. Only namespaces named by the caller are touched; deleting one first kills every process
   whose network namespace it is (``ip netns pids``), so nothing keeps it alive.
2. Every operation is idempotent: creating what exists or deleting what is gone is a no-op.
3. A veth pair is created with each end directly inside its namespace under its final name,
   so no name is ever taken in the root namespace.
4. Commands run through iproute2; a failure raises ``CommandError`` with the command's stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence

NETNS_DIR = "/run/netns"


class CommandError(RuntimeError):
    """A command failed; the message carries the command line and its stderr."""


def run(
    argv: Sequence[str], check: bool = True, timeout: float = 30, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, input=stdin
    )
    if check and result.returncode != 0:
        raise CommandError(
            f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def exists(namespace: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, namespace))


def all_namespaces() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def create(namespace: str) -> bool:
    """Create ``namespace`` with ``lo`` up; False when it already existed (rule 2)."""
    if exists(namespace):
        return False
    run(["ip", "netns", "add", namespace])
    run(["ip", "-n", namespace, "link", "set", "lo", "up"])
    return True


def pids(namespace: str) -> list[int]:
    out = run(["ip", "netns", "pids", namespace], check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def kill_all(namespace: str, grace: float = 2.0) -> None:
    """SIGTERM everything in ``namespace``, then SIGKILL what is left after ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        victims = pids(namespace)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        end = time.monotonic() + grace
        while victims and time.monotonic() < end:
            victims = [pid for pid in victims if _alive(pid)]
            time.sleep(0.05)
        if not victims:
            return


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def delete(namespace: str) -> bool:
    """Kill what runs in ``namespace`` and remove it; False when it did not exist."""
    if not exists(namespace):
        return False
    kill_all(namespace)
    run(["ip", "netns", "del", namespace], check=False)
    return True


def link_exists(namespace: str, interface: str) -> bool:
    return (
        run(["ip", "-n", namespace, "link", "show", "dev", interface], check=False).returncode == 0
    )


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str, mtu: int | None = None) -> bool:
    """Create the pair (rule 3) and bring both ends up; False when end a already existed."""
    if link_exists(ns_a, if_a):
        return False
    argv = ["ip", "-n", ns_a, "link", "add", if_a]
    if mtu:
        argv += ["mtu", str(mtu)]
    argv += ["type", "veth", "peer", "name", if_b, "netns", ns_b]
    if mtu:
        argv += ["mtu", str(mtu)]
    run(argv)
    set_link(ns_a, if_a, up=True)
    set_link(ns_b, if_b, up=True)
    return True


def set_link(namespace: str, interface: str, up: bool) -> None:
    run(["ip", "-n", namespace, "link", "set", interface, "up" if up else "down"])


def add_address(namespace: str, interface: str, cidr: str) -> None:
    """Add ``cidr`` to ``interface`` unless it is there already (rule 2)."""
    shown = run(["ip", "-n", namespace, "-o", "addr", "show", "dev", interface]).stdout
    if f" {cidr} " in shown:
        return
    run(["ip", "-n", namespace, "addr", "add", cidr, "dev", interface])


def bridge(namespace: str, name: str, ports: Sequence[str]) -> None:
    """A Linux bridge ``name`` in ``namespace`` with ``ports`` enslaved, all up."""
    if not link_exists(namespace, name):
        run(["ip", "-n", namespace, "link", "add", name, "type", "bridge"])
    for port in ports:
        run(["ip", "-n", namespace, "link", "set", port, "master", name])
    set_link(namespace, name, up=True)


def sysctl(namespace: str, key: str, value: str) -> None:
    run(["ip", "netns", "exec", namespace, "sysctl", "-q", "-w", f"{key}={value}"])


def exec_in(
    namespace: str, argv: Sequence[str], check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", namespace, *argv], check=check, timeout=timeout)
