"""Read-only views of the running daemon, shared by the control socket, the CLI, health and
metrics.

Rules:
1. Values only: frozen dataclasses built by the daemon on request; readers never see live state.
2. ``StatusProvider`` is the one interface the control socket and HTTP endpoints depend on, so
   they can be tested against a fake and the daemon can change inside.
3. Times are seconds since the epoch (wall clock, supplied by the daemon), so "since" columns
   mean the same thing in every process.
4. Words follow BIRD's: capabilities as its ``Neighbor caps`` line names them, routes as
   ``show route`` prints them (``route_status``).
5. Pure: values in, values out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bgpd.rib.route import Path, RouteSource
from bgpd.wire.constants import Origin, SegmentType
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import Family, Prefix, next_hop_to_str, prefix_to_network


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One BGP session, as ``show protocols`` and ``bgpd show peers`` present it."""

    name: str  # Calico's session name: Mesh_10_0_0_2, Node_..., Global_...
    peer_ip: str
    peer_as: int
    local_as: int
    state: str  # RFC 4271 state name: Idle, Connect, Active, OpenSent, OpenConfirm, Established
    since: float  # when the state was entered (epoch seconds)
    passive: bool = False
    family: str = "ipv4"
    last_error: str = ""  # stable reason token of the last fall to Idle
    router_id: str = ""
    hold_time: int = 0
    keepalive_time: int = 0
    prefixes_received: int = 0
    prefixes_accepted: int = 0
    prefixes_advertised: int = 0
    messages_in: int = 0
    messages_out: int = 0
    updates_in: int = 0
    updates_out: int = 0
    graceful_restart: str = ""  # "", "helper", "restarting"
    capabilities: tuple[str, ...] = ()
    source_address: str = ""
    port: int = 179
    problem: str = ""  # a datastore problem of this session (its password cannot be read)
    bfd: BfdStatus | None = None  # the BFD session this BGP session asks for
    bfd_holds: bool = False  # BGP held back: BFD not Up, or its flaps dampened


BFD_STATES = ("AdminDown", "Down", "Init", "Up")  # RFC 5880 §4.1 values 0-3, BIRD's names


@dataclass(frozen=True, slots=True)
class BfdStatus:
    """One BFD session (RFC 5880 §6.8.1 variables), as ``show bfd sessions`` and ``bgpd show
    peers`` present it; intervals in milliseconds."""

    peer_ip: str
    local_ip: str
    interface: str
    state: str  # AdminDown, Down, Init, Up (RFC 5880 §4.1)
    since: float  # when the state was entered (epoch seconds)
    tx_interval_ms: float  # what we send at now, before jitter (0: nothing periodic)
    detection_time_ms: float  # the current detection time (0: the peer was not heard)
    desired_min_tx_ms: float  # configured
    required_min_rx_ms: float  # configured
    detect_mult: int  # configured
    ups: int = 0
    downs: int = 0
    local_discriminator: int = 0
    remote_discriminator: int = 0
    multihop: bool = False  # RFC 5883


@dataclass(frozen=True, slots=True)
class RouteStatus:
    """One route in the Loc-RIB (best or not), as ``show route`` presents it."""

    prefix: str
    next_hop: str
    as_path: tuple[int, ...]
    best: bool
    peer: str  # session name, "local" for routes this node originates, or the protocol a
    # learned local route came from as BIRD names it in Calico (``kernel1``, ``direct1``)
    peer_ip: str = ""
    origin: str = "igp"
    local_pref: int | None = None
    med: int | None = None
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    since: float = 0.0
    blackhole: bool = False
    stale: bool = False
    interface: str = ""  # a learned route's own, else the kernel's way towards next_hop


LEARNED_PROTOCOLS = {"kernel": "kernel1", "direct": "direct1"}  # BIRD's automatic names


def _shown_peer(source: RouteSource, names: Mapping[str, str]) -> str:
    if not source.local:
        return names.get(source.peer_id, source.peer_id)
    if source.learned:
        return LEARNED_PROTOCOLS.get(source.peer_id.split()[0], source.peer_id)
    return "local"


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """``show status``: identity and the recovery state that readiness depends on."""

    version: str
    router_id: str
    node: str
    started: float
    last_reconfigured: float
    graceful_restart_recovering: bool = False
    datastore_in_sync: bool = False
    kernel_routes: int = 0
    problems: tuple[str, ...] = field(default=())
    unroutable_pools: tuple[str, ...] = ()  # pools whose tunnel this kernel cannot build
    listen_backlog: int = 0  # the BGP listener's accept queue (0: not listening)
    rejected_keys: tuple[str, ...] = ()  # "key: reason" of datastore values not applied
    update_groups: tuple[tuple[str, int], ...] = ()  # (family, members): speaker rule 7


class StatusProvider(Protocol):
    def daemon_status(self) -> DaemonStatus: ...

    def peer_statuses(self) -> list[PeerStatus]: ...

    def route_statuses(self, prefix: str | None = None) -> list[RouteStatus]: ...

    def explain(self, prefix: str) -> dict[str, Any]:
        """``bgpd explain``'s document for a network (``bgpd.explain``); ValueError if bad."""
        ...


@dataclass
class FixedStatus:
    """A ``StatusProvider`` over fixed values (rule 2), for tests and saved states."""

    status: DaemonStatus
    peers: list[PeerStatus] = field(default_factory=list)
    routes: list[RouteStatus] = field(default_factory=list)
    explanations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def daemon_status(self) -> DaemonStatus:
        return self.status

    def peer_statuses(self) -> list[PeerStatus]:
        return list(self.peers)

    def route_statuses(self, prefix: str | None = None) -> list[RouteStatus]:
        return [route for route in self.routes if prefix is None or route.prefix == prefix]

    def explain(self, prefix: str) -> dict[str, Any]:
        return self.explanations[prefix]


def capability_names(negotiated: Negotiated) -> tuple[str, ...]:
    """The negotiated capabilities as BIRD's ``Neighbor caps`` line names them
    (``bgp_show_capabilities``): refresh, enhanced-refresh, restart-able/aware, llgr, AS4,
    add-path, ext-messages (rule 4)."""
    names: list[str] = []
    if negotiated.route_refresh:
        names.append("refresh")
    if negotiated.enhanced_route_refresh:
        names.append("enhanced-refresh")
    restart = negotiated.peer_graceful_restart
    if restart is not None:
        names.append("restart-able" if restart.families else "restart-aware")
    if negotiated.peer_llgr is not None:
        names.append("llgr-aware")
    if negotiated.asn4:
        names.append("AS4")
    if negotiated.add_path_rx or negotiated.add_path_tx:
        rx, tx = bool(negotiated.add_path_rx), bool(negotiated.add_path_tx)
        names.append("add-path" + ("-rx" if rx and not tx else "-tx" if tx and not rx else ""))
    if negotiated.extended_message:
        names.append("ext-messages")
    return tuple(names)


def route_status(
    family: Family, prefix: Prefix, path: Path, best: bool, names: Mapping[str, str]
) -> RouteStatus:
    """One Loc-RIB candidate as ``show route`` presents it (rule 4); ``names`` maps a session's
    peer id to the name shown."""
    attrs = path.attrs
    return RouteStatus(
        prefix=str(prefix_to_network(prefix, family)),
        next_hop=next_hop_to_str(attrs.next_hop)
        if attrs.next_hop and not path.source.learned
        else "",
        as_path=tuple(
            asn
            for segment in attrs.as_path
            if segment.type in (SegmentType.AS_SEQUENCE, SegmentType.AS_SET)
            for asn in segment.asns
        ),
        best=best,
        peer=_shown_peer(path.source, names),
        peer_ip="" if path.source.local else str(path.source.address),
        origin=Origin(attrs.origin).name.lower(),
        local_pref=attrs.local_pref,
        med=attrs.med,
        communities=tuple(f"{c >> 16}:{c & 0xFFFF}" for c in attrs.communities),
        large_communities=tuple(f"{a}:{b}:{c}" for a, b, c in attrs.large_communities),
        interface=path.source.interface or "",
    )
