"""Calico's export function, kernel filter, cluster-route responsibility, priority encoding and
BGPFilter evaluation (bgpd.origin, peers.bgpfilter)."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.origin import (
    ExportPolicy,
    PoolPolicy,
    RejectSet,
    RouteContext,
    bird_programs_pool,
    build_export_policy,
    calico_export,
    calico_kernel_filter,
    local_pref_for_metric,
    session_export,
    session_import,
)
from peers.bgpfilter import RouteSource, RouteView, Verdict, apply_bgp_filter, apply_operations
from peers.model import (
    AddCommunity,
    BGPConfiguration,
    BGPFilter,
    BGPFilterRule,
    EncapMode,
    FilterAction,
    IPPool,
    MatchOperator,
    Node,
    PrependASPath,
    ProgramClusterRoutes,
    SetPriority,
    Snapshot,
)
from peers.spec import SessionKind, SessionSpec

net = ipaddress.ip_network


@pytest.mark.parametrize(
    ("mode", "ipip", "noencap", "vxlan"),
    [
        (None, False, True, False),
        (ProgramClusterRoutes.ENABLED_NO_ENCAP_ONLY, False, True, False),
        (ProgramClusterRoutes.ENABLED, True, True, False),
        (ProgramClusterRoutes.ENABLED_IPIP_ONLY, True, False, False),
        (ProgramClusterRoutes.DISABLED, False, False, False),
    ],
)
def test_bird_programs_pool_matrix(
    mode: ProgramClusterRoutes | None, ipip: bool, noencap: bool, vxlan: bool
) -> None:
    config = BGPConfiguration(name="default", program_cluster_routes=mode)
    cidr = net("10.244.0.0/16")
    assert bird_programs_pool(IPPool("a", cidr, ipip_mode=EncapMode.CROSS_SUBNET), config) is ipip
    assert bird_programs_pool(IPPool("b", cidr), config) is noencap
    assert bird_programs_pool(IPPool("c", cidr, vxlan_mode=EncapMode.ALWAYS), config) is vxlan


def test_no_bgp_configuration_means_the_default() -> None:
    assert bird_programs_pool(IPPool("b", net("10.0.0.0/8")), None)
    assert not bird_programs_pool(IPPool("a", net("10.0.0.0/8"), ipip_mode=EncapMode.ALWAYS), None)


def test_priority_encoding() -> None:
    assert local_pref_for_metric(1024) == 2147482623
    assert local_pref_for_metric(512) == 2147483135


POLICY = ExportPolicy(
    version=4,
    normal_priority=1024,
    pools=(
        PoolPolicy(net("10.244.0.0/16"), False, False, EncapMode.NEVER, True),
        PoolPolicy(net("10.245.0.0/16"), False, False, EncapMode.ALWAYS, False),
        PoolPolicy(net("10.247.0.0/16"), True, False, EncapMode.NEVER, True),
        PoolPolicy(net("10.246.0.0/16"), False, True, EncapMode.NEVER, False),
    ),
    felix_tunnel_ifnames=("*.cali", "*.calico", "tunl0"),
    aggregated_blocks=(net("10.244.1.0/26"), net("10.247.1.0/26")),
    static_routes=(net("10.96.0.0/12"),),
    rr_service_ranges=(net("198.51.100.0/24"),),
    reject=RejectSet((net("10.96.0.0/12"),)),
    local_subnet=net("10.0.0.0/24"),
    wireguard_next_hops=frozenset({ipaddress.ip_address("10.0.0.7")}),
)


def ctx(
    source: RouteSource = RouteSource.STATIC, internal: bool = True, **kw: object
) -> RouteContext:
    return RouteContext(source, internal, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("network", "route", "accept", "reason"),
    [
        ("10.247.1.0/26", ctx(), False, "disableBGPExport"),  # step 1 before aggregation
        (
            "10.245.2.0/26",
            ctx(RouteSource.KERNEL, ifname="tunl0", has_gateway=True),
            False,
            "Felix tunnel route",
        ),
        (
            "10.245.2.0/26",
            ctx(RouteSource.KERNEL, False, ifname="tunl0", has_gateway=True),
            True,
            "inside pool",
        ),
        (
            "10.246.2.0/26",
            ctx(RouteSource.KERNEL, ifname="vxlan.calico", has_gateway=True),
            False,
            "Felix tunnel route",
        ),
        (
            "10.245.2.0/26",
            ctx(RouteSource.KERNEL, ifname="eth0", has_gateway=True),
            False,
            "Felix cluster route",
        ),
        (
            "10.244.2.0/26",
            ctx(RouteSource.KERNEL, ifname="eth0", has_gateway=True),
            True,
            "inside pool",
        ),
        ("10.244.2.5/32", ctx(RouteSource.KERNEL, False, ifname="bpf0.cali"), False, "eBPF"),
        ("10.244.1.0/26", ctx(), True, "own block"),
        ("10.244.1.5/32", ctx(RouteSource.KERNEL, ifname="cali123"), False, "aggregated"),
        ("10.244.1.5/32", ctx(RouteSource.KERNEL, ifname="cali123", metric=512), True, "elevated"),
        (
            "10.244.2.5/32",
            ctx(RouteSource.KERNEL, ifname="cali123"),
            True,
            "inside pool",
        ),  # borrowed
        ("10.96.0.0/12", ctx(), True, "service range"),
        ("198.51.100.7/32", ctx(RouteSource.BGP, local_pref=100), True, "route reflector"),
        ("10.244.3.0/26", ctx(RouteSource.BGP, local_pref=2147482623), True, "inside pool"),
        ("0.0.0.0/0", ctx(RouteSource.BGP, False, local_pref=100), False, "not inside any IP pool"),
        ("10.0.0.0/24", ctx(RouteSource.KERNEL, ifname="eth0"), False, "not inside any IP pool"),
    ],
)
def test_calico_export_steps(network: str, route: RouteContext, accept: bool, reason: str) -> None:
    decision = calico_export(net(network), POLICY, route)
    assert decision.accept is accept
    assert reason in decision.reason


def test_export_priority_normalisation() -> None:
    learned = calico_export(
        net("10.244.3.0/26"), POLICY, ctx(RouteSource.BGP, local_pref=2147483135)
    )
    assert (learned.metric, learned.local_pref) == (512, 2147483135)
    static = calico_export(net("10.96.0.0/12"), POLICY, ctx())
    assert (static.metric, static.local_pref) == (1024, 2147482623)


def _snapshot() -> Snapshot:
    cfg = BGPConfiguration(
        name="default",
        service_load_balancer_ips=(net("198.51.100.0/24"),),
        service_external_ips=(net("192.0.2.0/24"),),
        service_load_balancer_aggregation="Disabled",
    )
    rr = Node("rr", ipv4_address=ipaddress.ip_interface("10.0.0.9/24"), rr_cluster_id="1.1.1.1")  # type: ignore[arg-type]
    plain = Node("n", ipv4_address=ipaddress.ip_interface("10.0.0.1/24"))  # type: ignore[arg-type]
    pool = IPPool("p", net("10.244.0.0/16"))
    return Snapshot.build(nodes={"rr": rr, "n": plain}, configs={"default": cfg}, pools={"p": pool})


def test_rr_service_range_rule() -> None:
    snapshot = _snapshot()
    lb_route = net("198.51.100.7/32")
    route = ctx(RouteSource.BGP, local_pref=2147482623)
    on_rr = calico_export(lb_route, build_export_policy("rr", snapshot, 4), route)
    on_client = calico_export(lb_route, build_export_policy("n", snapshot, 4), route)
    assert on_rr.accept and "route reflector" in on_rr.reason
    assert not on_client.accept


def test_kernel_filter() -> None:
    policy = build_export_policy("n", _snapshot(), 4)
    assert policy.felix_tunnel_ifnames[-1] == "tunl0"  # Felix owns IPIP by default
    cases = [
        ("192.0.2.9/32", RouteSource.BGP, None, False, "reject CIDR"),
        ("10.244.5.0/26", RouteSource.BGP, "10.0.0.2", True, "pool"),
        ("0.0.0.0/0", RouteSource.BGP, "10.0.0.254", True, "default accept"),
    ]
    for network, source, hop, accept, reason in cases:
        decision = calico_kernel_filter(
            net(network), policy, source, None if hop is None else ipaddress.ip_address(hop), None
        )
        assert decision.accept is accept and reason in decision.reason
        assert decision.metric == (1024 if accept else None)


@pytest.mark.parametrize(
    ("ipip", "hop", "tunnel"),
    [
        (EncapMode.ALWAYS, "10.0.0.2", "tunl0"),
        (EncapMode.CROSS_SUBNET, "10.0.0.2", ""),
        (EncapMode.CROSS_SUBNET, "10.9.0.2", "tunl0"),
        (EncapMode.NEVER, "10.0.0.2", None),
    ],
)
def test_kernel_filter_ipip_tunnel(ipip: EncapMode, hop: str, tunnel: str | None) -> None:
    policy = ExportPolicy(
        version=4,
        normal_priority=1024,
        pools=(PoolPolicy(net("10.244.0.0/16"), False, False, ipip, True),),
        local_subnet=net("10.0.0.0/24"),
        wireguard_next_hops=frozenset({ipaddress.ip_address("10.0.0.7")}),
    )
    decision = calico_kernel_filter(
        net("10.244.9.0/26"), policy, RouteSource.BGP, ipaddress.ip_address(hop), 2147483135
    )
    assert decision.accept and decision.tunnel == tunnel and decision.metric == 512
    wg = calico_kernel_filter(
        net("10.244.9.0/26"), policy, RouteSource.BGP, ipaddress.ip_address("10.0.0.7")
    )
    assert not wg.accept and "WireGuard" in wg.reason


def test_vxlan_and_felix_pools_not_installed() -> None:
    for name, decision_reason in (("10.246.1.0/26", "VXLAN"), ("10.245.1.0/26", "Felix")):
        decision = calico_kernel_filter(
            net(name), POLICY, RouteSource.BGP, ipaddress.ip_address("10.0.0.2")
        )
        assert not decision.accept and decision_reason in decision.reason


# -- BGPFilter ---------------------------------------------------------------------------------


def rule(action: str = "Accept", **kw: object) -> BGPFilterRule:
    return BGPFilterRule(FilterAction(action), **kw)  # type: ignore[arg-type]


BGP_ROUTE = RouteView(
    RouteSource.BGP,
    communities=((65000 << 16) | 1,),
    large_communities=((1, 2, 3),),
    as_path=(65001, 65002, 65003),
    priority=512,
)


@pytest.mark.parametrize(
    ("the_rule", "network", "is_same_as", "matches"),
    [
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=MatchOperator.EQUAL),
            "10.0.0.0/8",
            True,
            True,
        ),
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=MatchOperator.EQUAL),
            "10.1.0.0/16",
            True,
            False,
        ),
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=MatchOperator.NOT_EQUAL),
            "10.1.0.0/16",
            True,
            True,
        ),
        (rule(cidr=net("10.0.0.0/8"), match_operator=MatchOperator.IN), "10.1.0.0/16", True, True),
        (rule(cidr=net("10.0.0.0/8"), match_operator=MatchOperator.IN), "10.0.0.0/8", True, True),
        (rule(cidr=net("10.0.0.0/8"), match_operator=MatchOperator.IN), "11.0.0.0/8", True, False),
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=MatchOperator.NOT_IN),
            "11.0.0.0/8",
            True,
            True,
        ),
        (
            rule(
                cidr=net("10.0.0.0/8"),
                match_operator=MatchOperator.IN,
                prefix_length_min=16,
                prefix_length_max=24,
            ),
            "10.1.0.0/16",
            True,
            True,
        ),
        (
            rule(
                cidr=net("10.0.0.0/8"),
                match_operator=MatchOperator.IN,
                prefix_length_min=16,
                prefix_length_max=24,
            ),
            "10.1.1.1/32",
            True,
            False,
        ),
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=MatchOperator.IN, prefix_length_max=24),
            "10.0.0.0/8",
            True,
            True,
        ),
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=MatchOperator.NOT_IN, prefix_length_min=16),
            "10.0.0.0/8",
            True,
            True,
        ),
        (rule(source="RemotePeers"), "10.0.0.0/8", True, True),
        (rule(interface="eth*"), "10.0.0.0/8", True, False),  # a BGP route has no interface
        (rule(peer_type="iBGP"), "10.0.0.0/8", True, True),
        (rule(peer_type="iBGP"), "10.0.0.0/8", False, False),
        (rule(peer_type="eBGP"), "10.0.0.0/8", False, True),
        (rule(community=(65000 << 16) | 1), "10.0.0.0/8", True, True),
        (rule(community=(65000 << 16) | 2), "10.0.0.0/8", True, False),
        (rule(community=(1, 2, 3)), "10.0.0.0/8", True, True),
        (rule(as_path_prefix=(65001, 65002)), "10.0.0.0/8", True, True),
        (rule(as_path_prefix=(65002,)), "10.0.0.0/8", True, False),
        (rule(priority=512), "10.0.0.0/8", True, True),
        (rule(priority=1024), "10.0.0.0/8", True, False),
    ],
)
def test_filter_conditions(
    the_rule: BGPFilterRule, network: str, is_same_as: bool, matches: bool
) -> None:
    flt = BGPFilter("f", export_v4=(the_rule,))
    result = apply_bgp_filter(flt, "export", 4, net(network), BGP_ROUTE, is_same_as)
    assert result.verdict is (Verdict.ACCEPT if matches else Verdict.NONE)


def test_first_matching_rule_wins_and_operations_apply() -> None:
    flt = BGPFilter(
        "f",
        import_v4=(
            rule("Reject", cidr=net("10.9.0.0/16"), match_operator=MatchOperator.IN),
            rule(
                operations=(
                    AddCommunity((65000 << 16) | 7),
                    AddCommunity((9, 9, 9)),
                    PrependASPath((64512, 64513)),
                    SetPriority(256),
                )
            ),
            rule("Reject"),
        ),
    )
    rejected = apply_bgp_filter(flt, "import", 4, net("10.9.1.0/24"), BGP_ROUTE, True)
    assert rejected.verdict is Verdict.REJECT and rejected.rule_index == 0
    accepted = apply_bgp_filter(flt, "import", 4, net("10.8.1.0/24"), BGP_ROUTE, True)
    assert accepted.verdict is Verdict.ACCEPT and accepted.rule_index == 1
    after = apply_operations(BGP_ROUTE, accepted.operations)
    assert after.as_path == (64512, 64513, 65001, 65002, 65003)  # reads as listed
    assert after.communities == ((65000 << 16) | 1, (65000 << 16) | 7)
    assert after.large_communities == ((1, 2, 3), (9, 9, 9))
    assert after.priority == 256
    assert (
        apply_bgp_filter(flt, "export", 4, net("10.8.1.0/24"), BGP_ROUTE, True).verdict
        is Verdict.NONE
    )
    assert (
        apply_bgp_filter(flt, "import", 6, net("fd00::/64"), BGP_ROUTE, True).verdict
        is Verdict.NONE
    )


SESSION = SessionSpec(
    name="Global_192_0_2_1",
    kind=SessionKind.GLOBAL,
    family=4,
    peer_ip=ipaddress.ip_address("192.0.2.1"),
    port=179,
    peer_as=65001,
    local_as=64512,
    filters=("missing", "f"),
)


def test_session_export_runs_filters_before_calico_logic() -> None:
    filters = {
        "f": BGPFilter(
            "f",
            export_v4=(
                rule("Reject", cidr=net("10.244.2.0/24"), match_operator=MatchOperator.IN),
                rule(
                    cidr=net("10.247.0.0/16"),
                    match_operator=MatchOperator.IN,
                    operations=(PrependASPath((64512,)), SetPriority(100)),
                ),
                rule(peer_type="iBGP", action="Reject"),
            ),
        )
    }
    blocked = session_export(
        net("10.244.2.0/26"),
        POLICY,
        ctx(RouteSource.BGP, False, local_pref=2147482623),
        SESSION,
        filters,
    )
    assert not blocked.accept and blocked.reason == "BGPFilter reject"
    # An Accept ends the filter: even a disableBGPExport pool route goes out (as in BIRD).
    forced = session_export(net("10.247.1.0/26"), POLICY, ctx(internal=False), SESSION, filters)
    assert forced.accept and forced.as_path_prepend == (64512,)
    assert (forced.metric, forced.local_pref) == (100, local_pref_for_metric(100))
    # No verdict (the iBGP-only rule is skipped on this eBGP session): Calico's logic decides.
    fallthrough = session_export(net("10.96.0.0/12"), POLICY, ctx(internal=False), SESSION, filters)
    assert fallthrough.accept and "service range" in fallthrough.reason


def test_session_import() -> None:
    filters = {
        "f": BGPFilter(
            "f",
            import_v4=(
                rule(
                    cidr=net("10.1.0.0/16"),
                    match_operator=MatchOperator.IN,
                    operations=(SetPriority(512),),
                ),
                rule("Reject", cidr=net("10.2.0.0/16"), match_operator=MatchOperator.IN),
            ),
        )
    }
    view = RouteView(RouteSource.BGP)
    elevated = session_import(net("10.1.0.0/24"), 4, view, 100, SESSION, filters, 1024)
    assert elevated.accept and elevated.override_local_workload
    assert not session_import(net("10.2.0.0/24"), 4, view, 100, SESSION, filters, 1024).accept
    normal = session_import(
        net("10.3.0.0/24"), 4, view, local_pref_for_metric(1024), SESSION, filters, 1024
    )
    assert (
        normal.accept and not normal.override_local_workload and normal.reason == "default accept"
    )
