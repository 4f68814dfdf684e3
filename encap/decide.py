"""The per-route encapsulation decision: direct, IP-in-IP or VXLAN.

Rules (calico-bgp.md §2.11, §3.3, §3.5):
1. A destination outside every pool (e.g. a ToR default route) goes direct: ``via NH``.
2. ``Always`` tunnels every route of the pool.
3. ``CrossSubnet`` tunnels only when the next hop lies outside this node's own subnet (the
   network of ``spec.bgp.ipv4Address`` / ``ipv6Address``); inside it the route goes direct. When
   this node's subnet is unknown the next hop cannot be shown to be local, so it tunnels.
4. ``Never`` goes direct.
5. IP-in-IP: ``via <next hop> dev tunl0 onlink`` (BIRD's ``krt_tunnel``). IPv4 only.
6. VXLAN: ``via <remote VTEP IP> dev vxlan.calico onlink`` (IPv6: ``vxlan-v6.calico``); without a
   known VTEP for the next-hop node the route cannot be programmed yet: ``Unresolved``.
"""

from __future__ import annotations

from dataclasses import dataclass

from encap.model import (
    IPIP_DEVICE,
    EncapMode,
    Encapsulation,
    IPAddress,
    IPNetwork,
    PoolSpec,
    vxlan_device_name,
)


@dataclass(frozen=True, slots=True)
class Direct:
    """``via <gateway>``: the kernel resolves the interface."""

    gateway: IPAddress


@dataclass(frozen=True, slots=True)
class Ipip:
    """``via <gateway> dev tunl0 onlink``."""

    gateway: IPAddress
    device: str = IPIP_DEVICE


@dataclass(frozen=True, slots=True)
class Vxlan:
    """``via <remote VTEP IP> dev vxlan.calico onlink``."""

    gateway: IPAddress
    device: str


@dataclass(frozen=True, slots=True)
class Unresolved:
    """The route needs a tunnel we cannot address yet (no VTEP known for the next hop)."""

    reason: str


Decision = Direct | Ipip | Vxlan | Unresolved


def needs_tunnel(mode: EncapMode, next_hop: IPAddress, local_network: IPNetwork | None) -> bool:
    """Rules 2-4."""
    if mode is EncapMode.ALWAYS:
        return True
    if mode is EncapMode.CROSS_SUBNET:
        return local_network is None or next_hop not in local_network
    return False


def decide(
    destination: IPNetwork,
    next_hop: IPAddress,
    pool: PoolSpec | None,
    local_network: IPNetwork | None,
    remote_vtep: IPAddress | None = None,
) -> Decision:
    """How to reach ``destination`` through the node at ``next_hop``.

    ``local_network`` is this node's subnet of the destination's family; ``remote_vtep`` is the
    VXLAN tunnel address of the node owning ``next_hop`` (only consulted for VXLAN pools).
    """
    if pool is None or not needs_tunnel(pool.mode, next_hop, local_network):
        return Direct(next_hop)
    if pool.encapsulation is Encapsulation.IPIP:
        return Ipip(next_hop)
    if remote_vtep is None:
        return Unresolved(f"{destination}: no VXLAN tunnel address known for node {next_hop}")
    return Vxlan(remote_vtep, vxlan_device_name(destination.version))
