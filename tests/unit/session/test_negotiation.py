"""Capability negotiation as sessions see it: extended messages (RFC 8654), route refresh
(RFC 2918) and enhanced route refresh (RFC 7313).

Each capability is in effect only when both OPENs carry it, and what is in effect changes what
the session accepts: a message over 4096 octets only with extended messages on both sides
(RFC 8654 §4), a ROUTE-REFRESH of the wrong length answered by RFC 7313 §5's error only when
enhanced route refresh was negotiated (otherwise RFC 4271 §6.1's Bad Message Length).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import pytest
from session_pairs import A_ADDR, Pair, make_config, notifications, session_pair

from bgpd.session import (
    DataReceived,
    Down,
    Established,
    ManualStart,
    Session,
    SessionConfig,
    State,
    TcpConnectionAcknowledged,
    UpdateReceived,
)
from bgpd.wire.capabilities import (
    Capability,
    EnhancedRouteRefresh,
    FourOctetAs,
    Multiprotocol,
    RouteRefresh,
)
from bgpd.wire.constants import ErrorCode, HeaderSubcode, MessageType, RouteRefreshErrorSubcode
from bgpd.wire.messages import KEEPALIVE_MESSAGE, Open, encode_open, frame
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, prefix_from_str
from bgpd.wire.update import encode_withdrawals

WITHDRAWN = [prefix_from_str(f"10.{i // 256}.{i % 256}.0/24") for i in range(1200)]
(BIG_UPDATE,) = encode_withdrawals(IPV4_UNICAST, WITHDRAWN, Negotiated(extended_message=True))
BAD_LENGTH = (ErrorCode.MESSAGE_HEADER, HeaderSubcode.BAD_MESSAGE_LENGTH)


def b_config(**overrides: Any) -> SessionConfig:
    """The passive side of ``session_pair``, with overrides."""
    values: dict[str, Any] = {
        "local_as": 65002,
        "peer_as": 65001,
        "router_id": ipaddress.IPv4Address("10.0.0.2"),
        "peer_address": A_ADDR,
        "passive": True,
    }
    return make_config(**(values | overrides))


def established_pair(a: dict[str, Any], b: dict[str, Any]) -> Pair:
    pair = session_pair(make_config(**a), b_config(**b))
    pair.start()
    assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED
    return pair


def negotiated(pair: Pair) -> tuple[Negotiated, Negotiated]:
    found = []
    for side in ("a", "b"):
        (up,) = [x for x in pair.seen[side] if isinstance(x, Established)]
        found.append(up.negotiated)
    return found[0], found[1]


def session_with_peer(capabilities: tuple[Capability, ...], **config: Any) -> Session:
    """Our session Established with a peer whose OPEN carries exactly ``capabilities``."""
    session = Session(make_config(**config))
    session.handle(ManualStart(), 0.0)
    session.handle(TcpConnectionAcknowledged(), 0.0)
    caps = (Multiprotocol(IPV4_UNICAST), FourOctetAs(65002), *capabilities)
    peer_open = encode_open(Open(65002, 9, int(ipaddress.IPv4Address("10.0.0.2")), caps))
    session.handle(DataReceived(peer_open + KEEPALIVE_MESSAGE), 0.0)
    assert session.state is State.ESTABLISHED
    return session


# ---- extended messages (RFC 8654) ----


@pytest.mark.parametrize(
    ("a_ext", "b_ext", "agreed"),
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
def test_extended_message_needs_both_sides(a_ext: bool, b_ext: bool, agreed: bool) -> None:
    """RFC 8654 §3: in effect only when advertised and received."""
    pair = established_pair({"extended_message": a_ext}, {"extended_message": b_ext})
    a, b = negotiated(pair)
    assert a.extended_message is b.extended_message is agreed
    assert a.max_message_len == b.max_message_len == (65535 if agreed else 4096)


def test_a_large_update_is_accepted_when_both_advertise() -> None:
    assert len(BIG_UPDATE) > 4096
    pair = established_pair({"extended_message": True}, {"extended_message": True})
    pair.feed("b", DataReceived(BIG_UPDATE))
    assert pair.b.state is State.ESTABLISHED
    (update,) = [x.update for x in pair.seen["b"] if isinstance(x, UpdateReceived)]
    assert sorted(p for w in update.withdrawn for p in w.prefixes) == sorted(WITHDRAWN)


@pytest.mark.parametrize("receiver_advertised", [True, False])
def test_a_large_message_without_agreement_is_bad_message_length(
    receiver_advertised: bool,
) -> None:
    """RFC 8654 §4: having advertised the capability is not enough, it must be received too;
    RFC 4271 §6.1: the data is the erroneous Length field."""
    pair = established_pair(
        {"extended_message": not receiver_advertised},
        {"extended_message": receiver_advertised},
    )
    pair.feed("b", DataReceived(BIG_UPDATE))
    assert pair.b.state is State.IDLE
    (note,) = notifications(pair.seen["b"])
    assert (note.code, note.subcode) == BAD_LENGTH
    assert note.data == struct.pack("!H", len(BIG_UPDATE))
    assert not [x for x in pair.seen["b"] if isinstance(x, UpdateReceived)]


# ---- route refresh (RFC 2918) and enhanced route refresh (RFC 7313) ----


@pytest.mark.parametrize(("a_rr", "b_rr"), [(True, True), (True, False), (False, True)])
def test_route_refresh_needs_both_sides(a_rr: bool, b_rr: bool) -> None:
    """RFC 2918 §2/§4 and RFC 7313 §3: a speaker may refresh only towards a peer that
    advertised the capability; our config advertises both capabilities together."""
    pair = established_pair({"route_refresh": a_rr}, {"route_refresh": b_rr})
    agreed = a_rr and b_rr
    for side in negotiated(pair):
        assert side.route_refresh is agreed
        assert side.enhanced_route_refresh is agreed


@pytest.mark.parametrize(
    ("peer_caps", "plain", "enhanced"),
    [
        ((RouteRefresh(), EnhancedRouteRefresh()), True, True),
        ((RouteRefresh(),), True, False),
        ((EnhancedRouteRefresh(),), False, True),
        ((), False, False),
    ],
)
def test_route_refresh_flavours_are_negotiated_separately(
    peer_caps: tuple[Capability, ...], plain: bool, enhanced: bool
) -> None:
    session = session_with_peer(peer_caps)
    assert session.negotiated is not None
    assert session.negotiated.route_refresh is plain
    assert session.negotiated.enhanced_route_refresh is enhanced


def test_we_do_not_refresh_towards_a_peer_that_did_not_advertise() -> None:
    session = session_with_peer((RouteRefresh(), EnhancedRouteRefresh()), route_refresh=False)
    assert session.negotiated is not None
    assert not session.negotiated.route_refresh
    assert not session.negotiated.enhanced_route_refresh


@pytest.mark.parametrize(
    ("peer_caps", "expected"),
    [
        # RFC 7313 §5: ROUTE-REFRESH Message Error / Invalid Message Length, data the message.
        (
            (RouteRefresh(), EnhancedRouteRefresh()),
            (ErrorCode.ROUTE_REFRESH, RouteRefreshErrorSubcode.INVALID_MESSAGE_LENGTH),
        ),
        # Without enhanced route refresh: RFC 4271 §6.1 Bad Message Length.
        ((RouteRefresh(),), BAD_LENGTH),
    ],
)
def test_wrong_length_route_refresh_error_depends_on_enhanced(
    peer_caps: tuple[Capability, ...], expected: tuple[int, int]
) -> None:
    session = session_with_peer(peer_caps)
    bad = frame(MessageType.ROUTE_REFRESH, b"\x00\x01\x00\x01\x00")  # a 5-octet body
    actions = session.handle(DataReceived(bad), 1.0)
    (note,) = notifications(actions)
    assert (note.code, note.subcode) == expected
    if expected[0] == ErrorCode.ROUTE_REFRESH:
        assert note.data == bad
    else:
        assert note.data == struct.pack("!H", len(bad))
    (down,) = [a for a in actions if isinstance(a, Down)]
    assert down.notification_sent and session.state is State.IDLE
