"""Calico's export function and the node facts it reads (bgpd.calico.advertise, calico-bgp.md
§2.8 item 6, §2.12b, §2.13)."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.calico.advertise import (
    CommunityRule,
    ExportPolicy,
    PoolPolicy,
    RejectSet,
    RouteContext,
    SourceProtocol,
    build_export_policy,
    calico_export,
    export_priority,
)
from bgpd.kernel.plan import destination_of
from peers.model import BGPConfiguration, IPPool, Node, Snapshot

net = ipaddress.ip_network

POLICY = ExportPolicy(
    version=4,
    normal_priority=1024,
    pools=(
        PoolPolicy(net("10.244.0.0/16"), False, True),
        PoolPolicy(net("10.245.0.0/16"), False, False),
        PoolPolicy(net("10.247.0.0/16"), True, True),
        PoolPolicy(net("10.246.0.0/16"), False, False),
    ),
    felix_tunnel_ifnames=("*.cali", "*.calico", "tunl0"),
    aggregated_blocks=(net("10.244.1.0/26"), net("10.247.1.0/26")),
    static_routes=(net("10.96.0.0/12"),),
    rr_service_ranges=(net("198.51.100.0/24"),),
    reject=RejectSet((net("10.96.0.0/12"),)),
    wireguard_next_hops=frozenset({ipaddress.ip_address("10.0.0.7")}),
)


def ctx(
    source: SourceProtocol = SourceProtocol.STATIC, internal: bool = True, **kw: object
) -> RouteContext:
    return RouteContext(source, internal, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("network", "route", "accept", "reason"),
    [
        ("10.247.1.0/26", ctx(), False, "disableBGPExport"),  # step 1 before aggregation
        (
            "10.245.2.0/26",
            ctx(SourceProtocol.KERNEL, ifname="tunl0", has_gateway=True),
            False,
            "Felix tunnel route",
        ),
        (
            "10.245.2.0/26",
            ctx(SourceProtocol.KERNEL, False, ifname="tunl0", has_gateway=True),
            True,
            "inside pool",
        ),
        (
            "10.246.2.0/26",
            ctx(SourceProtocol.KERNEL, ifname="vxlan.calico", has_gateway=True),
            False,
            "Felix tunnel route",
        ),
        (
            "10.245.2.0/26",
            ctx(SourceProtocol.KERNEL, ifname="eth0", has_gateway=True),
            False,
            "Felix cluster route",
        ),
        (
            "10.244.2.0/26",
            ctx(SourceProtocol.KERNEL, ifname="eth0", has_gateway=True),
            True,
            "inside pool",
        ),
        ("10.244.2.5/32", ctx(SourceProtocol.KERNEL, False, ifname="bpf0.cali"), False, "eBPF"),
        ("10.244.1.0/26", ctx(), True, "own block"),
        ("10.244.1.5/32", ctx(SourceProtocol.KERNEL, ifname="cali123"), False, "aggregated"),
        (
            "10.244.1.5/32",
            ctx(SourceProtocol.KERNEL, ifname="cali123", metric=512),
            True,
            "elevated",
        ),
        (
            "10.244.1.5/32",
            ctx(SourceProtocol.BGP, local_pref=2147483135),
            True,
            "elevated",
        ),  # the same route learned from a peer: the priority travels in LOCAL_PREF
        (
            "10.244.2.5/32",
            ctx(SourceProtocol.KERNEL, ifname="cali123"),
            True,
            "inside pool",
        ),  # borrowed
        ("10.96.0.0/12", ctx(), True, "service range"),
        ("198.51.100.7/32", ctx(SourceProtocol.BGP, local_pref=100), True, "route reflector"),
        ("10.244.3.0/26", ctx(SourceProtocol.BGP, local_pref=2147482623), True, "inside pool"),
        (
            "0.0.0.0/0",
            ctx(SourceProtocol.BGP, False, local_pref=100),
            False,
            "not inside any IP pool",
        ),
        ("10.0.0.0/24", ctx(SourceProtocol.KERNEL, ifname="eth0"), False, "not inside any IP pool"),
    ],
)
def test_calico_export_steps(network: str, route: RouteContext, accept: bool, reason: str) -> None:
    decision = calico_export(destination_of(net(network)), POLICY, route)
    assert decision.accept is accept
    assert reason in decision.reason


def test_reasons_name_what_decided() -> None:
    decision = calico_export(destination_of(net("10.244.2.0/26")), POLICY, ctx())
    assert decision.reason == "inside pool 10.244.0.0/16"


def test_export_priority_normalisation() -> None:
    assert export_priority(SourceProtocol.BGP, 2147483135, None, 1024) == (512, 2147483135)
    assert export_priority(SourceProtocol.STATIC, None, None, 1024) == (1024, 2147482623)
    assert export_priority(SourceProtocol.KERNEL, None, 512, 1024) == (512, 2147483135)
    # A learned route without LOCAL_PREF has BIRD's default 100 (bgpd.calico.priority rule 2).
    assert export_priority(SourceProtocol.BGP, None, None, 1024) == (2147483547, 100)


def test_communities_of_the_prefix_advertisements_are_added() -> None:
    policy = ExportPolicy(
        version=4,
        normal_priority=1024,
        pools=(PoolPolicy(net("10.244.0.0/16"), False, True),),
        community_rules=(
            CommunityRule(net("10.244.0.0/16"), (1, 2), ((1, 2, 3),)),
            CommunityRule(net("10.244.1.0/24"), (2, 3)),
            CommunityRule(net("10.245.0.0/16"), (9,)),
        ),
    )
    decision = calico_export(destination_of(net("10.244.1.0/26")), policy, ctx())
    assert decision.accept
    assert decision.communities == (1, 2, 3) and decision.large_communities == ((1, 2, 3),)


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
    lb_route = destination_of(net("198.51.100.7/32"))
    route = ctx(SourceProtocol.BGP, local_pref=2147482623)
    on_rr = calico_export(lb_route, build_export_policy("rr", snapshot, 4), route)
    on_client = calico_export(lb_route, build_export_policy("n", snapshot, 4), route)
    assert on_rr.accept and "route reflector" in on_rr.reason
    assert not on_client.accept


def test_felix_owns_ipip_by_default() -> None:
    policy = build_export_policy("n", _snapshot(), 4)
    assert policy.felix_tunnel_ifnames[-1] == "tunl0"
    assert policy.reject == RejectSet((net("192.0.2.0/24"),))
