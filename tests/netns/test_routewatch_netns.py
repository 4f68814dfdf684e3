"""RouteWatch against the real kernel (``bgpd.kernel.routewatch``): routes that are not ours and
interface addresses become views; ours never do."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

import pytest
from netns import Namespace, have_root

from bgpd.kernel.learn import KernelView, ObservedRoute
from bgpd.kernel.routewatch import RouteWatch

pytestmark = pytest.mark.netns

OURS = 12  # RTPROT_BIRD


async def view_where(views: list[KernelView], holds: Callable[[KernelView], bool]) -> KernelView:
    for _ in range(400):
        if views and holds(views[-1]):
            return views[-1]
        await asyncio.sleep(0.025)
    raise AssertionError(f"no such view; last: {views[-1] if views else None}")


def route(view: KernelView, network: str) -> ObservedRoute | None:
    wanted = ipaddress.ip_network(network)
    return next((r for r in view.routes if r.network == wanted), None)


async def test_routes_not_ours_and_addresses_are_watched() -> None:
    if not have_root():
        pytest.skip("needs root and iproute2")
    ns = Namespace.create("kR-")
    try:
        ns.ip("link", "add", "w0", "type", "veth", "peer", "name", "w1")
        ns.ip("link", "set", "w0", "up")
        ns.ip("link", "set", "w1", "up")
        ns.ip("addr", "add", "10.99.0.1/24", "dev", "w0")
        ns.ip("route", "add", "10.244.1.0/26", "dev", "w0", "proto", "boot")  # before start
        views: list[KernelView] = []
        async with RouteWatch(views.append, own_protocol=OURS, netns=ns.name, settle=0.05) as watch:
            first = await view_where(views, lambda v: route(v, "10.244.1.0/26") is not None)
            found = route(first, "10.244.1.0/26")
            assert found is not None and found.ifname == "w0" and found.metric is None
            assert any(a.network == ipaddress.ip_network("10.99.0.0/24") for a in first.addresses)

            ns.ip("route", "add", "10.244.3.0/26", "via", "10.99.0.2", "proto", "bird")
            ns.ip("route", "add", "10.244.2.0/26", "via", "10.99.0.2", "metric", "512")
            view = await view_where(views, lambda v: route(v, "10.244.2.0/26") is not None)
            # ours was dropped by the socket filter, in the kernel: one notification came in
            assert watch.route_notifications == 1
            learned = route(view, "10.244.2.0/26")
            assert learned is not None
            assert (learned.metric, learned.gateway, str(learned.via)) == (512, True, "10.99.0.2")
            await asyncio.sleep(0.3)
            assert route(views[-1], "10.244.3.0/26") is None  # ours: never in a view

            ns.ip("route", "del", "10.244.1.0/26", "dev", "w0")
            await view_where(views, lambda v: route(v, "10.244.1.0/26") is None)

            # Its addresses leave the view, and so do the routes the kernel flushes with it,
            # which it announces with no RTM_DELROUTE: the link notification re-reads the state.
            ns.ip("link", "set", "w0", "down")
            await view_where(
                views,
                lambda v: (
                    all(a.ifname != "w0" for a in v.addresses) and route(v, "10.244.2.0/26") is None
                ),
            )
    finally:
        ns.delete()
