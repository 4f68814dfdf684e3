"""What one BGP session is configured with: a frozen value the FSM and the transport read.

Rules:
1. Every field has the RFC or Calico default (calico-bgp.md §2.7: connect delay 2 s, connect
   retry 5 s, error wait 5..30 s, graceful restart and ADD-PATH on) and a one-line meaning.
2. Invalid combinations raise ``ValueError`` at construction, never later on the wire.
3. Addresses are ``ipaddress`` values; the router id is an ``IPv4Address`` (RFC 6286 §2.1).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from bgpd.wire.capabilities import Capability
from bgpd.wire.types import IPV4_UNICAST, Family

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

BGP_PORT = 179  # RFC 4271 §8.2.1.1 (well-known port)


class PeerAsKind(Enum):
    """A peer AS given by relation instead of number (BIRD ``neighbor ... internal|external``)."""

    INTERNAL = "internal"
    EXTERNAL = "external"


class PeerKey(NamedTuple):
    """Identity of a configured peer: its address and the TCP port we connect to."""

    address: IPAddress
    port: int = BGP_PORT

    def __str__(self) -> str:
        return f"{self.address}" if self.port == BGP_PORT else f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """One peer's session parameters (RFC 4271 §8.1 optional attributes, Calico §2.7-§2.8)."""

    local_as: int
    """Our AS; above 65535 it travels in the 4-octet AS capability (RFC 6793 §4.1)."""
    peer_as: int | PeerAsKind
    """The peer's AS, or INTERNAL/EXTERNAL to accept any AS of that relation."""
    router_id: ipaddress.IPv4Address
    """Our BGP Identifier (RFC 6286)."""
    peer_address: IPAddress
    """Where the peer is; incoming connections are matched on it."""
    port: int = BGP_PORT
    """The peer's TCP port for active connects."""
    hold_time: int = 90
    """Proposed hold time in seconds: 0 or at least 3 (RFC 4271 §4.2)."""
    keepalive_time: int | None = None
    """Keepalive interval; None means a third of the negotiated hold time (RFC 4271 §10)."""
    connect_retry_time: float = 5.0
    """ConnectRetryTimer (RFC 4271 §10 suggests 120 s; Calico uses 5 s)."""
    connect_delay_time: float = 2.0
    """Delay from start to the first connect, spent listening (BIRD ``connect delay time``)."""
    error_wait_min: float = 5.0
    """First IdleHoldTime after a failure (RFC 4271 §8.1.1 DampPeerOscillations; BIRD 5)."""
    error_wait_max: float = 30.0
    """IdleHoldTime ceiling as failures repeat (BIRD ``error wait time 5,30``)."""
    error_forget_time: float = 300.0
    """A session quiet this long after a failure starts its backoff afresh (BIRD default)."""
    open_hold_time: float = 240.0
    """HoldTimer while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes)."""
    passive: bool = False
    """Never connect; wait for the peer (RFC 4271 §8.1.1 PassiveTcpEstablishment)."""
    automatic_restart: bool = True
    """Restart after a fall to Idle once the idle hold passes (§8.1.1 AllowAutomaticStart)."""
    families: tuple[Family, ...] = (IPV4_UNICAST,)
    """Multiprotocol capabilities we advertise (RFC 4760 §8)."""
    add_path: int = 0
    """ADD-PATH mode for every family: 0 off, 1 receive, 2 send, 3 both (RFC 7911 §4)."""
    graceful_restart_time: int | None = 120
    """Graceful restart capability with this restart time, or None to omit it (RFC 4724 §3)."""
    graceful_restart_restarting: bool = field(default=False, compare=False)
    """Set the Restart State bit: we are restarting (RFC 4724 §3). Not part of the session's
    identity: the end of our restart changes no running session (a session that reconnects
    later keeps the bit it started with; RFC 4724 §4.2 only makes its peer send at once)."""
    graceful_restart_forwarding: bool = False
    """Set the per-family Forwarding State bit: our routes survived the restart (RFC 4724 §3)."""
    route_refresh: bool = True
    """Advertise route refresh (RFC 2918) and enhanced route refresh (RFC 7313)."""
    extended_message: bool = False
    """Advertise extended messages (RFC 8654)."""
    extra_capabilities: tuple[Capability, ...] = ()
    """Further capabilities to send verbatim (e.g. FQDN, LLGR)."""
    required_capabilities: frozenset[int] = frozenset()
    """Capability codes the peer must advertise, else OPEN error 7 (RFC 5492 §5)."""
    md5_password: str | None = None
    """TCP-MD5 key (RFC 2385), applied on the listener per peer and on active sockets."""
    ttl_security: int | None = None
    """GTSM (RFC 5082): send with TTL 255 and accept only TTL >= 256 - hops."""
    multihop_ttl: int | None = None
    """Outgoing IP TTL for eBGP multihop; None leaves the system default."""
    source_address: IPAddress | None = None
    """Bind active connections to this local address."""
    name: str = field(default="")
    """A label for logs (Calico's protocol name, e.g. ``Mesh_10_0_0_2``)."""

    def __post_init__(self) -> None:
        if self.hold_time != 0 and self.hold_time < 3 or self.hold_time > 65535:
            raise ValueError(f"hold time {self.hold_time}: must be 0 or 3..65535 (RFC 4271 §4.2)")
        if self.keepalive_time is not None and self.keepalive_time < 0:
            raise ValueError("keepalive time must not be negative")
        if not 0 < self.local_as < 2**32:
            raise ValueError(f"local AS {self.local_as} out of range")
        if isinstance(self.peer_as, int) and not 0 < self.peer_as < 2**32:
            raise ValueError(f"peer AS {self.peer_as} out of range")
        if self.add_path not in (0, 1, 2, 3):
            raise ValueError("add_path must be 0..3 (RFC 7911 §4)")
        if self.ttl_security is not None and not 1 <= self.ttl_security <= 255:
            raise ValueError("ttl_security hops must be 1..255")
        if self.multihop_ttl is not None and not 1 <= self.multihop_ttl <= 255:
            raise ValueError("multihop TTL must be 1..255")
        if self.error_wait_min > self.error_wait_max:
            raise ValueError("error_wait_min must not exceed error_wait_max")
        if not self.families:
            raise ValueError("at least one address family is needed")

    @property
    def key(self) -> PeerKey:
        return PeerKey(self.peer_address, self.port)

    @property
    def bgp_id(self) -> int:
        return int(self.router_id)

    def is_internal(self, peer_as: int) -> bool:
        return peer_as == self.local_as
