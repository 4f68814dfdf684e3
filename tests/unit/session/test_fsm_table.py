"""The FSM follows its own TRANSITIONS table: one case per RFC 4271 §8.2.2 row.

Each case drives a fresh session into the row's state with real inputs (fake time), fires the
row's event, and checks the next state and the actions the row's steps promise.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
from session_pairs import make_config, sent_messages

from bgpd.session import (
    TRANSITIONS,
    AutomaticStart,
    AutomaticStop,
    CloseTransport,
    Connect,
    DataReceived,
    Down,
    Established,
    Event,
    Input,
    ManualStart,
    ManualStop,
    OpenCollisionDump,
    Send,
    Session,
    State,
    TcpConnectionAcknowledged,
    TcpConnectionConfirmed,
    TcpConnectionFails,
    Timer,
    TimerExpired,
    UpdateReceived,
)
from bgpd.session.fsm import Step
from bgpd.wire.capabilities import FourOctetAs, Multiprotocol
from bgpd.wire.constants import ErrorCode
from bgpd.wire.messages import (
    Keepalive,
    Notification,
    Open,
    RouteRefresh,
    encode_notification,
    encode_open,
    encode_route_refresh,
)
from bgpd.wire.types import IPV4_UNICAST
from bgpd.wire.update import encode_end_of_rib

NOW = 100.0
PEER_OPEN = encode_open(
    Open(
        65002,
        9,
        int(ipaddress.IPv4Address("10.0.0.2")),
        (Multiprotocol(IPV4_UNICAST), FourOctetAs(65002)),
    )
)
WRONG_AS_OPEN = encode_open(Open(65009, 9, 0x0A000002, (FourOctetAs(65009),)))
KEEPALIVE = b"\xff" * 16 + b"\x00\x13\x04"


def _input(event: Event, session: Session) -> Input:
    """A real input that the session maps to ``event``."""
    if event is Event.MANUAL_START_PASSIVE:
        session.promote(replace(session.config, connect_delay_time=2.0))
        return ManualStart()
    if event is Event.AUTOMATIC_START_PASSIVE:
        session.promote(replace(session.config, passive=True))
        return AutomaticStart()
    simple: dict[Event, Input] = {
        Event.MANUAL_START: ManualStart(),
        Event.AUTOMATIC_START: AutomaticStart(),
        Event.MANUAL_STOP: ManualStop(message="maintenance"),
        Event.AUTOMATIC_STOP: AutomaticStop(),
        Event.CONNECT_RETRY_TIMER_EXPIRES: TimerExpired(Timer.CONNECT_RETRY),
        Event.HOLD_TIMER_EXPIRES: TimerExpired(Timer.HOLD),
        Event.KEEPALIVE_TIMER_EXPIRES: TimerExpired(Timer.KEEPALIVE),
        Event.TCP_CR_ACKED: TcpConnectionAcknowledged(),
        Event.TCP_CONNECTION_CONFIRMED: TcpConnectionConfirmed(),
        Event.TCP_CONNECTION_FAILS: TcpConnectionFails(),
        Event.BGP_OPEN: DataReceived(PEER_OPEN),
        Event.BGP_HEADER_ERR: DataReceived(b"\x00" * 19),
        Event.BGP_OPEN_MSG_ERR: DataReceived(WRONG_AS_OPEN),
        Event.OPEN_COLLISION_DUMP: OpenCollisionDump(),
        Event.NOTIF_MSG_VER_ERR: DataReceived(encode_notification(Notification(2, 1, b"\0\4"))),
        Event.NOTIF_MSG: DataReceived(encode_notification(Notification(6, 2))),
        Event.KEEPALIVE_MSG: DataReceived(KEEPALIVE),
        Event.UPDATE_MSG: DataReceived(encode_end_of_rib(IPV4_UNICAST)),
        # An UPDATE whose withdrawn length overruns the message: Malformed Attribute List.
        Event.UPDATE_MSG_ERR: DataReceived(b"\xff" * 16 + b"\x00\x17\x02" + b"\xff\xff\x00\x00"),
        Event.ROUTE_REFRESH_MSG: DataReceived(encode_route_refresh(RouteRefresh(IPV4_UNICAST))),
    }
    return simple[event]


def session_in(state: State) -> Session:
    """A session brought to ``state`` through real inputs."""
    session = Session(make_config())
    script: dict[State, list[Input]] = {
        State.IDLE: [],
        State.CONNECT: [ManualStart()],
        State.ACTIVE: [ManualStart(), TcpConnectionFails()],
        State.OPEN_SENT: [ManualStart(), TcpConnectionAcknowledged()],
        State.OPEN_CONFIRM: [ManualStart(), TcpConnectionAcknowledged(), DataReceived(PEER_OPEN)],
        State.ESTABLISHED: [
            ManualStart(),
            TcpConnectionAcknowledged(),
            DataReceived(PEER_OPEN),
            DataReceived(KEEPALIVE),
        ],
    }
    for event in script[state]:
        session.handle(event, NOW - 1)
    assert session.state is state
    return session


def _reachable(state: State, event: Event) -> bool:
    """Message events need a connection, which only OpenSent and later have."""
    message_events = {e for e in Event if e.value >= Event.BGP_OPEN.value} - {
        Event.OPEN_COLLISION_DUMP
    }
    return not (event in message_events and state in (State.IDLE, State.CONNECT, State.ACTIVE))


EXPLICIT_ROWS = sorted(
    (key for key, row in TRANSITIONS.items() if row.explicit and _reachable(*key)),
    key=lambda k: (list(State).index(k[0]), k[1].value),
)
OTHERWISE_ROWS = sorted(
    (key for key, row in TRANSITIONS.items() if not row.explicit and _reachable(*key)),
    key=lambda k: (list(State).index(k[0]), k[1].value),
)

NOTIFICATION_CODE = {
    Step.SEND_CEASE: ErrorCode.CEASE,
    Step.SEND_COLLISION_CEASE: ErrorCode.CEASE,
    Step.SEND_HOLD_EXPIRED: ErrorCode.HOLD_TIMER_EXPIRED,
    Step.SEND_FSM_ERROR: ErrorCode.FSM,
}


def _check_row(state: State, event: Event) -> None:
    row = TRANSITIONS[state, event]
    session = session_in(state)
    actions = session.handle(_input(event, session), NOW)
    assert session.state is row.next_state
    kinds = [type(a) for a in actions]
    messages = sent_messages(actions)
    notes = [m for m in messages if isinstance(m, Notification)]
    sends = [s for s in row.steps if s in NOTIFICATION_CODE or s is Step.SEND_MESSAGE_ERROR]
    assert len(notes) == len(sends), (row.steps, messages)
    for step, note in zip(sends, notes, strict=True):
        if step in NOTIFICATION_CODE:
            assert note.code == NOTIFICATION_CODE[step]
        else:
            assert note.code in (ErrorCode.MESSAGE_HEADER, ErrorCode.OPEN_MESSAGE, 3)
    assert (Step.SEND_OPEN in row.steps) == any(isinstance(m, Open) for m in messages)
    assert (Step.SEND_KEEPALIVE in row.steps) == any(isinstance(m, Keepalive) for m in messages)
    assert (Step.CONNECT in row.steps) == (Connect in kinds)
    assert (Step.CLOSE in row.steps) == (CloseTransport in kinds)
    assert (Step.ESTABLISH in row.steps) == (Established in kinds)
    assert (Step.DELIVER_UPDATE in row.steps) == (UpdateReceived in kinds)
    downs = [a for a in actions if isinstance(a, Down)]
    fell = row.next_state is State.IDLE and state is not State.IDLE
    assert len(downs) == (1 if fell else 0)
    if fell:
        assert downs[0].reason is row.reason
    if CloseTransport in kinds:
        assert Send not in kinds[kinds.index(CloseTransport) :], "sent after close"


@pytest.mark.parametrize(
    ("state", "event"), EXPLICIT_ROWS, ids=[f"{s.value}-{e.token}" for s, e in EXPLICIT_ROWS]
)
def test_rfc_row(state: State, event: Event) -> None:
    _check_row(state, event)


@pytest.mark.parametrize(
    ("state", "event"), OTHERWISE_ROWS, ids=[f"{s.value}-{e.token}" for s, e in OTHERWISE_ROWS]
)
def test_any_other_event_row(state: State, event: Event) -> None:
    _check_row(state, event)


def test_table_is_complete() -> None:
    """Every (state, event) pair is a row: listed explicitly or the state's "any other event"."""
    assert set(TRANSITIONS) == {(s, e) for s in State for e in Event}
    assert len(EXPLICIT_ROWS) >= 60


def test_falls_to_idle_always_carry_a_reason() -> None:
    for (state, _), row in TRANSITIONS.items():
        if row.next_state is State.IDLE and state is not State.IDLE:
            assert row.reason is not None


def test_fsm_error_subcode_names_the_state() -> None:
    """RFC 6608 §4: an unexpected OPEN in Established is FSM error subcode 3."""
    session = session_in(State.ESTABLISHED)
    actions = session.handle(DataReceived(PEER_OPEN), NOW)
    notes = [m for m in sent_messages(actions) if isinstance(m, Notification)]
    assert [(n.code, n.subcode) for n in notes] == [(ErrorCode.FSM, 3)]
