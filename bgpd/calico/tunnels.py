"""What the kernel side needs from the datastore: pools as the encapsulation sees them, which
pools' cluster routes are ours to install, the kernel plan's settings and the tunnel facts of
each node (calico-bgp.md §2.11, §3).

Rules:
1. A pool's routes are ours to install (confd master's ``clusterRoutePolicy.programsPool``,
   §2.11 step 4): VXLAN pools never; IP-in-IP pools under ``programClusterRoutes``
   ``Enabled``/``EnabledIPIPOnly``; unencapsulated pools under ``Enabled``/``EnabledNoEncapOnly``
   (the default, also for an unknown value).
2. Disabled pools are not pools to the kernel plan (``pool_specs``).
3. The kernel plan never installs a route inside a service range this cluster advertises
   (§2.11 step 1), nor a route through another WireGuard node (§2.11 step 3): the originations
   carry both.
4. VXLAN next hops resolve to the remote node's VXLAN tunnel address (§3.3); a node's own
   subnets decide CrossSubnet (§3.3, §3.5).
5. Tunnel devices: a VXLAN device per IP version with a VXLAN pool when we play Felix's VXLAN
   role (``program_vxlan``); ``tunl0`` for the IP-in-IP pools we own (§3.2, §3.5).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from bgpd.kernel.plan import PlanConfig
from encap.model import EncapMode, Encapsulation, NodeTunnelInfo, PoolSpec
from peers.model import (
    BGPConfiguration,
    IPAddress,
    IPNetwork,
    IPPool,
    Node,
    ProgramClusterRoutes,
    Snapshot,
)

if TYPE_CHECKING:  # origin.py builds on this module; the plan only reads its values
    from bgpd.calico.origin import Origination


def bird_programs_pool(pool: IPPool, config: BGPConfiguration | None) -> bool:
    """Rule 1: whether this daemon (in BIRD's place) installs the pool's cluster routes."""
    mode = config.program_cluster_routes if config is not None else None
    if mode is None:
        mode = ProgramClusterRoutes.ENABLED_NO_ENCAP_ONLY
    if pool.uses_vxlan:
        return False
    if pool.uses_ipip:
        return mode in (ProgramClusterRoutes.ENABLED, ProgramClusterRoutes.ENABLED_IPIP_ONLY)
    return mode in (ProgramClusterRoutes.ENABLED, ProgramClusterRoutes.ENABLED_NO_ENCAP_ONLY)


def birds_ipip_responsibility(config: BGPConfiguration | None) -> bool:
    """Whether IP-in-IP pools are ours to program (then ``tunl0`` routes are ours, not Felix's)."""
    probe = IPPool(name="", cidr=ipaddress.ip_network("0.0.0.0/0"), ipip_mode=EncapMode.ALWAYS)
    return bird_programs_pool(probe, config)


def owned_pools(snapshot: Snapshot) -> frozenset[IPNetwork]:
    """Rule 1: the CIDRs of the pools whose routes we install."""
    config = snapshot.global_config
    return frozenset(p.cidr for p in snapshot.pools.values() if bird_programs_pool(p, config))


def pool_specs(snapshot: Snapshot) -> tuple[PoolSpec, ...]:
    """Rule 2: the enabled pools as the encapsulation sees them."""
    return tuple(
        PoolSpec(cidr=p.cidr, ipip_mode=p.ipip_mode, vxlan_mode=p.vxlan_mode, name=p.name)
        for p in snapshot.pools.values()
        if not p.disabled
    )


def plan_config(
    snapshot: Snapshot,
    node: str,
    originations: Iterable[Origination],
    *,
    protocol: int,
    program_vxlan: bool,
) -> PlanConfig:
    """The kernel plan's settings for ``node`` (rules 1, 3 and 4)."""
    reject: list[IPNetwork] = []
    wireguard: set[IPAddress] = set()
    for origination in originations:
        reject += origination.reject.networks
        wireguard |= origination.policy.wireguard_next_hops
    me = snapshot.nodes.get(node)
    local_networks: list[IPNetwork] = []
    if me is not None:
        for version in (4, 6):
            address = me.address(version)
            if address is not None:
                local_networks.append(address.network)
    vteps: dict[IPAddress, IPAddress] = {
        n.ipv4_address.ip: n.ipv4_vxlan_tunnel_addr
        for n in snapshot.nodes.values()
        if n.ipv4_address is not None and n.ipv4_vxlan_tunnel_addr is not None
    }
    return PlanConfig(
        protocol=protocol,
        owned_pools=owned_pools(snapshot),
        reject_cidrs=tuple(reject),
        program_vxlan=program_vxlan,
        local_networks=tuple(local_networks),
        vteps=vteps,
        wireguard_next_hops=frozenset(wireguard),
    )


def tunnel_info(node: Node) -> NodeTunnelInfo:
    """A Calico Node's addresses as the encapsulation needs them (calico-bgp.md §1.2.1)."""
    return NodeTunnelInfo(
        name=node.name,
        ipv4_address=node.ipv4_address,
        ipv6_address=node.ipv6_address,
        ipv4_vxlan_tunnel_addr=node.ipv4_vxlan_tunnel_addr,
        ipv6_vxlan_tunnel_addr=node.ipv6_vxlan_tunnel_addr,
        vxlan_tunnel_mac=node.vxlan_tunnel_mac or None,
        vxlan_tunnel_mac_v6=node.vxlan_tunnel_mac_v6 or None,
        ipv4_ipip_tunnel_addr=node.ipv4_ipip_tunnel_addr,
    )


def tunnel_needs(
    pools: Iterable[PoolSpec], plan: PlanConfig
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Rule 5: (IP versions needing a VXLAN device, names of the IP-in-IP pools we program,
    which need ``tunl0``)."""
    vxlan: set[int] = set()
    ipip: list[str] = []
    for pool in pools:
        if pool.encapsulation is Encapsulation.VXLAN and plan.program_vxlan:
            vxlan.add(pool.cidr.version)
        elif pool.encapsulation is Encapsulation.IPIP and pool.cidr in plan.owned_pools:
            ipip.append(pool.label)
    return tuple(sorted(vxlan)), tuple(ipip)
