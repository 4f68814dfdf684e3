"""Why a session fell to Idle: stable kebab-case tokens shared by logs, statistics and metrics.

Rules:
1. A token never changes once released; add members, never rename (GoBGP ``fsmStateReason``).
2. The token says who ended the session and why; the NOTIFICATION itself (if any) travels beside
   it in ``Down`` with its own ``error_name`` token.
"""

from __future__ import annotations

from enum import Enum


class DownReason(Enum):
    """The cause of a fall to Idle (RFC 4271 §8.2.2 rows that end in Idle)."""

    ADMINISTRATIVE_STOP = "administrative-stop"  # ManualStop (Event 2)
    AUTOMATIC_STOP = "automatic-stop"  # AutomaticStop (Event 8)
    HOLD_TIMER_EXPIRED = "hold-timer-expired"  # Event 10
    CONNECTION_LOST = "connection-lost"  # TcpConnectionFails (Event 18)
    NOTIFICATION_RECEIVED = "notification-received"  # Events 24, 25
    MESSAGE_ERROR = "message-error"  # Events 21, 22, 28: we sent the codec's NOTIFICATION
    FSM_ERROR = "fsm-error"  # an event the state does not allow (RFC 6608)
    CONNECTION_COLLISION = "connection-collision"  # OpenCollisionDump (Event 23), RFC 4271 §6.8
    CONNECTION_REFUSED = "connection-refused"  # an incoming connection while Idle

    def __str__(self) -> str:
        return self.value
