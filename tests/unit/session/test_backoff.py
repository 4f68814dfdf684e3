"""Idle hold backoff for a flapping peer (RFC 4271 §8.1.1 DampPeerOscillations), fake time.

A peer that ends an Established session with a NOTIFICATION, again and again, is restarted
after an IdleHoldTime that doubles from ``error_wait_min`` up to ``error_wait_max``; once the
peer has been quiet for ``error_forget_time`` since its last failure the backoff starts afresh
(BIRD ``error wait time`` / ``error forget time``). The current value is in the statistics.
"""

from __future__ import annotations

import ipaddress

from session_pairs import make_config

from bgpd.session import (
    DataReceived,
    ManualStart,
    Session,
    SessionConfig,
    State,
    TcpConnectionAcknowledged,
    Timer,
    incoming_config,
)
from bgpd.wire.capabilities import FourOctetAs, Multiprotocol
from bgpd.wire.messages import (
    KEEPALIVE_MESSAGE,
    Notification,
    Open,
    encode_notification,
    encode_open,
)
from bgpd.wire.types import IPV4_UNICAST

PEER_OPEN = encode_open(
    Open(
        65002,
        9,
        int(ipaddress.IPv4Address("10.0.0.2")),
        (Multiprotocol(IPV4_UNICAST), FourOctetAs(65002)),
    )
)
SHUTDOWN = encode_notification(Notification(6, 2))  # Cease/Administrative Shutdown (BIRD disable)


def flapping_config() -> SessionConfig:
    # Hold time 0: no hold or keepalive timers, so a session stays up for any fake time.
    return make_config(hold_time=0, error_wait_min=1.0, error_wait_max=8.0, error_forget_time=60.0)


def establish(session: Session, now: float) -> None:
    session.handle(TcpConnectionAcknowledged(), now)
    session.handle(DataReceived(PEER_OPEN + KEEPALIVE_MESSAGE), now)
    assert session.state is State.ESTABLISHED


def peer_shuts_down(session: Session, now: float) -> float:
    """The peer's NOTIFICATION ends the session; returns the IdleHoldTime it starts."""
    session.handle(DataReceived(SHUTDOWN), now)
    assert session.state is State.IDLE
    deadline = session.deadlines()[Timer.IDLE_HOLD]
    assert session.statistics().idle_hold_time == deadline - now
    return deadline - now


def restart(session: Session) -> float:
    """Let the idle hold pass: the automatic start connects again. Returns the time."""
    deadline = session.deadlines()[Timer.IDLE_HOLD]
    session.handle_timer(deadline)
    assert session.state is State.CONNECT
    return deadline


def test_idle_hold_doubles_up_to_the_ceiling() -> None:
    session = Session(flapping_config())
    assert session.statistics().idle_hold_time == 0.0  # no failure yet
    now = 0.0
    session.handle(ManualStart(), now)
    holds = []
    for _ in range(5):
        establish(session, now)
        holds.append(peer_shuts_down(session, now))
        now = restart(session)
    assert holds == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_idle_hold_starts_afresh_after_the_forget_time() -> None:
    session = Session(flapping_config())
    now = 0.0
    session.handle(ManualStart(), now)
    for expected in (1.0, 2.0, 4.0):
        establish(session, now)
        assert peer_shuts_down(session, now) == expected
        last_failure, now = now, restart(session)
    establish(session, now)
    # Up 61 s after the last failure (forget time 60 s): the next failure waits the minimum.
    now = last_failure + 61.0
    assert peer_shuts_down(session, now) == 1.0
    last_failure, now = now, restart(session)
    establish(session, now)
    # Up only 59 s this time: still within the forget time, so the wait doubles again.
    now = last_failure + 59.0
    assert peer_shuts_down(session, now) == 2.0


def test_a_promoted_connection_keeps_the_peers_backoff() -> None:
    """After a collision the surviving connection's FSM takes over the peer's backoff."""
    config = flapping_config()
    old = Session(config)
    old.handle(ManualStart(), 0.0)
    for now in (0.0, 10.0):
        establish(old, now)
        peer_shuts_down(old, now)
        restart(old)
    assert old.statistics().idle_hold_time == 2.0
    survivor = Session(incoming_config(config))
    survivor.promote(config, old)
    survivor.handle(ManualStart(), 20.0)
    establish(survivor, 20.0)
    assert peer_shuts_down(survivor, 20.0) == 4.0
    fresh = Session(incoming_config(config))
    fresh.promote(config)
    fresh.handle(ManualStart(), 20.0)
    establish(fresh, 20.0)
    assert peer_shuts_down(fresh, 20.0) == 1.0
