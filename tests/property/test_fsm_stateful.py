"""Model-based test of the session FSM (Hypothesis ``RuleBasedStateMachine``).

Random administrative, TCP, timer and message inputs, with fake time. Invariants:
1. Never Established without a valid OPEN followed by a KEEPALIVE on the current connection.
2. Nothing is sent after ``CloseTransport`` until a new connection is reported.
3. Each fall to Idle yields exactly one ``Down``.
4. ``next_deadline()`` is never in the past; a negotiated hold time is 0 or at least 3.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bgpd.session import (
    Action,
    AutomaticStop,
    CloseTransport,
    DataReceived,
    Down,
    Established,
    Input,
    ManualStart,
    ManualStop,
    OpenCollisionDump,
    Send,
    Session,
    SessionConfig,
    State,
    StateChanged,
    TcpConnectionAcknowledged,
    TcpConnectionConfirmed,
    TcpConnectionFails,
    Timer,
    TimerExpired,
)
from bgpd.wire.capabilities import FourOctetAs, Multiprotocol
from bgpd.wire.messages import Notification, Open, encode_notification, encode_open
from bgpd.wire.types import IPV4_UNICAST
from bgpd.wire.update import encode_end_of_rib

pytestmark = pytest.mark.property

VALID_OPEN = encode_open(
    Open(65002, 9, 0x0A000002, (Multiprotocol(IPV4_UNICAST), FourOctetAs(65002)))
)
BAD_OPEN = encode_open(Open(65003, 9, 0x0A000002, (FourOctetAs(65003),)))
KEEPALIVE = b"\xff" * 16 + b"\x00\x13\x04"


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = SessionConfig(
            local_as=65001,
            peer_as=65002,
            router_id=ipaddress.IPv4Address("10.0.0.1"),
            peer_address=ipaddress.IPv4Address("192.0.2.2"),
            hold_time=9,
            connect_delay_time=0.0,
            error_wait_min=1.0,
            error_wait_max=4.0,
        )
        self.session = Session(config, jitter=lambda: 0.9)
        self.now = 0.0
        self.transport_open = False
        self.valid_open_seen = False
        self.keepalive_after_open = False

    # ---- driving ----

    def _feed(self, event: Input | None) -> None:
        if isinstance(event, TcpConnectionAcknowledged | TcpConnectionConfirmed):
            self.transport_open = True
            self.valid_open_seen = self.keepalive_after_open = False
        if isinstance(event, DataReceived):
            if event.data == VALID_OPEN and self.session.state is State.OPEN_SENT:
                self.valid_open_seen = True
            elif event.data == KEEPALIVE and self.valid_open_seen:
                self.keepalive_after_open = True
        actions = (
            self.session.handle_timer(self.now)
            if event is None
            else self.session.handle(event, self.now)
        )
        self._check(actions)

    def _check(self, actions: list[Action]) -> None:
        falls = sum(isinstance(a, StateChanged) and a.current is State.IDLE for a in actions)
        assert falls == sum(isinstance(a, Down) for a in actions)
        for action in actions:
            if isinstance(action, CloseTransport):
                self.transport_open = False
            elif isinstance(action, Send):
                assert self.transport_open, "sent with no open transport"
            elif isinstance(action, Established):
                assert self.valid_open_seen and self.keepalive_after_open
                hold = action.negotiated.hold_time
                assert hold == 0 or hold >= 3

    # ---- rules ----

    @rule()
    def manual_start(self) -> None:
        self._feed(ManualStart())

    @rule(text=st.text(max_size=20))
    def manual_stop(self, text: str) -> None:
        self._feed(ManualStop(message=text))

    @rule()
    def automatic_stop(self) -> None:
        self._feed(AutomaticStop())

    @rule(outgoing=st.booleans())
    def tcp_up(self, outgoing: bool) -> None:
        # A driver reports a connection only when the FSM asked for or can take one.
        if self.session.connected:
            return
        self._feed(TcpConnectionAcknowledged() if outgoing else TcpConnectionConfirmed())

    @rule()
    def tcp_fails(self) -> None:
        self._feed(TcpConnectionFails())

    @rule(
        data=st.sampled_from(
            [
                VALID_OPEN,
                BAD_OPEN,
                KEEPALIVE,
                encode_end_of_rib(IPV4_UNICAST),
                encode_notification(Notification(6, 2)),
                b"\xff" * 16 + b"\x00\x13\x09",
            ]
        )
    )
    def receive_message(self, data: bytes) -> None:
        self._feed(DataReceived(data))

    @rule(data=st.binary(max_size=40))
    def receive_garbage(self, data: bytes) -> None:
        self._feed(DataReceived(data))

    @rule(timer=st.sampled_from(list(Timer)))
    def timer_expired(self, timer: Timer) -> None:
        self._feed(TimerExpired(timer))

    @rule()
    def collision_dump(self) -> None:
        self._feed(OpenCollisionDump())

    @rule(seconds=st.floats(min_value=0.0, max_value=12.0))
    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._feed(None)

    @invariant()
    def deadline_not_in_past(self) -> None:
        deadline = self.session.next_deadline()
        assert deadline is None or deadline >= self.now

    @invariant()
    def established_has_negotiation(self) -> None:
        if self.session.state is State.ESTABLISHED:
            assert self.session.negotiated is not None and self.session.connected


SessionMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, suppress_health_check=[HealthCheck.too_slow]
)
TestSessionMachine = SessionMachine.TestCase
