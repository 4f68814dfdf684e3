"""What two OPENs agree on: the context every UPDATE is encoded and decoded in.

Rules:
1. ``Negotiated`` is a frozen value; the codec reads only it, never the OPENs.
2. ``negotiate(local, remote)`` follows each capability's RFC: families are the intersection of
   the Multiprotocol capabilities, IPv4 unicast when neither side sends any (RFC 4760 §8);
   4-octet AS when both advertise it (RFC 6793 §3); ADD-PATH per family and direction from the
   send/receive bits (RFC 7911 §4); extended messages when both advertise it (RFC 8654 §3);
   hold time the smaller of the two (RFC 4271 §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from bgpd.wire.capabilities import (
    AddPath,
    EnhancedRouteRefresh,
    ExtendedMessage,
    ExtendedNextHop,
    FourOctetAs,
    GracefulRestart,
    LongLivedGracefulRestart,
    Multiprotocol,
    RouteRefresh,
)
from bgpd.wire.constants import AS_TRANS, MAX_EXTENDED_MESSAGE_LEN, MAX_MESSAGE_LEN, AddPathMode
from bgpd.wire.messages import Open
from bgpd.wire.types import IPV4_UNICAST, Family


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The codec's view of a session. The defaults describe a plain 4-octet-AS IPv4 session."""

    asn4: bool = True
    families: frozenset[Family] = frozenset({IPV4_UNICAST})
    add_path_rx: frozenset[Family] = frozenset()
    add_path_tx: frozenset[Family] = frozenset()
    extended_message: bool = False
    extended_next_hop: frozenset[Family] = frozenset()
    external: bool = False
    route_refresh: bool = False
    enhanced_route_refresh: bool = False
    hold_time: int = 90
    local_as: int = 0
    peer_as: int = 0
    # RFC 4271 §6.3 leftmost-AS check of eBGP UPDATEs is a MAY; off as in BIRD, whose configs
    # from Calico leave ``enforce first as`` off (a ToR route server is a valid peer).
    enforce_first_as: bool = False
    peer_id: int = 0
    peer_graceful_restart: GracefulRestart | None = None
    local_graceful_restart: GracefulRestart | None = None
    peer_llgr: LongLivedGracefulRestart | None = None

    @property
    def max_message_len(self) -> int:
        return MAX_EXTENDED_MESSAGE_LEN if self.extended_message else MAX_MESSAGE_LEN


def open_families(message: Open) -> frozenset[Family]:
    found = frozenset(c.family for c in message.capabilities if isinstance(c, Multiprotocol))
    return found


def open_asn(message: Open) -> int:
    """The speaker's AS: the 4-octet capability's when present, else My AS (RFC 6793 §4.1)."""
    cap = message.capability(FourOctetAs)
    return cap.asn if cap is not None else message.my_as


def negotiate(local: Open, remote: Open, external: bool | None = None) -> Negotiated:
    local_fams, remote_fams = open_families(local), open_families(remote)
    if not local_fams and not remote_fams:
        families = frozenset({IPV4_UNICAST})
    else:
        families = (local_fams or frozenset({IPV4_UNICAST})) & (
            remote_fams or frozenset({IPV4_UNICAST})
        )
    local_ap, remote_ap = local.capability(AddPath), remote.capability(AddPath)
    rx: set[Family] = set()
    tx: set[Family] = set()
    if local_ap is not None and remote_ap is not None:
        for family in families:
            mine, theirs = local_ap.mode(family), remote_ap.mode(family)
            if mine & AddPathMode.RECEIVE and theirs & AddPathMode.SEND:
                rx.add(family)
            if mine & AddPathMode.SEND and theirs & AddPathMode.RECEIVE:
                tx.add(family)
    local_enh, remote_enh = local.capability(ExtendedNextHop), remote.capability(ExtendedNextHop)
    enh: set[Family] = set()
    if local_enh is not None and remote_enh is not None:
        enh = {f for f, nh in local_enh.entries if (f, nh) in remote_enh.entries}
    local_as, peer_as = open_asn(local), open_asn(remote)
    asn4 = local.capability(FourOctetAs) is not None and remote.capability(FourOctetAs) is not None
    return Negotiated(
        asn4=asn4,
        families=families,
        add_path_rx=frozenset(rx),
        add_path_tx=frozenset(tx),
        extended_message=local.capability(ExtendedMessage) is not None
        and remote.capability(ExtendedMessage) is not None,
        extended_next_hop=frozenset(enh),
        external=(local_as != peer_as) if external is None else external,
        route_refresh=local.capability(RouteRefresh) is not None
        and remote.capability(RouteRefresh) is not None,
        enhanced_route_refresh=local.capability(EnhancedRouteRefresh) is not None
        and remote.capability(EnhancedRouteRefresh) is not None,
        hold_time=min(local.hold_time, remote.hold_time),
        local_as=local_as,
        peer_as=peer_as,
        peer_id=remote.bgp_id,
        peer_graceful_restart=remote.capability(GracefulRestart),
        local_graceful_restart=local.capability(GracefulRestart),
        peer_llgr=remote.capability(LongLivedGracefulRestart),
    )


def two_octet_as(asn: int) -> int:
    """My AS field for an OPEN: AS_TRANS when the AS does not fit 2 octets (RFC 6793 §4.1)."""
    return asn if asn <= 0xFFFF else AS_TRANS
