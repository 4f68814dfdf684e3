"""bgpd.kernel.plan: best routes -> desired kernel routes (calico-bgp.md §2.4, §2.10, §2.11,
§3.3-§3.5) and the diff against the kernel."""

from __future__ import annotations

import ipaddress

from bgpd.kernel.plan import (
    DEFAULT_METRIC,
    RTPROT_BIRD,
    BestRoute,
    KernelRoute,
    NextHop,
    PlanConfig,
    RouteKind,
    Skipped,
    diff,
    plan_route,
    plan_routes,
    satisfies,
)
from encap.model import EncapMode, PoolSpec

ip = ipaddress.ip_address
net = ipaddress.ip_network

LOCAL_SUBNET = net("192.168.1.0/24")
NH_SAME = ip("192.168.1.20")
NH_OTHER = ip("192.168.2.20")
NH_OTHER_2 = ip("192.168.3.30")
VTEP_OTHER = ip("10.244.7.0")
BLOCK = net("10.244.7.0/26")

IPIP_ALWAYS = PoolSpec(net("10.244.0.0/16"), ipip_mode=EncapMode.ALWAYS, name="ipip-always")
IPIP_CROSS = PoolSpec(net("10.244.0.0/16"), ipip_mode=EncapMode.CROSS_SUBNET, name="ipip-cross")
VXLAN_ALWAYS = PoolSpec(net("10.244.0.0/16"), vxlan_mode=EncapMode.ALWAYS, name="vx-always")
VXLAN_CROSS = PoolSpec(net("10.244.0.0/16"), vxlan_mode=EncapMode.CROSS_SUBNET, name="vx-cross")
NO_ENCAP = PoolSpec(net("10.244.0.0/16"), name="plain")


def config(**extra: object) -> PlanConfig:
    fields: dict[str, object] = {
        "owned_pools": frozenset({net("10.244.0.0/16")}),
        "local_networks": (LOCAL_SUBNET, net("fd00:1::/64")),
        "vteps": {NH_OTHER: VTEP_OTHER, NH_SAME: ip("10.244.9.0")},
    }
    fields.update(extra)
    return PlanConfig(**fields)  # type: ignore[arg-type]


def planned(route: BestRoute, cfg: PlanConfig | None = None) -> KernelRoute:
    outcome = plan_route(route, cfg or config())
    assert isinstance(outcome, KernelRoute), outcome
    return outcome


def skipped(route: BestRoute, cfg: PlanConfig | None = None) -> Skipped:
    outcome = plan_route(route, cfg or config())
    assert isinstance(outcome, Skipped), outcome
    return outcome


# -- metric (priority encoding, §2.10) ------------------------------------------------------------


def test_metric_and_protocol_on_route() -> None:
    route = planned(BestRoute(BLOCK, (NH_SAME,), local_pref=2147483135, pool=NO_ENCAP))
    assert route.metric == 512
    assert route.protocol == RTPROT_BIRD == 12
    assert route.table == 254


def test_configurable_protocol_table_default_metric() -> None:
    cfg = config(protocol=80, table=100, default_metric=2000)
    route = planned(BestRoute(BLOCK, (NH_SAME,), local_pref=4294967295, pool=NO_ENCAP), cfg)
    assert (route.protocol, route.table, route.metric) == (80, 100, 2000)


# -- encapsulation per mode -----------------------------------------------------------------------


def test_no_encap_pool_is_direct() -> None:
    route = planned(BestRoute(BLOCK, (NH_OTHER,), pool=NO_ENCAP))
    assert route.kind is RouteKind.UNICAST
    assert route.nexthops == (NextHop(NH_OTHER, None, False),)


def test_route_outside_pools_is_direct() -> None:
    route = planned(BestRoute(net("0.0.0.0/0"), (NH_OTHER,)))
    assert route.nexthops == (NextHop(NH_OTHER),)


def test_ipip_always_plan() -> None:
    for next_hop in (NH_SAME, NH_OTHER):
        route = planned(BestRoute(BLOCK, (next_hop,), pool=IPIP_ALWAYS))
        assert route.nexthops == (NextHop(next_hop, "tunl0", True),)


def test_ipip_cross_subnet_plan() -> None:
    across = planned(BestRoute(BLOCK, (NH_OTHER,), pool=IPIP_CROSS))
    assert across.nexthops == (NextHop(NH_OTHER, "tunl0", True),)
    within = planned(BestRoute(BLOCK, (NH_SAME,), pool=IPIP_CROSS))
    assert within.nexthops == (NextHop(NH_SAME, None, False),)


def test_vxlan_pool_rejected_unless_we_program_vxlan() -> None:
    reason = skipped(BestRoute(BLOCK, (NH_OTHER,), pool=VXLAN_ALWAYS)).reason
    assert "Felix" in reason and "vx-always" in reason


def test_vxlan_always_plan() -> None:
    cfg = config(program_vxlan=True)
    route = planned(BestRoute(BLOCK, (NH_OTHER,), pool=VXLAN_ALWAYS), cfg)
    assert route.nexthops == (NextHop(VTEP_OTHER, "vxlan.calico", True),)
    same = planned(BestRoute(BLOCK, (NH_SAME,), pool=VXLAN_ALWAYS), cfg)
    assert same.nexthops == (NextHop(ip("10.244.9.0"), "vxlan.calico", True),)


def test_vxlan_cross_subnet_plan() -> None:
    cfg = config(program_vxlan=True)
    across = planned(BestRoute(BLOCK, (NH_OTHER,), pool=VXLAN_CROSS), cfg)
    assert across.nexthops == (NextHop(VTEP_OTHER, "vxlan.calico", True),)
    within = planned(BestRoute(BLOCK, (NH_SAME,), pool=VXLAN_CROSS), cfg)
    assert within.nexthops == (NextHop(NH_SAME),)


def test_vxlan_pool_ownership_does_not_depend_on_owned_pools() -> None:
    cfg = config(program_vxlan=True, owned_pools=frozenset())
    assert planned(BestRoute(BLOCK, (NH_OTHER,), pool=VXLAN_ALWAYS), cfg).nexthops


def test_vxlan_without_vtep_is_skipped_with_reason() -> None:
    cfg = config(program_vxlan=True, vteps={})
    assert (
        "no VXLAN tunnel address"
        in skipped(BestRoute(BLOCK, (NH_OTHER,), pool=VXLAN_ALWAYS), cfg).reason
    )


def test_vxlan_v6_plan() -> None:
    v6pool = PoolSpec(net("fd00:10::/48"), vxlan_mode=EncapMode.ALWAYS)
    nh = ip("fd00:2::9")
    cfg = config(program_vxlan=True, vteps={nh: ip("fd00:10::1")})
    route = planned(BestRoute(net("fd00:10::/122"), (nh,), pool=v6pool), cfg)
    assert route.nexthops == (NextHop(ip("fd00:10::1"), "vxlan-v6.calico", True),)


# -- programClusterRoutes, reject CIDRs, blackholes ----------------------------------------------


def test_pool_not_owned_is_felixs() -> None:
    cfg = config(owned_pools=frozenset())
    assert (
        "programClusterRoutes"
        in skipped(BestRoute(BLOCK, (NH_OTHER,), pool=IPIP_ALWAYS), cfg).reason
    )


def test_reject_cidrs_are_never_installed() -> None:
    cfg = config(reject_cidrs=(net("10.96.0.0/12"), net("fd00:96::/108")))
    assert "reject" in skipped(BestRoute(net("10.96.0.10/32"), (NH_OTHER,)), cfg).reason
    assert "reject" in skipped(BestRoute(net("10.96.0.0/12"), (NH_OTHER,)), cfg).reason
    assert "reject" in skipped(BestRoute(net("fd00:96::1/128"), (ip("fd00:1::2"),)), cfg).reason
    # a supernet of a reject range is not inside it
    assert planned(BestRoute(net("10.0.0.0/8"), (NH_OTHER,)), cfg).dst == net("10.0.0.0/8")


def test_reject_applies_to_blackholes_too() -> None:
    cfg = config(reject_cidrs=(net("10.96.0.0/12"),))
    skipped(BestRoute(net("10.96.0.0/16"), local_blackhole=True), cfg)


def test_own_block_blackhole() -> None:
    route = planned(BestRoute(net("10.244.1.0/26"), local_blackhole=True, pool=IPIP_ALWAYS))
    assert route.kind is RouteKind.BLACKHOLE
    assert route.nexthops == ()
    assert route.metric == 0  # BIRD's static route without krt_metric (plan rule 2)
    assert str(route).startswith("blackhole 10.244.1.0/26")
    v6 = planned(BestRoute(net("fd00:9::/122"), local_blackhole=True))
    assert v6.kind is RouteKind.BLACKHOLE and v6.metric == 1024  # how Linux stores IPv6 metric 0


def test_learned_route_without_local_pref_gets_birds_default() -> None:
    """Calico installs an eBGP route (no LOCAL_PREF) with metric 2147483647 - 100."""
    assert planned(BestRoute(BLOCK, (NH_SAME,), pool=NO_ENCAP)).metric == 2147483547


def test_blackhole_of_felix_pool_is_skipped() -> None:
    cfg = config(owned_pools=frozenset())
    skipped(BestRoute(net("10.244.1.0/26"), local_blackhole=True, pool=NO_ENCAP), cfg)


# -- ECMP -----------------------------------------------------------------------------------------


def test_ecmp_becomes_multipath_sorted_and_deduplicated() -> None:
    route = planned(BestRoute(BLOCK, (NH_OTHER_2, NH_OTHER, NH_OTHER), pool=NO_ENCAP))
    assert route.nexthops == (NextHop(NH_OTHER), NextHop(NH_OTHER_2))


def test_ecmp_keeps_per_hop_encapsulation() -> None:
    route = planned(BestRoute(BLOCK, (NH_OTHER, NH_SAME), pool=IPIP_CROSS))
    assert route.nexthops == (NextHop(NH_SAME), NextHop(NH_OTHER, "tunl0", True))


def test_ecmp_same_set_in_any_order_plans_equal() -> None:
    a = planned(BestRoute(BLOCK, (NH_OTHER, NH_OTHER_2), pool=NO_ENCAP))
    b = planned(BestRoute(BLOCK, (NH_OTHER_2, NH_OTHER), pool=NO_ENCAP))
    assert a == b


def test_unusable_hops_dropped_route_skipped_when_none_left() -> None:
    route = planned(BestRoute(BLOCK, (ip("fd00::1"), NH_OTHER), pool=NO_ENCAP))
    assert route.nexthops == (NextHop(NH_OTHER),)
    assert "not IPv4" in skipped(BestRoute(BLOCK, (ip("fd00::1"),), pool=NO_ENCAP)).reason
    assert skipped(BestRoute(BLOCK, (), pool=NO_ENCAP)).reason == "no next hop"


def test_plan_routes_splits_installed_and_skipped() -> None:
    plan = plan_routes(
        [
            BestRoute(BLOCK, (NH_OTHER,), pool=NO_ENCAP),
            BestRoute(net("10.244.8.0/26"), (NH_OTHER,), pool=VXLAN_ALWAYS),
        ],
        config(),
    )
    assert [r.dst for r in plan.routes] == [BLOCK]
    assert [s.network for s in plan.skipped] == [net("10.244.8.0/26")]


# -- diff -----------------------------------------------------------------------------------------


def kroute(
    dst: str, gw: str = "192.168.2.20", ifname: str | None = None, metric: int = DEFAULT_METRIC
) -> KernelRoute:
    return KernelRoute(net(dst), nexthops=(NextHop(ip(gw), ifname, False),), metric=metric)


def test_diff_replaces_changed_and_missing_deletes_unwanted() -> None:
    current = [kroute("10.1.0.0/24"), kroute("10.2.0.0/24"), kroute("10.3.0.0/24")]
    desired = [kroute("10.1.0.0/24"), kroute("10.2.0.0/24", "192.168.2.21"), kroute("10.4.0.0/24")]
    to_replace, to_delete = diff(current, desired)
    assert [str(r.dst) for r in to_replace] == ["10.2.0.0/24", "10.4.0.0/24"]
    assert [str(r.dst) for r in to_delete] == ["10.3.0.0/24"]


def test_diff_metric_change_is_a_new_route_and_a_delete() -> None:
    to_replace, to_delete = diff([kroute("10.1.0.0/24")], [kroute("10.1.0.0/24", metric=512)])
    assert [r.metric for r in to_replace] == [512]
    assert [r.metric for r in to_delete] == [1024]


def test_diff_kind_change_replaces() -> None:
    blackhole = KernelRoute(net("10.1.0.0/24"), RouteKind.BLACKHOLE)
    assert diff([kroute("10.1.0.0/24")], [blackhole]) == ([blackhole], [])


def test_satisfies_accepts_kernel_resolved_interface() -> None:
    desired = kroute("10.1.0.0/24")
    actual = kroute("10.1.0.0/24", ifname="eth0")
    assert satisfies(actual, desired)
    assert not satisfies(desired, actual)  # a pinned interface must match
    assert not satisfies(None, desired)


def test_satisfies_multipath_in_any_order() -> None:
    one, two = NextHop(ip("10.0.0.1"), "a", False), NextHop(ip("10.0.0.2"), "a", True)
    assert satisfies(
        KernelRoute(BLOCK, nexthops=(two, one)), KernelRoute(BLOCK, nexthops=(one, two))
    )
    assert not satisfies(
        KernelRoute(BLOCK, nexthops=(one,)), KernelRoute(BLOCK, nexthops=(one, two))
    )
    assert not satisfies(
        KernelRoute(BLOCK, nexthops=(one, one)), KernelRoute(BLOCK, nexthops=(one, two))
    )
