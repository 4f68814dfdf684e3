"""The live kernel filter: a best-path change planned into a kernel route (bgpd.kernel.plan
``plan_best``, calico-bgp.md §2.11), with Calico's settings from the datastore
(bgpd.calico.tunnels ``plan_config``)."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.calico.advertise import RouteContext, SourceProtocol, calico_export
from bgpd.calico.origin import local_routes, originate
from bgpd.calico.tunnels import plan_config, pool_specs
from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.file import FileDatastore
from bgpd.kernel.plan import (
    KernelPlanner,
    KernelRoute,
    NextHop,
    PlanConfig,
    RouteKind,
    Skipped,
    best_route,
    destination_of,
    plan_best,
    plan_route,
    pool_of,
)
from bgpd.rib.route import LOCAL_SOURCE, Path, RouteSource
from bgpd.wire.types import IPV4_UNICAST, PathAttributes, prefix_from_str
from encap.model import EncapMode, PoolSpec
from peers.model import BGPConfiguration, IPPool, Node, Snapshot
from peers.spec import SessionKind, SessionSpec

ip = ipaddress.ip_address
net = ipaddress.ip_network


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    snap = FileDatastore(DEFAULT_DATASTORE).reload()
    assert snap is not None
    return snap


def _path(attrs: PathAttributes, source: RouteSource = LOCAL_SOURCE) -> Path:
    return Path(source, attrs)


def _learned(hop: str, local_pref: int | None = None) -> Path:
    attrs = PathAttributes(next_hop=ipaddress.IPv4Address(hop).packed, local_pref=local_pref)
    return _path(attrs, RouteSource(f"Mesh_{hop}", ipaddress.IPv4Address(hop), peer_as=64512))


def _plan(
    prefix: str, paths: tuple[Path, ...], config: PlanConfig, pools: tuple[PoolSpec, ...]
) -> KernelRoute | Skipped | None:
    return plan_best(
        IPV4_UNICAST, prefix_from_str(prefix), paths[0], paths, frozenset(), pools, config
    )


def test_best_route_blackholes_own_blocks_and_multipaths_ecmp(snapshot: Snapshot) -> None:
    pools = pool_specs(snapshot)
    block = prefix_from_str("10.244.1.0/26")
    own = best_route(
        IPV4_UNICAST,
        block,
        _path(PathAttributes()),
        (),
        frozenset({ipaddress.ip_network("10.244.1.0/26")}),
        pools,
    )
    assert own is not None and own.local_blackhole
    a = RouteSource("Mesh_10_0_0_2", ipaddress.IPv4Address("10.0.0.2"), peer_as=64512)
    b = RouteSource("Mesh_10_0_0_3", ipaddress.IPv4Address("10.0.0.3"), peer_as=64512)
    pa = _path(PathAttributes(next_hop=bytes([10, 0, 0, 2]), local_pref=2147482623), a)
    pb = _path(PathAttributes(next_hop=bytes([10, 0, 0, 3]), local_pref=2147482623), b)
    learned = best_route(
        IPV4_UNICAST, prefix_from_str("10.244.9.0/26"), pa, (pa, pb), frozenset(), pools
    )
    assert learned is not None
    assert learned.next_hops == (
        ipaddress.IPv4Address("10.0.0.2"),
        ipaddress.IPv4Address("10.0.0.3"),
    )
    config = plan_config(
        snapshot, "node1", [originate("node1", snapshot, 4)], protocol=12, program_vxlan=False
    )
    route = plan_route(learned, config)
    assert isinstance(route, KernelRoute)
    assert route.kind is RouteKind.UNICAST and len(route.nexthops) == 2 and route.metric == 1024
    assert route.protocol == 12
    assert (
        best_route(IPV4_UNICAST, prefix_from_str("10.244.9.0/26"), None, (), frozenset(), pools)
        is None
    )


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ("10.244.0.0/16", "v4"),
        ("10.244.255.192/26", "v4"),
        ("10.245.0.0/26", None),
        ("10.0.0.0/8", None),
        ("fd00:10:244::/64", "v6"),
        ("fd00:10:245::/64", None),
    ],
)
def test_pool_of_finds_the_pool_holding_a_network(network: str, expected: str | None) -> None:
    pools = [
        PoolSpec(ipaddress.ip_network("10.244.0.0/16"), name="v4"),
        PoolSpec(ipaddress.ip_network("fd00:10:244::/48"), name="v6"),
    ]
    found = pool_of(ipaddress.ip_network(network), pools)
    assert (found.label if found is not None else None) == expected


@pytest.mark.parametrize(
    ("prefix", "hops"),
    [
        ("10.244.9.0/26", ("10.0.0.2",)),
        ("10.244.9.0/26", ("10.0.0.2", "10.0.0.3")),
        ("10.244.1.0/26", ()),  # our own block: a blackhole
        ("192.168.7.0/24", ("10.0.0.3",)),  # outside every pool
        ("0.0.0.0/0", ("10.0.0.2",)),
        ("10.244.9.7/32", ("10.0.0.3", "10.0.0.2")),
    ],
)
def test_plan_best_is_the_plan_of_the_best_route(
    snapshot: Snapshot, prefix: str, hops: tuple[str, ...]
) -> None:
    """The fast path (packed prefix and next hops) plans exactly what the general one does."""
    pools = pool_specs(snapshot)
    config = plan_config(
        snapshot, "node1", [originate("node1", snapshot, 4)], protocol=12, program_vxlan=False
    )
    blackholes = frozenset({ipaddress.ip_network("10.244.1.0/26")})
    paths = tuple(_learned(hop, 100) for hop in hops) or (_path(PathAttributes()),)
    key = prefix_from_str(prefix)
    general = best_route(IPV4_UNICAST, key, paths[0], paths, blackholes, pools)
    expected = plan_route(general, config) if general is not None else None
    assert plan_best(IPV4_UNICAST, key, paths[0], paths, blackholes, pools, config) == expected
    assert plan_best(IPV4_UNICAST, key, None, (), blackholes, pools, config) is None
    planner = KernelPlanner(blackholes, pools, config)
    planned = planner.route(IPV4_UNICAST, key, paths[0], paths)
    assert planned == (expected if isinstance(expected, KernelRoute) else None)


def test_a_learned_route_planned_again_comes_from_the_memo_unchanged() -> None:
    """Rule 10's memo: the second prefix with the same next hops, LOCAL_PREF and pool is the
    general plan of that prefix, and a pool's refusal or another LOCAL_PREF is not carried over."""
    owned = PoolSpec(net("10.244.0.0/16"), name="owned")
    felix = PoolSpec(net("10.96.0.0/16"), name="felix")
    config = PlanConfig(owned_pools=frozenset({owned.cidr}))
    pools = (owned, felix)
    for prefix, local_pref in [
        ("10.244.1.0/26", 100),
        ("10.244.2.0/26", 100),  # from the memo
        ("10.244.3.0/26", 200),  # another metric
        ("10.96.1.0/26", 100),  # refused: Felix's pool
        ("10.96.2.0/26", 100),
        ("192.168.0.0/24", 100),  # no pool
        ("192.168.1.0/24", 100),
    ]:
        paths = (_learned("10.0.0.2", local_pref),)
        key = prefix_from_str(prefix)
        general = best_route(IPV4_UNICAST, key, paths[0], paths, frozenset(), pools)
        assert general is not None
        assert plan_best(
            IPV4_UNICAST, key, paths[0], paths, frozenset(), pools, config
        ) == plan_route(general, config)


# -- Calico's kernel filter rules on the live path (§2.11) ----------------------------------------


def _snapshot() -> Snapshot:
    cfg = BGPConfiguration(
        name="default",
        service_load_balancer_ips=(net("198.51.100.0/24"),),
        service_external_ips=(net("192.0.2.0/24"),),
        service_load_balancer_aggregation="Disabled",
    )
    plain = Node("n", ipv4_address=ipaddress.ip_interface("10.0.0.1/24"))  # type: ignore[arg-type]
    pool = IPPool("p", net("10.244.0.0/16"))
    return Snapshot.build(nodes={"n": plain}, configs={"default": cfg}, pools={"p": pool})


def test_kernel_filter() -> None:
    snapshot = _snapshot()
    originations = [originate("n", snapshot, version) for version in (4, 6)]
    config = plan_config(snapshot, "n", originations, protocol=12, program_vxlan=False)
    pools = pool_specs(snapshot)
    cases = [
        ("192.0.2.9/32", "10.0.0.2", False, "reject CIDR"),
        ("10.244.5.0/26", "10.0.0.2", True, ""),  # inside an owned pool
        ("0.0.0.0/0", "10.0.0.254", True, ""),  # outside every pool: accepted
    ]
    for network, hop, accept, reason in cases:
        planned = _plan(network, (_learned(hop),), config, pools)
        if accept:
            # learned without LOCAL_PREF: BIRD's default 100 -> 2147483647 - 100
            assert isinstance(planned, KernelRoute) and planned.metric == 2147483547
        else:
            assert isinstance(planned, Skipped) and reason in planned.reason


@pytest.mark.parametrize(
    ("ipip", "hop", "expected"),
    [
        (EncapMode.ALWAYS, "10.0.0.2", NextHop(ip("10.0.0.2"), "tunl0", True)),
        (EncapMode.CROSS_SUBNET, "10.0.0.2", NextHop(ip("10.0.0.2"))),
        (EncapMode.CROSS_SUBNET, "10.9.0.2", NextHop(ip("10.9.0.2"), "tunl0", True)),
        (EncapMode.NEVER, "10.0.0.2", NextHop(ip("10.0.0.2"))),
    ],
)
def test_kernel_filter_ipip_tunnel_and_wireguard(
    ipip: EncapMode, hop: str, expected: NextHop
) -> None:
    pool = PoolSpec(net("10.244.0.0/16"), ipip_mode=ipip, name="p")
    config = PlanConfig(
        owned_pools=frozenset({pool.cidr}),
        local_networks=(net("10.0.0.0/24"),),
        wireguard_next_hops=frozenset({ip("10.0.0.7")}),
    )
    planned = _plan("10.244.9.0/26", (_learned(hop, 2147483135),), config, (pool,))
    assert isinstance(planned, KernelRoute)
    assert planned.nexthops == (expected,) and planned.metric == 512
    wg = _plan("10.244.9.0/26", (_learned("10.0.0.7"),), config, (pool,))
    assert isinstance(wg, Skipped) and "WireGuard" in wg.reason


def test_wireguard_hops_leave_the_ecmp_set() -> None:
    config = PlanConfig(wireguard_next_hops=frozenset({ip("10.0.0.7")}))
    paths = (_learned("10.0.0.7"), _learned("10.0.0.2"))
    planned = _plan("192.168.7.0/24", paths, config, ())
    assert isinstance(planned, KernelRoute) and planned.nexthops == (NextHop(ip("10.0.0.2")),)


def test_wireguard_rule_from_the_datastore() -> None:
    """A node with a WireGuard address leaves routes through other WireGuard nodes to Felix."""
    nodes = {
        name: Node(
            name,
            ipv4_address=ipaddress.IPv4Interface(f"10.0.0.{i}/24"),
            wireguard_ipv4_address=ipaddress.IPv4Address(f"10.99.0.{i}"),
        )
        for i, name in enumerate(("a", "b"), start=1)
    }
    snapshot = Snapshot.build(nodes=nodes, pools={"p": IPPool("p", net("10.244.0.0/16"))})
    originations = [originate("a", snapshot, version) for version in (4, 6)]
    config = plan_config(snapshot, "a", originations, protocol=12, program_vxlan=False)
    planned = _plan("10.244.2.0/26", (_learned("10.0.0.2"),), config, pool_specs(snapshot))
    assert isinstance(planned, Skipped) and "WireGuard peer: Felix routes it" in planned.reason


def test_vxlan_and_felix_pools_not_installed() -> None:
    pools = (
        PoolSpec(net("10.246.0.0/16"), vxlan_mode=EncapMode.ALWAYS),
        PoolSpec(net("10.245.0.0/16"), ipip_mode=EncapMode.ALWAYS),
    )
    config = PlanConfig(owned_pools=frozenset({net("10.244.0.0/16")}))
    for name, decision_reason in (("10.246.1.0/26", "VXLAN"), ("10.245.1.0/26", "Felix")):
        planned = _plan(name, (_learned("10.0.0.2"),), config, pools)
        assert isinstance(planned, Skipped) and decision_reason in planned.reason


def test_pinned_peer_route_is_a_static_route_via_reachable_by() -> None:
    """plan rule 6 / origin rule 5: BIRD's ``route <peerIP>/32 via <reachableBy>`` (Calico confd
    case reachable_by/global_peers) reaches the kernel with a static route's metric 0, is kept
    in the RIB with its gateway, and is not exported (inside no pool)."""
    peer = SessionSpec(
        name="Global_10_225_0_4",
        kind=SessionKind.GLOBAL,
        family=4,
        peer_ip=ipaddress.IPv4Address("10.225.0.4"),
        port=179,
        peer_as=65515,
        local_as=64512,
        reachable_by=ipaddress.IPv4Address("10.224.0.1"),
    )
    node = Node("n", ipv4_address=ipaddress.IPv4Interface("10.224.0.2/24"))
    snapshot = Snapshot.build(
        nodes={"n": node}, configs={"default": BGPConfiguration("default", as_number=64512)}
    )
    origination = originate("n", snapshot, 4, [peer])
    assert origination.pinned_routes() == {net("10.225.0.4/32"): ip("10.224.0.1")}
    rib = local_routes([origination], {4: bytes([10, 224, 0, 2])})[IPV4_UNICAST]
    assert rib[prefix_from_str("10.225.0.4/32")].next_hop == bytes([10, 224, 0, 1])
    planner = KernelPlanner(frozenset(), (), PlanConfig(), origination.pinned_routes())
    route = planner.route(
        IPV4_UNICAST, prefix_from_str("10.225.0.4/32"), _path(PathAttributes()), ()
    )
    assert route is not None and route.kind is RouteKind.UNICAST
    assert route.nexthops == (NextHop(ip("10.224.0.1")),) and route.metric == 0
    assert (
        planner.route(IPV4_UNICAST, prefix_from_str("10.9.9.9/32"), _path(PathAttributes()), ())
        is None
    )
    export = origination.policy
    decision = calico_export(
        destination_of(net("10.225.0.4/32")),
        export,
        RouteContext(SourceProtocol.STATIC, internal_peer=True),
    )
    assert not decision.accept
