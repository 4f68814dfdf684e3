"""The desired BGP session, as one value, and how two session sets differ.

Rules:
1. A ``SessionSpec`` holds everything a session needs, already resolved (calico-bgp.md §2.8):
   no datastore lookups happen after it is built.
2. Session names are Calico's: ``<Kind>_<ip with '.'/':' -> '_'>`` plus ``_port_<P>`` when the
   peering record carries a port (``[BP] buildPeerFromData``); mesh names never carry a port.
   Health checks and ``calicoctl node status`` parse these names (§4.1).
3. ``diff_sessions`` classifies each name: added, removed, reset (a field the OPEN or the TCP
   connection depends on changed: the session must be torn down), refreshed (export/import
   policy only: re-run policy, no reset), updated (takes effect at the next connection, no
   reset and no re-export).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum

from peers.model import IPAddress, MaxPrefixes, PeerNextHopMode

BGP_PORT = 179  # RFC 4271 §8.2.1


class SessionKind(StrEnum):
    """The protocol-name prefix of a session (calico-bgp.md §2.8)."""

    MESH = "Mesh"
    GLOBAL = "Global"
    NODE = "Node"


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """One desired BGP session of this node (calico-bgp.md §2.7, §2.8)."""

    name: str
    kind: SessionKind
    family: int  # 4 or 6: each family has its own sessions, as with bird and bird6
    peer_ip: IPAddress
    port: int  # TCP port of the peer: the record's port, else 179
    peer_as: int
    local_as: int  # effective local AS: localASNumber if set, else the node's AS
    passive: bool = False
    source_address: IPAddress | None = None
    password: str | None = field(default=None, repr=False)
    password_problem: str = ""  # the password is configured but unreadable: why (status only)
    keepalive_time: int | None = None
    restart_time: int | None = None  # graceful restart time (RFC 4724 §3 Restart Time)
    ttl_security: int | None = None  # GTSM hop count (RFC 5082); None = off, plain multihop
    rr_client: bool = False
    cluster_id: ipaddress.IPv4Address | None = None  # RFC 4456 §7, set with rr_client
    next_hop_mode: PeerNextHopMode = PeerNextHopMode.AUTO
    num_allowed_local_as: int = 0
    filters: tuple[str, ...] = ()
    reachable_by: IPAddress | None = None
    is_calico_node: bool = False
    max_prefixes: MaxPrefixes | None = None  # bgpd's guardrail, off unless set
    bfd_if_directly_connected: bool = False  # BGPPeer failureDetectionMode (Calico Enterprise)

    @property
    def is_ibgp(self) -> bool:
        """iBGP when the peer's AS is the session's local AS (RFC 4271 §1.1)."""
        return self.peer_as == self.local_as


def session_name(kind: SessionKind, peer_ip: IPAddress, port: int = 0) -> str:
    """Calico's protocol name: ``Mesh_10_0_0_2``, ``Node_fd00__1_port_1790`` ([BP])."""
    text = str(peer_ip).replace(".", "_").replace(":", "_")
    name = f"{kind.value}_{text}"
    if kind is not SessionKind.MESH and port > 0:
        name += f"_port_{port}"
    return name


# Fields whose change needs a new TCP connection or a new OPEN exchange.
RESET_FIELDS = frozenset(
    {"family", "peer_ip", "port", "peer_as", "local_as", "password", "source_address"}
    | {"ttl_security"}
)
# Fields only export/import policy reads: re-evaluate the RIB for this peer, keep the session.
REFRESH_FIELDS = frozenset(
    {"rr_client", "cluster_id", "next_hop_mode", "num_allowed_local_as", "filters"}
)
# Everything else (passive, timers advertised in the next OPEN, reachable_by, is_calico_node,
# kind) takes effect on the next connection; password_problem is only shown.


@dataclass(frozen=True, slots=True)
class SessionChange:
    name: str
    old: SessionSpec
    new: SessionSpec
    changed: tuple[str, ...]  # field names, sorted; "router_id" when the router ID moved


@dataclass(frozen=True, slots=True)
class SessionDiff:
    added: tuple[SessionSpec, ...] = ()
    removed: tuple[SessionSpec, ...] = ()
    reset: tuple[SessionChange, ...] = ()
    refreshed: tuple[SessionChange, ...] = ()
    updated: tuple[SessionChange, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.reset or self.refreshed or self.updated)


def changed_fields(old: SessionSpec, new: SessionSpec) -> tuple[str, ...]:
    return tuple(
        sorted(f.name for f in fields(SessionSpec) if getattr(old, f.name) != getattr(new, f.name))
    )


def diff_sessions(
    old: Mapping[str, SessionSpec],
    new: Mapping[str, SessionSpec],
    *,
    router_id_changed: bool = False,
) -> SessionDiff:
    """Classify every session name present in ``old`` or ``new`` (module rule 3).

    A router ID change resets every surviving session: the BGP Identifier is sent in the OPEN
    (RFC 4271 §4.2)."""
    reset: list[SessionChange] = []
    refreshed: list[SessionChange] = []
    updated: list[SessionChange] = []
    for name in sorted(old.keys() & new.keys()):
        before, after = old[name], new[name]
        changed = changed_fields(before, after)
        if router_id_changed:
            changed = tuple(sorted((*changed, "router_id")))
        if not changed:
            continue
        change = SessionChange(name, before, after, changed)
        if router_id_changed or RESET_FIELDS.intersection(changed):
            reset.append(change)
        elif REFRESH_FIELDS.intersection(changed):
            refreshed.append(change)
        else:
            updated.append(change)
    return SessionDiff(
        added=tuple(new[n] for n in sorted(new.keys() - old.keys())),
        removed=tuple(old[n] for n in sorted(old.keys() - new.keys())),
        reset=tuple(reset),
        refreshed=tuple(refreshed),
        updated=tuple(updated),
    )
