"""What a node originates and its routes in the RIB (bgpd.calico.origin, calico-bgp.md §2.10,
§2.12, §2.13); the goldens of whole scenarios are in tests/unit/test_peers_golden.py."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.calico.origin import OriginKind, local_routes, originate
from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.file import FileDatastore
from bgpd.wire.types import IPV4_UNICAST, prefix_from_str
from encap.model import EncapMode
from peers.model import (
    AffinityState,
    BGPConfiguration,
    BlockAffinity,
    IPPool,
    ProgramClusterRoutes,
    Snapshot,
)

net = ipaddress.ip_network


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    snap = FileDatastore(DEFAULT_DATASTORE).reload()
    assert snap is not None
    return snap


def test_local_routes_are_own_blocks_with_priority_local_pref(snapshot: Snapshot) -> None:
    origination = originate("node1", snapshot, 4)
    routes = local_routes([origination], {4: ipaddress.IPv4Address("10.0.0.1").packed})
    attrs = routes[IPV4_UNICAST][prefix_from_str("10.244.1.0/26")]
    assert attrs.next_hop == bytes([10, 0, 0, 1])
    assert attrs.local_pref == 2147483647 - 1024  # calico-bgp.md §2.10
    assert attrs.as_path == ()
    assert list(routes[IPV4_UNICAST]) == [prefix_from_str("10.244.1.0/26")]


def test_blackholes_follow_the_kernel_plans_rules() -> None:
    """An own block's blackhole reaches the kernel only where the kernel plan installs: not in
    a pool Felix programs, not inside an advertised service range."""
    pools = {
        "plain": IPPool("plain", net("10.244.0.0/16")),
        "ipip": IPPool("ipip", net("10.245.0.0/16"), ipip_mode=EncapMode.ALWAYS),
        "vxlan": IPPool("vxlan", net("10.246.0.0/16"), vxlan_mode=EncapMode.ALWAYS),
    }
    blocks = ("10.244.1.0/26", "10.245.1.0/26", "10.246.1.0/26", "10.96.0.0/26")
    affinities = {
        ("n", net(b)): BlockAffinity("n", net(b), AffinityState.CONFIRMED) for b in blocks
    }
    config = BGPConfiguration(
        "default",
        service_cluster_ips=(net("10.96.0.0/12"),),
        program_cluster_routes=ProgramClusterRoutes.ENABLED,
    )
    snapshot = Snapshot.build(pools=pools, affinities=affinities, configs={"default": config})
    origination = originate("n", snapshot, 4)
    installed = {str(r.network): r.install_blackhole for r in origination.routes}
    assert installed == {
        "10.244.1.0/26": True,
        "10.245.1.0/26": True,  # IP-in-IP pools are ours under Enabled
        "10.246.1.0/26": False,  # VXLAN: Felix's
        "10.96.0.0/26": False,  # inside a reject CIDR
        "10.96.0.0/12": False,  # the service range itself
    }
    kinds = {str(r.network): r.kind for r in origination.routes}
    assert kinds["10.96.0.0/12"] is OriginKind.SERVICE
    assert kinds["10.244.1.0/26"] is OriginKind.OWN_BLOCK
    assert origination.blackholes() == (net("10.244.1.0/26"), net("10.245.1.0/26"))
    # Playing Felix's VXLAN part, we blackhole the VXLAN block as Felix's route_mgr.go does.
    as_felix = originate("n", snapshot, 4, program_vxlan=True)
    assert net("10.246.1.0/26") in as_felix.blackholes()
    rib = local_routes([as_felix], {4: bytes([10, 0, 0, 1])})[IPV4_UNICAST]
    assert prefix_from_str("10.246.1.0/26") in rib
