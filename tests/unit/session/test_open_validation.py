"""OPEN checks answer with the right NOTIFICATION (RFC 4271 §6.2, RFC 5492 §5, RFC 6793)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from session_pairs import make_config, notifications, sent_messages

from bgpd.session import (
    DataReceived,
    Down,
    DownReason,
    Established,
    ManualStart,
    PeerAsKind,
    Session,
    State,
    TcpConnectionAcknowledged,
)
from bgpd.session.validation import check_open, local_open
from bgpd.wire.capabilities import AddPath, FourOctetAs, GracefulRestart, Multiprotocol
from bgpd.wire.constants import AS_TRANS, CapabilityCode, ErrorCode, OpenSubcode
from bgpd.wire.messages import Open, encode_open
from bgpd.wire.types import IPV4_UNICAST, IPV6_UNICAST

PEER_ID = int(ipaddress.IPv4Address("10.0.0.2"))
KEEPALIVE = b"\xff" * 16 + b"\x00\x13\x04"


def peer_open(my_as: int = 65002, hold: int = 9, bgp_id: int = PEER_ID, **kw: Any) -> bytes:
    caps = kw.get("caps", (Multiprotocol(IPV4_UNICAST), FourOctetAs(kw.get("asn4", my_as))))
    return encode_open(Open(my_as, hold, bgp_id, tuple(caps), kw.get("version", 4)))


def answer(raw: bytes, **config: Any) -> tuple[Session, list[Any]]:
    session = Session(make_config(**config))
    session.handle(ManualStart(), 0.0)
    session.handle(TcpConnectionAcknowledged(), 0.0)
    return session, session.handle(DataReceived(raw), 1.0)


def only_notification(actions: list[Any]) -> tuple[int, int, bytes]:
    notes = notifications(actions)
    assert len(notes) == 1, sent_messages(actions)
    return notes[0].code, notes[0].subcode, notes[0].data


def test_valid_open_moves_to_open_confirm_and_sends_keepalive() -> None:
    session, actions = answer(peer_open())
    assert session.state is State.OPEN_CONFIRM
    assert session.peer_id == PEER_ID
    assert notifications(actions) == []


def test_unsupported_version() -> None:
    session, actions = answer(peer_open(version=3))
    assert only_notification(actions) == (ErrorCode.OPEN_MESSAGE, 1, b"\x00\x04")
    assert session.state is State.IDLE


def test_bad_peer_as() -> None:
    _, actions = answer(peer_open(my_as=65009))
    assert only_notification(actions)[:2] == (ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_PEER_AS)


def test_four_octet_peer_as_via_as_trans_is_accepted() -> None:
    session, _ = answer(peer_open(my_as=AS_TRANS, asn4=4200000001), peer_as=4200000001)
    assert session.state is State.OPEN_CONFIRM


def test_four_octet_peer_as_mismatch() -> None:
    _, actions = answer(peer_open(my_as=AS_TRANS, asn4=4200000002), peer_as=4200000001)
    assert only_notification(actions)[:2] == (ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_PEER_AS)


def test_four_octet_as_without_as_trans_is_bad_peer_as() -> None:
    _, actions = answer(peer_open(my_as=1234, asn4=4200000001), peer_as=4200000001)
    assert only_notification(actions)[:2] == (ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_PEER_AS)


def test_as_trans_without_four_octet_capability_never_matches_a_large_as() -> None:
    raw = peer_open(my_as=AS_TRANS, caps=(Multiprotocol(IPV4_UNICAST),))
    _, actions = answer(raw, peer_as=4200000001)
    assert only_notification(actions)[:2] == (ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_PEER_AS)


@pytest.mark.parametrize(
    ("kind", "peer_as", "accepted"),
    [
        (PeerAsKind.INTERNAL, 65001, True),
        (PeerAsKind.INTERNAL, 65002, False),
        (PeerAsKind.EXTERNAL, 65002, True),
        (PeerAsKind.EXTERNAL, 65001, False),
    ],
)
def test_peer_as_by_relation(kind: PeerAsKind, peer_as: int, accepted: bool) -> None:
    session, _ = answer(peer_open(my_as=peer_as), peer_as=kind)
    assert (session.state is State.OPEN_CONFIRM) is accepted


def test_identifier_equal_to_ours_is_rejected_on_ibgp() -> None:
    ours = int(ipaddress.IPv4Address("10.0.0.1"))
    _, actions = answer(peer_open(my_as=65001, bgp_id=ours), peer_as=65001)
    code, subcode, _ = only_notification(actions)
    assert (code, subcode) == (ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_BGP_IDENTIFIER)


def test_identifier_equal_to_ours_is_allowed_on_ebgp() -> None:
    """RFC 6286 §2.2: uniqueness is only required within an AS."""
    session, _ = answer(peer_open(bgp_id=int(ipaddress.IPv4Address("10.0.0.1"))))
    assert session.state is State.OPEN_CONFIRM


def test_identifier_zero() -> None:
    _, actions = answer(peer_open(bgp_id=0))
    assert only_notification(actions)[:2] == (ErrorCode.OPEN_MESSAGE, 3)


@pytest.mark.parametrize("hold", [1, 2])
def test_unacceptable_hold_time(hold: int) -> None:
    _, actions = answer(peer_open(hold=hold))
    assert only_notification(actions)[:2] == (
        ErrorCode.OPEN_MESSAGE,
        OpenSubcode.UNACCEPTABLE_HOLD_TIME,
    )


def test_hold_time_zero_disables_hold_and_keepalive_timers() -> None:
    session, _ = answer(peer_open(hold=0))
    session.handle(DataReceived(KEEPALIVE), 2.0)
    assert session.state is State.ESTABLISHED
    assert session.negotiated is not None and session.negotiated.hold_time == 0
    assert session.next_deadline() is None


def test_required_capability_missing_is_unsupported_capability() -> None:
    raw = peer_open(caps=(Multiprotocol(IPV4_UNICAST), FourOctetAs(65002)))
    _, actions = answer(raw, add_path=3, required_capabilities=frozenset({CapabilityCode.ADD_PATH}))
    code, subcode, data = only_notification(actions)
    assert (code, subcode) == (ErrorCode.OPEN_MESSAGE, OpenSubcode.UNSUPPORTED_CAPABILITY)
    assert data[0] == CapabilityCode.ADD_PATH  # RFC 5492 §5: the capability we require


def test_required_capability_present() -> None:
    caps = (Multiprotocol(IPV4_UNICAST), FourOctetAs(65002), GracefulRestart())
    session, _ = answer(
        peer_open(caps=caps),
        required_capabilities=frozenset({CapabilityCode.GRACEFUL_RESTART}),
    )
    assert session.state is State.OPEN_CONFIRM


def test_negotiation_intersects_families_and_add_path() -> None:
    caps = (
        Multiprotocol(IPV4_UNICAST),
        Multiprotocol(IPV6_UNICAST),
        FourOctetAs(65002),
        AddPath(((IPV4_UNICAST, 1), (IPV6_UNICAST, 3))),
        GracefulRestart(0, 60, ((IPV4_UNICAST, 0x80),)),
    )
    session, _ = answer(peer_open(hold=30, caps=caps), add_path=3, hold_time=90)
    actions = session.handle(DataReceived(KEEPALIVE), 2.0)
    established = [a for a in actions if isinstance(a, Established)]
    assert len(established) == 1
    negotiated = established[0].negotiated
    assert negotiated.families == frozenset({IPV4_UNICAST})
    assert negotiated.add_path_tx == frozenset({IPV4_UNICAST})  # peer receives, we send
    assert negotiated.add_path_rx == frozenset()
    assert negotiated.hold_time == 30
    assert negotiated.asn4 and negotiated.external
    assert negotiated.peer_graceful_restart is not None


def test_local_open_uses_as_trans_for_a_four_octet_as() -> None:
    config = make_config(local_as=4200000001)
    message = local_open(config)
    assert message.my_as == AS_TRANS
    four = message.capability(FourOctetAs)
    assert four is not None and four.asn == 4200000001
    assert check_open(make_config(peer_as=4200000001), message) is None


def test_open_error_down_carries_the_sent_notification() -> None:
    _, actions = answer(peer_open(my_as=65009))
    downs = [a for a in actions if isinstance(a, Down)]
    assert len(downs) == 1
    assert downs[0].reason is DownReason.MESSAGE_ERROR
    assert downs[0].notification_sent
    assert downs[0].token == "message-error:open-message/bad-peer-as"
