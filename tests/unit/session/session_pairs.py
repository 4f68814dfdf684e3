"""Two sessions wired in memory (aioquic ``client_and_server``, h11 ``ConnectionPair``).

Rules:
1. No sockets and no clock: ``Pair.now`` is the one fake time, advanced by ``advance``.
2. ``Connect`` from one side reaches the other as Event 17 and comes back as Event 16, unless
   the link is ``cut``; ``Send`` bytes are delivered to the other side; ``CloseTransport``
   reaches the other side as Event 18.
3. Every action either side emits is recorded in ``seen`` for assertions.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bgpd.session import (
    Action,
    CloseTransport,
    Connect,
    DataReceived,
    Input,
    ManualStart,
    Send,
    Session,
    SessionConfig,
    State,
    TcpConnectionAcknowledged,
    TcpConnectionConfirmed,
    TcpConnectionFails,
)
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.codec import decode_message
from bgpd.wire.framer import Framer
from bgpd.wire.messages import Keepalive, Message, Notification, Open, RouteRefresh, Update
from bgpd.wire.negotiated import Negotiated

A_ADDR = ipaddress.ip_address("192.0.2.1")
B_ADDR = ipaddress.ip_address("192.0.2.2")


def make_config(local_as: int = 65001, peer_as: Any = 65002, **overrides: Any) -> SessionConfig:
    values: dict[str, Any] = {
        "local_as": local_as,
        "peer_as": peer_as,
        "router_id": ipaddress.IPv4Address("10.0.0.1"),
        "peer_address": B_ADDR,
        "hold_time": 9,
        "connect_delay_time": 0.0,
        "connect_retry_time": 5.0,
        "error_wait_min": 1.0,
        "error_wait_max": 8.0,
    }
    values.update(overrides)
    return SessionConfig(**values)


def decode_sent(data: bytes) -> list[Message]:
    """Every message in ``data`` (tests only look at OPEN/KEEPALIVE/NOTIFICATION/UPDATE)."""
    cache = AttributeCache()
    return [decode_message(t, body, Negotiated(), cache) for t, body in Framer(65535).feed(data)]


def sent_messages(actions: list[Action]) -> list[Message]:
    out: list[Message] = []
    for action in actions:
        if isinstance(action, Send):
            out += decode_sent(action.data)
    return out


def notifications(actions: list[Action]) -> list[Notification]:
    return [m for m in sent_messages(actions) if isinstance(m, Notification)]


@dataclass
class Pair:
    a: Session
    b: Session
    now: float = 0.0
    cut: bool = False
    seen: dict[str, list[Action]] = field(default_factory=lambda: {"a": [], "b": []})
    _queue: deque[tuple[str, Input]] = field(default_factory=deque)

    def side(self, name: str) -> Session:
        return self.a if name == "a" else self.b

    def other(self, name: str) -> str:
        return "b" if name == "a" else "a"

    def feed(self, name: str, event: Input) -> None:
        self._queue.append((name, event))
        self.settle()

    def settle(self, max_steps: int = 200) -> None:
        steps = 0
        while self._queue:
            steps += 1
            assert steps < max_steps, "pair did not settle"
            name, event = self._queue.popleft()
            self._run(name, self.side(name).handle(event, self.now))

    def _run(self, name: str, actions: list[Action]) -> None:
        self.seen[name] += actions
        peer = self.other(name)
        for action in actions:
            if isinstance(action, Connect):
                if self.cut or self.side(peer).state is State.IDLE:
                    self._queue.append((name, TcpConnectionFails("refused")))
                else:
                    self._queue.append((peer, TcpConnectionConfirmed()))
                    self._queue.append((name, TcpConnectionAcknowledged()))
            elif isinstance(action, Send) and not self.cut:
                self._queue.append((peer, DataReceived(action.data)))
            elif isinstance(action, CloseTransport) and not self.cut:
                if self.side(peer).connected:
                    self._queue.append((peer, TcpConnectionFails("closed by peer")))

    def advance(self, seconds: float) -> None:
        """Move the fake clock, firing each side's timers in deadline order."""
        target = self.now + seconds
        while True:
            deadlines = [
                (d, n) for n in ("a", "b") if (d := self.side(n).next_deadline()) is not None
            ]
            due = [item for item in deadlines if item[0] <= target]
            if not due:
                break
            when, name = min(due)
            self.now = max(self.now, when)
            self._run(name, self.side(name).handle_timer(self.now))
            self.settle()
        self.now = target

    def start(self) -> None:
        self.feed("b", ManualStart())
        self.feed("a", ManualStart())


def session_pair(
    a_config: SessionConfig | None = None, b_config: SessionConfig | None = None
) -> Pair:
    """A is active (AS 65001, id 10.0.0.1); B passive (AS 65002, id 10.0.0.2)."""
    a = Session(a_config or make_config())
    b = Session(
        b_config
        or make_config(
            local_as=65002,
            peer_as=65001,
            router_id=ipaddress.IPv4Address("10.0.0.2"),
            peer_address=A_ADDR,
            passive=True,
        )
    )
    return Pair(a, b)


__all__ = [
    "Keepalive",
    "Open",
    "Pair",
    "RouteRefresh",
    "Update",
    "decode_sent",
    "make_config",
    "notifications",
    "sent_messages",
    "session_pair",
]
