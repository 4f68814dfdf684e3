"""The session's vocabulary: what goes in (RFC 4271 §8.1 events) and what comes out (actions).

Rules:
1. Inputs are the API a driver calls ``Session.handle`` with: administrative events, TCP events,
   timer expiries and raw bytes. The FSM turns bytes into the §8.1.3 message events itself.
2. ``Event`` numbers every event the TRANSITIONS table is keyed on, with the RFC 4271 §8.1 number
   as its value where one exists.
3. Actions are frozen values and carry everything the driver needs: bytes to write, a connect or
   a close request, and the events the routing core consumes (Established, Down, UpdateReceived,
   RouteRefreshReceived). Every action list must be run in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bgpd.session.reasons import DownReason
from bgpd.wire.constants import CeaseSubcode
from bgpd.wire.messages import Notification, Open, RouteRefresh, Update
from bgpd.wire.negotiated import Negotiated


class State(Enum):
    """RFC 4271 §8.2.2 states."""

    IDLE = "idle"
    CONNECT = "connect"
    ACTIVE = "active"
    OPEN_SENT = "open-sent"
    OPEN_CONFIRM = "open-confirm"
    ESTABLISHED = "established"

    def __str__(self) -> str:
        return self.value

    @property
    def bird_name(self) -> str:
        """The state as BIRD's ``show protocols`` and RFC 4271 §8.2.2 spell it: ``OpenSent``."""
        return "".join(word.capitalize() for word in self.value.split("-"))


class Timer(Enum):
    """RFC 4271 §8.1.1 / §10 timers."""

    CONNECT_RETRY = "connect-retry"
    HOLD = "hold"
    KEEPALIVE = "keepalive"
    IDLE_HOLD = "idle-hold"


class Event(Enum):
    """RFC 4271 §8.1 events (value = RFC event number; 100+ are our additions).

    IdleHoldTimer_Expires (13) has no row of its own: with DampPeerOscillations its expiry is
    an AutomaticStart (§8.1.1), which is how ``Session`` maps it."""

    MANUAL_START = 1
    MANUAL_STOP = 2
    AUTOMATIC_START = 3
    MANUAL_START_PASSIVE = 4
    AUTOMATIC_START_PASSIVE = 5
    AUTOMATIC_STOP = 8
    CONNECT_RETRY_TIMER_EXPIRES = 9
    HOLD_TIMER_EXPIRES = 10
    KEEPALIVE_TIMER_EXPIRES = 11
    TCP_CR_ACKED = 16
    TCP_CONNECTION_CONFIRMED = 17
    TCP_CONNECTION_FAILS = 18
    BGP_OPEN = 19
    BGP_HEADER_ERR = 21
    BGP_OPEN_MSG_ERR = 22
    OPEN_COLLISION_DUMP = 23
    NOTIF_MSG_VER_ERR = 24
    NOTIF_MSG = 25
    KEEPALIVE_MSG = 26
    UPDATE_MSG = 27
    UPDATE_MSG_ERR = 28
    ROUTE_REFRESH_MSG = 101  # RFC 2918 §4: a ROUTE-REFRESH, valid only in Established

    @property
    def token(self) -> str:
        return self.name.lower().replace("_", "-")


# ---- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManualStart:
    """Event 1 (or 4 when the session is passive or delays its first connect)."""


@dataclass(frozen=True, slots=True)
class ManualStop:
    """Event 2: Cease with an RFC 4486 subcode and an RFC 9003 shutdown communication."""

    subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN
    message: str = ""


@dataclass(frozen=True, slots=True)
class AutomaticStart:
    """Event 3 (or 5 when passive)."""


@dataclass(frozen=True, slots=True)
class AutomaticStop:
    """Event 8, e.g. maximum prefixes reached (RFC 4486 subcode 1); restarts after idle hold.
    ``data`` is the Cease NOTIFICATION's data (RFC 4486 §4: AFI, SAFI, upper bound);
    ``idle_time`` replaces the idle hold's backoff for this fall."""

    subcode: int = CeaseSubcode.OUT_OF_RESOURCES
    message: str = ""
    data: bytes = b""
    idle_time: float | None = None


@dataclass(frozen=True, slots=True)
class TimerExpired:
    """Events 9, 10 and 11; the idle hold timer's expiry is an AutomaticStart (§8.1.1)."""

    timer: Timer


@dataclass(frozen=True, slots=True)
class TcpConnectionAcknowledged:
    """Event 16: our outgoing connection is up."""


@dataclass(frozen=True, slots=True)
class TcpConnectionConfirmed:
    """Event 17: the peer's incoming connection was accepted."""


@dataclass(frozen=True, slots=True)
class TcpConnectionFails:
    """Event 18: the connection (or the connect attempt) failed or was closed by the peer."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Bytes from the connection; the FSM frames and decodes them (§8.1.3 message events)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class OpenCollisionDump:
    """Event 23: collision resolution (RFC 4271 §6.8) chose to close this connection."""


Input = (
    ManualStart
    | ManualStop
    | AutomaticStart
    | AutomaticStop
    | TimerExpired
    | TcpConnectionAcknowledged
    | TcpConnectionConfirmed
    | TcpConnectionFails
    | DataReceived
    | OpenCollisionDump
)


# ---- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write these bytes (one or more whole messages) to the connection."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Connect:
    """Open an outgoing TCP connection to the peer; answer with Event 16 or 18."""


@dataclass(frozen=True, slots=True)
class CloseTransport:
    """Close the connection (after writing what was sent before this action)."""


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The FSM moved; ``cause`` is the reason token (falls to Idle) or the event token."""

    previous: State
    current: State
    cause: str


@dataclass(frozen=True, slots=True)
class OpenReceived:
    """A valid OPEN arrived: the peer's BGP Identifier is known (collision detection, §6.8)."""

    open: Open


@dataclass(frozen=True, slots=True)
class Established:
    """The session reached Established with this negotiation."""

    negotiated: Negotiated


@dataclass(frozen=True, slots=True)
class Down:
    """The session fell to Idle. Exactly one per fall."""

    reason: DownReason
    notification: Notification | None = None
    notification_sent: bool = False
    was_established: bool = False

    @property
    def token(self) -> str:
        if self.notification is None:
            return self.reason.value
        return f"{self.reason.value}:{self.notification.token}"


@dataclass(frozen=True, slots=True)
class UpdateReceived:
    """A decoded UPDATE (RFC 7606 issues inside it) for the routing core."""

    update: Update


@dataclass(frozen=True, slots=True)
class RouteRefreshReceived:
    """The peer asks us to re-send our Adj-RIB-Out for a family (RFC 2918, RFC 7313)."""

    refresh: RouteRefresh


Action = (
    Send
    | Connect
    | CloseTransport
    | StateChanged
    | OpenReceived
    | Established
    | Down
    | UpdateReceived
    | RouteRefreshReceived
)
