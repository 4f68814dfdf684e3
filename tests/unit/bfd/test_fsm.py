"""One BFD session's state machine (bgpd/bfd/fsm.py rules 1-7), with a fake clock; two sessions
talk through in-memory delivery, as tests/sim does for BGP."""

from __future__ import annotations

import pytest

from bgpd.bfd.fsm import SLOW_TX, TRANSITIONS, BfdSession, Output, StateChanged, Timers, Transmit
from bgpd.bfd.packet import ControlPacket, Diagnostic, SessionState, decode, encode

FAST = Timers(desired_min_tx=100_000, required_min_rx=100_000, detect_mult=3)
S = SessionState


def no_jitter() -> float:
    return 0.0


def _sent(outputs: list[Output]) -> list[ControlPacket]:
    return [o.packet for o in outputs if isinstance(o, Transmit)]


def _changes(outputs: list[Output]) -> list[tuple[SessionState, SessionState, Diagnostic]]:
    return [(o.old, o.new, o.diagnostic) for o in outputs if isinstance(o, StateChanged)]


class Pair:
    """Two sessions joined by a lossless wire (every packet through the codec), one clock."""

    def __init__(self, a: Timers = FAST, b: Timers = FAST) -> None:
        self.a = BfdSession(1, a, no_jitter)
        self.b = BfdSession(2, b, no_jitter)
        self.now = 0.0
        self.cut = False
        self.changes: list[tuple[str, SessionState, SessionState, Diagnostic]] = []
        self._deliver(self.a, self.a.start(0.0))
        self._deliver(self.b, self.b.start(0.0))

    def _deliver(self, sender: BfdSession, outputs: list[Output]) -> None:
        name = "a" if sender is self.a else "b"
        for old, new, diag in _changes(outputs):
            self.changes.append((name, old, new, diag))
        if self.cut:
            return
        other = self.b if sender is self.a else self.a
        for packet in _sent(outputs):
            self._deliver(other, other.receive(decode(encode(packet)), self.now))

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = [
                (d, s)
                for s in (self.a, self.b)
                if (d := s.next_deadline()) is not None and d <= end
            ]
            if not due:
                break
            deadline, session = min(due, key=lambda item: item[0])
            self.now = max(self.now, deadline)
            self._deliver(session, session.timer(self.now))
        self.now = end


def test_the_table_is_the_rfc_5880_section_6_8_6_rules() -> None:
    assert TRANSITIONS[(S.DOWN, S.DOWN)] == (S.INIT, Diagnostic.NONE)
    assert TRANSITIONS[(S.DOWN, S.INIT)] == (S.UP, Diagnostic.NONE)
    assert TRANSITIONS[(S.INIT, S.INIT)] == (S.UP, Diagnostic.NONE)
    assert TRANSITIONS[(S.INIT, S.UP)] == (S.UP, Diagnostic.NONE)
    assert TRANSITIONS[(S.UP, S.DOWN)] == (S.DOWN, Diagnostic.NEIGHBOR_DOWN)
    for state in (S.INIT, S.UP):
        assert TRANSITIONS[(state, S.ADMIN_DOWN)] == (S.DOWN, Diagnostic.NEIGHBOR_DOWN)
    staying = [(S.DOWN, S.UP), (S.DOWN, S.ADMIN_DOWN), (S.INIT, S.DOWN), (S.UP, S.INIT)]
    staying.append((S.UP, S.UP))
    assert not set(staying) & set(TRANSITIONS)


def test_two_sessions_come_up_by_the_three_way_handshake() -> None:
    pair = Pair()
    assert pair.a.state is S.UP and pair.b.state is S.UP
    assert pair.changes == [  # b hears a's Down first; a hears b's Init
        ("b", S.DOWN, S.INIT, Diagnostic.NONE),
        ("a", S.DOWN, S.UP, Diagnostic.NONE),
        ("b", S.INIT, S.UP, Diagnostic.NONE),
    ]
    assert pair.a.up_count == 1 and pair.a.remote_discriminator == 2


def test_going_up_polls_from_the_slow_rate_to_the_configured_one() -> None:
    """§6.8.3: not Up, at least 1 s; the change to the configured rate is a Poll Sequence."""
    lone = BfdSession(1, FAST, no_jitter)
    (first,) = _sent(lone.start(0.0))
    assert first.desired_min_tx == SLOW_TX and not first.poll
    pair = Pair()
    assert not pair.a.polling and not pair.b.polling  # each poll was answered with F at once
    assert pair.a.tx_in_use == FAST.desired_min_tx
    assert pair.a.transmit_interval() == pytest.approx(0.1)
    assert pair.a.detection_time() == pytest.approx(0.3)  # §6.8.4: 3 x max(100 ms, 100 ms)


def test_a_silent_peer_is_declared_down_after_the_detection_time() -> None:
    pair = Pair()
    pair.run(1.0)
    assert pair.a.state is S.UP
    pair.cut = True
    start = pair.now
    pair.run(1.0)
    downs = [c for c in pair.changes if c[0] == "a" and c[2] is S.DOWN]
    assert downs == [("a", S.UP, S.DOWN, Diagnostic.DETECTION_EXPIRED)]
    assert pair.a.remote_discriminator == 0  # §6.8.1: forgotten after a detection time
    assert pair.a.down_count == 1
    assert start < pair.now


def test_detection_fires_one_detection_time_after_the_last_packet() -> None:
    session = BfdSession(1, FAST, no_jitter)
    session.start(0.0)
    peer = ControlPacket(S.INIT, my_discriminator=9, your_discriminator=1, **_fast_fields())
    session.receive(peer, 10.0)
    assert session.state is S.UP
    assert _changes(session.timer(10.29)) == [] and session.state is S.UP
    outputs = session.timer(10.3)
    assert _changes(outputs) == [(S.UP, S.DOWN, Diagnostic.DETECTION_EXPIRED)]


def _fast_fields() -> dict[str, int]:
    return {"detect_mult": 3, "desired_min_tx": 100_000, "required_min_rx": 100_000}


def test_a_poll_is_answered_at_once_with_final_and_without_poll() -> None:
    session = BfdSession(1, FAST, no_jitter)
    session.start(0.0)
    outputs = session.receive(
        ControlPacket(S.DOWN, my_discriminator=9, poll=True, **_fast_fields()), 0.5
    )
    finals = [p for p in _sent(outputs) if p.final]
    assert len(finals) == 1 and not finals[0].poll and finals[0].your_discriminator == 9


def test_a_neighbours_admin_down_takes_us_down_with_diagnostic_3() -> None:
    pair = Pair()
    pair.run(0.5)
    pair._deliver(pair.b, pair.b.disable(pair.now))
    assert pair.b.state is S.ADMIN_DOWN and pair.b.diagnostic is Diagnostic.ADMIN_DOWN
    assert pair.a.state is S.DOWN and pair.a.diagnostic is Diagnostic.NEIGHBOR_DOWN
    down = [c for c in pair.changes if c[0] == "a" and c[2] is S.DOWN]
    assert down == [("a", S.UP, S.DOWN, Diagnostic.NEIGHBOR_DOWN)]


def test_admin_down_sends_for_one_detection_time_then_stays_silent() -> None:
    pair = Pair()
    pair.run(0.5)
    pair._deliver(pair.b, pair.b.disable(pair.now))
    pair.run(5.0)
    assert pair.b.next_deadline() is None  # rule 7: silent
    assert pair.b.receive(pair.a.packet(), pair.now) == []  # §6.8.6: AdminDown discards
    pair._deliver(pair.b, pair.b.enable(pair.now))
    pair.run(5.0)
    assert pair.a.state is S.UP and pair.b.state is S.UP
    assert pair.a.up_count == 2


def test_slower_timers_while_up_wait_for_the_final_before_they_are_used() -> None:
    """§6.8.3: an increased Desired Min TX is not used until the Poll Sequence completes."""
    session = BfdSession(1, FAST, no_jitter)
    session.start(0.0)
    session.receive(ControlPacket(S.INIT, 9, 1, **_fast_fields()), 0.0)
    session.receive(ControlPacket(S.UP, 9, 1, final=True, **_fast_fields()), 0.01)
    assert session.tx_in_use == 100_000 and not session.polling
    slow = Timers(desired_min_tx=500_000, required_min_rx=50_000, detect_mult=3)
    (sent,) = _sent(session.set_timers(slow, 0.02))
    assert sent.poll and sent.desired_min_tx == 500_000
    assert session.tx_in_use == 100_000  # still the old rate
    assert session.rx_in_use == 100_000  # a reduced Required Min RX waits as well
    session.receive(ControlPacket(S.UP, 9, 1, final=True, **_fast_fields()), 0.03)
    assert session.tx_in_use == 500_000 and session.rx_in_use == 50_000
    assert not session.polling


def test_no_periodic_packets_while_the_peer_asks_for_none() -> None:
    """§6.8.7: Required Min RX zero stops periodic transmission."""
    session = BfdSession(1, FAST, no_jitter)
    session.start(0.0)
    fields = {"detect_mult": 3, "desired_min_tx": 100_000, "required_min_rx": 0}
    session.receive(ControlPacket(S.DOWN, 9, **fields), 0.0)
    assert session.transmit_interval() == 0.0
    assert all(not _sent(session.timer(t / 10)) for t in range(1, 30))


@pytest.mark.parametrize(("mult", "low", "high"), [(3, 0.75, 1.0), (1, 0.75, 0.9)])
def test_jitter_stays_in_the_rfc_bounds(mult: int, low: float, high: float) -> None:
    """§6.8.7: 0-25 % shorter; with Detect Mult 1, 75-90 % of the interval."""
    for draw in (0.0, 0.5, 0.999):
        session = BfdSession(1, Timers(100_000, 100_000, mult), lambda d=draw: d)
        session.start(0.0)
        deadline = session.next_deadline()
        assert deadline is not None
        assert low - 1e-9 <= deadline <= high + 1e-9  # the slow rate: 1 s


def test_local_discriminator_and_timers_are_checked() -> None:
    with pytest.raises(ValueError):
        BfdSession(0, FAST, no_jitter)
    with pytest.raises(ValueError):
        Timers(detect_mult=0)


def test_a_healthy_pair_stays_up() -> None:
    """With every packet delivered, a pair that came up stays up for a minute."""
    pair = Pair()
    pair.run(60.0)
    assert pair.a.state is S.UP and pair.b.state is S.UP
    assert pair.a.down_count == 0 and pair.b.down_count == 0
    assert not [c for c in pair.changes if c[2] is S.DOWN]


def test_a_shorter_interval_from_the_peer_brings_the_next_packet_forward() -> None:
    """FRR's bfdd advertises 1 s while Init and polls with 100 ms once Up: our next packet,
    scheduled at the slow rate, must come within the new interval or FRR's 300 ms detection
    expires (rule 3)."""
    session = BfdSession(1, FAST, no_jitter)
    session.start(0.0)
    slow = ControlPacket(S.INIT, 7, 1, 3, 1_000_000, 1_000_000)
    session.receive(slow, 0.0)
    assert session.state is S.UP and session.next_deadline() == pytest.approx(1.0)
    poll = ControlPacket(S.UP, 7, 1, 3, 100_000, 100_000, poll=True)
    (final,) = _sent(session.receive(poll, 0.01))
    assert final.final
    assert session.next_deadline() == pytest.approx(0.11)
    (packet,) = _sent(session.timer(0.11))
    assert packet.state is S.UP
