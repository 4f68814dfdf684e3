"""Connection collision resolution (RFC 4271 §6.8).

Rules:
1. Two connections to the same peer: the one initiated by the speaker with the higher BGP
   Identifier survives (RFC 4271 §6.8). Equal identifiers (allowed between different ASes,
   RFC 6286 §2.3) are broken by the larger AS number.
2. An Established connection is kept and the newcomer closed (RFC 4271 §6.8, last paragraph:
   CollisionDetectEstablishedState is FALSE).
3. Resolution needs the peer's identifier, known once either connection has received an OPEN.
4. Two connections opened by the same side (the peer reconnects while its old connection
   lingers): the identifier rule cannot choose, as one speaker initiated both. An Established
   older connection is kept and the newcomer closed (RFC 4271 §6.8, as in rule 2); otherwise the
   older one is closed, because the side that opened a new connection has given up on it (a
   restarted peer's old connection stays half-open until our hold timer would notice).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from bgpd.session.events import State


class Direction(Enum):
    """Who opened a connection."""

    OUTGOING = "outgoing"
    INCOMING = "incoming"

    @property
    def other(self) -> Direction:
        return Direction.INCOMING if self is Direction.OUTGOING else Direction.OUTGOING


class Age(Enum):
    """Which of two connections opened by the same side came first."""

    OLDER = "older"
    NEWER = "newer"


def local_wins(local_id: int, local_as: int, peer_id: int, peer_as: int) -> bool:
    """True when our identifier is the higher one (RFC 4271 §6.8, RFC 6286 §2.3)."""
    if local_id != peer_id:
        return local_id > peer_id
    return local_as > peer_as


def connection_to_close(
    states: Mapping[Direction, State],
    local_id: int,
    local_as: int,
    peer_id: int | None,
    peer_as: int,
) -> Direction | None:
    """Which of two simultaneous connections to close, or None while it cannot be decided yet.

    ``states`` holds the FSM state of each connection; ``peer_id`` is the identifier from the
    first OPEN received on either of them.
    """
    if len(states) < 2:
        return None
    for direction, state in states.items():
        if state is State.ESTABLISHED:
            return direction.other
    if peer_id is None:
        return None
    keep = (
        Direction.OUTGOING
        if local_wins(local_id, local_as, peer_id, peer_as)
        else Direction.INCOMING
    )
    return keep.other


def same_direction_to_close(older: State) -> Age:
    """Which of two connections opened by the same side to close (rule 4): the newcomer when
    the older one is Established (RFC 4271 §6.8), else the older one. ``older`` is the FSM
    state of the connection that came first."""
    return Age.NEWER if older is State.ESTABLISHED else Age.OLDER
