"""Two sessions wired in memory: establish, exchange UPDATEs, expire, collide, back off."""

from __future__ import annotations

import ipaddress
from collections import deque

from session_pairs import A_ADDR, B_ADDR, make_config, notifications, session_pair

from bgpd.session import (
    Action,
    CloseTransport,
    DataReceived,
    Direction,
    Down,
    DownReason,
    Established,
    Input,
    ManualStart,
    ManualStop,
    OpenCollisionDump,
    RouteRefreshReceived,
    Send,
    Session,
    State,
    TcpConnectionAcknowledged,
    TcpConnectionConfirmed,
    TcpConnectionFails,
    UpdateReceived,
    connection_to_close,
    incoming_config,
)
from bgpd.wire.constants import CeaseSubcode, ErrorCode
from bgpd.wire.messages import RouteRefresh
from bgpd.wire.types import (
    IPV4_UNICAST,
    AsPathSegment,
    PathAttributes,
    next_hop_from_str,
    prefix_from_str,
)
from bgpd.wire.update import encode_updates, encode_withdrawals


def _downs(actions: list[Action]) -> list[Down]:
    return [a for a in actions if isinstance(a, Down)]


def test_establish() -> None:
    pair = session_pair()
    pair.start()
    assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED
    assert sum(isinstance(x, Established) for x in pair.seen["a"]) == 1
    assert sum(isinstance(x, Established) for x in pair.seen["b"]) == 1


def test_keepalives_hold_the_session_up() -> None:
    pair = session_pair()
    pair.start()
    pair.advance(60)  # many hold times of 9 s
    assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED
    assert pair.a.statistics().messages_in >= 60 / 3


def test_update_exchange() -> None:
    pair = session_pair()
    pair.start()
    assert pair.a.negotiated is not None
    # An external peer's AS leads the AS_PATH (RFC 4271 §5.1.2; checked per §6.3).
    as_path = (AsPathSegment(2, (65001,)),)
    attrs = PathAttributes(as_path=as_path, next_hop=next_hop_from_str("192.0.2.1"))
    prefixes = [prefix_from_str("10.1.0.0/24"), prefix_from_str("10.2.0.0/16")]
    messages = encode_updates(IPV4_UNICAST, attrs, prefixes, pair.a.negotiated)
    pair._run("a", pair.a.send_messages(messages, pair.now))
    pair.settle()
    received = [x.update for x in pair.seen["b"] if isinstance(x, UpdateReceived)]
    assert [sorted(ann.prefixes) for u in received for ann in u.announced] == [sorted(prefixes)]
    withdraw = encode_withdrawals(IPV4_UNICAST, prefixes[:1], pair.a.negotiated)
    pair._run("a", pair.a.send_messages(withdraw, pair.now))
    pair.settle()
    received = [x.update for x in pair.seen["b"] if isinstance(x, UpdateReceived)]
    assert [w.prefixes for w in received[-1].withdrawn] == [prefixes[:1]]
    assert pair.a.statistics().updates_out == 2 and pair.b.statistics().updates_in == 2


def test_route_refresh_is_delivered() -> None:
    pair = session_pair()
    pair.start()
    from bgpd.wire.messages import encode_route_refresh

    pair.feed("b", DataReceived(encode_route_refresh(RouteRefresh(IPV4_UNICAST))))
    assert any(isinstance(x, RouteRefreshReceived) for x in pair.seen["b"])


def test_send_messages_outside_established_sends_nothing() -> None:
    session = Session(make_config())
    assert session.send_messages([b"x"], 0.0) == []


def test_hold_timer_expiry_then_recovery_with_backoff() -> None:
    pair = session_pair()
    pair.start()
    pair.cut = True
    pair.advance(9.5)
    downs = _downs(pair.seen["a"])
    assert [d.reason for d in downs] == [DownReason.HOLD_TIMER_EXPIRED]
    assert downs[0].was_established and downs[0].notification_sent
    assert downs[0].notification is not None
    assert downs[0].notification.code == ErrorCode.HOLD_TIMER_EXPIRED
    pair.cut = False
    pair.advance(20)
    assert pair.a.state is State.ESTABLISHED and pair.b.state is State.ESTABLISHED
    assert pair.a.statistics().established_transitions == 2


def test_manual_stop_sends_cease_with_shutdown_text_and_stays_down() -> None:
    pair = session_pair()
    pair.start()
    pair.feed("a", ManualStop(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "maintenance window"))
    note = notifications(pair.seen["a"])[-1]
    assert note.shutdown_message == "maintenance window"
    b_down = _downs(pair.seen["b"])[-1]
    assert b_down.reason is DownReason.NOTIFICATION_RECEIVED
    assert b_down.notification is not None
    assert b_down.notification.token == "cease/administrative-shutdown"
    pair.advance(60)
    assert pair.a.state is State.IDLE  # ManualStop: no automatic restart
    assert pair.b.state is State.ACTIVE  # the passive side waits again


def test_idle_hold_backs_off_exponentially_for_a_flapping_peer() -> None:
    """§8.1.1 DampPeerOscillations: 1, 2, 4, 8, 8 s (min 1, max 8 in make_config)."""
    session = Session(make_config())
    now = 0.0
    session.handle(ManualStart(), now)
    waits = []
    for _ in range(5):
        session.handle(TcpConnectionAcknowledged(), now)
        session.handle(TcpConnectionFails(), now)  # OpenSent -> Active
        session.handle(TcpConnectionFails(), now)  # Active -> Idle (counted failure)
        assert session.state is State.IDLE
        deadline = session.next_deadline()
        assert deadline is not None
        waits.append(deadline - now)
        now = deadline
        session.handle_timer(now)
        assert session.state is State.CONNECT
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_jitter_shortens_keepalive_within_rfc_bounds() -> None:
    a = Session(make_config(), jitter=lambda: 0.8)
    pair = session_pair()
    pair.a = a
    pair.start()
    deadline = a.next_deadline()
    assert deadline is not None and abs(deadline - (pair.now + 3 * 0.8)) < 1e-9


# ---- collision (RFC 4271 §6.8) ----


class Mesh:
    """Sessions joined by in-memory links; each link is a (session, session) pair."""

    def __init__(self) -> None:
        self.links: list[tuple[Session, Session]] = []
        self.queue: deque[tuple[Session, Input]] = deque()
        self.seen: dict[int, list[Action]] = {}

    def peer_of(self, session: Session) -> Session:
        for x, y in self.links:
            if session is x:
                return y
            if session is y:
                return x
        raise KeyError

    def feed(self, session: Session, event: Input) -> None:
        self.queue.append((session, event))

    def settle(self, on_step: object = None) -> None:
        while self.queue:
            session, event = self.queue.popleft()
            actions = session.handle(event, 0.0)
            self.seen.setdefault(id(session), []).extend(actions)
            for action in actions:
                if isinstance(action, Send):
                    self.queue.append((self.peer_of(session), DataReceived(action.data)))
                elif isinstance(action, CloseTransport):
                    other = self.peer_of(session)
                    if other.connected:
                        self.queue.append((other, TcpConnectionFails()))
            if callable(on_step):
                on_step()


def _resolve(local: dict[Direction, Session], mesh: Mesh) -> None:
    """The supervisor's job: once a peer id is known, dump the losing connection."""
    states = {d: s.state for d, s in local.items() if s.state is not State.IDLE}
    peer_ids = [s.peer_id for s in local.values() if s.peer_id is not None]
    any_session = next(iter(local.values()))
    config = any_session.config
    loser = connection_to_close(
        states, config.bgp_id, config.local_as, peer_ids[0] if peer_ids else None, 65000
    )
    if loser is not None:
        mesh.feed(local[loser], OpenCollisionDump())


def test_simultaneous_connects_keep_the_higher_identifier_connection() -> None:
    a_cfg = make_config(local_as=65000, peer_as=65000, router_id=ipaddress.IPv4Address("10.0.0.9"))
    b_cfg = make_config(
        local_as=65000,
        peer_as=65000,
        router_id=ipaddress.IPv4Address("10.0.0.2"),
        peer_address=A_ADDR,
    )
    a_out, b_out = Session(a_cfg), Session(b_cfg)
    a_in, b_in = Session(incoming_config(a_cfg)), Session(incoming_config(b_cfg))
    mesh = Mesh()
    mesh.links = [(a_out, b_in), (b_out, a_in)]
    for session in (a_out, b_out, a_in, b_in):
        mesh.feed(session, ManualStart())
    # Both connect at once: each outgoing connect is accepted by the other's incoming session.
    mesh.feed(a_out, TcpConnectionAcknowledged())
    mesh.feed(b_in, TcpConnectionConfirmed())
    mesh.feed(b_out, TcpConnectionAcknowledged())
    mesh.feed(a_in, TcpConnectionConfirmed())
    a_side = {Direction.OUTGOING: a_out, Direction.INCOMING: a_in}
    b_side = {Direction.OUTGOING: b_out, Direction.INCOMING: b_in}
    resolved = {"a": False, "b": False}

    def detect() -> None:
        for name, side in (("a", a_side), ("b", b_side)):
            if not resolved[name] and any(s.peer_id is not None for s in side.values()):
                resolved[name] = True
                _resolve(side, mesh)

    mesh.settle(detect)
    assert B_ADDR  # the A side's peer
    # A has the higher identifier: the connection A initiated survives on both ends.
    assert a_out.state is State.ESTABLISHED and b_in.state is State.ESTABLISHED
    assert a_in.state is State.IDLE and b_out.state is State.IDLE
    dumped = _downs(mesh.seen[id(a_in)]) + _downs(mesh.seen[id(b_out)])
    assert DownReason.CONNECTION_COLLISION in {d.reason for d in dumped}
    sent = notifications(mesh.seen[id(a_in)]) + notifications(mesh.seen[id(b_out)])
    assert any(
        n.code == ErrorCode.CEASE and n.subcode == CeaseSubcode.CONNECTION_COLLISION_RESOLUTION
        for n in sent
    )


def test_collision_with_an_established_connection_closes_the_newcomer() -> None:
    states = {Direction.OUTGOING: State.ESTABLISHED, Direction.INCOMING: State.OPEN_CONFIRM}
    assert connection_to_close(states, 1, 65000, 2, 65000) is Direction.INCOMING


def test_collision_undecided_without_peer_identifier() -> None:
    states = {Direction.OUTGOING: State.OPEN_SENT, Direction.INCOMING: State.OPEN_SENT}
    assert connection_to_close(states, 1, 65000, None, 65000) is None


def test_collision_equal_identifiers_broken_by_as() -> None:
    states = {Direction.OUTGOING: State.OPEN_CONFIRM, Direction.INCOMING: State.OPEN_CONFIRM}
    assert connection_to_close(states, 5, 65010, 5, 65001) is Direction.INCOMING
    assert connection_to_close(states, 5, 65001, 5, 65010) is Direction.OUTGOING
