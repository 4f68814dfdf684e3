"""The daemon's pure glue (bgpd.assembly): Calico's desired state turned into session configs,
RIB peers and policies, local routes and kernel routes, from the embedded default datastore."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.assembly import (
    best_route,
    capability_names,
    export_policy,
    import_policy,
    kernel_route,
    local_routes,
    peer_settings,
    plan_config,
    pool_of,
    pool_specs,
    session_config,
)
from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.file import FileDatastore
from bgpd.kernel.plan import KernelRoute, RouteKind, plan_route
from bgpd.origin import originate
from bgpd.rib.policy import ACCEPT_ALL, PolicyContext, SourceKind
from bgpd.rib.route import LOCAL_SOURCE, Path, PeerKind, RouteSource
from bgpd.wire.capabilities import GracefulRestart
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, PathAttributes, prefix_from_str
from encap.model import PoolSpec
from peers.model import Snapshot
from peers.resolve import Environment, resolve_node


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    snap = FileDatastore(DEFAULT_DATASTORE).reload()
    assert snap is not None
    return snap


def test_mesh_sessions_become_calico_style_session_configs(snapshot: Snapshot) -> None:
    peering = resolve_node("node2", snapshot, Environment())
    configs = {
        name: session_config(spec, peering, restarting=False, graceful_restart_time=120)
        for name, spec in peering.sessions.items()
    }
    assert set(configs) == {"Mesh_10_0_0_1", "Mesh_10_0_0_3"}
    to_1, to_3 = configs["Mesh_10_0_0_1"], configs["Mesh_10_0_0_3"]
    # calico-bgp.md §2.8.1: the smaller IP string is passive towards the larger one.
    assert to_3.passive and not to_1.passive
    assert to_1.router_id == ipaddress.IPv4Address("10.0.0.2")
    assert to_1.source_address == ipaddress.IPv4Address("10.0.0.2")
    assert (to_1.local_as, to_1.peer_as, to_1.add_path, to_1.connect_retry_time) == (
        64512,
        64512,
        3,
        5.0,
    )
    assert to_1.graceful_restart_time == 120 and to_1.graceful_restart_forwarding


def test_restarting_sets_the_restart_bit(snapshot: Snapshot) -> None:
    peering = resolve_node("node1", snapshot, Environment())
    spec = peering.sessions["Mesh_10_0_0_2"]
    assert session_config(
        spec, peering, restarting=True, graceful_restart_time=120
    ).graceful_restart_restarting


def test_local_routes_are_own_blocks_with_priority_local_pref(snapshot: Snapshot) -> None:
    origination = originate("node1", snapshot, 4)
    routes = local_routes([origination], {4: ipaddress.IPv4Address("10.0.0.1").packed})
    attrs = routes[IPV4_UNICAST][prefix_from_str("10.244.1.0/26")]
    assert attrs.next_hop == bytes([10, 0, 0, 1])
    assert attrs.local_pref == 2147483647 - 1024  # calico-bgp.md §2.10
    assert attrs.as_path == ()
    assert list(routes[IPV4_UNICAST]) == [prefix_from_str("10.244.1.0/26")]


def _path(attrs: PathAttributes, source: RouteSource = LOCAL_SOURCE) -> Path:
    return Path(source, attrs)


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


def test_export_policy_is_calicos_export_function(snapshot: Snapshot) -> None:
    peering = resolve_node("node1", snapshot, Environment())
    spec = peering.sessions["Mesh_10_0_0_2"]
    origination = originate("node1", snapshot, 4)
    policy = export_policy(spec, origination, snapshot.filters)
    assert policy.hook is not None
    ctx = PolicyContext(PeerKind.IBGP, same_as=True, source=SourceKind.LOCAL)
    attrs = PathAttributes(next_hop=bytes([10, 0, 0, 1]), local_pref=2147482623)
    assert policy.hook(IPV4_UNICAST, prefix_from_str("10.244.1.0/26"), attrs, ctx) is not None
    # §2.12b: outside every pool nothing is exported; beneath an own block it is aggregated.
    assert policy.hook(IPV4_UNICAST, prefix_from_str("192.168.0.0/24"), attrs, ctx) is None
    assert policy.hook(IPV4_UNICAST, prefix_from_str("10.244.1.5/32"), attrs, ctx) is None
    assert import_policy(spec, snapshot.filters) is ACCEPT_ALL


def test_peer_settings_carry_next_hop_self(snapshot: Snapshot) -> None:
    peering = resolve_node("node1", snapshot, Environment())
    settings = peer_settings(peering.sessions["Mesh_10_0_0_3"], ipaddress.IPv4Address("10.0.0.1"))
    assert settings.next_hop_self == {IPV4_UNICAST: bytes([10, 0, 0, 1])}
    assert settings.peer_as == 64512 and not settings.rr_client


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
def test_kernel_route_is_the_plan_of_the_best_route(
    snapshot: Snapshot, prefix: str, hops: tuple[str, ...]
) -> None:
    """The fast path (packed prefix and next hops) plans exactly what the general one does."""
    pools = pool_specs(snapshot)
    config = plan_config(
        snapshot, "node1", [originate("node1", snapshot, 4)], protocol=12, program_vxlan=False
    )
    blackholes = frozenset({ipaddress.ip_network("10.244.1.0/26")})
    paths = tuple(
        _path(
            PathAttributes(next_hop=ipaddress.IPv4Address(hop).packed, local_pref=100),
            RouteSource(f"Mesh_{hop}", ipaddress.IPv4Address(hop), peer_as=64512),
        )
        for hop in hops
    ) or (_path(PathAttributes()),)
    key = prefix_from_str(prefix)
    general = best_route(IPV4_UNICAST, key, paths[0], paths, blackholes, pools)
    expected = plan_route(general, config) if general is not None else None
    assert kernel_route(IPV4_UNICAST, key, paths[0], paths, blackholes, pools, config) == expected
    assert kernel_route(IPV4_UNICAST, key, None, (), blackholes, pools, config) is None


def test_capability_names_follow_birds_neighbor_caps_line() -> None:
    plain = Negotiated(asn4=False)
    assert capability_names(plain) == ()
    full = Negotiated(
        route_refresh=True,
        enhanced_route_refresh=True,
        peer_graceful_restart=GracefulRestart(0, 120, ((IPV4_UNICAST, 0x80),)),
        add_path_rx=frozenset({IPV4_UNICAST}),
        add_path_tx=frozenset({IPV4_UNICAST}),
        extended_message=True,
    )
    assert capability_names(full) == (
        "refresh",
        "enhanced-refresh",
        "restart-able",
        "AS4",
        "add-path",
        "ext-messages",
    )
    receive_only = Negotiated(
        peer_graceful_restart=GracefulRestart(), add_path_rx=frozenset({IPV4_UNICAST})
    )
    assert capability_names(receive_only) == ("restart-aware", "AS4", "add-path-rx")
