"""AutomaticStop with RFC 4486 data and its own idle time (the maximum prefix guardrail)."""

from __future__ import annotations

from session_pairs import notifications, session_pair

from bgpd.session import AutomaticStop, State
from bgpd.session.events import Timer
from bgpd.wire.constants import CeaseSubcode, ErrorCode

DATA = bytes.fromhex("00010100000003")  # AFI 1, SAFI 1, upper bound 3 (RFC 4486 §4)


def test_automatic_stop_sends_its_cease_data_and_restarts_after_its_idle_time() -> None:
    pair = session_pair()
    pair.start()
    stop = AutomaticStop(CeaseSubcode.MAXIMUM_PREFIXES_REACHED, data=DATA, idle_time=42.0)
    pair.feed("a", stop)
    note = notifications(pair.seen["a"])[-1]
    assert (note.code, note.subcode, note.data) == (ErrorCode.CEASE, 1, DATA)
    b_note = [
        n for n in (d.notification for d in pair.seen["b"] if hasattr(d, "notification")) if n
    ]
    assert b_note[-1].token == "cease/maximum-prefixes-reached"
    assert pair.a.state is State.IDLE
    assert pair.a.deadlines()[Timer.IDLE_HOLD] == pair.now + 42.0
    pair.advance(41)
    assert pair.a.state is State.IDLE
    pair.advance(10)
    assert pair.a.state is State.ESTABLISHED
