"""Graceful restart (RFC 4724) in both roles and route refresh (RFC 2918 / RFC 7313), as pure
bookkeeping and through the Speaker with fake time."""

from __future__ import annotations

import ipaddress

from bgpd.rib.graceful_restart import (
    FORWARDING_BIT,
    GracefulRestartHelper,
    SelectionDeferral,
    local_capability,
)
from bgpd.speaker import (
    BestChanged,
    PeerHasOutput,
    PeerSettings,
    RibConverged,
    Speaker,
    SpeakerConfig,
)
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.capabilities import GracefulRestart
from bgpd.wire.codec import decode_message
from bgpd.wire.constants import MessageType, SegmentType
from bgpd.wire.framer import Framer
from bgpd.wire.messages import Announcement, RouteRefresh, Update, Withdrawal
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, IPV6_UNICAST, AsPathSegment, PathAttributes

GR = GracefulRestart(0, 120, ((IPV4_UNICAST, FORWARDING_BIT),))
GR_NO_F = GracefulRestart(0, 120, ((IPV4_UNICAST, 0),))
P1, P2, P3 = b"\x18\x0a\x01\x01", b"\x18\x0a\x01\x02", b"\x18\x0a\x01\x03"
ATTRS = PathAttributes(
    as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, (65001,)),), next_hop=b"\xc0\0\2\1"
)


def test_local_capability_sets_restart_and_forwarding_bits() -> None:
    cap = local_capability(
        [IPV6_UNICAST, IPV4_UNICAST], 90, restarting=True, forwarding_preserved=True
    )
    assert cap.restarting and cap.restart_time == 90
    assert cap.forwarding_preserved(IPV4_UNICAST) and cap.forwarding_preserved(IPV6_UNICAST)
    assert not local_capability([IPV4_UNICAST], 90, False, False).restarting


def test_helper_retains_only_families_in_the_capability() -> None:
    helper = GracefulRestartHelper()
    kept = helper.peer_down("p", GR, [IPV4_UNICAST, IPV6_UNICAST], graceful=True, now=0)
    assert kept == {IPV4_UNICAST}
    assert helper.next_deadline() == 120


def test_helper_retains_nothing_after_a_notification_or_without_capability() -> None:
    helper = GracefulRestartHelper()
    assert helper.peer_down("p", GR, [IPV4_UNICAST], graceful=False, now=0) == frozenset()
    assert helper.peer_down("p", None, [IPV4_UNICAST], graceful=True, now=0) == frozenset()
    assert helper.next_deadline() is None


def test_helper_restart_timer_expiry_sweeps() -> None:
    helper = GracefulRestartHelper()
    helper.peer_down("p", GR, [IPV4_UNICAST], graceful=True, now=0)
    assert helper.expired(119) == []
    assert helper.expired(120) == [("p", frozenset({IPV4_UNICAST}))]
    assert not helper.is_retaining("p")


def test_helper_drops_families_without_f_bit_on_return_and_waits_eor_for_the_rest() -> None:
    helper = GracefulRestartHelper(stale_time=30)
    helper.peer_down("p", GR, [IPV4_UNICAST], graceful=True, now=0)
    assert helper.peer_up("p", GR_NO_F, now=10) == {IPV4_UNICAST}
    helper.peer_down("q", GR, [IPV4_UNICAST], graceful=True, now=0)
    assert helper.peer_up("q", GR, now=10) == frozenset()
    assert helper.next_deadline() == 40  # stale timer, not the restart timer
    assert helper.end_of_rib("q", IPV4_UNICAST)
    assert not helper.end_of_rib("q", IPV4_UNICAST)


def test_selection_deferral_waits_for_every_expected_peer_or_the_deadline() -> None:
    deferral = SelectionDeferral(deadline=100, expected=frozenset({"a", "b"}))
    deferral.peer_up("a", [IPV4_UNICAST])
    deferral.end_of_rib("a", IPV4_UNICAST)
    assert not deferral.done(1)  # b has not come up
    deferral.peer_up("b", [IPV4_UNICAST])
    assert not deferral.done(2)
    deferral.end_of_rib("b", IPV4_UNICAST)
    assert deferral.done(3)
    late = SelectionDeferral(deadline=100, expected=frozenset({"never"}))
    assert not late.done(99) and late.done(100)


# -- through the speaker --------------------------------------------------------------------


def _speaker(deferral: SelectionDeferral | None = None) -> Speaker:
    return Speaker(SpeakerConfig(router_id=1, local_as=64512), AttributeCache(), deferral)


def _negotiated(cap: GracefulRestart | None = GR, enhanced: bool = False) -> Negotiated:
    return Negotiated(
        peer_as=65001,
        local_as=64512,
        peer_id=2,
        external=True,
        route_refresh=True,
        enhanced_route_refresh=enhanced,
        peer_graceful_restart=cap,
    )


def _up(speaker: Speaker, cap: GracefulRestart | None = GR, enhanced: bool = False) -> None:
    settings = PeerSettings(address=ipaddress.IPv4Address("10.0.0.2"), peer_as=65001)
    speaker.peer_up("p", settings, _negotiated(cap, enhanced), 0)


def _announce(*prefixes: bytes) -> Update:
    return Update(announced=(Announcement(IPV4_UNICAST, ATTRS, list(prefixes)),))


EOR = Update(end_of_rib=IPV4_UNICAST)


def _kernel(outputs: list[object]) -> dict[bytes, bool]:
    return {o.prefix: o.best is not None for o in outputs if isinstance(o, BestChanged)}


def test_speaker_helper_keeps_stale_routes_and_sweeps_after_end_of_rib() -> None:
    speaker = _speaker()
    _up(speaker)
    speaker.update_received("p", _announce(P1, P2), 0)
    speaker.drain()
    speaker.peer_down("p", graceful=True, now=5)
    assert _kernel(speaker.drain()) == {}  # kept, stale: nothing changes in the kernel
    assert speaker.loc_rib(IPV4_UNICAST).best(P1) is not None
    _up(speaker)
    speaker.update_received("p", _announce(P1), 10)
    speaker.update_received("p", EOR, 10)
    # P1 is refreshed (by the new session's path), P2 never came back: swept at End-of-RIB.
    assert _kernel(speaker.drain()) == {P1: True, P2: False}
    assert speaker.loc_rib(IPV4_UNICAST).best(P1) is not None
    assert speaker.next_deadline() is None


def test_speaker_flushes_at_once_without_graceful_restart() -> None:
    speaker = _speaker()
    _up(speaker, cap=None)
    speaker.update_received("p", _announce(P1), 0)
    speaker.drain()
    speaker.peer_down("p", graceful=True, now=5)
    assert _kernel(speaker.drain()) == {P1: False}


def test_speaker_drops_stale_routes_when_the_peer_returns_without_f_bit() -> None:
    speaker = _speaker()
    _up(speaker)
    speaker.update_received("p", _announce(P1), 0)
    speaker.drain()
    speaker.peer_down("p", graceful=True, now=5)
    _up(speaker, cap=GR_NO_F)
    assert _kernel(speaker.drain()) == {P1: False}


def test_speaker_sweeps_when_the_restart_timer_expires() -> None:
    speaker = _speaker()
    _up(speaker)
    speaker.update_received("p", _announce(P1), 0)
    speaker.drain()
    speaker.peer_down("p", graceful=True, now=5)
    assert speaker.next_deadline() == 125
    speaker.timer(124)
    assert _kernel(speaker.drain()) == {}
    speaker.timer(125)
    assert _kernel(speaker.drain()) == {P1: False}
    assert speaker.adj_ribs_in == {}


def test_restarting_speaker_defers_until_end_of_rib_then_reports_converged() -> None:
    speaker = _speaker(SelectionDeferral(deadline=60, expected=frozenset({"p"})))
    _up(speaker)
    speaker.update_received("p", _announce(P1, P2), 1)
    assert speaker.drain() == []  # nothing for the kernel, no UPDATEs
    speaker.update_received("p", EOR, 2)
    outputs = speaker.drain()
    assert _kernel(outputs) == {P1: True, P2: True}
    assert any(isinstance(o, RibConverged) for o in outputs)
    assert PeerHasOutput("p") in outputs  # our End-of-RIB now goes out
    assert [t for t, _ in _messages(speaker, outputs)] == [MessageType.UPDATE]


def test_restarting_speaker_gives_up_waiting_at_the_deadline() -> None:
    speaker = _speaker(SelectionDeferral(deadline=60, expected=frozenset({"p", "absent"})))
    _up(speaker)
    speaker.update_received("p", _announce(P1), 1)
    speaker.update_received("p", EOR, 2)
    assert speaker.drain() == []
    assert speaker.next_deadline() == 60
    speaker.timer(60)
    outputs = speaker.drain()
    assert _kernel(outputs) == {P1: True} and any(isinstance(o, RibConverged) for o in outputs)


def _messages(speaker: Speaker, outputs: list[object]) -> list[tuple[int, object]]:
    """What the peers that have output are sent, as their sockets take it (speaker rule 2)."""
    found: list[tuple[int, object]] = []
    for output in outputs:
        if isinstance(output, PeerHasOutput):
            for msg_type, body in Framer().feed(b"".join(speaker.take(output.peer_id))):
                found.append(
                    (msg_type, decode_message(msg_type, body, Negotiated(), AttributeCache()))
                )
    return found


def test_route_refresh_request_is_answered_with_the_adj_rib_out() -> None:
    speaker = _speaker()
    _up(speaker)
    speaker.set_local_routes({IPV4_UNICAST: {P3: PathAttributes()}}, 0)
    settings = PeerSettings(
        address=ipaddress.IPv4Address("10.0.0.2"),
        peer_as=65001,
        next_hop_self={IPV4_UNICAST: b"\x0a\0\0\1"},
    )
    speaker.peer_up("p", settings, _negotiated(enhanced=False), 0)
    _messages(speaker, speaker.drain())
    speaker.route_refresh_received("p", RouteRefresh(IPV4_UNICAST, 0), 1)
    answer = _messages(speaker, speaker.drain())
    assert [t for t, _ in answer] == [MessageType.UPDATE]
    update = answer[0][1]
    assert isinstance(update, Update) and update.announced[0].prefixes == [P3]


def test_enhanced_route_refresh_answer_is_framed_by_borr_and_eorr() -> None:
    speaker = _speaker()
    speaker.set_local_routes({IPV4_UNICAST: {P3: PathAttributes()}}, 0)
    settings = PeerSettings(
        address=ipaddress.IPv4Address("10.0.0.2"),
        peer_as=65001,
        next_hop_self={IPV4_UNICAST: b"\x0a\0\0\1"},
    )
    speaker.peer_up("p", settings, _negotiated(enhanced=True), 0)
    _messages(speaker, speaker.drain())
    speaker.route_refresh_received("p", RouteRefresh(IPV4_UNICAST, 0), 1)
    answer = _messages(speaker, speaker.drain())
    assert [t for t, _ in answer] == [
        MessageType.ROUTE_REFRESH,
        MessageType.UPDATE,
        MessageType.ROUTE_REFRESH,
    ]
    assert [m.subtype for t, m in answer if isinstance(m, RouteRefresh)] == [1, 2]


def test_peer_enhanced_refresh_sweeps_routes_it_did_not_resend() -> None:
    speaker = _speaker()
    _up(speaker, enhanced=True)
    speaker.update_received("p", _announce(P1, P2), 0)
    speaker.drain()
    speaker.route_refresh_received("p", RouteRefresh(IPV4_UNICAST, 1), 1)  # BoRR
    speaker.update_received("p", _announce(P2), 1)
    assert _kernel(speaker.drain()) == {}
    speaker.route_refresh_received("p", RouteRefresh(IPV4_UNICAST, 2), 2)  # EoRR
    assert _kernel(speaker.drain()) == {P1: False}


def test_import_policy_change_without_route_refresh_reapplies_locally() -> None:
    from bgpd.rib.policy import Policy, Verdict

    speaker = _speaker()
    settings = PeerSettings(address=ipaddress.IPv4Address("10.0.0.2"), peer_as=65001)
    speaker.peer_up("p", settings, Negotiated(peer_as=65001, local_as=64512, peer_id=2), 0)
    speaker.update_received("p", _announce(P1), 0)
    _messages(speaker, speaker.drain())  # our End-of-RIB goes out
    speaker.set_policy("p", Policy(default=Verdict.REJECT), Policy(), 1)
    outputs = speaker.drain()
    assert _kernel(outputs) == {P1: False}
    assert not _messages(speaker, outputs)  # no ROUTE-REFRESH possible
    speaker.set_policy("p", Policy(), Policy(), 2)
    assert _kernel(speaker.drain()) == {P1: True}


def test_withdrawal_of_unknown_prefix_is_harmless() -> None:
    speaker = _speaker()
    _up(speaker)
    speaker.update_received("p", Update(withdrawn=(Withdrawal(IPV4_UNICAST, [P1]),)), 0)
    assert _kernel(speaker.drain()) == {}
