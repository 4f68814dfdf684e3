"""BGPPeer resources become peering records for one node (calico-bgp.md §1.6.3, confd
``updatePeersV1`` [CL]).

Rules:
1. Pass A emits every global BGPPeer (no ``node``, no ``nodeSelector``) under a global key;
   pass B emits node-specific BGPPeers under ``(node, ip, port)`` keys. The first record for a
   key wins, and a node-specific record is dropped when a global record has the same IP+port.
   Keys drop the port when it is 0 or 179 (``combineAddrAndPort``), records keep it.
2. Pass C adds the automatic reverse peerings (skipped for ``reversePeering: Manual``): the
   nodes a BGPPeer points at (``peerSelector`` matches, or the Calico nodes with the
   ``peerIP``'s IP/AS/port) get node-specific peerings towards the nodes it applies to
   (``nodeSelector``, ``node``, else every node). Explicit records written earlier win.
3. Go iterates its map of BGPPeers in random order; where two BGPPeers collide on one key we
   process BGPPeers sorted by name, so the lexically first wins, deterministically.
4. ``peerSelector`` records (and reverse ones) take the remote node's address, AS (else the
   global AS), cluster ID and listen port, plus the BGPPeer's ``ttlSecurity``, ``filters``,
   ``reachableBy`` and ``nextHopMode``; they are not marked ``calico_node``.
   ``peerIP`` records take ``asNumber``, ``keepOriginalNextHop``, ``numAllowedLocalASNumbers``,
   ``ttlSecurity``, ``filters``, ``nextHopMode``; they are ``calico_node`` when the IP is any
   node's address, and take that node's listen port when no port is written.
   A ``peerIP`` BGPPeer without ``asNumber`` means the global AS when Calico matches it to its
   nodes ([CL] ``nodesWithIPPortAndAS``: AS 0 stands for the global AS), so its forward record
   takes the AS of the Calico node at that IP (confd case
   ``explicit_peering/route_reflector_v6_by_ip``, projectcalico/calico 87c15906). Calico writes
   ``as 0`` for such a peer that is no Calico node, which BIRD refuses; we report a problem
   and emit no record instead.
5. Every record then gets the password (Secret lookup), ``sourceAddress`` (default
   ``UseNodeIP``), ``maxRestartTime`` and ``keepaliveTime`` (whole seconds, Go rounding).
   ``localASNumber`` applies to forward records only: on a reverse record it would describe
   the other side.
6. Local-workload BGPPeers (``localWorkloadSelector``) need Felix's endpoint-status files and
   are reported as a problem, not resolved.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from peers.model import BGPPeer, IPAddress, Snapshot, whole_seconds
from peers.rules import PeerRecord
from peers.selectors import SelectorError, parse_selector
from peers.spec import BGP_PORT

SecretLookup = Callable[[str, str], str | None]
GlobalKey = tuple[IPAddress, int]


@dataclass(slots=True)
class Peerings:
    """The records of passes A-C that concern one node."""

    global_records: dict[GlobalKey, PeerRecord]
    node_records: dict[GlobalKey, PeerRecord]
    problems: list[str]


def split_peer_ip(text: str) -> tuple[str, int]:
    """``A.B.C.D:port`` / ``[v6]:port`` -> (host, port); anything else -> (text, 0) (Go's
    ``net.SplitHostPort`` as ``parseIPPort`` uses it)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if sep and port.isdigit() and int(port) < 65536:
            return host, int(port)
        return text, 0
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        if port.isdigit() and int(port) < 65536:
            return host, int(port)
    return text, 0


def _key_port(port: int) -> int:
    return 0 if port in (0, BGP_PORT) else port


class _Resolver:
    def __init__(self, node_name: str, snapshot: Snapshot, secrets: SecretLookup) -> None:
        self.node_name = node_name
        self.snapshot = snapshot
        self.secrets = secrets
        self.result = Peerings({}, {}, [])
        self.node_ips = {
            ip for node in snapshot.nodes.values() for v in (4, 6) if (ip := node.ip(v))
        }

    def nodes_matching(self, selector: str, peer: BGPPeer, field: str) -> list[str]:
        try:
            parsed = parse_selector(selector)
        except SelectorError as exc:
            self.result.problems.append(f"BGPPeer {peer.name}: {field}: {exc}")
            return []
        nodes = self.snapshot.nodes
        return [name for name in sorted(nodes) if parsed.matches(nodes[name].labels)]

    def nodes_with_ip_port_and_as(self, ip: IPAddress, asn: int | None, port: int) -> list[str]:
        """The Calico nodes behind a ``peerIP`` ([CL] ``nodesWithIPPortAndAS``)."""
        wanted_as = asn if asn else self.snapshot.global_as()
        found = []
        for name in sorted(self.snapshot.nodes):
            node = self.snapshot.nodes[name]
            if ip not in (node.ip(4), node.ip(6)) or self.snapshot.node_as(name) != wanted_as:
                continue
            listen = self.snapshot.listen_port_of(name)
            if port and listen and port != listen:
                continue
            found.append(name)
        return found

    def node_as_records(
        self, name: str, versions: Iterable[int], peer: BGPPeer
    ) -> list[PeerRecord]:
        """[CL] ``nodeAsBGPPeers``: one record per family where the node has an address."""
        node = self.snapshot.nodes[name]
        records = []
        for version in versions:
            ip = node.ip(version)
            if ip is None:
                continue
            records.append(
                PeerRecord(
                    ip=ip,
                    as_num=self.snapshot.node_as(name),
                    port=self.snapshot.listen_port_of(name) or 0,
                    rr_cluster_id=node.rr_cluster_id,
                    ttl_security=peer.ttl_security or 0,
                    filters=peer.filters,
                    reachable_by=_same_family(peer.reachable_by, version),
                    next_hop_mode=peer.next_hop_mode,
                )
            )
        return records

    def peer_ip_record(self, peer: BGPPeer) -> PeerRecord | None:
        host, port = split_peer_ip(peer.peer_ip)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            self.result.problems.append(f"BGPPeer {peer.name}: malformed peerIP {peer.peer_ip!r}")
            return None
        if port == 0:
            owners = self.nodes_with_ip_port_and_as(ip, peer.as_number, 0)
            if owners:
                port = self.snapshot.listen_port_of(owners[0]) or 0
        asn = peer.as_number
        if asn is None:
            owners = self.nodes_with_ip_port_and_as(ip, None, port)
            if not owners:
                self.result.problems.append(
                    f"BGPPeer {peer.name}: no asNumber and {ip} is no Calico node of the global AS"
                )
                return None
            asn = self.snapshot.node_as(owners[0])
        reachable_by = None
        if peer.reachable_by:
            reachable_by = _same_family(peer.reachable_by, ip.version)
            if reachable_by is None:
                self.result.problems.append(
                    f"BGPPeer {peer.name}: reachableBy {peer.reachable_by!r} is not an "
                    f"address of the peerIP's family"
                )
                return None
        return PeerRecord(
            ip=ip,
            as_num=asn,
            port=port,
            keep_next_hop=peer.keep_original_next_hop,
            calico_node=ip in self.node_ips,
            num_allow_local_as=peer.num_allowed_local_as_numbers or 0,
            ttl_security=peer.ttl_security or 0,
            filters=peer.filters,
            reachable_by=reachable_by,
            next_hop_mode=peer.next_hop_mode,
        )

    def common_fields(self, record: PeerRecord, peer: BGPPeer) -> PeerRecord:
        """Rule 5 ([CL] ``setPeerConfigFieldsFromV3Resource``)."""
        password, problem = None, ""
        if peer.password is not None:
            password = self.secrets(peer.password.name, peer.password.key)
            if password is None:
                table = self.snapshot.secrets
                why = (
                    table.reason(peer.password.name, peer.password.key)
                    if table is not None
                    else f"secret {peer.password.name}/{peer.password.key} is not available"
                )
                self.result.problems.append(f"BGPPeer {peer.name}: password {why}")
                problem = f"password {why}"
        return replace(
            record,
            password=password,
            password_problem=problem,
            source_addr=peer.source_address or "UseNodeIP",
            restart_time=_seconds(peer.max_restart_time),
            keepalive_time=_seconds(peer.keepalive_time),
            max_prefixes=peer.max_prefixes,
            bfd_if_directly_connected=peer.failure_detection_mode == "BFDIfDirectlyConnected",
        )

    def emit_global(self, record: PeerRecord) -> None:
        self.result.global_records.setdefault((record.ip, _key_port(record.port)), record)

    def emit_node(self, record: PeerRecord) -> None:
        key = (record.ip, _key_port(record.port))
        if key in self.result.global_records:
            return
        self.result.node_records.setdefault(key, record)

    def forward_pass(self, peers: list[BGPPeer], global_pass: bool) -> None:
        """Passes A and B."""
        for peer in peers:
            if peer.is_global != global_pass:
                continue
            if not global_pass:
                if peer.node_selector:
                    local = self.nodes_matching(peer.node_selector, peer, "nodeSelector")
                else:
                    local = [peer.node]
                if self.node_name not in local:
                    continue
            if peer.peer_selector:
                records = [
                    record
                    for name in self.nodes_matching(peer.peer_selector, peer, "peerSelector")
                    for record in self.node_as_records(name, (4, 6), peer)
                ]
            else:
                single = self.peer_ip_record(peer)
                records = [] if single is None else [single]
            for record in records:
                record = self.common_fields(record, peer)
                if peer.local_as_number:
                    record = replace(record, local_as_num=peer.local_as_number)
                (self.emit_global if global_pass else self.emit_node)(record)

    def reverse_pass(self, peers: list[BGPPeer]) -> None:
        """Pass C."""
        for peer in peers:
            if peer.reverse_peering == "Manual":
                continue
            if peer.peer_selector:
                targets = self.nodes_matching(peer.peer_selector, peer, "peerSelector")
                versions: tuple[int, ...] = (4, 6)
            else:
                host, port = split_peer_ip(peer.peer_ip)
                try:
                    ip = ipaddress.ip_address(host)
                except ValueError:
                    continue  # already reported by the forward pass
                targets = self.nodes_with_ip_port_and_as(ip, peer.as_number, port)
                versions = (ip.version,)
            if self.node_name not in targets:
                continue
            if peer.node_selector:
                sources = self.nodes_matching(peer.node_selector, peer, "nodeSelector")
            elif peer.node:
                sources = [peer.node] if peer.node in self.snapshot.nodes else []
            else:
                sources = sorted(self.snapshot.nodes)
            for name in sources:
                for record in self.node_as_records(name, versions, peer):
                    self.emit_node(self.common_fields(record, peer))


def _same_family(text: str, version: int) -> IPAddress | None:
    if not text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ip if ip.version == version else None


def _seconds(value: float | None) -> int | None:
    return None if value is None else whole_seconds(value)


def resolve_peerings(node_name: str, snapshot: Snapshot, secrets: SecretLookup) -> Peerings:
    """Passes A, B and C for ``node_name``: its global and node-specific peering records."""
    resolver = _Resolver(node_name, snapshot, secrets)
    ordered = [snapshot.peers[name] for name in sorted(snapshot.peers)]
    usable = []
    for peer in ordered:
        if peer.local_workload_selector:
            resolver.result.problems.append(
                f"BGPPeer {peer.name}: localWorkloadSelector peerings are not supported"
            )
        else:
            usable.append(peer)
    resolver.forward_pass(usable, global_pass=True)
    resolver.forward_pass(usable, global_pass=False)
    resolver.reverse_pass(usable)
    return resolver.result
