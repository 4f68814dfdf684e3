"""The RFC 4271 §8 finite state machine of one BGP connection, sans-IO.

Rules:
1. Every state change comes from ``TRANSITIONS``: (state, event) -> next state, the ordered
   steps to run and, for falls to Idle, the reason. ``handle`` only maps inputs to events and
   walks the row; no transition is decided anywhere else (h11 ``_state.py``).
2. Inputs are events, bytes and ``now``; outputs are the returned actions (run them in order)
   and ``next_deadline()``. No clock, no IO, no randomness (jitter is passed in).
3. A peer's protocol violation becomes the NOTIFICATION the codec's ``MessageError`` names, sent
   before the close (RFC 4271 §6). Each fall to Idle yields exactly one ``Down``.
4. After ``CloseTransport`` nothing is sent until a new connection is reported (Event 16/17).
5. Deliberate departures from the RFC text, each marked at its row: a failed connect in Connect
   goes to Active and retries after ConnectRetryTime (the RFC's DelayOpen branch, BIRD and GoBGP
   behaviour); a NOTIFICATION in OpenSent is not answered with another (RFC 4271 §6.4);
   message errors in Established send the codec's NOTIFICATION, not an FSM error; a passive
   session runs no ConnectRetryTimer, so it never connects (BIRD ``passive on``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum, auto

from bgpd.session.config import SessionConfig
from bgpd.session.events import (
    Action,
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
    OpenReceived,
    RouteRefreshReceived,
    Send,
    State,
    StateChanged,
    TcpConnectionAcknowledged,
    TcpConnectionConfirmed,
    TcpConnectionFails,
    Timer,
    TimerExpired,
    UpdateReceived,
)
from bgpd.session.reasons import DownReason
from bgpd.session.timers import IdleHoldBackoff, Jitter, jittered, keepalive_interval, no_jitter
from bgpd.session.validation import check_open, local_open
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.codec import decode_message
from bgpd.wire.constants import (
    CeaseSubcode,
    ErrorCode,
    FsmSubcode,
    MessageType,
    OpenSubcode,
)
from bgpd.wire.errors import MessageError
from bgpd.wire.framer import Framer
from bgpd.wire.messages import (
    KEEPALIVE_MESSAGE,
    Notification,
    Open,
    RouteRefresh,
    Update,
    decode_notification,
    decode_open,
    encode_notification,
    encode_open,
)
from bgpd.wire.negotiated import Negotiated, negotiate, open_asn


class Step(Enum):
    """What a transition does, in order (the verbs of RFC 4271 §8.2.2)."""

    RESET_RETRY_COUNTER = auto()
    INCREMENT_RETRY_COUNTER = auto()
    START_CONNECT_RETRY = auto()
    START_CONNECT_DELAY = auto()
    STOP_CONNECT_RETRY = auto()
    CONNECT = auto()
    SEND_OPEN = auto()
    ACCEPT_OPEN = auto()
    SEND_KEEPALIVE = auto()
    RESTART_HOLD = auto()
    ESTABLISH = auto()
    DELIVER_UPDATE = auto()
    DELIVER_ROUTE_REFRESH = auto()
    SEND_CEASE = auto()
    SEND_COLLISION_CEASE = auto()
    SEND_HOLD_EXPIRED = auto()
    SEND_MESSAGE_ERROR = auto()
    SEND_FSM_ERROR = auto()
    NOTE_NOTIFICATION = auto()
    CLOSE = auto()


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of RFC 4271 §8.2.2."""

    next_state: State
    steps: tuple[Step, ...] = ()
    reason: DownReason | None = None
    explicit: bool = True  # False: the state's "any other event" row


S, E, P = State, Event, Step
_STARTS = (E.MANUAL_START, E.AUTOMATIC_START, E.MANUAL_START_PASSIVE, E.AUTOMATIC_START_PASSIVE)
_TCP_UP = (E.TCP_CR_ACKED, E.TCP_CONNECTION_CONFIRMED)
_CONNECTED = (S.OPEN_SENT, S.OPEN_CONFIRM, S.ESTABLISHED)

_ROWS: list[tuple[State, tuple[Event, ...], Transition]] = [
    # ---- Idle (§8.2.2 "Idle state") ----
    (
        S.IDLE,
        (E.MANUAL_START, E.AUTOMATIC_START),
        Transition(S.CONNECT, (P.RESET_RETRY_COUNTER, P.START_CONNECT_RETRY, P.CONNECT)),
    ),
    (
        S.IDLE,
        (E.MANUAL_START_PASSIVE, E.AUTOMATIC_START_PASSIVE),
        Transition(S.ACTIVE, (P.RESET_RETRY_COUNTER, P.START_CONNECT_DELAY)),
    ),
    # "the BGP FSM refuses all incoming BGP connections" while Idle.
    (S.IDLE, _TCP_UP, Transition(S.IDLE, (P.CLOSE,))),
    # ---- Connect ----
    (S.CONNECT, _STARTS, Transition(S.CONNECT)),
    (
        S.CONNECT,
        (E.MANUAL_STOP,),
        Transition(
            S.IDLE,
            (P.CLOSE, P.RESET_RETRY_COUNTER, P.STOP_CONNECT_RETRY),
            DownReason.ADMINISTRATIVE_STOP,
        ),
    ),
    (
        S.CONNECT,
        (E.CONNECT_RETRY_TIMER_EXPIRES,),
        Transition(S.CONNECT, (P.CLOSE, P.START_CONNECT_RETRY, P.CONNECT)),
    ),
    (S.CONNECT, _TCP_UP, Transition(S.OPEN_SENT, (P.STOP_CONNECT_RETRY, P.SEND_OPEN))),
    # Departure (rule 5): retry from Active, as the RFC's DelayOpen branch does.
    (S.CONNECT, (E.TCP_CONNECTION_FAILS,), Transition(S.ACTIVE, (P.CLOSE, P.START_CONNECT_RETRY))),
    # ---- Active ----
    (S.ACTIVE, _STARTS, Transition(S.ACTIVE)),
    (
        S.ACTIVE,
        (E.MANUAL_STOP,),
        Transition(
            S.IDLE,
            (P.CLOSE, P.RESET_RETRY_COUNTER, P.STOP_CONNECT_RETRY),
            DownReason.ADMINISTRATIVE_STOP,
        ),
    ),
    (
        S.ACTIVE,
        (E.CONNECT_RETRY_TIMER_EXPIRES,),
        Transition(S.CONNECT, (P.START_CONNECT_RETRY, P.CONNECT)),
    ),
    (S.ACTIVE, _TCP_UP, Transition(S.OPEN_SENT, (P.STOP_CONNECT_RETRY, P.SEND_OPEN))),
    (
        S.ACTIVE,
        (E.TCP_CONNECTION_FAILS,),
        Transition(
            S.IDLE,
            (P.CLOSE, P.STOP_CONNECT_RETRY, P.INCREMENT_RETRY_COUNTER),
            DownReason.CONNECTION_LOST,
        ),
    ),
    # ---- OpenSent ----
    (S.OPEN_SENT, _STARTS, Transition(S.OPEN_SENT)),
    (
        S.OPEN_SENT,
        (E.MANUAL_STOP,),
        Transition(
            S.IDLE,
            (P.SEND_CEASE, P.STOP_CONNECT_RETRY, P.CLOSE, P.RESET_RETRY_COUNTER),
            DownReason.ADMINISTRATIVE_STOP,
        ),
    ),
    (
        S.OPEN_SENT,
        (E.AUTOMATIC_STOP,),
        Transition(
            S.IDLE,
            (P.SEND_CEASE, P.STOP_CONNECT_RETRY, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.AUTOMATIC_STOP,
        ),
    ),
    (
        S.OPEN_SENT,
        (E.HOLD_TIMER_EXPIRES,),
        Transition(
            S.IDLE,
            (P.SEND_HOLD_EXPIRED, P.STOP_CONNECT_RETRY, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.HOLD_TIMER_EXPIRED,
        ),
    ),
    # A second connection is tracked beside this one (collision.py, §6.8).
    (S.OPEN_SENT, _TCP_UP, Transition(S.OPEN_SENT)),
    (
        S.OPEN_SENT,
        (E.TCP_CONNECTION_FAILS,),
        Transition(S.ACTIVE, (P.CLOSE, P.START_CONNECT_RETRY)),
    ),
    (
        S.OPEN_SENT,
        (E.BGP_OPEN,),
        Transition(S.OPEN_CONFIRM, (P.STOP_CONNECT_RETRY, P.ACCEPT_OPEN, P.SEND_KEEPALIVE)),
    ),
    (
        S.OPEN_SENT,
        (E.BGP_HEADER_ERR, E.BGP_OPEN_MSG_ERR),
        Transition(
            S.IDLE,
            (P.SEND_MESSAGE_ERROR, P.STOP_CONNECT_RETRY, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.MESSAGE_ERROR,
        ),
    ),
    (
        S.OPEN_SENT,
        (E.OPEN_COLLISION_DUMP,),
        Transition(
            S.IDLE,
            (P.SEND_COLLISION_CEASE, P.STOP_CONNECT_RETRY, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.CONNECTION_COLLISION,
        ),
    ),
    (
        S.OPEN_SENT,
        (E.NOTIF_MSG_VER_ERR,),
        Transition(
            S.IDLE,
            (P.NOTE_NOTIFICATION, P.STOP_CONNECT_RETRY, P.CLOSE),
            DownReason.NOTIFICATION_RECEIVED,
        ),
    ),
    # Departure (rule 5): a NOTIFICATION is not answered with an FSM error.
    (
        S.OPEN_SENT,
        (E.NOTIF_MSG,),
        Transition(
            S.IDLE,
            (P.NOTE_NOTIFICATION, P.STOP_CONNECT_RETRY, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.NOTIFICATION_RECEIVED,
        ),
    ),
    # ---- OpenConfirm ----
    (S.OPEN_CONFIRM, _STARTS, Transition(S.OPEN_CONFIRM)),
    (
        S.OPEN_CONFIRM,
        (E.MANUAL_STOP,),
        Transition(
            S.IDLE,
            (P.SEND_CEASE, P.CLOSE, P.RESET_RETRY_COUNTER, P.STOP_CONNECT_RETRY),
            DownReason.ADMINISTRATIVE_STOP,
        ),
    ),
    (
        S.OPEN_CONFIRM,
        (E.AUTOMATIC_STOP,),
        Transition(
            S.IDLE, (P.SEND_CEASE, P.CLOSE, P.INCREMENT_RETRY_COUNTER), DownReason.AUTOMATIC_STOP
        ),
    ),
    (
        S.OPEN_CONFIRM,
        (E.HOLD_TIMER_EXPIRES,),
        Transition(
            S.IDLE,
            (P.SEND_HOLD_EXPIRED, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.HOLD_TIMER_EXPIRED,
        ),
    ),
    (S.OPEN_CONFIRM, (E.KEEPALIVE_TIMER_EXPIRES,), Transition(S.OPEN_CONFIRM, (P.SEND_KEEPALIVE,))),
    (S.OPEN_CONFIRM, _TCP_UP, Transition(S.OPEN_CONFIRM)),
    (
        S.OPEN_CONFIRM,
        (E.TCP_CONNECTION_FAILS,),
        Transition(S.IDLE, (P.CLOSE, P.INCREMENT_RETRY_COUNTER), DownReason.CONNECTION_LOST),
    ),
    (
        S.OPEN_CONFIRM,
        (E.NOTIF_MSG_VER_ERR,),
        Transition(S.IDLE, (P.NOTE_NOTIFICATION, P.CLOSE), DownReason.NOTIFICATION_RECEIVED),
    ),
    (
        S.OPEN_CONFIRM,
        (E.NOTIF_MSG,),
        Transition(
            S.IDLE,
            (P.NOTE_NOTIFICATION, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.NOTIFICATION_RECEIVED,
        ),
    ),
    (
        S.OPEN_CONFIRM,
        (E.BGP_HEADER_ERR, E.BGP_OPEN_MSG_ERR),
        Transition(
            S.IDLE,
            (P.SEND_MESSAGE_ERROR, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.MESSAGE_ERROR,
        ),
    ),
    (
        S.OPEN_CONFIRM,
        (E.OPEN_COLLISION_DUMP,),
        Transition(
            S.IDLE,
            (P.SEND_COLLISION_CEASE, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.CONNECTION_COLLISION,
        ),
    ),
    (S.OPEN_CONFIRM, (E.KEEPALIVE_MSG,), Transition(S.ESTABLISHED, (P.RESTART_HOLD, P.ESTABLISH))),
    # ---- Established ----
    (S.ESTABLISHED, _STARTS, Transition(S.ESTABLISHED)),
    (
        S.ESTABLISHED,
        (E.MANUAL_STOP,),
        Transition(
            S.IDLE,
            (P.SEND_CEASE, P.CLOSE, P.RESET_RETRY_COUNTER, P.STOP_CONNECT_RETRY),
            DownReason.ADMINISTRATIVE_STOP,
        ),
    ),
    (
        S.ESTABLISHED,
        (E.AUTOMATIC_STOP,),
        Transition(
            S.IDLE, (P.SEND_CEASE, P.CLOSE, P.INCREMENT_RETRY_COUNTER), DownReason.AUTOMATIC_STOP
        ),
    ),
    (
        S.ESTABLISHED,
        (E.HOLD_TIMER_EXPIRES,),
        Transition(
            S.IDLE,
            (P.SEND_HOLD_EXPIRED, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.HOLD_TIMER_EXPIRED,
        ),
    ),
    (S.ESTABLISHED, (E.KEEPALIVE_TIMER_EXPIRES,), Transition(S.ESTABLISHED, (P.SEND_KEEPALIVE,))),
    (S.ESTABLISHED, _TCP_UP, Transition(S.ESTABLISHED)),
    (
        S.ESTABLISHED,
        (E.OPEN_COLLISION_DUMP,),
        Transition(
            S.IDLE,
            (P.SEND_COLLISION_CEASE, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.CONNECTION_COLLISION,
        ),
    ),
    (
        S.ESTABLISHED,
        (E.NOTIF_MSG_VER_ERR, E.NOTIF_MSG),
        Transition(
            S.IDLE,
            (P.NOTE_NOTIFICATION, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.NOTIFICATION_RECEIVED,
        ),
    ),
    (
        S.ESTABLISHED,
        (E.TCP_CONNECTION_FAILS,),
        Transition(S.IDLE, (P.CLOSE, P.INCREMENT_RETRY_COUNTER), DownReason.CONNECTION_LOST),
    ),
    (S.ESTABLISHED, (E.KEEPALIVE_MSG,), Transition(S.ESTABLISHED, (P.RESTART_HOLD,))),
    (S.ESTABLISHED, (E.UPDATE_MSG,), Transition(S.ESTABLISHED, (P.RESTART_HOLD, P.DELIVER_UPDATE))),
    # RFC 2918 §4: ROUTE-REFRESH is a message like UPDATE for the hold timer.
    (
        S.ESTABLISHED,
        (E.ROUTE_REFRESH_MSG,),
        Transition(S.ESTABLISHED, (P.RESTART_HOLD, P.DELIVER_ROUTE_REFRESH)),
    ),
    # Departure (rule 5): the codec's NOTIFICATION (RFC 4271 §6.1, §6.3, RFC 7606).
    (
        S.ESTABLISHED,
        (E.UPDATE_MSG_ERR, E.BGP_HEADER_ERR),
        Transition(
            S.IDLE,
            (P.SEND_MESSAGE_ERROR, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
            DownReason.MESSAGE_ERROR,
        ),
    ),
]

# "Any other event" per state (§8.2.2, the last paragraph of each state).
_OTHERWISE: dict[State, Transition] = {
    S.IDLE: Transition(S.IDLE, (), None, explicit=False),
    S.CONNECT: Transition(
        S.IDLE,
        (P.STOP_CONNECT_RETRY, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
        DownReason.FSM_ERROR,
        explicit=False,
    ),
    S.ACTIVE: Transition(
        S.IDLE,
        (P.STOP_CONNECT_RETRY, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
        DownReason.FSM_ERROR,
        explicit=False,
    ),
    S.OPEN_SENT: Transition(
        S.IDLE,
        (P.SEND_FSM_ERROR, P.STOP_CONNECT_RETRY, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
        DownReason.FSM_ERROR,
        explicit=False,
    ),
    S.OPEN_CONFIRM: Transition(
        S.IDLE,
        (P.SEND_FSM_ERROR, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
        DownReason.FSM_ERROR,
        explicit=False,
    ),
    S.ESTABLISHED: Transition(
        S.IDLE,
        (P.SEND_FSM_ERROR, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
        DownReason.FSM_ERROR,
        explicit=False,
    ),
}
# AutomaticStop with no connection yet: stop quietly (§8.2.2 Connect/Active, Event 8).
_QUIET_STOP = {
    state: Transition(
        S.IDLE,
        (P.STOP_CONNECT_RETRY, P.CLOSE, P.INCREMENT_RETRY_COUNTER),
        DownReason.AUTOMATIC_STOP,
    )
    for state in (S.CONNECT, S.ACTIVE)
}


def _build_table() -> dict[tuple[State, Event], Transition]:
    table: dict[tuple[State, Event], Transition] = {}
    for state, events, row in _ROWS:
        for event in events:
            if (state, event) in table:
                raise AssertionError(f"duplicate row {state} {event}")
            table[state, event] = row
    for state, row in _QUIET_STOP.items():
        table[state, E.AUTOMATIC_STOP] = row
    for state in State:
        for event in Event:
            table.setdefault((state, event), _OTHERWISE[state])
    return table


TRANSITIONS: dict[tuple[State, Event], Transition] = _build_table()
"""Every (state, event) pair: the RFC's explicit rows and each state's "any other event" row."""

# RFC 6608 §4: the FSM error subcode names the state the unexpected message arrived in.
_FSM_SUBCODE = {
    S.OPEN_SENT: FsmSubcode.UNEXPECTED_MESSAGE_IN_OPENSENT,
    S.OPEN_CONFIRM: FsmSubcode.UNEXPECTED_MESSAGE_IN_OPENCONFIRM,
    S.ESTABLISHED: FsmSubcode.UNEXPECTED_MESSAGE_IN_ESTABLISHED,
}
_TIMER_EVENTS = {
    Timer.CONNECT_RETRY: E.CONNECT_RETRY_TIMER_EXPIRES,
    Timer.HOLD: E.HOLD_TIMER_EXPIRES,
    Timer.KEEPALIVE: E.KEEPALIVE_TIMER_EXPIRES,
}
_SHUTDOWN_TEXT_SUBCODES = (CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, CeaseSubcode.ADMINISTRATIVE_RESET)


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """A snapshot for show commands and metrics."""

    state: State
    since: float
    established_transitions: int
    connect_retry_counter: int
    messages_in: int
    messages_out: int
    updates_in: int
    updates_out: int
    last_down: Down | None
    hold_time: int | None
    idle_hold_time: float


@dataclass(slots=True)
class _Context:
    """The payload of the event being processed, read by the steps."""

    now: float
    cease_subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN
    cease_message: str = ""
    cease_data: bytes = b""
    idle_time: float | None = None  # an AutomaticStop's own idle hold
    error: MessageError | None = None
    open: Open | None = None
    update: Update | None = None
    refresh: RouteRefresh | None = None
    received: Notification | None = None


class Session:
    """One BGP connection's FSM. Feed it with ``handle(input, now)`` and ``handle_timer(now)``;
    after each call run the returned actions and re-arm one timer at ``next_deadline()``."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        cache: AttributeCache | None = None,
        jitter: Jitter = no_jitter,
    ) -> None:
        self.config = config
        self.cache = cache if cache is not None else AttributeCache()
        self.state = State.IDLE
        self.since = 0.0
        self.negotiated: Negotiated | None = None
        self.peer_open: Open | None = None
        self.local_open = local_open(config)
        self._jitter = jitter
        self._framer = Framer()
        self._deadlines: dict[Timer, float] = {}
        self._retry_counter = 0
        self._backoff = IdleHoldBackoff(
            config.error_wait_min, config.error_wait_max, config.error_forget_time
        )
        self._keepalive_interval = 0.0
        self._connected = False
        self._sent_notification: Notification | None = None
        self._established_transitions = 0
        self._messages_in = 0
        self._messages_out = 0
        self._updates_in = 0
        self._updates_out = 0
        self._last_down: Down | None = None

    # ---- public API ----

    def handle(self, event: Input, now: float) -> list[Action]:
        """Process one input (due timers first). Then run the returned actions."""
        actions = self.handle_timer(now)
        if isinstance(event, DataReceived):
            actions += self._receive(event.data, now)
            return actions
        ctx = _Context(now)
        kind = self._event_of(event, ctx)
        actions += self._apply(kind, ctx)
        return actions

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every timer due at ``now``, earliest first. Then run the returned actions."""
        actions: list[Action] = []
        while True:
            due = [(t, timer) for timer, t in self._deadlines.items() if t <= now]
            if not due:
                return actions
            _, timer = min(due, key=lambda item: item[0])
            del self._deadlines[timer]
            actions += self._apply(self._timer_event(timer), _Context(now))

    def next_deadline(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def deadlines(self) -> dict[Timer, float]:
        """The running timers and when each expires (a copy, for show commands and tests)."""
        return dict(self._deadlines)

    def send_messages(self, messages: list[bytes], now: float) -> list[Action]:
        """Encoded UPDATEs from the speaker; sent only in Established (else dropped, since the
        speaker learns of the fall from ``Down``). Restarts the KeepaliveTimer (§8.2.2)."""
        if self.state is not State.ESTABLISHED or not messages:
            return []
        self._messages_out += len(messages)
        self._updates_out += len(messages)
        self._arm_keepalive(now)
        return [Send(b"".join(messages))]

    def promote(self, config: SessionConfig, predecessor: Session | None = None) -> None:
        """Adopt the peer's own config (restart policy, passivity) after winning a collision,
        and the predecessor's idle-hold backoff: DampPeerOscillations damps the peer, not one
        connection (§8.1.1), so a flapping peer keeps backing off across connections."""
        if config.key != self.config.key:
            raise ValueError("promote needs the same peer")
        self.config = config
        if predecessor is not None:
            self._backoff = predecessor._backoff

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def peer_id(self) -> int | None:
        return self.peer_open.bgp_id if self.peer_open is not None else None

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(
            state=self.state,
            since=self.since,
            established_transitions=self._established_transitions,
            connect_retry_counter=self._retry_counter,
            messages_in=self._messages_in,
            messages_out=self._messages_out,
            updates_in=self._updates_in,
            updates_out=self._updates_out,
            last_down=self._last_down,
            hold_time=self.negotiated.hold_time if self.negotiated else None,
            idle_hold_time=self._backoff.current,
        )

    # ---- input mapping ----

    def _event_of(self, event: Input, ctx: _Context) -> Event:
        passive = self.config.passive or self.config.connect_delay_time > 0
        if isinstance(event, ManualStart):
            return E.MANUAL_START_PASSIVE if passive else E.MANUAL_START
        if isinstance(event, AutomaticStart):
            return E.AUTOMATIC_START_PASSIVE if self.config.passive else E.AUTOMATIC_START
        if isinstance(event, ManualStop):
            ctx.cease_subcode, ctx.cease_message = event.subcode, event.message
            return E.MANUAL_STOP
        if isinstance(event, AutomaticStop):
            ctx.cease_subcode, ctx.cease_message = event.subcode, event.message
            ctx.cease_data, ctx.idle_time = event.data, event.idle_time
            return E.AUTOMATIC_STOP
        if isinstance(event, TimerExpired):
            self._deadlines.pop(event.timer, None)
            return self._timer_event(event.timer)
        if isinstance(event, TcpConnectionAcknowledged):
            return E.TCP_CR_ACKED
        if isinstance(event, TcpConnectionConfirmed):
            return E.TCP_CONNECTION_CONFIRMED
        if isinstance(event, TcpConnectionFails):
            return E.TCP_CONNECTION_FAILS
        if isinstance(event, OpenCollisionDump):
            return E.OPEN_COLLISION_DUMP
        raise TypeError(f"not a session input: {event!r}")

    def _timer_event(self, timer: Timer) -> Event:
        if timer is Timer.IDLE_HOLD:
            # §8.1.1 DampPeerOscillations: the idle hold's end is an automatic start.
            return E.AUTOMATIC_START_PASSIVE if self.config.passive else E.AUTOMATIC_START
        return _TIMER_EVENTS[timer]

    def _receive(self, data: bytes, now: float) -> list[Action]:
        """§8.1.3: frame the bytes and turn each message into its event."""
        if not self._connected:
            return []
        actions: list[Action] = []
        header_error: MessageError | None = None
        try:
            frames = self._framer.feed(data)
        except MessageError as error:
            frames, header_error = [], error
        for msg_type, body in frames:
            self._messages_in += 1
            ctx = _Context(now)
            kind = self._message_event(msg_type, body, ctx)
            actions += self._apply(kind, ctx)
            if not self._connected:
                return actions
        if header_error is not None:
            actions += self._apply(E.BGP_HEADER_ERR, _Context(now, error=header_error))
        return actions

    def _message_event(self, msg_type: int, body: bytes, ctx: _Context) -> Event:
        if msg_type == MessageType.KEEPALIVE:
            return E.KEEPALIVE_MSG
        if msg_type == MessageType.OPEN:
            try:
                received = decode_open(body)
            except MessageError as error:
                ctx.error = error
                return E.BGP_OPEN_MSG_ERR
            ctx.open = received
            ctx.error = check_open(self.config, received)
            return E.BGP_OPEN if ctx.error is None else E.BGP_OPEN_MSG_ERR
        if msg_type == MessageType.NOTIFICATION:
            ctx.received = decode_notification(body)
            version = (ErrorCode.OPEN_MESSAGE, OpenSubcode.UNSUPPORTED_VERSION_NUMBER)
            is_version = (ctx.received.code, ctx.received.subcode) == version
            return E.NOTIF_MSG_VER_ERR if is_version else E.NOTIF_MSG
        is_update = msg_type == MessageType.UPDATE
        if self.state is not State.ESTABLISHED or self.negotiated is None:
            return E.UPDATE_MSG if is_update else E.ROUTE_REFRESH_MSG
        try:
            message = decode_message(msg_type, body, self.negotiated, self.cache)
        except MessageError as error:
            ctx.error = error
            return E.UPDATE_MSG_ERR
        if isinstance(message, Update):
            ctx.update = message
            return E.UPDATE_MSG
        if isinstance(message, RouteRefresh):
            ctx.refresh = message
            return E.ROUTE_REFRESH_MSG
        raise AssertionError(f"unexpected decoded message {message!r}")

    # ---- the table walker ----

    def _apply(self, kind: Event, ctx: _Context) -> list[Action]:
        row = TRANSITIONS[self.state, kind]
        previous = self.state
        was_established = previous is State.ESTABLISHED
        self._sent_notification = None
        actions: list[Action] = []
        for step in row.steps:
            self._run_step(step, ctx, actions)
        if row.next_state is previous:
            return actions
        self.state = row.next_state
        self.since = ctx.now
        cause = row.reason.value if row.reason is not None else kind.token
        actions.append(StateChanged(previous, row.next_state, cause))
        if row.next_state is State.IDLE:
            reason = row.reason or DownReason.FSM_ERROR
            notification = self._sent_notification or ctx.received
            down = Down(
                reason=reason,
                notification=notification,
                notification_sent=self._sent_notification is not None,
                was_established=was_established,
            )
            self._last_down = down
            actions.append(down)
            self._enter_idle(reason, ctx.now, ctx.idle_time)
        return actions

    def _enter_idle(self, reason: DownReason, now: float, idle_time: float | None) -> None:
        self._deadlines.clear()
        if reason is DownReason.ADMINISTRATIVE_STOP or not self.config.automatic_restart:
            return
        delay = self._backoff.next_delay(now) if idle_time is None else idle_time
        self._deadlines[Timer.IDLE_HOLD] = now + delay

    def _send(self, data: bytes, actions: list[Action]) -> None:
        self._messages_out += 1
        actions.append(Send(data))

    def _notify(self, notification: Notification, actions: list[Action]) -> None:
        self._sent_notification = notification
        self._send(encode_notification(notification), actions)

    def _arm_keepalive(self, now: float) -> None:
        if self._keepalive_interval > 0:
            self._deadlines[Timer.KEEPALIVE] = now + jittered(
                self._keepalive_interval, self._jitter
            )

    def _run_step(self, step: Step, ctx: _Context, actions: list[Action]) -> None:  # noqa: C901
        now = ctx.now
        if step is P.RESET_RETRY_COUNTER:
            self._retry_counter = 0
        elif step is P.INCREMENT_RETRY_COUNTER:
            self._retry_counter += 1
        elif step is P.START_CONNECT_RETRY:
            if not self.config.passive:  # departure (rule 5): a passive session never connects
                self._deadlines[Timer.CONNECT_RETRY] = now + jittered(
                    self.config.connect_retry_time, self._jitter
                )
        elif step is P.START_CONNECT_DELAY:
            if not self.config.passive:
                self._deadlines[Timer.CONNECT_RETRY] = now + self.config.connect_delay_time
        elif step is P.STOP_CONNECT_RETRY:
            self._deadlines.pop(Timer.CONNECT_RETRY, None)
        elif step is P.CONNECT:
            actions.append(Connect())
        elif step is P.SEND_OPEN:
            self._connected = True
            self._framer = Framer()
            self.negotiated = None
            self.peer_open = None
            self._send(encode_open(self.local_open), actions)
            # §8.2.2: "sets the HoldTimer to a large value" until the OPEN arrives.
            self._deadlines[Timer.HOLD] = now + self.config.open_hold_time
        elif step is P.ACCEPT_OPEN:
            assert ctx.open is not None
            self.peer_open = ctx.open
            internal = self.config.is_internal(open_asn(ctx.open))
            self.negotiated = negotiate(self.local_open, ctx.open, external=not internal)
            self._framer.max_length = self.negotiated.max_message_len
            self._keepalive_interval = keepalive_interval(
                self.negotiated.hold_time, self.config.keepalive_time
            )
            self._restart_hold(now)
            actions.append(OpenReceived(ctx.open))
        elif step is P.SEND_KEEPALIVE:
            self._send(KEEPALIVE_MESSAGE, actions)
            self._arm_keepalive(now)
        elif step is P.RESTART_HOLD:
            self._restart_hold(now)
        elif step is P.ESTABLISH:
            assert self.negotiated is not None
            self._established_transitions += 1
            actions.append(Established(self.negotiated))
        elif step is P.DELIVER_UPDATE:
            if ctx.update is not None:
                self._updates_in += 1
                actions.append(UpdateReceived(ctx.update))
        elif step is P.DELIVER_ROUTE_REFRESH:
            if ctx.refresh is not None:
                actions.append(RouteRefreshReceived(ctx.refresh))
        elif step is P.SEND_CEASE:
            # RFC 4486 subcodes; RFC 9003 shutdown communication on subcodes 2 and 4.
            if ctx.cease_subcode in _SHUTDOWN_TEXT_SUBCODES:
                self._notify(Notification.shutdown(ctx.cease_subcode, ctx.cease_message), actions)
            else:
                notification = Notification(ErrorCode.CEASE, ctx.cease_subcode, ctx.cease_data)
                self._notify(notification, actions)
        elif step is P.SEND_COLLISION_CEASE:
            self._notify(
                Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION),
                actions,
            )
        elif step is P.SEND_HOLD_EXPIRED:
            self._notify(Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0), actions)
        elif step is P.SEND_MESSAGE_ERROR:
            error = ctx.error
            assert error is not None
            self._notify(Notification(error.code, error.subcode, error.data), actions)
        elif step is P.SEND_FSM_ERROR:
            subcode = _FSM_SUBCODE.get(self.state, FsmSubcode.UNSPECIFIED)
            self._notify(Notification(ErrorCode.FSM, subcode), actions)
        elif step is P.NOTE_NOTIFICATION:
            pass  # the received NOTIFICATION travels in ctx.received to the Down action
        elif step is P.CLOSE:
            self._connected = False
            self._deadlines.pop(Timer.HOLD, None)
            self._deadlines.pop(Timer.KEEPALIVE, None)
            self._keepalive_interval = 0.0
            actions.append(CloseTransport())
        else:  # pragma: no cover - the enum is closed
            raise AssertionError(step)

    def _restart_hold(self, now: float) -> None:
        hold = self.negotiated.hold_time if self.negotiated is not None else 0
        if hold > 0:
            self._deadlines[Timer.HOLD] = now + hold
        else:
            self._deadlines.pop(Timer.HOLD, None)


def incoming_config(config: SessionConfig) -> SessionConfig:
    """The config of a second, peer-initiated connection during a collision (§6.8): it only
    answers, and it does not restart on its own."""
    return replace(config, passive=True, automatic_restart=False, connect_delay_time=0.0)
