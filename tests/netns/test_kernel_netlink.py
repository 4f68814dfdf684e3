"""bgpd.kernel.netlink against the real kernel in a throwaway namespace: plans for every
encapsulation mode, multipath, IPv6, drift repair, foreign routes, restart under GR."""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kernel_netns import Namespaces, ip_in, ipip_supported, routes
from pyroute2 import AsyncIPRoute

from bgpd.kernel.desired import DesiredKernel
from bgpd.kernel.netlink import DEFAULT_WINDOW, EXCHANGE_ROUTES, ApplyResult, KernelProgrammer
from bgpd.kernel.plan import BestRoute, KernelRoute, NextHop, PlanConfig, RouteKind, plan_routes
from bgpd.wire.types import IPV4_UNICAST, prefix_from_network
from encap.devices import TunnelDevices
from encap.model import EncapMode, NodeTunnelInfo, PoolSpec
from encap.vxlan import vxlan_device_spec

pytestmark = pytest.mark.netns

ip = ipaddress.ip_address
net = ipaddress.ip_network

POOL_CIDR = net("10.244.0.0/16")
NH_SAME = ip("192.168.1.20")  # a node in our subnet
NH_OTHER = ip("192.168.2.20")  # a node behind a router
VTEP_SAME = ip("10.244.3.0")
VTEP_OTHER = ip("10.244.2.0")
LOCAL = NodeTunnelInfo(
    "node-a",
    ipv4_address=ipaddress.IPv4Interface("192.168.1.10/24"),
    ipv4_vxlan_tunnel_addr=ipaddress.IPv4Address("10.244.1.0"),
)


@pytest.fixture
def node() -> Iterator[str]:
    """A namespace with eth0 = 192.168.1.10/24 + fd00:1::10/64 (a veth whose peer is up)."""
    with Namespaces("kn") as spaces:
        name = spaces.new()
        ip_in(name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        ip_in(name, "addr", "add", "192.168.1.10/24", "dev", "eth0")
        ip_in(name, "-6", "addr", "add", "fd00:1::10/64", "dev", "eth0", "nodad")
        ip_in(name, "link", "set", "eth0", "up")
        ip_in(name, "link", "set", "eth0p", "up")
        ip_in(name, "route", "add", "default", "via", "192.168.1.1")
        yield name


@pytest.fixture
async def programmer(node: str) -> AsyncIterator[KernelProgrammer]:
    async with KernelProgrammer(node) as kp:
        yield kp


def ours(namespace: str, version: int = 4) -> dict[str, dict[str, Any]]:
    return {r["dst"]: r for r in routes(namespace, "proto", "bird", version=version)}


def config(**extra: Any) -> PlanConfig:
    fields: dict[str, Any] = {
        "owned_pools": frozenset({POOL_CIDR}),
        "local_networks": (net("192.168.1.0/24"),),
        "vteps": {NH_SAME: VTEP_SAME, NH_OTHER: VTEP_OTHER},
        "program_vxlan": True,
    }
    fields.update(extra)
    return PlanConfig(**fields)


def best_routes(pool: PoolSpec) -> list[BestRoute]:
    return [
        BestRoute(net("10.244.1.0/26"), local_blackhole=True, pool=pool),
        BestRoute(net("10.244.3.0/26"), (NH_SAME,), local_pref=2147482623, pool=pool),
        BestRoute(net("10.244.2.0/26"), (NH_OTHER,), local_pref=2147482623, pool=pool),
    ]


async def with_vxlan(namespace: str) -> None:
    spec = vxlan_device_spec(LOCAL, 4, host_mtu=1500)
    assert spec is not None
    async with AsyncIPRoute(netns=namespace, flags=0) as ipr:
        await TunnelDevices(ipr).ensure_vxlan(spec)


async def test_never_mode_direct_routes_and_blackhole(
    node: str, programmer: KernelProgrammer
) -> None:
    pool = PoolSpec(POOL_CIDR)
    plan = plan_routes(best_routes(pool)[:2], config())
    result = await programmer.apply(plan.routes)
    assert result.errors == () and result.replaced == 2
    table = ours(node)
    assert table["10.244.1.0/26"]["type"] == "blackhole"
    assert table["10.244.1.0/26"].get("metric", 0) == 0  # as BIRD installs it (plan rule 2)
    assert table["10.244.3.0/26"]["gateway"] == "192.168.1.20"
    assert table["10.244.3.0/26"]["dev"] == "eth0"
    assert table["10.244.3.0/26"]["metric"] == 1024
    assert "onlink" not in table["10.244.3.0/26"].get("flags", [])


@pytest.mark.parametrize("mode", [EncapMode.ALWAYS, EncapMode.CROSS_SUBNET])
async def test_vxlan_modes(node: str, programmer: KernelProgrammer, mode: EncapMode) -> None:
    await with_vxlan(node)
    pool = PoolSpec(POOL_CIDR, vxlan_mode=mode)
    plan = plan_routes(best_routes(pool), config())
    result = await programmer.apply(plan.routes)
    assert result.errors == ()
    table = ours(node)
    across = table["10.244.2.0/26"]
    assert (across["gateway"], across["dev"]) == ("10.244.2.0", "vxlan.calico")
    assert "onlink" in across["flags"]
    within = table["10.244.3.0/26"]
    if mode is EncapMode.ALWAYS:
        assert (within["gateway"], within["dev"]) == ("10.244.3.0", "vxlan.calico")
        assert "onlink" in within["flags"]
    else:
        assert (within["gateway"], within["dev"]) == ("192.168.1.20", "eth0")
    assert table["10.244.1.0/26"]["type"] == "blackhole"


async def test_ipip_plan_needs_tunl0(node: str, programmer: KernelProgrammer) -> None:
    supported, reason = ipip_supported()
    if not supported:
        pytest.skip(f"kernel has no ipip link type: {reason}")
    ip_in(node, "link", "set", "tunl0", "up")
    pool = PoolSpec(POOL_CIDR, ipip_mode=EncapMode.CROSS_SUBNET)
    result = await programmer.apply(plan_routes(best_routes(pool), config()).routes)
    assert result.errors == ()
    across = ours(node)["10.244.2.0/26"]
    assert (across["gateway"], across["dev"]) == ("192.168.2.20", "tunl0")
    assert "onlink" in across["flags"]
    assert ours(node)["10.244.3.0/26"]["dev"] == "eth0"


async def test_missing_tunnel_device_is_a_per_route_error(
    node: str, programmer: KernelProgrammer
) -> None:
    if ip_in(node, "link", "show", "tunl0", check=False).returncode == 0:
        pytest.skip("tunl0 exists on this kernel")
    pool = PoolSpec(POOL_CIDR, ipip_mode=EncapMode.CROSS_SUBNET)
    result = await programmer.apply(plan_routes(best_routes(pool), config()).routes)
    assert [(str(e.route.dst), e.errno) for e in result.errors] == [("10.244.2.0/26", errno.ENODEV)]
    assert "tunl0" in str(result.errors[0])
    assert set(ours(node)) == {"10.244.1.0/26", "10.244.3.0/26"}  # the other routes still work


async def test_multipath_v4_and_v6(node: str, programmer: KernelProgrammer) -> None:
    v4 = KernelRoute(
        net("10.50.0.0/24"),
        nexthops=(NextHop(ip("192.168.1.20")), NextHop(ip("192.168.1.21"))),
    )
    v6 = KernelRoute(
        net("fd00:50::/64"),
        nexthops=(NextHop(ip("fd00:1::20"), "eth0"), NextHop(ip("fd00:1::21"), "eth0")),
    )
    result = await programmer.apply([v4, v6])
    assert result.errors == ()
    hops4 = ours(node)["10.50.0.0/24"]["nexthops"]
    assert sorted(h["gateway"] for h in hops4) == ["192.168.1.20", "192.168.1.21"]
    hops6 = ours(node, 6)["fd00:50::/64"]["nexthops"]
    assert sorted(h["gateway"] for h in hops6) == ["fd00:1::20", "fd00:1::21"]
    dumped = {r.dst: r for r in await programmer.dump()}
    assert len(dumped[net("10.50.0.0/24")].nexthops) == 2
    assert len(dumped[net("fd00:50::/64")].nexthops) == 2
    # shrink the set: replace semantics leave exactly one hop
    single = KernelRoute(net("fd00:50::/64"), nexthops=(NextHop(ip("fd00:1::21"), "eth0"),))
    assert (await programmer.apply([v4, single])).errors == ()
    assert ours(node, 6)["fd00:50::/64"]["gateway"] == "fd00:1::21"


async def test_ipv6_routes_and_blackhole(node: str, programmer: KernelProgrammer) -> None:
    wanted = [
        KernelRoute(net("fd00:60::/64"), nexthops=(NextHop(ip("fd00:1::20")),), metric=512),
        KernelRoute(net("fd00:61::/64"), RouteKind.BLACKHOLE),
    ]
    result = await programmer.apply(wanted)
    assert result.errors == ()
    table = ours(node, 6)
    assert table["fd00:60::/64"]["metric"] == 512
    assert table["fd00:60::/64"]["gateway"] == "fd00:1::20"
    assert table["fd00:61::/64"]["type"] == "blackhole"
    assert (await programmer.apply([])).deleted == 2
    assert ours(node, 6) == {}


async def test_ipv6_blackhole_planned_as_the_kernel_stores_it(
    node: str, programmer: KernelProgrammer
) -> None:
    """BIRD installs blackholes with metric 0; Linux keeps an IPv6 one as 1024 (plan rule 2),
    so the plan says 1024 and a second round changes nothing."""
    plan = plan_routes([BestRoute(net("fd00:62::/122"), local_blackhole=True)], config())
    assert (await programmer.apply(plan.routes)).errors == ()
    assert ours(node, 6)["fd00:62::/122"]["metric"] == 1024
    again = await programmer.apply(plan.routes)
    assert (again.replaced, again.deleted) == (0, 0)


async def test_reconcile_repairs_drift_and_leaves_foreign_routes(
    node: str, programmer: KernelProgrammer
) -> None:
    ip_in(node, "route", "add", "10.70.0.0/24", "via", "192.168.1.5", "proto", "static")
    ip_in(node, "route", "add", "10.71.0.0/24", "via", "192.168.1.5", "proto", "boot")
    wanted = [
        KernelRoute(net(f"10.80.{i}.0/24"), nexthops=(NextHop(ip("192.168.1.20")),))
        for i in range(3)
    ]
    assert (await programmer.apply(wanted)).errors == ()
    ip_in(node, "route", "del", "10.80.1.0/24", "proto", "bird")  # deleted by hand
    ip_in(
        node,
        "route",
        "replace",
        "10.80.2.0/24",
        "via",
        "192.168.1.99",
        "proto",
        "bird",
        "metric",
        "1024",
    )
    ip_in(node, "route", "add", "10.81.0.0/24", "via", "192.168.1.5", "proto", "bird")  # unwanted
    result = await programmer.reconcile()
    assert result.errors == ()
    assert (result.replaced, result.deleted) == (2, 1)
    table = ours(node)
    assert sorted(table) == ["10.80.0.0/24", "10.80.1.0/24", "10.80.2.0/24"]
    assert table["10.80.2.0/24"]["gateway"] == "192.168.1.20"
    foreign = {
        r["dst"]: r.get("protocol", "boot") for r in routes(node) if r["dst"].startswith("10.7")
    }
    assert foreign == {"10.70.0.0/24": "static", "10.71.0.0/24": "boot"}
    assert (await programmer.reconcile()) == type(result)()


async def test_foreign_route_with_same_key_is_not_clobbered(
    node: str, programmer: KernelProgrammer
) -> None:
    ip_in(
        node,
        "route",
        "add",
        "10.90.0.0/24",
        "via",
        "192.168.1.5",
        "proto",
        "static",
        "metric",
        "1024",
    )
    clash = KernelRoute(net("10.90.0.0/24"), nexthops=(NextHop(ip("192.168.1.20")),))
    result = await programmer.apply([clash])
    assert [(e.route, e.errno) for e in result.errors] == [(clash, errno.EEXIST)]
    [static] = routes(node, "10.90.0.0/24")
    assert (static["gateway"], static["protocol"]) == ("192.168.1.5", "static")
    await programmer.apply([])
    await programmer.sweep_stale()
    assert routes(node, "10.90.0.0/24")[0]["protocol"] == "static"


async def test_restart_keeps_routes_until_sweep(node: str) -> None:
    hop = (NextHop(ip("192.168.1.20")),)
    first = [KernelRoute(net(f"10.100.{i}.0/24"), nexthops=hop) for i in range(4)]
    async with KernelProgrammer(node) as before:
        assert (await before.apply(first)).replaced == 4
    async with KernelProgrammer(node) as after:
        assert len(after.stale) == 4
        assert set(after.known) == {r.identity for r in first}
        result = await after.apply(first[:2])  # converging: only half re-learned so far
        assert (result.replaced, result.deleted) == (0, 0)
        assert len(ours(node)) == 4
        assert (await after.reconcile()).deleted == 0
        assert len(ours(node)) == 4
        swept = await after.sweep_stale()
        assert swept.deleted == 2
        assert sorted(ours(node)) == ["10.100.0.0/24", "10.100.1.0/24"]
        # after the sweep, unwanted routes go at once
        assert (await after.apply(first[:1])).deleted == 1


async def test_mark_stale_protects_until_sweep(node: str, programmer: KernelProgrammer) -> None:
    hop = (NextHop(ip("192.168.1.20")),)
    routes_a = [KernelRoute(net(f"10.110.{i}.0/24"), nexthops=hop) for i in range(2)]
    await programmer.apply(routes_a)
    programmer.mark_stale()
    assert (await programmer.apply([])).deleted == 0
    assert (await programmer.sweep_stale()).deleted == 2
    assert ours(node) == {}


async def test_dump_filters_protocol_and_table(node: str, programmer: KernelProgrammer) -> None:
    ip_in(
        node, "route", "add", "10.120.0.0/24", "via", "192.168.1.5", "proto", "bird", "table", "100"
    )
    ip_in(node, "route", "add", "10.121.0.0/24", "via", "192.168.1.5", "proto", "static")
    mine = KernelRoute(net("10.122.0.0/24"), nexthops=(NextHop(ip("192.168.1.20")),))
    await programmer.apply([mine])
    dumped = await programmer.dump()
    assert [r.dst for r in dumped] == [mine.dst]
    assert dumped[0].nexthops == (NextHop(ip("192.168.1.20"), "eth0", False),)


async def test_refused_new_version_removes_the_old_one(
    node: str, programmer: KernelProgrammer
) -> None:
    good = KernelRoute(net("10.130.0.0/24"), nexthops=(NextHop(ip("192.168.1.20")),))
    assert (await programmer.apply([good])).replaced == 1
    broken = KernelRoute(net("10.130.0.0/24"), nexthops=(NextHop(ip("192.168.1.20"), "nosuch"),))
    result = await programmer.apply([broken])
    assert [(e.route, e.errno) for e in result.errors] == [(broken, errno.ENODEV)]
    assert result.deleted == 1
    assert ours(node) == {}


async def test_a_table_larger_than_a_hand_over_reports_each_refusal(
    node: str, programmer: KernelProgrammer
) -> None:
    """Rule 7: several groups, one in flight while the next is packed; a refusal anywhere (first
    route, a window boundary, a later group, the last route) names its own route."""
    size = 2 * EXCHANGE_ROUTES + DEFAULT_WINDOW // 2
    hop = (NextHop(ip("192.168.1.20")),)
    table = [
        KernelRoute(ipaddress.IPv4Network((0x0B000000 + (index << 8), 24)), nexthops=hop)
        for index in range(size)
    ]
    clashing = [0, DEFAULT_WINDOW, EXCHANGE_ROUTES + 1, size - 1]
    for index in clashing:
        ip_in(node, "route", "add", str(table[index].dst), "via", "192.168.1.5", "metric", "1024")
    result = await programmer.apply(table)
    assert [(e.route, e.errno) for e in result.errors] == [
        (table[index], errno.EEXIST) for index in clashing
    ]
    assert result.replaced == size - len(clashing)
    assert len(ours(node)) == size - len(clashing)
    result = await programmer.apply([])
    assert (result.deleted, result.errors) == (size - len(clashing), ())
    assert ours(node) == {}
    assert len(routes(node, "proto", "boot")) == len(clashing) + 1  # the foreign ones and default


async def test_a_caller_keeping_the_desired_set_is_read_not_copied(node: str) -> None:
    """Rule 8: fed from a ``DesiredKernel``, the programmer keeps no desired map; a reconcile
    repairs drift towards the caller's set, and a restart's sweep spares what it still wants."""
    hop = (NextHop(ip("192.168.1.20")),)
    table = [KernelRoute(net(f"10.120.{i}.0/24"), nexthops=hop) for i in range(3)]
    async with KernelProgrammer(node) as before:
        assert (await before.apply(table)).replaced == 3
    wanted = DesiredKernel()
    async with KernelProgrammer(node, desired=wanted.routes) as kp:
        assert len(kp.stale) == 3
        assert await kp.reconcile() == ApplyResult()  # not fed yet: nothing to converge to
        for route in table[:2]:  # the RIB converged on two of the three
            wanted.set(IPV4_UNICAST, prefix_from_network(route.dst), route)
        batch = wanted.take(100)
        assert (await kp.update(batch.upserts, batch.removals)).replaced == 0
        ip_in(node, "route", "del", "10.120.0.0/24", "proto", "bird")  # deleted by hand
        assert (await kp.reconcile()).replaced == 1
        assert (await kp.sweep_stale()).deleted == 1
        assert sorted(ours(node)) == ["10.120.0.0/24", "10.120.1.0/24"]
        wanted.set(IPV4_UNICAST, prefix_from_network(table[1].dst), None)
        batch = wanted.take(100)
        assert (await kp.update(batch.upserts, batch.removals)).deleted == 1
        assert sorted(ours(node)) == ["10.120.0.0/24"]
