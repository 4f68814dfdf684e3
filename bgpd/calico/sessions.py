"""A Calico session (``peers.spec.SessionSpec``) as the FSM and the RIB run it (calico-bgp.md
§2.7-§2.8).

Rules:
1. Every session has one address family (the IP version of its peer address) and is keyed by
   (peer address, port).
2. The FSM runs Calico's BGP template (§2.7): multihop with BIRD's default TTL 64 unless TTL
   security is on (then GTSM, RFC 5082, with ``ttlSecurity`` hops), graceful restart with
   forwarding preserved, ADD-PATH receive and send, BIRD's short connect timers (connect retry
   5 s, delay 2 s, error wait 5-30 s); the passive side, MD5 password, TTL security, source
   address and restart time per §2.8.
4. Hold time is BIRD's default 240 s, which Calico never overrides (RFC 4271 §4.2 proposes it in
   the OPEN; projectcalico/calico 87c15906 ``node/filesystem/etc/calico/confd/templates/
   bird.cfg.template`` writes no ``hold time``); the keepalive is a third of the negotiated hold
   time (80 s, RFC 4271 §10) unless the BGPPeer's ``keepaliveTime`` (the only timer Calico
   exposes, ``api/pkg/apis/projectcalico/v3/bgppeer.go``) sets it.
3. The RIB sees the session's AS numbers, route-reflector client flag, next-hop mode (Calico's
   ``nextHopMode`` mapped onto the RIB's own ``NextHopMode``, §2.8 item 12), our address on it
   for ``next hop self``, ``allow local as`` (§2.8 item 13) and bgpd's maximum prefix count
   (``peers.model.MaxPrefixes``, off unless set).
"""

from __future__ import annotations

import ipaddress

from bgpd.rib.route import NextHopMode
from bgpd.session.config import PeerKey, SessionConfig
from bgpd.speaker import PeerSettings, PrefixLimit
from bgpd.wire.types import IPV4_UNICAST, IPV6_UNICAST
from peers.model import PeerNextHopMode
from peers.resolve import NodePeering
from peers.spec import SessionSpec

FAMILY_OF_VERSION = {4: IPV4_UNICAST, 6: IPV6_UNICAST}
BIRD_HOLD_TIME = 240  # rule 4: BIRD 1.6 ``hold time`` default
BIRD_MULTIHOP_TTL = 64  # rule 2: BIRD 1.6 ``multihop`` without a hop count
NEXT_HOP_MODES = {
    PeerNextHopMode.AUTO: NextHopMode.AUTO,
    PeerNextHopMode.SELF: NextHopMode.SELF,
    PeerNextHopMode.KEEP: NextHopMode.KEEP,
}


def session_key(spec: SessionSpec) -> PeerKey:
    """Rule 1."""
    return PeerKey(spec.peer_ip, spec.port)


def session_config(
    spec: SessionSpec,
    peering: NodePeering,
    *,
    restarting: bool,
    graceful_restart_time: int,
) -> SessionConfig:
    """Rules 2 and 4: one Calico session as the FSM runs it."""
    assert peering.router_id is not None
    return SessionConfig(
        local_as=spec.local_as,
        peer_as=spec.peer_as,
        router_id=peering.router_id,
        peer_address=spec.peer_ip,
        port=spec.port,
        hold_time=BIRD_HOLD_TIME,
        keepalive_time=spec.keepalive_time,
        connect_retry_time=5.0,
        connect_delay_time=2.0,
        error_wait_min=5.0,
        error_wait_max=30.0,
        passive=spec.passive,
        families=(FAMILY_OF_VERSION[spec.family],),
        add_path=3,
        graceful_restart_time=spec.restart_time or graceful_restart_time,
        graceful_restart_restarting=restarting,
        graceful_restart_forwarding=True,
        md5_password=spec.password,
        ttl_security=spec.ttl_security,
        multihop_ttl=None if spec.ttl_security else BIRD_MULTIHOP_TTL,
        source_address=spec.source_address,
        name=spec.name,
    )


def peer_settings(
    spec: SessionSpec, own_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
) -> PeerSettings:
    """Rule 3: the session as the RIB sees it."""
    family = FAMILY_OF_VERSION[spec.family]
    return PeerSettings(
        address=spec.peer_ip,
        peer_as=spec.peer_as,
        local_as=spec.local_as,
        rr_client=spec.rr_client,
        next_hop_mode=NEXT_HOP_MODES[spec.next_hop_mode],
        next_hop_self={family: own_address.packed} if own_address is not None else {},
        allow_own_as=spec.num_allowed_local_as,
        max_prefixes=(
            None
            if spec.max_prefixes is None
            else PrefixLimit(
                spec.max_prefixes.limit,
                spec.max_prefixes.warning,
                spec.max_prefixes.restart_time,
            )
        ),
    )
