"""Sans-IO BGP sessions: the RFC 4271 §8 FSM, its timers, OPEN checks and collision rules.

Rules:
1. Pure: imports ``bgpd.wire`` only (never ``bgpd.rib``), no IO, no clock.
2. The public API is re-exported here.
"""

from __future__ import annotations

from bgpd.session.collision import Direction, connection_to_close
from bgpd.session.config import BGP_PORT, PeerAsKind, PeerKey, SessionConfig
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
from bgpd.session.fsm import TRANSITIONS, Session, SessionStatistics, incoming_config
from bgpd.session.reasons import DownReason

__all__ = [
    "BGP_PORT",
    "TRANSITIONS",
    "Action",
    "AutomaticStart",
    "AutomaticStop",
    "CloseTransport",
    "Connect",
    "DataReceived",
    "Direction",
    "Down",
    "DownReason",
    "Established",
    "Event",
    "Input",
    "ManualStart",
    "ManualStop",
    "OpenCollisionDump",
    "OpenReceived",
    "PeerAsKind",
    "PeerKey",
    "RouteRefreshReceived",
    "Send",
    "Session",
    "SessionConfig",
    "SessionStatistics",
    "State",
    "StateChanged",
    "TcpConnectionAcknowledged",
    "TcpConnectionConfirmed",
    "TcpConnectionFails",
    "Timer",
    "TimerExpired",
    "UpdateReceived",
    "connection_to_close",
    "incoming_config",
]
