"""Round trips for every message type and negotiated variant: decode(encode(m)) == m, and the
octets of a canonical message survive decode then encode unchanged. UPDATEs are encoded in a
sender's context and decoded in the receiver's (``mirrored``: ADD-PATH send on one side is
receive on the other, per family)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_strategies import (
    keepalives,
    large_opens,
    mirrored,
    negotiated,
    notifications,
    opens,
    route_refreshes,
    updates,
)

from bgpd.wire.attributes import AttributeCache
from bgpd.wire.codec import decode_message, encode_message
from bgpd.wire.framer import Framer
from bgpd.wire.messages import Message, Notification, Open, Update
from bgpd.wire.negotiated import Negotiated

pytestmark = pytest.mark.property


def _roundtrip(message: Message, neg: Negotiated, peer: Negotiated) -> tuple[Message, bytes]:
    wire = encode_message(message, neg)
    (item,) = Framer(peer.max_message_len).feed(wire)
    decoded = decode_message(item[0], item[1], peer, AttributeCache())
    return decoded, wire


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_update_roundtrip(data: st.DataObject) -> None:
    neg = data.draw(negotiated())
    update = data.draw(updates(neg))
    decoded, wire = _roundtrip(update, neg, mirrored(neg))
    assert isinstance(decoded, Update)
    assert not decoded.issues
    assert decoded == update
    assert encode_message(decoded, neg) == wire


@settings(max_examples=300, deadline=None)
@given(st.one_of(opens, large_opens, notifications, route_refreshes, keepalives), st.booleans())
def test_other_messages_roundtrip(message: Message, enhanced_route_refresh: bool) -> None:
    neg = Negotiated(enhanced_route_refresh=enhanced_route_refresh)
    decoded, wire = _roundtrip(message, neg, neg)
    assert decoded == message
    assert encode_message(decoded, neg) == wire


@settings(max_examples=50, deadline=None)
@given(large_opens)
def test_large_opens_use_extended_optional_parameters(message: Open) -> None:
    wire = encode_message(message)
    # RFC 9072 §2: Non-Ext OP Len and Non-Ext OP Type both 255, then a 2-octet length.
    assert wire[28] == wire[29] == 255
    assert int.from_bytes(wire[30:32], "big") == len(wire) - 32
    assert _roundtrip(message, Negotiated(), Negotiated())[0] == message


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_shutdown_communication_is_valid_utf8_within_255_octets(text: str) -> None:
    note = Notification.shutdown(2, text)
    if text:
        assert note.data[0] == len(note.data) - 1 <= 255
        assert text.startswith(note.shutdown_message or "")


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_encode_updates_packs_every_prefix_once_within_the_size_limit(data: st.DataObject) -> None:
    from dataclasses import replace

    from wire_strategies import next_hop_v6, path_attributes, prefixes

    from bgpd.wire.types import IPV4_UNICAST, IPV6_UNICAST
    from bgpd.wire.update import encode_updates, encode_withdrawals

    neg = data.draw(negotiated())
    peer = mirrored(neg)
    family = data.draw(st.sampled_from([IPV4_UNICAST, IPV6_UNICAST]))
    attrs = data.draw(path_attributes(neg.asn4))
    if family == IPV6_UNICAST or (
        IPV4_UNICAST in neg.extended_next_hop and data.draw(st.booleans())
    ):
        attrs = replace(attrs, next_hop=data.draw(next_hop_v6))  # RFC 8950 for IPv4
    items = data.draw(st.lists(prefixes(family), max_size=3000))
    cache = AttributeCache()
    for encoder in (
        lambda: encode_updates(family, attrs, items, neg),
        lambda: encode_withdrawals(family, items, neg),
    ):
        seen = []
        for wire in encoder():
            assert len(wire) <= neg.max_message_len
            (item,) = Framer(peer.max_message_len).feed(wire)
            update = decode_message(item[0], item[1], peer, cache)
            assert isinstance(update, Update) and not update.issues
            for part in update.announced + update.withdrawn:
                seen.extend(part.prefixes)
        assert seen == items
