"""Per-session statements: a peering record becomes a ``SessionSpec`` (calico-bgp.md §2.8).

Rules (each from confd's ``buildPeerFromData`` [BP], master):
1. A peer whose IP is this node's own IP of that family is skipped.
2. Effective local AS = the record's ``localASNumber`` if set, else the node's AS; iBGP means
   peer AS == effective local AS.
3. Passive: Global peers that are Calico nodes are passive when the peer IP *text* is greater
   than ours (a plain string comparison: "10.0.0.10" < "10.0.0.9"). Node peers never are.
4. Route reflector (RFC 4456): on a node with a cluster ID, an iBGP peer whose record carries
   no cluster ID or a different one is a client (``rr client; rr cluster id <ours>``); a peer in
   the same cluster is a non-client.
5. Next hop: ``nextHopMode`` Self/Keep wins; otherwise legacy ``keepOriginalNextHop`` gives
   ``next hop keep`` on eBGP sessions only.
6. ``sourceAddress: UseNodeIP`` (the default) binds the session to the node's IP.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from peers.model import IPAddress, MaxPrefixes, PeerNextHopMode
from peers.spec import BGP_PORT, SessionKind, SessionSpec, session_name


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """confd's v1 peering record (calico-bgp.md §1.6.2), typed."""

    ip: IPAddress
    as_num: int
    port: int = 0  # 0 = not set
    local_as_num: int | None = None
    rr_cluster_id: str = ""
    password: str | None = field(default=None, repr=False)
    password_problem: str = ""  # why a configured password could not be read
    source_addr: str = "UseNodeIP"
    restart_time: int | None = None
    keepalive_time: int | None = None
    keep_next_hop: bool = False
    calico_node: bool = False
    num_allow_local_as: int = 0
    ttl_security: int = 0
    filters: tuple[str, ...] = ()
    reachable_by: IPAddress | None = None
    next_hop_mode: PeerNextHopMode | None = None
    max_prefixes: MaxPrefixes | None = None
    bfd_if_directly_connected: bool = False  # Calico Enterprise's failureDetectionMode


@dataclass(frozen=True, slots=True)
class LocalNode:
    """What the statements need to know about this node, for one family."""

    ip: IPAddress
    as_number: int
    rr_cluster_id: str


def is_passive_towards(peer_ip: IPAddress, own_ip: IPAddress) -> bool:
    """Rule 3 / §2.8.1: the smaller IP *string* waits; comparison is textual on purpose."""
    return str(peer_ip) > str(own_ip)


def reflector_cluster(local: LocalNode, peer_as: int, local_as: int, peer_cluster: str) -> str:
    """Rule 4: our cluster ID when the peer is our RR client, else ""."""
    if local.rr_cluster_id and peer_as == local_as and peer_cluster != local.rr_cluster_id:
        return local.rr_cluster_id
    return ""


def build_session(kind: SessionKind, record: PeerRecord, local: LocalNode) -> SessionSpec | None:
    """Rules 1-6 for a Global or Node record; None when the record names ourselves."""
    if record.ip == local.ip:
        return None
    local_as = record.local_as_num if record.local_as_num else local.as_number
    is_ebgp = record.as_num != local_as
    next_hop: PeerNextHopMode
    if record.next_hop_mode in (PeerNextHopMode.SELF, PeerNextHopMode.KEEP):
        next_hop = record.next_hop_mode
    elif record.keep_next_hop and is_ebgp:
        next_hop = PeerNextHopMode.KEEP
    else:
        next_hop = PeerNextHopMode.AUTO
    cluster = reflector_cluster(local, record.as_num, local_as, record.rr_cluster_id)
    return SessionSpec(
        name=session_name(kind, record.ip, record.port),
        kind=kind,
        family=record.ip.version,
        peer_ip=record.ip,
        port=record.port or BGP_PORT,
        peer_as=record.as_num,
        local_as=local_as,
        passive=(
            kind is SessionKind.GLOBAL
            and record.calico_node
            and is_passive_towards(record.ip, local.ip)
        ),
        source_address=local.ip if record.source_addr == "UseNodeIP" else None,
        password=record.password,
        password_problem=record.password_problem,
        keepalive_time=record.keepalive_time,
        restart_time=record.restart_time,
        ttl_security=record.ttl_security or None,
        rr_client=bool(cluster),
        cluster_id=ipaddress.IPv4Address(cluster) if cluster else None,
        next_hop_mode=next_hop,
        num_allowed_local_as=record.num_allow_local_as,
        filters=record.filters,
        reachable_by=record.reachable_by,
        is_calico_node=record.calico_node,
        max_prefixes=record.max_prefixes,
        bfd_if_directly_connected=record.bfd_if_directly_connected,
    )
