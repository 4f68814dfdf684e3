"""``bench/benchlib.py``'s KernelWatch against the real kernel: counts the watched prefixes of
bgpd's and the reference daemons' protocols, and with a gateway, those whose one next hop is
that gateway, as routes are added, replaced towards another next hop, made multipath and
deleted; IPv4 and IPv6 (rule 2). ``e2e_ingest --peers`` stops its clock on that count."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from netns import Namespace, have_root

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import benchlib  # noqa: E402

pytestmark = pytest.mark.netns

CASES = [
    ("10.98.0.", "10.98.0.0/24", "16.0.0.0/4", 24, ("16.0.0.0/24", "16.0.1.0/24", "16.0.2.0/24")),
    (
        "fd00:98::",
        "fd00:98::/64",
        "2a00::/28",
        48,
        ("2a00::/48", "2a00:0:1::/48", "2a00:0:2::/48"),
    ),
]


def settle(watch: benchlib.KernelWatch, count: int, best: int) -> None:
    """Read notifications until the watch holds ``count`` routes, ``best`` via the gateway."""
    try:
        watch.wait(lambda w: (w.count, w.best) == (count, best), 10)
    except TimeoutError:
        raise AssertionError(f"(count, best) is {(watch.count, watch.best)}") from None


@pytest.mark.parametrize(("host", "subnet", "watched", "length", "prefixes"), CASES)
def test_count_and_routes_via_the_gateway(
    host: str, subnet: str, watched: str, length: int, prefixes: tuple[str, str, str]
) -> None:
    if not have_root():
        pytest.skip("needs root and iproute2")
    ns = Namespace.create("kW-")
    best, other = f"{host}2", f"{host}3"
    try:
        ns.ip("link", "add", "d0", "type", "veth", "peer", "name", "d1")
        ns.ip("link", "set", "d1", "up")
        ns.ip("link", "set", "d0", "up")
        plen = subnet.split("/")[1]
        ns.ip("addr", "add", f"{host}1/{plen}", "dev", "d0", "nodad")
        one, two, three = prefixes
        with benchlib.KernelWatch(ns.name, watched, length, gateway=best) as watch:
            ns.ip("route", "add", one, "via", best, "proto", "bird")
            ns.ip("route", "add", two, "via", other, "proto", "bird")
            ns.ip("route", "add", three, "via", best, "proto", "bgp")
            ns.ip(
                "route", "add", f"{three.split('/')[0]}/{length - 1}", "via", best, "proto", "bird"
            )
            settle(watch, 3, 2)
            ns.ip("route", "replace", two, "via", best, "proto", "bird")
            settle(watch, 3, 3)
            ns.ip("route", "replace", one, "via", other, "proto", "bird")
            settle(watch, 3, 2)
            hops = ("nexthop", "via", best, "nexthop", "via", other)
            ns.ip("route", "replace", two, "proto", "bird", *hops)
            settle(watch, 3, 1)
            ns.ip("route", "del", three, "proto", "bgp")
            settle(watch, 2, 0)
        with benchlib.KernelWatch(ns.name, watched, length, gateway=other) as dumped:
            settle(dumped, 2, 1)  # the dump: ``one`` via ``other``, ``two`` multipath
    finally:
        ns.delete()
