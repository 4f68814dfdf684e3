"""VXLAN desired state: device specs, VTEP MACs, and the L2 entries per remote VTEP.

Rules (calico-bgp.md §3.2, §3.3, §3.5; Felix ``vxlan_mgr``, ``vxlan_resolver.go``):
1. VTEP MAC = ``spec.vxlanTunnelMACAddr`` when set, else ``0x66`` followed by the first five
   bytes of SHA-1(nodename); IPv6 hashes ``nodename + "-v6"`` (``vtepMACForHost``).
2. Device: VNI 4096, UDP port 4789, learning off, ``local`` = the node IP on its parent
   interface, MTU = host MTU - 50 (IPv6: - 70), address = the VXLAN tunnel address as /32
   (/128), admin up.
3. ``tunl0``: address = ``ipv4IPIPTunnelAddr`` /32, MTU = host MTU - 20.
4. Per remote VTEP: a permanent neighbour entry VTEP IP -> VTEP MAC on the VXLAN device, and a
   permanent FDB entry VTEP MAC -> remote node (parent) IP.
5. A VTEP whose node is this node is skipped; two VTEPs may not claim one MAC or one IP (first
   by node name wins, the rest are reported as conflicts).
6. Existing devices are compared field by field; any difference in VNI, port, parent, local
   address, learning or MAC makes the device incompatible (Felix ``vxlanLinksIncompat``);
   MTU and addresses are repaired in place.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from encap.model import IPIP_DEVICE, IPAddress, IPInterface, NodeTunnelInfo, vxlan_device_name

VXLAN_VNI = 4096
VXLAN_PORT = 4789
VXLAN_OVERHEAD_V4 = 50
VXLAN_OVERHEAD_V6 = 70
IPIP_OVERHEAD = 20
VTEP_MAC_FIRST_BYTE = 0x66


def vtep_mac(nodename: str, version: int = 4) -> str:
    """Rule 1: Calico's deterministic VTEP MAC for a node."""
    seed = nodename if version == 4 else nodename + "-v6"
    digest = hashlib.sha1(seed.encode()).digest()
    return ":".join(f"{b:02x}" for b in bytes((VTEP_MAC_FIRST_BYTE,)) + digest[:5])


def node_vtep_mac(node: NodeTunnelInfo, version: int) -> str:
    configured = node.vxlan_tunnel_mac if version == 4 else node.vxlan_tunnel_mac_v6
    return normalise_mac(configured) if configured else vtep_mac(node.name, version)


def normalise_mac(mac: str) -> str:
    return ":".join(f"{int(part, 16):02x}" for part in mac.replace("-", ":").split(":"))


@dataclass(frozen=True, slots=True)
class VxlanDeviceSpec:
    """Rule 2: what the VXLAN device must look like."""

    name: str
    vni: int
    port: int
    local_ip: IPAddress
    mac: str
    mtu: int
    address: IPInterface | None
    learning: bool = False
    parent_ifname: str | None = None


@dataclass(frozen=True, slots=True)
class IpipDeviceSpec:
    """Rule 3: what ``tunl0`` must look like."""

    name: str
    mtu: int
    address: ipaddress.IPv4Interface | None


@dataclass(frozen=True, slots=True)
class VxlanLinkState:
    """An existing VXLAN link as read from the kernel (filled in by ``encap.devices``)."""

    vni: int | None
    port: int | None
    local_ip: IPAddress | None
    mac: str | None
    learning: bool | None
    parent_index: int | None


def vxlan_device_spec(
    node: NodeTunnelInfo, version: int, host_mtu: int, parent_ifname: str | None = None
) -> VxlanDeviceSpec | None:
    """Rule 2 for ``node`` (this node); None when it has no node IP of that family."""
    node_address = node.address(version)
    if node_address is None:
        return None
    overhead = VXLAN_OVERHEAD_V4 if version == 4 else VXLAN_OVERHEAD_V6
    tunnel_addr = node.vxlan_tunnel_addr(version)
    host_bits = 32 if version == 4 else 128
    return VxlanDeviceSpec(
        name=vxlan_device_name(version),
        vni=VXLAN_VNI,
        port=VXLAN_PORT,
        local_ip=node_address.ip,
        mac=node_vtep_mac(node, version),
        mtu=host_mtu - overhead,
        address=(
            None if tunnel_addr is None else ipaddress.ip_interface(f"{tunnel_addr}/{host_bits}")
        ),
        parent_ifname=parent_ifname,
    )


def ipip_device_spec(node: NodeTunnelInfo, host_mtu: int) -> IpipDeviceSpec:
    """Rule 3."""
    tunnel_addr = node.ipv4_ipip_tunnel_addr
    return IpipDeviceSpec(
        name=IPIP_DEVICE,
        mtu=host_mtu - IPIP_OVERHEAD,
        address=None if tunnel_addr is None else ipaddress.IPv4Interface(f"{tunnel_addr}/32"),
    )


def incompatibilities(
    existing: VxlanLinkState, spec: VxlanDeviceSpec, parent_index: int | None
) -> tuple[str, ...]:
    """Rule 6: the reasons an existing link must be deleted and recreated (empty = compatible)."""
    wanted = (
        ("vni", existing.vni, spec.vni),
        ("port", existing.port, spec.port),
        ("local", existing.local_ip, spec.local_ip),
        ("mac", existing.mac and normalise_mac(existing.mac), spec.mac),
        ("learning", existing.learning, spec.learning),
        ("parent", existing.parent_index, parent_index),
    )
    return tuple(
        f"{field} {have} != {want}"
        for field, have, want in wanted
        if have != want and not (field == "parent" and want is None)
    )


@dataclass(frozen=True, slots=True, order=True)
class RemoteVtep:
    """A remote node's VTEP: where its VXLAN traffic goes."""

    node: str
    vtep_ip: IPAddress
    mac: str
    parent_ip: IPAddress


@dataclass(frozen=True, slots=True, order=True)
class NeighbourEntry:
    """Permanent neighbour entry on the VXLAN device: VTEP IP -> VTEP MAC (rule 4)."""

    ip: IPAddress
    mac: str


@dataclass(frozen=True, slots=True, order=True)
class FdbEntry:
    """Permanent FDB entry on the VXLAN device: VTEP MAC -> remote node IP (rule 4)."""

    mac: str
    dst: IPAddress


@dataclass(frozen=True, slots=True)
class VxlanL2State:
    neighbours: frozenset[NeighbourEntry]
    fdb: frozenset[FdbEntry]
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TunnelPlan:
    """The tunnel devices a node keeps: a VXLAN device per IP version in ``vxlan_versions``, with
    the neighbour and FDB entries of every other node's VTEP (rules 2, 4, 5), and ``tunl0`` for
    the IP-in-IP pools named in ``ipip_pools`` (rule 3)."""

    local: NodeTunnelInfo
    others: tuple[NodeTunnelInfo, ...] = ()
    vxlan_versions: tuple[int, ...] = ()
    ipip_pools: tuple[str, ...] = ()


def remote_vtep(node: NodeTunnelInfo, version: int) -> RemoteVtep | None:
    """The VTEP of another node, or None when it has no tunnel address or node IP."""
    tunnel_addr = node.vxlan_tunnel_addr(version)
    node_address = node.address(version)
    if tunnel_addr is None or node_address is None:
        return None
    return RemoteVtep(node.name, tunnel_addr, node_vtep_mac(node, version), node_address.ip)


def desired_l2(vteps: Iterable[RemoteVtep], local_node: str) -> VxlanL2State:
    """Rules 4-5: the neighbour and FDB entries the VXLAN device should carry."""
    neighbours: set[NeighbourEntry] = set()
    fdb: set[FdbEntry] = set()
    seen_ips: dict[IPAddress, str] = {}
    seen_macs: dict[str, str] = {}
    conflicts: list[str] = []
    for vtep in sorted(vteps):
        if vtep.node == local_node:
            continue
        mac = normalise_mac(vtep.mac)
        claimed = seen_ips.get(vtep.vtep_ip) or seen_macs.get(mac)
        if claimed is not None:
            conflicts.append(
                f"node {vtep.node}: VTEP {vtep.vtep_ip}/{mac} already used by {claimed}"
            )
            continue
        seen_ips[vtep.vtep_ip] = seen_macs[mac] = vtep.node
        neighbours.add(NeighbourEntry(vtep.vtep_ip, mac))
        fdb.add(FdbEntry(mac, vtep.parent_ip))
    return VxlanL2State(frozenset(neighbours), frozenset(fdb), tuple(conflicts))


Entry = TypeVar("Entry", NeighbourEntry, FdbEntry)


def diff_entries(
    current: Iterable[Entry], desired: Iterable[Entry]
) -> tuple[list[Entry], list[Entry]]:
    """``(to_add, to_remove)`` for a set of permanent entries."""
    have, want = set(current), set(desired)
    return sorted(want - have), sorted(have - want)
