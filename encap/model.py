"""Encapsulation model: IP pool modes, pool specs and the per-node tunnel facts.

Rules:
1. Pool modes are Calico's ``ipipMode`` / ``vxlanMode`` values ``Always``, ``CrossSubnet``,
   ``Never`` ([API/ippool]); an empty or missing mode means ``Never``. Parsing accepts the v1
   spellings (``always``, ``cross-subnet``, ``off``) as well.
2. A pool enables at most one encapsulation: Calico's IPPool validation rejects a pool with
   both ``ipipMode`` and ``vxlanMode`` enabled, so ``PoolSpec`` raises ``ValueError`` too.
3. IP-in-IP is IPv4 only (calico-bgp.md §3.5); an IPv6 pool's ``ipipMode`` is ignored.
4. Addresses and networks are ``ipaddress`` values: this is configuration, not a hot path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class EncapMode(StrEnum):
    """When a pool's routes are tunnelled (calico-bgp.md §2.11, §3.3)."""

    ALWAYS = "Always"
    CROSS_SUBNET = "CrossSubnet"
    NEVER = "Never"

    @classmethod
    def parse(cls, text: str | None) -> EncapMode:
        """Calico v3 spelling, v1 spelling (``always``/``cross-subnet``/``off``) or empty."""
        key = (text or "never").strip().lower().replace("-", "").replace("_", "")
        mode = _MODE_SPELLINGS.get(key)
        if mode is None:
            raise ValueError(f"unknown encapsulation mode {text!r}")
        return mode


_MODE_SPELLINGS = {
    "always": EncapMode.ALWAYS,
    "crosssubnet": EncapMode.CROSS_SUBNET,
    "never": EncapMode.NEVER,
    "off": EncapMode.NEVER,
    "": EncapMode.NEVER,
}


class Encapsulation(StrEnum):
    """Which tunnel a pool uses when it tunnels at all."""

    NONE = "none"
    IPIP = "ipip"
    VXLAN = "vxlan"


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """The routing-relevant part of an IPPool ([API/ippool]): its CIDR and encapsulation."""

    cidr: IPNetwork
    ipip_mode: EncapMode = EncapMode.NEVER
    vxlan_mode: EncapMode = EncapMode.NEVER
    name: str = ""

    def __post_init__(self) -> None:
        if self.ipip_mode is not EncapMode.NEVER and self.vxlan_mode is not EncapMode.NEVER:
            raise ValueError(f"pool {self.label}: ipipMode and vxlanMode cannot both be enabled")

    @property
    def label(self) -> str:
        return self.name or str(self.cidr)

    @property
    def encapsulation(self) -> Encapsulation:
        if self.vxlan_mode is not EncapMode.NEVER:
            return Encapsulation.VXLAN
        if self.ipip_mode is not EncapMode.NEVER and self.cidr.version == 4:
            return Encapsulation.IPIP
        return Encapsulation.NONE

    @property
    def mode(self) -> EncapMode:
        """The mode of the pool's encapsulation (``Never`` when it has none)."""
        encapsulation = self.encapsulation
        if encapsulation is Encapsulation.VXLAN:
            return self.vxlan_mode
        if encapsulation is Encapsulation.IPIP:
            return self.ipip_mode
        return EncapMode.NEVER

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, object]) -> PoolSpec:
        """Build from an IPPool ``spec`` mapping (``cidr``, ``ipipMode``, ``vxlanMode``)."""
        return cls(
            cidr=ipaddress.ip_network(str(spec["cidr"]), strict=False),
            ipip_mode=EncapMode.parse(_optional_str(spec.get("ipipMode"))),
            vxlan_mode=EncapMode.parse(_optional_str(spec.get("vxlanMode"))),
            name=name,
        )


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class NodeTunnelInfo:
    """A node's addresses as the encapsulation needs them ([NODEAPI] ``spec.bgp`` and the
    tunnel fields Felix fills in).

    ``ipv4_address``/``ipv6_address`` carry the node IP *with its subnet* (``spec.bgp.ipv4Address``
    such as ``10.0.0.5/24``): the subnet is what CrossSubnet compares against.
    """

    name: str
    ipv4_address: ipaddress.IPv4Interface | None = None
    ipv6_address: ipaddress.IPv6Interface | None = None
    ipv4_vxlan_tunnel_addr: ipaddress.IPv4Address | None = None
    ipv6_vxlan_tunnel_addr: ipaddress.IPv6Address | None = None
    vxlan_tunnel_mac: str | None = None
    vxlan_tunnel_mac_v6: str | None = None
    ipv4_ipip_tunnel_addr: ipaddress.IPv4Address | None = None

    def address(self, version: int) -> IPInterface | None:
        return self.ipv4_address if version == 4 else self.ipv6_address

    def vxlan_tunnel_addr(self, version: int) -> IPAddress | None:
        return self.ipv4_vxlan_tunnel_addr if version == 4 else self.ipv6_vxlan_tunnel_addr


# Device names Calico uses (calico-bgp.md §3.2, §3.5; Felix ``dataplanedefs``).
IPIP_DEVICE = "tunl0"
VXLAN_DEVICE_V4 = "vxlan.calico"
VXLAN_DEVICE_V6 = "vxlan-v6.calico"


def vxlan_device_name(version: int) -> str:
    return VXLAN_DEVICE_V4 if version == 4 else VXLAN_DEVICE_V6
