"""Routes learned from the kernel and interfaces (``bgpd.kernel.learn``, ``bgpd.calico.learned``)
and how Calico's export policy and the speaker treat them."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.calico.learned import Learning, direct_exclusions, learned_source
from bgpd.kernel.learn import (
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RTN_BLACKHOLE,
    RTPROT_KERNEL,
    KernelView,
    ObservedAddress,
    ObservedRoute,
    Resolver,
    learnable,
)
from bgpd.kernel.plan import BestRoute, KernelRoute, NextHop, PlanConfig, Skipped, plan_route
from bgpd.rib.best_path import rank_path
from bgpd.rib.route import RouteSource
from bgpd.wire.types import IPV4_UNICAST, PathAttributes, prefix_from_str
from peers.model import BGPConfiguration, Snapshot

BIRD = 12
BOOT = 3
NET = ipaddress.ip_network


def learning(*exclusions: str) -> Learning:
    return Learning(BIRD, (*exclusions, "cali*", "kube-ipvs*"), {4: bytes([10, 0, 0, 1])})


@pytest.mark.parametrize(
    ("route", "learned"),
    [
        (ObservedRoute(NET("10.1.0.0/24"), BOOT), True),
        (ObservedRoute(NET("10.1.0.0/24"), 4), True),  # static
        (ObservedRoute(NET("10.1.0.0/24"), BOOT, type=RTN_BLACKHOLE), True),
        (ObservedRoute(NET("10.1.0.0/24"), BIRD), False),  # ours
        (ObservedRoute(NET("10.1.0.0/24"), RTPROT_KERNEL), False),  # connected: direct's
        (ObservedRoute(NET("10.1.0.0/24"), 1), False),  # redirect
        (ObservedRoute(NET("10.1.0.0/24"), BOOT, table=100), False),
        (ObservedRoute(NET("10.1.0.255/32"), BOOT, type=3), False),  # broadcast
    ],
)
def test_bird_learn_rules(route: ObservedRoute, learned: bool) -> None:
    assert learnable(route, BIRD) is learned


def test_kernel_routes_carry_interface_gateway_and_metric_as_local_pref() -> None:
    view = KernelView(
        routes=(
            ObservedRoute(NET("10.244.1.7/32"), BOOT, metric=512, ifname="cali12"),
            ObservedRoute(NET("10.244.5.0/28"), BOOT, metric=100, ifname="eth0", gateway=True),
            ObservedRoute(NET("10.244.5.0/28"), BOOT, metric=50, ifname="eth1", gateway=True),
        )
    )
    table = learning().routes(view)[IPV4_UNICAST]
    source, attrs = table[prefix_from_str("10.244.1.7/32")]
    assert (source.learned, source.local, source.interface, source.gateway) == (
        True,
        True,
        "cali12",
        False,
    )
    assert attrs.local_pref == 2147483647 - 512
    assert attrs.next_hop == bytes([10, 0, 0, 1])
    source, attrs = table[prefix_from_str("10.244.5.0/28")]
    assert (source.interface, source.gateway, attrs.local_pref) == ("eth1", True, 2147483647 - 50)


def test_direct_routes_skip_excluded_interfaces_and_host_or_link_scope() -> None:
    view = KernelView(
        routes=(ObservedRoute(NET("10.244.8.0/28"), BOOT, metric=7, ifname="eth9"),),
        addresses=(
            ObservedAddress(NET("10.244.7.0/28"), "ign0"),
            ObservedAddress(NET("10.244.8.0/28"), "dir0"),
            ObservedAddress(NET("10.244.9.0/28"), "cali99"),
            ObservedAddress(NET("10.244.10.0/28"), "kube-ipvs0"),
            ObservedAddress(NET("127.0.0.0/8"), "lo", RT_SCOPE_HOST),
            ObservedAddress(NET("fe80::/64"), "dir0", RT_SCOPE_LINK),
        ),
    )
    table = learning("ign*").routes(view)
    assert list(table[IPV4_UNICAST]) == [prefix_from_str("10.244.8.0/28")]
    source, attrs = table[IPV4_UNICAST][prefix_from_str("10.244.8.0/28")]
    assert source.peer_id == "direct dir0" and attrs.local_pref is None  # direct beats kernel


def test_direct_exclusions_put_ignored_interfaces_first() -> None:
    config = BGPConfiguration(name="default", ignored_interfaces=("iface-1", "iface-2"))
    snapshot = Snapshot.build(configs={"default": config})
    assert direct_exclusions(snapshot) == ("iface-1", "iface-2", "cali*", "kube-ipvs*")


def test_learned_routes_rank_below_bgp_and_own_routes() -> None:
    attrs = PathAttributes(local_pref=100)
    own = rank_path(RouteSource("local", local=True), attrs)
    bgp = rank_path(RouteSource("peer", peer_as=1, local_as=1), attrs)
    kernel = rank_path(learned_source("eth0", True, "kernel"), attrs)
    assert own.rank < bgp.rank < kernel.rank


# -- recursive next hops (bgpd.kernel.learn rule 4, bgpd.kernel.plan rule 11) ------------------


def _resolver() -> Resolver:
    view = KernelView(
        routes=(
            ObservedRoute(NET("0.0.0.0/0"), BOOT, via=ipaddress.ip_address("10.0.0.254")),
            ObservedRoute(NET("172.20.0.0/16"), 4, via=ipaddress.ip_address("10.0.0.9")),
            ObservedRoute(NET("172.20.5.0/24"), BOOT, ifname="eth1"),
            ObservedRoute(NET("172.21.0.0/16"), BIRD, via=ipaddress.ip_address("10.0.0.8")),
            ObservedRoute(NET("10.244.1.7/32"), BOOT, ifname="cali12"),
        ),
        addresses=(ObservedAddress(NET("10.0.0.0/24"), "eth0"),),
    )
    return Resolver.of(view, BIRD)


@pytest.mark.parametrize(
    ("next_hop", "via"),
    [
        ("10.0.0.7", "10.0.0.7"),  # connected: as it is
        ("172.20.1.1", "10.0.0.9"),  # through the route towards it
        ("172.20.5.5", "172.20.5.5"),  # a device route: the next hop itself
        ("172.21.0.1", "10.0.0.254"),  # our own routes do not resolve; the default route does
    ],
)
def test_next_hops_resolve_as_birds_gateway_recursive(next_hop: str, via: str) -> None:
    assert _resolver().resolve(ipaddress.ip_address(next_hop)) == ipaddress.ip_address(via)


def test_workload_routes_do_not_change_the_resolution() -> None:
    resolver = _resolver()
    assert all(network != NET("10.244.1.7/32") for network, _ in resolver.entries)
    assert Resolver.of(KernelView(), BIRD).resolve(ipaddress.ip_address("10.0.0.7")) is None


def test_the_kernel_plan_installs_a_resolved_next_hop_or_skips_an_unreachable_one() -> None:
    config = PlanConfig(resolver=_resolver())
    far = BestRoute(NET("10.50.0.0/24"), (ipaddress.ip_address("172.20.1.1"),))
    planned = plan_route(far, config)
    assert isinstance(planned, KernelRoute)
    assert planned.nexthops == (NextHop(ipaddress.ip_address("10.0.0.9")),)
    lost = PlanConfig(resolver=Resolver(()))
    skipped = plan_route(far, lost)
    assert isinstance(skipped, Skipped) and "unreachable" in skipped.reason
    assert isinstance(plan_route(far, PlanConfig()), KernelRoute)  # no view yet: as it is
