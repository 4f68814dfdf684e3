"""Collision rules (RFC 4271 §6.8) as pure functions: which of two connections to close."""

from __future__ import annotations

import pytest

from bgpd.session import Direction, State, connection_to_close
from bgpd.session.collision import Age, same_direction_to_close

BEFORE_ESTABLISHED = [State.CONNECT, State.ACTIVE, State.OPEN_SENT, State.OPEN_CONFIRM]


def test_the_newcomer_is_closed_when_the_older_same_direction_connection_is_established() -> None:
    """Rule 4, RFC 4271 §6.8: a collision with an Established connection closes the new one."""
    assert same_direction_to_close(State.ESTABLISHED) is Age.NEWER


@pytest.mark.parametrize("older", BEFORE_ESTABLISHED)
def test_the_older_same_direction_connection_is_closed_before_established(older: State) -> None:
    """Rule 4: the peer reconnected, so it has given up on the connection that lingers."""
    assert same_direction_to_close(older) is Age.OLDER


def test_opposite_directions_keep_the_established_one_as_the_same_direction_rule_does() -> None:
    """Rules 2 and 4 agree: whichever way the connections were opened, Established stays."""
    states = {Direction.INCOMING: State.ESTABLISHED, Direction.OUTGOING: State.OPEN_CONFIRM}
    assert connection_to_close(states, 9, 65000, 1, 65000) is Direction.OUTGOING
    assert same_direction_to_close(State.ESTABLISHED) is Age.NEWER
