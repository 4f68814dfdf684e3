"""Network namespaces and veth links for tests (root only). Reusable by every netns test.

Rules:
1. Only namespaces created here are touched; every name starts with the caller's prefix, and
   ``Namespace.delete`` kills what runs inside before removing it.
2. ``inside(ns)`` moves the calling thread into a namespace for the block, so asyncio sockets
   made there (our speaker) live in it; the thread is moved back on exit, even on error.
3. Commands run through ``ip netns exec``; failures raise with the command's output.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyroute2 import netns as _pyroute_netns

_counter = itertools.count()


def have_root() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def sh(*cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 10000}-{next(_counter)}"


@dataclass
class Namespace:
    name: str

    @classmethod
    def create(cls, prefix: str) -> Namespace:
        ns = cls(unique(prefix))
        sh("ip", "netns", "add", ns.name)
        ns.ip("link", "set", "lo", "up")
        return ns

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "-n", self.name, *args, check=check)

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 20
    ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *cmd, check=check, timeout=timeout)

    def popen(
        self, *cmd: str, env: dict[str, str] | None = None, log: str | None = None
    ) -> subprocess.Popen[bytes]:
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def pids(self) -> list[int]:
        out = sh("ip", "netns", "pids", self.name, check=False).stdout.split()
        return [int(p) for p in out]

    def delete(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sh("ip", "netns", "del", self.name, check=False)


@dataclass
class Link:
    """A veth pair between two namespaces, with one IPv4 address on each end."""

    a: Namespace
    b: Namespace
    a_if: str
    b_if: str
    a_addr: ipaddress.IPv4Interface
    b_addr: ipaddress.IPv4Interface

    def set(self, up: bool) -> None:
        """Take the link down (both ends) or bring it back."""
        state = "up" if up else "down"
        self.a.ip("link", "set", self.a_if, state)
        self.b.ip("link", "set", self.b_if, state)


def veth(a: Namespace, b: Namespace, subnet: str) -> Link:
    """Join ``a`` and ``b`` with a veth pair; ``a`` gets the subnet's first host, ``b`` the
    second."""
    net = ipaddress.IPv4Network(subnet)
    hosts = list(itertools.islice(net.hosts(), 2))
    tag = unique("v")[-10:]
    a_if, b_if = f"{tag}a", f"{tag}b"
    sh(
        "ip",
        "link",
        "add",
        a_if,
        "netns",
        a.name,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name,
    )
    link = Link(
        a,
        b,
        a_if,
        b_if,
        ipaddress.IPv4Interface(f"{hosts[0]}/{net.prefixlen}"),
        ipaddress.IPv4Interface(f"{hosts[1]}/{net.prefixlen}"),
    )
    a.ip("addr", "add", str(link.a_addr), "dev", a_if)
    b.ip("addr", "add", str(link.b_addr), "dev", b_if)
    link.set(True)
    return link


@contextlib.contextmanager
def inside(ns: Namespace) -> Iterator[None]:
    """Run the block (in this thread) inside ``ns``: sockets made here belong to it."""
    _pyroute_netns.pushns(ns.name)
    try:
        yield
    finally:
        _pyroute_netns.popns()


@dataclass
class Pair:
    """Our namespace and a peer namespace joined by one veth link (the usual test topology)."""

    us: Namespace
    peer: Namespace
    link: Link
    extra: list[Namespace] = field(default_factory=list)

    @property
    def our_address(self) -> ipaddress.IPv4Address:
        return self.link.a_addr.ip

    @property
    def peer_address(self) -> ipaddress.IPv4Address:
        return self.link.b_addr.ip

    def delete(self) -> None:
        for ns in (self.peer, self.us, *self.extra):
            ns.delete()


def make_pair(prefix: str, subnet: str) -> Pair:
    us = Namespace.create(prefix)
    try:
        peer = Namespace.create(prefix)
    except Exception:
        us.delete()
        raise
    try:
        link = veth(us, peer, subnet)
    except Exception:
        us.delete()
        peer.delete()
        raise
    return Pair(us, peer, link)
