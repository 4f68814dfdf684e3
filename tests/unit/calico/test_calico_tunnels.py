"""Cluster-route responsibility, the kernel plan's settings and pool specs
(bgpd.calico.tunnels, calico-bgp.md §2.11)."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.calico.origin import originate
from bgpd.calico.tunnels import bird_programs_pool, plan_config, pool_specs
from encap.model import EncapMode
from peers.model import BGPConfiguration, IPPool, Node, ProgramClusterRoutes, Snapshot

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


def _wireguard_snapshot() -> Snapshot:
    def node(name: str, address: str, wireguard: str | None) -> Node:
        return Node(
            name,
            ipv4_address=ipaddress.IPv4Interface(address),
            wireguard_ipv4_address=None if wireguard is None else ipaddress.IPv4Address(wireguard),
        )

    nodes = {
        "a": node("a", "10.0.0.1/24", "10.99.0.1"),
        "b": node("b", "10.0.0.2/24", "10.99.0.2"),
        "c": node("c", "10.0.0.3/24", None),
    }
    pools = {
        "p": IPPool("p", net("10.244.0.0/16")),
        "off": IPPool("off", net("10.250.0.0/16"), disabled=True),
    }
    return Snapshot.build(nodes=nodes, pools=pools)


def test_plan_config_carries_the_wireguard_peers() -> None:
    snapshot = _wireguard_snapshot()
    originations = [originate("a", snapshot, version) for version in (4, 6)]
    plan = plan_config(snapshot, "a", originations, protocol=12, program_vxlan=False)
    assert plan.wireguard_next_hops == frozenset({ipaddress.IPv4Address("10.0.0.2")})
    assert plan.owned_pools == frozenset({net("10.244.0.0/16"), net("10.250.0.0/16")})
    assert plan.local_networks == (net("10.0.0.0/24"),)
    # A node without a WireGuard address of its own leaves every route to the kernel plan.
    plain = [originate("c", snapshot, version) for version in (4, 6)]
    assert plan_config(
        snapshot, "c", plain, protocol=12, program_vxlan=False
    ).wireguard_next_hops == (frozenset())


def test_pool_specs_skip_disabled_pools() -> None:
    assert [p.name for p in pool_specs(_wireguard_snapshot())] == ["p"]
