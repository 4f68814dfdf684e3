"""The protocol's own rules at the RIB's edges: what may be accepted from a peer, what may be
sent to a peer, and how attributes are rewritten on the way out (BIRD ``bgp_preexport`` and
``bgp_update_attrs``; GoBGP ``filterpath`` without the special cases).

Rules:
1. Receipt (``import_check``): a route whose AS_PATH holds the session's local AS more than
   ``allow_own_as`` times is a loop (RFC 4271 §9.1.2); a route carrying our router id as
   ORIGINATOR_ID, or our cluster id in CLUSTER_LIST, is a reflection loop (RFC 4456 §8).
   LOCAL_PREF from an external peer is ignored (RFC 4271 §5.1.5).
   A semantically incorrect next hop means the route is ignored, counted, and the session stays
   up (RFC 4271 §6.3: "If the NEXT_HOP attribute is semantically incorrect, the error SHOULD be
   logged, and the route SHOULD be ignored. In this case, a NOTIFICATION message SHOULD NOT be
   sent, and the connection SHOULD NOT be closed"): our own address on the session ("It MUST
   NOT be the IP address of the receiving speaker"), and an address no host can be reached at:
   IPv4 0/8, 127/8, 224/4 and 240/4 (so 255.255.255.255), IPv6 ::, ::1 and ff00::/8 (RFC 6890).
   This holds for every next hop, the NEXT_HOP attribute's and MP_REACH_NLRI's (RFC 4760 §3);
   of a 32-octet IPv6 next hop (RFC 2545 §3) the global address is judged, the link-local one
   is the peer's own business. The codec already treats the NEXT_HOP attribute's 0.0.0.0,
   multicast and broadcast as malformed (RFC 7606 §7.3, treat-as-withdraw); this rule covers
   the rest and the MP next hops, which the codec cannot reject without a session reset.
2. Eligibility (``export_check``): never back to the session it came from; NO_ADVERTISE to no
   one, NO_EXPORT / NO_EXPORT_SUBCONFED not to external peers (RFC 1997); iBGP split horizon
   (RFC 4271 §9.2.1) relaxed by reflection: a client's route goes to every internal peer, a
   non-client's route only to clients (RFC 4456 §6).
3. Rewrite (``export_rewrite``, after export policy, as BIRD runs filters first):
   reflected routes get ORIGINATOR_ID (if absent) and our cluster id prepended to CLUSTER_LIST
   (RFC 4456 §8); towards an external peer the session's local AS is prepended (RFC 4271
   §5.1.2), LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST are removed (RFC 4271 §5.1.5, RFC 4456 §8:
   optional non-transitive) and a learned MED is not passed on (RFC 4271 §5.1.4); towards an
   internal peer LOCAL_PREF is always present (RFC 4271 §5.1.5).
4. Next hop (RFC 4271 §5.1.3) by session mode: SELF always ours; KEEP the route's own (ours only
   when it has none); AUTO ours for locally originated routes and towards external peers,
   unchanged towards internal peers.
5. Pure: no IO, no clock.
6. ``export_rewrite`` remembers its results, keyed by everything rules 3 and 4 read: the
   family, the attributes, the source's kind, router id and (towards an external peer) its
   MED, the peer's kind and local AS, our cluster id, the next-hop mode and our next hop in
   the family. So a route reflector rewrites one client's attributes once for all its clients,
   not once per (route, client), and hands every client the same object. At most
   ``REWRITE_MEMO`` results are kept; when full the memo is emptied and fills again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from enum import StrEnum

from bgpd.rib.route import DEFAULT_LOCAL_PREF, NextHopMode, Path, RouteSource
from bgpd.wire.types import Family, PathAttributes, as_path_contains, as_path_prepend

NO_EXPORT = 0xFFFFFF01  # RFC 1997
NO_ADVERTISE = 0xFFFFFF02  # RFC 1997
NO_EXPORT_SUBCONFED = 0xFFFFFF03  # RFC 1997


class ImportReject(StrEnum):
    """Why a received route was not accepted (stable tokens for logs and counters)."""

    AS_LOOP = "as-path-loop"
    ORIGINATOR_LOOP = "originator-id-loop"
    CLUSTER_LOOP = "cluster-list-loop"
    NEXT_HOP_INVALID = "next-hop-invalid"
    NEXT_HOP_OURS = "next-hop-own-address"


class ExportReject(StrEnum):
    """Why a route is not sent to a peer."""

    SENDER = "sender"
    NO_ADVERTISE = "no-advertise"
    NO_EXPORT = "no-export"
    SPLIT_HORIZON = "ibgp-split-horizon"
    NO_NEXT_HOP = "no-next-hop-for-family"


REJECT_RULES: dict[ImportReject | ExportReject, str] = {
    ImportReject.AS_LOOP: "our AS is in its AS_PATH (RFC 4271 §9.1.2)",
    ImportReject.ORIGINATOR_LOOP: "its ORIGINATOR_ID is our router id (RFC 4456 §8)",
    ImportReject.CLUSTER_LOOP: "our cluster id is in its CLUSTER_LIST (RFC 4456 §8)",
    ImportReject.NEXT_HOP_INVALID: "its NEXT_HOP is no host's address (RFC 4271 §6.3)",
    ImportReject.NEXT_HOP_OURS: "its NEXT_HOP is our address on the session (RFC 4271 §6.3)",
    ExportReject.SENDER: "never back to the session it came from",
    ExportReject.NO_ADVERTISE: "it carries NO_ADVERTISE (RFC 1997)",
    ExportReject.NO_EXPORT: "it carries NO_EXPORT(_SUBCONFED) and the peer is external (RFC 1997)",
    ExportReject.SPLIT_HORIZON: "learned over iBGP from a non-client, to an internal non-client"
    " (RFC 4271 §9.2.1, RFC 4456 §6)",
    ExportReject.NO_NEXT_HOP: "we have no next hop of the family on the session (RFC 4760 §3)",
}  # each rule in words (``bgpd explain``)


@dataclass(frozen=True, slots=True)
class ExportTarget:
    """A session as the export rules see it.

    ``peer`` describes the receiving peer (its kind, AS and the session's local AS);
    ``cluster_id`` is our RFC 4456 cluster id (our router id when not configured, §7);
    ``next_hop_self`` maps a family to our address on this session for that family.
    """

    peer: RouteSource
    router_id: int
    cluster_id: int
    next_hop_mode: NextHopMode = NextHopMode.AUTO
    next_hop_self: dict[Family, bytes] = field(default_factory=dict)
    allow_own_as: int = 0

    @property
    def cluster_id_bytes(self) -> bytes:
        return self.cluster_id.to_bytes(4, "big")


_V6_UNSPECIFIED = bytes(16)
_V6_LOOPBACK = bytes(15) + b"\x01"


def next_hop_invalid(next_hop: bytes) -> bool:
    """Rule 1: whether a received next hop is an address no route can point at (RFC 4271 §6.3
    "a valid IP host address"; the special-purpose blocks of RFC 6890 that are never a
    forwarding destination). Empty (no next hop: locally built) is not judged here."""
    size = len(next_hop)
    if size == 4:
        first = next_hop[0]
        # 0/8 this network, 127/8 loopback, 224/4 multicast, 240/4 reserved + 255.255.255.255.
        return first == 0 or first == 127 or first >= 224
    if size >= 16:
        head = next_hop[:16] if size != 16 else next_hop  # RFC 2545 §3: global, then link-local
        return head[0] == 0xFF or head == _V6_UNSPECIFIED or head == _V6_LOOPBACK
    return False


def import_check(
    attrs: PathAttributes,
    source: RouteSource,
    router_id: int,
    cluster_id: int,
    allow_own_as: int,
    own_addresses: Collection[bytes] = (),
) -> ImportReject | None:
    """Rule 1. ``own_addresses``: our addresses on the session (``ExportTarget.next_hop_self``
    values), which a received next hop must not be (RFC 4271 §6.3 a)."""
    if as_path_contains(attrs.as_path, source.local_as) > allow_own_as:
        return ImportReject.AS_LOOP  # RFC 4271 §9.1.2
    if attrs.originator_id is not None and int.from_bytes(attrs.originator_id, "big") == router_id:
        return ImportReject.ORIGINATOR_LOOP  # RFC 4456 §8
    if attrs.cluster_list and cluster_id.to_bytes(4, "big") in attrs.cluster_list:
        return ImportReject.CLUSTER_LOOP  # RFC 4456 §8
    next_hop = attrs.next_hop
    if next_hop:
        if next_hop_invalid(next_hop):
            return ImportReject.NEXT_HOP_INVALID  # RFC 4271 §6.3: route ignored, no NOTIFICATION
        if own_addresses and (next_hop if len(next_hop) != 32 else next_hop[:16]) in own_addresses:
            return ImportReject.NEXT_HOP_OURS  # RFC 4271 §6.3 a): not the receiving speaker's
    return None


def import_normalise(attrs: PathAttributes, source: RouteSource) -> PathAttributes:
    """RFC 4271 §5.1.5: LOCAL_PREF received from an external peer is ignored."""
    if not source.ibgp and attrs.local_pref is not None:
        return replace(attrs, local_pref=None)
    return attrs


def export_check(path: Path, target: ExportTarget) -> ExportReject | None:
    """Rule 2."""
    source = path.source
    peer = target.peer
    if source.peer_id == peer.peer_id:
        return ExportReject.SENDER
    communities = path.attrs.communities
    if communities:
        if NO_ADVERTISE in communities:
            return ExportReject.NO_ADVERTISE
        if not peer.ibgp and (NO_EXPORT in communities or NO_EXPORT_SUBCONFED in communities):
            return ExportReject.NO_EXPORT
    if source.ibgp and peer.ibgp and not source.rr_client and not peer.rr_client:
        return ExportReject.SPLIT_HORIZON  # RFC 4271 §9.2.1; RFC 4456 §6 reflects the rest
    return None


REWRITE_MEMO = 1 << 16
_rewrites: dict[tuple[object, ...], PathAttributes | None] = {}


def export_rewrite(
    family: Family, path: Path, attrs: PathAttributes, target: ExportTarget
) -> PathAttributes | None:
    """Rules 3, 4 and 6 on the (policy-processed) ``attrs`` of ``path``; None without a next
    hop."""
    source = path.source
    peer = target.peer
    external = not peer.ibgp
    key = (
        family,
        attrs,
        source.ibgp,
        source.local,
        source.router_id,
        path.attrs.med if external else None,
        external,
        peer.local_as,
        target.cluster_id,
        target.next_hop_mode,
        target.next_hop_self.get(family),
    )
    try:
        return _rewrites[key]
    except KeyError:
        pass
    if len(_rewrites) >= REWRITE_MEMO:
        _rewrites.clear()
    rewritten = _rewrite(family, path, attrs, target)
    _rewrites[key] = rewritten
    return rewritten


def _rewrite(
    family: Family, path: Path, attrs: PathAttributes, target: ExportTarget
) -> PathAttributes | None:
    """Rules 3 and 4."""
    source = path.source
    peer = target.peer
    changes: dict[str, object] = {}
    if peer.ibgp:
        if source.ibgp:  # reflection (export_check admitted it): RFC 4456 §8
            if attrs.originator_id is None:
                changes["originator_id"] = source.router_id.to_bytes(4, "big")
            changes["cluster_list"] = (target.cluster_id_bytes, *attrs.cluster_list)
        if attrs.local_pref is None:
            changes["local_pref"] = DEFAULT_LOCAL_PREF
    else:
        changes["as_path"] = as_path_prepend(attrs.as_path, peer.local_as)
        if attrs.local_pref is not None:
            changes["local_pref"] = None
        if attrs.originator_id is not None:
            changes["originator_id"] = None
        if attrs.cluster_list:
            changes["cluster_list"] = ()
        if not source.local and attrs.med is not None and attrs.med == path.attrs.med:
            changes["med"] = None  # learned MED stays in its AS; one set by policy is sent
    next_hop = _next_hop(family, path, attrs, target)
    if next_hop is None:
        return None
    if next_hop != attrs.next_hop:
        changes["next_hop"] = next_hop
    return replace(attrs, **changes) if changes else attrs  # type: ignore[arg-type]


def _next_hop(
    family: Family, path: Path, attrs: PathAttributes, target: ExportTarget
) -> bytes | None:
    ours = target.next_hop_self.get(family)
    mode = target.next_hop_mode
    keep = mode is NextHopMode.KEEP or (
        mode is NextHopMode.AUTO and target.peer.ibgp and not path.source.local
    )
    if keep and attrs.next_hop:
        return attrs.next_hop
    return ours
