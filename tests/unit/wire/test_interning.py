"""The fast path's two promises (issue 2, point 4): equal attribute sets decode to one shared
object, across UPDATEs, and the encoder packs as many prefixes per UPDATE as the negotiated
size allows (4096 octets, or 65535 with RFC 8654 extended messages)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import replace

import pytest

from bgpd.wire.attributes import AttributeCache, encode_attributes
from bgpd.wire.codec import decode_message
from bgpd.wire.constants import HEADER_LEN
from bgpd.wire.framer import Framer
from bgpd.wire.messages import Update
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    Family,
    PathAttributes,
    Prefix,
    prefix_from_network,
)
from bgpd.wire.update import encode_updates

NEG = Negotiated(families=frozenset({IPV4_UNICAST, IPV6_UNICAST}))
ATTRS = PathAttributes(
    origin=0,
    as_path=(AsPathSegment(2, (64512, 65001, 4200000001)),),
    next_hop=bytes([10, 0, 0, 1]),
    med=10,
    communities=(64512 << 16 | 1, 64512 << 16 | 2),
    large_communities=((4200000001, 7, 8),),
)
V6_NEXT_HOP = ipaddress.IPv6Address("2001:db8::1").packed


def v4_prefixes(count: int) -> list[Prefix]:
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    return [prefix_from_network(ipaddress.IPv4Network((base + (i << 8), 24))) for i in range(count)]


def v6_prefixes(count: int) -> list[Prefix]:
    base = int(ipaddress.IPv6Address("2001:db8::"))
    return [
        prefix_from_network(ipaddress.IPv6Network((base + (i << 80), 48))) for i in range(count)
    ]


def decode_all(wires: list[bytes], neg: Negotiated, cache: AttributeCache) -> list[Update]:
    out = []
    for wire in wires:
        ((msg_type, body),) = Framer(neg.max_message_len).feed(wire)
        update = decode_message(msg_type, body, neg, cache)
        assert isinstance(update, Update) and not update.issues
        out.append(update)
    return out


def test_equal_attributes_share_one_object_across_updates() -> None:
    (first,) = encode_updates(IPV4_UNICAST, ATTRS, v4_prefixes(2), NEG)
    (second,) = encode_updates(IPV4_UNICAST, ATTRS, v4_prefixes(3)[2:], NEG)
    assert first != second
    cache = AttributeCache()
    a, b = decode_all([first, second], NEG, cache)
    assert a.announced[0].attributes == ATTRS
    assert a.announced[0].attributes is b.announced[0].attributes
    assert (cache.misses, cache.hits) == (1, 1)


def test_equal_values_from_different_octets_share_one_object() -> None:
    # The same attributes, MED sent with the Extended Length bit: other octets, equal value.
    (plain,) = encode_updates(IPV4_UNICAST, ATTRS, v4_prefixes(1), NEG)
    med = struct.pack("!BBB", 0x80, 4, 4) + (10).to_bytes(4, "big")
    wide_med = struct.pack("!BBH", 0x90, 4, 4) + (10).to_bytes(4, "big")
    assert med in plain
    body = plain[HEADER_LEN:].replace(med, wide_med)
    body = body[:2] + struct.pack("!H", int.from_bytes(body[2:4], "big") + 1) + body[4:]
    cache = AttributeCache()
    (a,) = decode_all([plain], NEG, cache)
    other = decode_message(2, body, NEG, cache)
    assert isinstance(other, Update) and not other.issues
    assert cache.misses == 2  # two octet strings decoded...
    assert other.announced[0].attributes is a.announced[0].attributes  # ...one object


def test_mp_reach_routes_with_equal_next_hops_share_one_object() -> None:
    attrs = replace(ATTRS, next_hop=V6_NEXT_HOP)
    wires = encode_updates(IPV6_UNICAST, attrs, v6_prefixes(1500), NEG)
    assert len(wires) > 1
    cache = AttributeCache()
    updates = decode_all(wires, NEG, cache)
    shared = {id(a.attributes) for u in updates for a in u.announced}
    assert len(shared) == 1
    assert updates[0].announced[0].attributes == attrs


def _per_message(family: Family, attrs: PathAttributes, neg: Negotiated, size: int) -> int:
    """How many prefixes of ``size`` octets (path identifier included) fit one UPDATE."""
    room = neg.max_message_len - HEADER_LEN - 4  # the two 2-octet length fields
    if family == IPV4_UNICAST:
        room -= len(encode_attributes(attrs, neg.asn4, next_hop=True))
    else:
        mp_header = 4 + 5 + len(attrs.next_hop)  # extended-length TLV header, AFI..reserved
        room -= len(encode_attributes(attrs, neg.asn4, next_hop=False)) + mp_header
    return room // size


@pytest.mark.parametrize(
    ("name", "family", "neg", "count", "size"),
    [
        ("ipv4", IPV4_UNICAST, NEG, 5000, 4),
        ("ipv4-extended-message", IPV4_UNICAST, replace(NEG, extended_message=True), 40000, 4),
        (
            "ipv4-add-path",
            IPV4_UNICAST,
            replace(NEG, add_path_tx=frozenset({IPV4_UNICAST})),
            3000,
            8,
        ),
        ("ipv6", IPV6_UNICAST, NEG, 3000, 7),
        ("ipv6-extended-message", IPV6_UNICAST, replace(NEG, extended_message=True), 20000, 7),
    ],
)
def test_encoder_fills_each_update(
    name: str, family: Family, neg: Negotiated, count: int, size: int
) -> None:
    attrs = ATTRS if family == IPV4_UNICAST else replace(ATTRS, next_hop=V6_NEXT_HOP)
    items = v4_prefixes(count) if family == IPV4_UNICAST else v6_prefixes(count)
    wires = encode_updates(family, attrs, items, neg)
    per = _per_message(family, attrs, neg, size)
    assert len(wires) == -(-count // per)  # ceil: every UPDATE but the last is full
    assert all(len(w) <= neg.max_message_len for w in wires)
    assert all(len(w) + size > neg.max_message_len for w in wires[:-1])  # no room for one more
    receiver = replace(neg, add_path_rx=neg.add_path_tx, add_path_tx=frozenset())
    updates = decode_all(wires, receiver, AttributeCache())
    assert [p for u in updates for a in u.announced for p in a.prefixes] == items
