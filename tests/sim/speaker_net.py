"""An in-memory network of ``Speaker`` cores with one fake clock (design/style-anchors.md §9.5).

Rules:
1. A ``connect`` link is simply Established: each side's ``Negotiated`` comes from
   ``bgpd.wire.negotiated.negotiate`` over the two OPENs the nodes would send, and every
   message a node's speaker has for a peer (``PeerHasOutput``, then ``take``) is framed,
   decoded with the receiver's codec context and fed to the receiver, so the wire format is
   exercised end to end.
2. A ``wire`` link runs the real sans-IO session FSM (``bgpd.session.Session``) on both ends
   over an in-memory connection: OPEN, KEEPALIVE and the hold timer are the RFC 4271 ones, and
   the session's actions reach the speaker as the daemon passes them (``Daemon.peer_event``).
   ``cut`` drops a wire's bytes silently (a partition: no FIN), so only the hold timer notices.
3. Time moves only in ``advance``, which stops at every speaker and session deadline on the way,
   so keepalives are sent and delivered before a later hold deadline is judged.
4. Each node's kernel view is the last ``BestChanged`` per prefix.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field

from bgpd.rib.graceful_restart import SelectionDeferral, local_capability
from bgpd.rib.route import NextHopMode, Path
from bgpd.session import (
    Action,
    CloseTransport,
    Connect,
    DataReceived,
    Down,
    Established,
    ManualStart,
    RouteRefreshReceived,
    Send,
    Session,
    SessionConfig,
    TcpConnectionAcknowledged,
    TcpConnectionConfirmed,
    TcpConnectionFails,
    UpdateReceived,
)
from bgpd.speaker import (
    BestChanged,
    PeerHasOutput,
    PeerSettings,
    RibConverged,
    Speaker,
    SpeakerConfig,
)
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.capabilities import (
    EnhancedRouteRefresh,
    FourOctetAs,
    Multiprotocol,
    RouteRefresh,
)
from bgpd.wire.codec import decode_message
from bgpd.wire.constants import MessageType
from bgpd.wire.framer import Framer
from bgpd.wire.messages import Open, Update
from bgpd.wire.messages import RouteRefresh as RouteRefreshMessage
from bgpd.wire.negotiated import Negotiated, negotiate, two_octet_as
from bgpd.wire.types import IPV4_UNICAST, Family, PathAttributes, Prefix, prefix_from_str


@dataclass
class Node:
    name: str
    address: ipaddress.IPv4Address
    asn: int
    speaker: Speaker
    cache: AttributeCache
    kernel: dict[tuple[Family, Prefix], tuple[Path, ...]] = field(default_factory=dict)
    converged: int = 0
    received: list[bytes] = field(default_factory=list)

    @property
    def router_id(self) -> int:
        return int(self.address)

    def open_message(self, graceful_restart: bool, restarting: bool = False) -> Open:
        caps: list[object] = [
            Multiprotocol(IPV4_UNICAST),
            RouteRefresh(),
            EnhancedRouteRefresh(),
            FourOctetAs(self.asn),
        ]
        if graceful_restart:
            caps.append(local_capability([IPV4_UNICAST], 120, restarting, True))
        return Open(two_octet_as(self.asn), 90, self.router_id, tuple(caps))  # type: ignore[arg-type]

    def best(self, prefix: str) -> Path | None:
        return self.speaker.loc_rib(IPV4_UNICAST).best(prefix_from_str(prefix))

    def installed(self, prefix: str) -> tuple[Path, ...]:
        return self.kernel.get((IPV4_UNICAST, prefix_from_str(prefix)), ())

    def originate(self, *prefixes: str, now: float = 0.0, **attrs: object) -> None:
        routes = {prefix_from_str(p): PathAttributes(**attrs) for p in prefixes}  # type: ignore[arg-type]
        self.speaker.set_local_routes({IPV4_UNICAST: routes}, now)


@dataclass
class Link:
    a: str
    b: str
    negotiated: dict[str, Negotiated]


@dataclass
class Wire:
    """One in-memory TCP connection between two session FSMs (rule 2)."""

    sessions: dict[str, Session]
    settings: dict[str, PeerSettings]
    cut: bool = False

    def other(self, name: str) -> str:
        (other,) = set(self.sessions) - {name}
        return other


class SpeakerNet:
    """Nodes, links, a fake clock, and a pump that moves messages until nothing moves."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.links: dict[frozenset[str], Link] = {}
        self.wires: dict[frozenset[str], Wire] = {}
        self.now = 0.0

    def add(
        self,
        name: str,
        address: str,
        asn: int = 64512,
        cluster_id: int | None = None,
        restarting: SelectionDeferral | None = None,
    ) -> Node:
        addr = ipaddress.IPv4Address(address)
        cache = AttributeCache()
        config = SpeakerConfig(router_id=int(addr), local_as=asn, cluster_id=cluster_id)
        node = Node(name, addr, asn, Speaker(config, cache, restarting), cache)
        self.nodes[name] = node
        return node

    def connect(
        self,
        a: str,
        b: str,
        client_of: str | None = None,
        graceful_restart: bool = True,
        next_hop_mode: NextHopMode = NextHopMode.AUTO,
    ) -> None:
        """Bring up a session; ``client_of`` names the side for which the other is an RR
        client."""
        na, nb = self.nodes[a], self.nodes[b]
        open_a, open_b = na.open_message(graceful_restart), nb.open_message(graceful_restart)
        negotiated = {a: negotiate(open_a, open_b), b: negotiate(open_b, open_a)}
        self.links[frozenset((a, b))] = Link(a, b, negotiated)
        for me, other in ((na, nb), (nb, na)):
            settings = self._settings(me, other, client_of, next_hop_mode)
            me.speaker.peer_up(other.name, settings, negotiated[me.name], self.now)

    def _settings(
        self, me: Node, other: Node, client_of: str | None, next_hop_mode: NextHopMode
    ) -> PeerSettings:
        return PeerSettings(
            address=other.address,
            peer_as=other.asn,
            rr_client=client_of == me.name,
            next_hop_mode=next_hop_mode,
            next_hop_self={IPV4_UNICAST: me.address.packed},
        )

    def wire(self, a: str, b: str, hold_time: int = 9) -> Wire:
        """A session-driven link (rule 2): ``a`` connects, ``b`` listens; both advertise graceful
        restart. Sessions do not restart on their own once down."""
        na, nb = self.nodes[a], self.nodes[b]
        sessions: dict[str, Session] = {}
        for me, other in ((na, nb), (nb, na)):
            config = SessionConfig(
                local_as=me.asn,
                peer_as=other.asn,
                router_id=me.address,
                peer_address=other.address,
                hold_time=hold_time,
                connect_delay_time=0.0,
                passive=me is nb,
                automatic_restart=False,
                graceful_restart_forwarding=True,
            )
            sessions[me.name] = Session(config, cache=me.cache)
        settings = {
            a: self._settings(na, nb, None, NextHopMode.AUTO),
            b: self._settings(nb, na, None, NextHopMode.AUTO),
        }
        wire = self.wires[frozenset((a, b))] = Wire(sessions, settings)
        for name in (b, a):
            self._run_session(wire, name, sessions[name].handle(ManualStart(), self.now))
        self.run()
        return wire

    def cut(self, name: str) -> None:
        """Partition ``name`` from every node it has a wire to (rule 2)."""
        for key, wire in self.wires.items():
            if name in key:
                wire.cut = True

    def _run_session(self, wire: Wire, name: str, actions: list[Action]) -> None:
        """Carry out session actions: bytes and closes cross the wire, the routing events go to
        the speaker as ``Daemon.peer_event`` passes them."""
        queue = deque([(name, actions)])
        while queue:
            me, todo = queue.popleft()
            other = wire.other(me)
            session, speaker = wire.sessions[me], self.nodes[me].speaker
            for action in todo:
                if isinstance(action, Connect):
                    if wire.cut:
                        queue.append((me, session.handle(TcpConnectionFails(), self.now)))
                        continue
                    queue.append((me, session.handle(TcpConnectionAcknowledged(), self.now)))
                    peer_session = wire.sessions[other]
                    queue.append((other, peer_session.handle(TcpConnectionConfirmed(), self.now)))
                elif isinstance(action, Send) and not wire.cut:
                    received = wire.sessions[other].handle(DataReceived(action.data), self.now)
                    queue.append((other, received))
                elif isinstance(action, CloseTransport) and not wire.cut:
                    queue.append(
                        (other, wire.sessions[other].handle(TcpConnectionFails(), self.now))
                    )
                elif isinstance(action, Established):
                    speaker.peer_up(other, wire.settings[me], action.negotiated, self.now)
                elif isinstance(action, Down) and action.was_established:
                    speaker.peer_down(other, graceful=action.notification is None, now=self.now)
                elif isinstance(action, UpdateReceived):
                    speaker.update_received(other, action.update, self.now)
                elif isinstance(action, RouteRefreshReceived):
                    speaker.route_refresh_received(other, action.refresh, self.now)

    def crash(self, name: str) -> None:
        """``name`` stops without a NOTIFICATION: its neighbours see a graceful peer down."""
        for key in [k for k in self.links if name in k]:
            (other,) = key - {name}
            del self.links[key]
            self.nodes[other].speaker.peer_down(name, True, self.now)

    def advance(self, seconds: float) -> None:
        """Move the clock by ``seconds``, stopping at every deadline on the way (rule 3)."""
        end = self.now + seconds
        for _ in range(100_000):
            due = [d for d in self._deadlines() if d <= end]
            if not due:
                break
            self.now = max(self.now, min(due))
            self._fire_timers()
        else:
            raise AssertionError("timers keep firing without the clock moving")
        self.now = end
        self._fire_timers()

    def _deadlines(self) -> list[float]:
        found = [node.speaker.next_deadline() for node in self.nodes.values()]
        found += [s.next_deadline() for w in self.wires.values() for s in w.sessions.values()]
        return [d for d in found if d is not None]

    def _fire_timers(self) -> None:
        for node in self.nodes.values():
            node.speaker.timer(self.now)
        for wire in self.wires.values():
            for name, session in wire.sessions.items():
                self._run_session(wire, name, session.handle_timer(self.now))
        self.run()

    def run(self, max_rounds: int = 50) -> int:
        """Pump until quiet; returns the number of messages delivered."""
        delivered = 0
        for _ in range(max_rounds):
            moved = 0
            for node in list(self.nodes.values()):
                for output in node.speaker.drain():
                    if isinstance(output, BestChanged):
                        key = (output.family, output.prefix)
                        if output.best is None:
                            node.kernel.pop(key, None)
                        else:
                            node.kernel[key] = output.ecmp
                    elif isinstance(output, RibConverged):
                        node.converged += 1
                    elif isinstance(output, PeerHasOutput):
                        messages = node.speaker.take(output.peer_id)
                        moved += len(messages)
                        wire = self.wires.get(frozenset((node.name, output.peer_id)))
                        if wire is None:
                            self._deliver(node.name, output.peer_id, messages)
                        else:
                            session = wire.sessions[node.name]
                            sent = session.send_messages(messages, self.now)
                            self._run_session(wire, node.name, sent)
            delivered += moved
            if not moved:
                return delivered
        raise AssertionError("network did not settle")

    def _deliver(self, sender: str, receiver: str, messages: list[bytes]) -> None:
        link = self.links.get(frozenset((sender, receiver)))
        if link is None:
            return
        node = self.nodes[receiver]
        negotiated = link.negotiated[receiver]
        framer = Framer(max_length=negotiated.max_message_len)
        for msg_type, body in framer.feed(b"".join(messages)):
            node.received.append(body)
            message = decode_message(msg_type, body, negotiated, node.cache)
            if msg_type == MessageType.UPDATE:
                assert isinstance(message, Update)
                node.speaker.update_received(sender, message, self.now)
            elif msg_type == MessageType.ROUTE_REFRESH:
                assert isinstance(message, RouteRefreshMessage)
                node.speaker.route_refresh_received(sender, message, self.now)

    def restart(self, name: str, deferral: SelectionDeferral | None = None) -> Node:
        """Replace ``name``'s core by a fresh one, as after a daemon restart (links stay down)."""
        old = self.nodes[name]
        fresh = self.add(name, str(old.address), old.asn, old.speaker.config.cluster_id, deferral)
        fresh.kernel = old.kernel  # the kernel keeps what was installed before the restart
        return fresh
