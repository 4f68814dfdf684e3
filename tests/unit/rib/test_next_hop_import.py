"""Semantically incorrect next hops are ignored on receipt (RFC 4271 §6.3, RFC 7606 §7.3):
the route is not used, the reason is counted, the session stays up. At the ``import_check``
level and through the Speaker with UPDATEs decoded from octets."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from bgpd.rib.export import ImportReject, import_check, next_hop_invalid
from bgpd.rib.route import RouteSource
from bgpd.speaker import PeerSettings, Speaker, SpeakerConfig
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.codec import decode_message
from bgpd.wire.constants import SegmentType
from bgpd.wire.messages import Update
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    Family,
    PathAttributes,
    prefix_from_str,
)

LOCAL_AS = 64512
PEER_AS = 65001
ROUTER_ID = 0x0A000001
OUR_V4 = "10.0.0.1"
OUR_V6 = "2001:db8::1"
EBGP = RouteSource(
    peer_id="ebgp",
    address=ipaddress.IPv4Address("10.0.0.2"),
    router_id=0x0A000002,
    peer_as=PEER_AS,
    local_as=LOCAL_AS,
)
IBGP = RouteSource(
    peer_id="ibgp",
    address=ipaddress.IPv4Address("10.0.0.3"),
    router_id=0x0A000003,
    peer_as=LOCAL_AS,
    local_as=LOCAL_AS,
)
AS_PATH = (AsPathSegment(SegmentType.AS_SEQUENCE, (PEER_AS,)),)


def nh(*addresses: str) -> bytes:
    return b"".join(ipaddress.ip_address(a).packed for a in addresses)


def check(next_hop: bytes, source: RouteSource = EBGP, own: tuple[bytes, ...] = ()) -> object:
    attrs = PathAttributes(as_path=AS_PATH, next_hop=next_hop)
    return import_check(attrs, source, ROUTER_ID, ROUTER_ID, 0, own)


INVALID = [
    ("v4-unspecified", nh("0.0.0.0")),
    ("v4-this-network", nh("0.1.2.3")),
    ("v4-loopback", nh("127.0.0.1")),
    ("v4-loopback-top", nh("127.255.255.254")),
    ("v4-multicast", nh("224.0.0.5")),
    ("v4-multicast-top", nh("239.255.255.255")),
    ("v4-class-e", nh("240.0.0.1")),
    ("v4-class-e-top", nh("254.255.255.255")),
    ("v4-broadcast", nh("255.255.255.255")),
    ("v6-unspecified", nh("::")),
    ("v6-loopback", nh("::1")),
    ("v6-multicast", nh("ff02::1")),
    ("v6-multicast-global", nh("ff0e::1")),
    ("v6-32-global-multicast", nh("ff02::5", "fe80::1")),
    ("v6-32-global-loopback", nh("::1", "fe80::1")),
    ("v6-32-global-unspecified", nh("::", "fe80::1")),
]
VALID = [
    ("v4-lowest", nh("1.0.0.1")),
    ("v4-private", nh("10.0.0.2")),
    ("v4-documentation", nh("192.0.2.7")),
    ("v4-below-multicast", nh("223.255.255.254")),
    ("v6-global", nh("2001:db8::2")),
    ("v6-link-local", nh("fe80::2")),  # link-local alone: the peer's one-hop address
    ("v6-32-global-and-link-local", nh("2001:db8::2", "fe80::2")),
    ("v4-mapped-in-v6", nh("::ffff:192.0.2.7")),
    ("none", b""),  # nothing to judge (locally built attributes)
]


@pytest.mark.parametrize(("name", "next_hop"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_next_hops_are_rejected(name: str, next_hop: bytes) -> None:
    assert next_hop_invalid(next_hop)
    assert check(next_hop) is ImportReject.NEXT_HOP_INVALID
    assert check(next_hop, IBGP) is ImportReject.NEXT_HOP_INVALID


@pytest.mark.parametrize(("name", "next_hop"), VALID, ids=[c[0] for c in VALID])
def test_valid_next_hops_are_accepted(name: str, next_hop: bytes) -> None:
    assert not next_hop_invalid(next_hop)
    assert check(next_hop, own=(nh(OUR_V4), nh(OUR_V6))) is None


@pytest.mark.parametrize(
    ("name", "next_hop"),
    [
        ("v4", nh(OUR_V4)),
        ("v6", nh(OUR_V6)),
        ("v6-32-global-is-ours", nh(OUR_V6, "fe80::9")),
    ],
)
def test_our_own_address_as_next_hop_is_rejected(name: str, next_hop: bytes) -> None:
    own = (nh(OUR_V4), nh(OUR_V6))
    assert check(next_hop, own=own) is ImportReject.NEXT_HOP_OURS
    assert check(next_hop, IBGP, own=own) is ImportReject.NEXT_HOP_OURS
    assert check(next_hop) is None  # without our addresses nothing to compare


def test_reason_tokens_are_stable() -> None:
    assert str(ImportReject.NEXT_HOP_INVALID) == "next-hop-invalid"
    assert str(ImportReject.NEXT_HOP_OURS) == "next-hop-own-address"


def test_loops_are_reported_before_next_hop_faults() -> None:
    looped = PathAttributes(
        as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, (PEER_AS, LOCAL_AS)),),
        next_hop=nh("127.0.0.1"),
    )
    assert import_check(looped, EBGP, ROUTER_ID, ROUTER_ID, 0) is ImportReject.AS_LOOP


# --- through the Speaker: UPDATEs as octets, decoded by the codec ---------------------------
P1 = prefix_from_str("10.1.0.0/24")
P6 = prefix_from_str("2001:db8:1::/48")
NEGOTIATED = Negotiated(
    families=frozenset({IPV4_UNICAST, IPV6_UNICAST}),
    external=True,
    local_as=LOCAL_AS,
    peer_as=PEER_AS,
    peer_id=0x0A000002,
)


def attr(flags: int, code: int, value: bytes) -> bytes:
    return struct.pack("!BBB", flags, code, len(value)) + value


def v4_update(next_hop: str, prefix: bytes = P1) -> bytes:
    attrs = (
        attr(0x40, 1, b"\x00")
        + attr(0x40, 2, b"\x02\x01" + struct.pack("!I", PEER_AS))
        + attr(0x40, 3, nh(next_hop))
    )
    return struct.pack("!HH", 0, len(attrs)) + attrs + prefix


def v6_update(*next_hop: str, prefix: bytes = P6) -> bytes:
    hop = nh(*next_hop)
    mp = struct.pack("!HBB", 2, 1, len(hop)) + hop + b"\x00" + prefix
    attrs = (
        attr(0x40, 1, b"\x00")
        + attr(0x40, 2, b"\x02\x01" + struct.pack("!I", PEER_AS))
        + attr(0x80, 14, mp)
    )
    return struct.pack("!HH", 0, len(attrs)) + attrs


def speaker_with_peer() -> tuple[Speaker, AttributeCache]:
    cache = AttributeCache()
    speaker = Speaker(SpeakerConfig(router_id=ROUTER_ID, local_as=LOCAL_AS), cache)
    settings = PeerSettings(
        address=ipaddress.IPv4Address("10.0.0.2"),
        peer_as=PEER_AS,
        next_hop_self={IPV4_UNICAST: nh(OUR_V4), IPV6_UNICAST: nh(OUR_V6)},
    )
    speaker.peer_up("peer", settings, NEGOTIATED, now=0.0)
    speaker.drain()
    return speaker, cache


def receive(speaker: Speaker, cache: AttributeCache, body: bytes) -> Update:
    update = decode_message(2, body, NEGOTIATED, cache)
    assert isinstance(update, Update)
    assert not update.treat_as_withdraw  # not a codec fault: the RIB's import rule decides
    speaker.update_received("peer", update, now=1.0)
    speaker.drain()
    return update


@pytest.mark.parametrize(
    ("name", "body", "family", "prefix"),
    [
        ("v4-loopback", v4_update("127.0.0.1"), IPV4_UNICAST, P1),
        ("v4-class-e", v4_update("240.0.0.1"), IPV4_UNICAST, P1),
        ("v6-loopback", v6_update("::1"), IPV6_UNICAST, P6),
        ("v6-multicast", v6_update("ff02::1"), IPV6_UNICAST, P6),
        ("v6-unspecified-global", v6_update("::", "fe80::2"), IPV6_UNICAST, P6),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_speaker_ignores_invalid_next_hop_and_counts_it(
    name: str, body: bytes, family: Family, prefix: bytes
) -> None:
    speaker, cache = speaker_with_peer()
    receive(speaker, cache, body)
    assert prefix not in speaker.loc_ribs[family]
    assert speaker.statistics.get("next-hop-invalid") == 1
    assert speaker.peers() == ["peer"]  # the session stays up


def test_speaker_invalid_next_hop_replaces_an_earlier_good_route() -> None:
    speaker, cache = speaker_with_peer()
    receive(speaker, cache, v4_update("192.0.2.7"))
    assert P1 in speaker.loc_ribs[IPV4_UNICAST]
    receive(speaker, cache, v4_update("127.0.0.1"))  # implicit withdraw, then ignored
    assert P1 not in speaker.loc_ribs[IPV4_UNICAST]
    receive(speaker, cache, v4_update("192.0.2.8"))
    assert speaker.loc_ribs[IPV4_UNICAST].best(P1) is not None


def test_speaker_accepts_valid_next_hops() -> None:
    speaker, cache = speaker_with_peer()
    receive(speaker, cache, v4_update("192.0.2.7"))
    receive(speaker, cache, v6_update("2001:db8::2", "fe80::2"))
    assert P1 in speaker.loc_ribs[IPV4_UNICAST]
    assert P6 in speaker.loc_ribs[IPV6_UNICAST]
    assert not any(k.startswith("next-hop") for k in speaker.statistics)


@pytest.mark.parametrize(
    ("name", "body", "family", "prefix"),
    [
        ("v4", v4_update(OUR_V4), IPV4_UNICAST, P1),
        ("v6", v6_update(OUR_V6), IPV6_UNICAST, P6),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_speaker_ignores_our_own_address_as_next_hop(
    name: str, body: bytes, family: Family, prefix: bytes
) -> None:
    speaker, cache = speaker_with_peer()
    receive(speaker, cache, body)
    assert prefix not in speaker.loc_ribs[family]
    assert speaker.statistics.get("next-hop-own-address") == 1
    assert speaker.peers() == ["peer"]
