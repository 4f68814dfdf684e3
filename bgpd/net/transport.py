"""One configured peer on asyncio: TCP connections <-> ``bgpd.session.Session``.

Rules:
1. One task per peer (``PeerRunner.run``) owns the peer's sessions and processes one input at a
   time from its inbox: bytes read, connects, accepted connections, the timer, sends from the
   routing core, stop requests. It re-arms ONE timer at the sessions' earliest deadline
   (aioquic ``transmit``), and yields to the loop after each input: a backlog of reads (a full
   table arriving) is taken one read per loop turn, so the routing and kernel tasks keep pace.
2. Reader and connect tasks only post to the inbox; they never touch a session.
3. Writes go to the stream and are drained when the buffer passes a high-water mark; the core's
   ``send`` returns after that drain (backpressure). A write stuck longer than the hold time
   counts as a failed connection.
4. Collisions (RFC 4271 §6.8): a peer-initiated connection arriving while the primary session
   has one runs in a second session; ``collision.connection_to_close`` picks the loser, which
   gets OpenCollisionDump. The survivor is the primary.
5. Isolation: an exception while processing an input is logged and resets this peer only;
   ``CancelledError`` always propagates.
6. One INFO log line per state change, with the reason token.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from bgpd.net.sockopts import apply_session_options, outgoing_socket
from bgpd.session import (
    Action,
    CloseTransport,
    Connect,
    DataReceived,
    Direction,
    Down,
    Established,
    Input,
    ManualStart,
    ManualStop,
    OpenCollisionDump,
    OpenReceived,
    RouteRefreshReceived,
    Send,
    Session,
    SessionConfig,
    State,
    StateChanged,
    TcpConnectionAcknowledged,
    TcpConnectionConfirmed,
    TcpConnectionFails,
    UpdateReceived,
    connection_to_close,
    incoming_config,
)
from bgpd.session.config import PeerKey
from bgpd.session.fsm import SessionStatistics
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.constants import CeaseSubcode
from bgpd.wire.negotiated import Negotiated, open_asn

PeerEvent = Established | Down | UpdateReceived | RouteRefreshReceived
EventHandler = Callable[[PeerKey, PeerEvent], Awaitable[None]]

READ_SIZE = 65536
HIGH_WATER = 256 * 1024
CRASH_RESTART_DELAY = 1.0
DEFAULT_WRITE_TIMEOUT = 30.0

log = structlog.get_logger("bgpd.net")


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    direction: Direction
    read_task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class _Accepted:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass(frozen=True, slots=True)
class _Connected:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass(frozen=True, slots=True)
class _ConnectFailed:
    error: str


@dataclass(frozen=True, slots=True)
class _FromConnection:
    connection: _Connection
    event: Input


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


@dataclass(frozen=True, slots=True)
class _Outgoing:
    messages: list[bytes]
    prefixes: int
    done: asyncio.Future[bool]


@dataclass(frozen=True, slots=True)
class _Stop:
    stop: ManualStop
    restart: bool
    done: asyncio.Future[None]


_Item = _Accepted | _Connected | _ConnectFailed | _FromConnection | _Tick | _Outgoing | _Stop


@dataclass(frozen=True, slots=True)
class PeerStatistics:
    """What ``show protocols`` and the metrics need about one peer."""

    peer: PeerKey
    name: str
    state: State
    since: float  # wall-clock seconds (time.time) of the last state change
    last_error: str | None  # Down token: reason, then the NOTIFICATION's token
    messages_in: int
    messages_out: int
    updates_in: int
    updates_out: int
    prefixes_in: int
    prefixes_out: int
    established_transitions: int
    idle_hold_time: float  # the last IdleHoldTime (RFC 4271 §8.1.1 DampPeerOscillations)
    notification_text: str | None = None  # RFC 9003 shutdown communication, if any
    negotiated: Negotiated | None = None  # the primary session's, while it is Established


@dataclass(slots=True)
class _Totals:
    messages_in: int = 0
    messages_out: int = 0
    updates_in: int = 0
    updates_out: int = 0
    established: int = 0

    def add(self, stats: SessionStatistics) -> None:
        self.messages_in += stats.messages_in
        self.messages_out += stats.messages_out
        self.updates_in += stats.updates_in
        self.updates_out += stats.updates_out
        self.established += stats.established_transitions


@dataclass(slots=True)
class _Counters:
    prefixes_in: int = 0
    prefixes_out: int = 0
    last_error: str | None = None
    notification_text: str | None = None
    retired: _Totals = field(default_factory=_Totals)


class PeerRunner:
    """Drives one peer's sessions and connections. ``run()`` is its task."""

    def __init__(
        self,
        config: SessionConfig,
        on_event: EventHandler,
        *,
        cache: AttributeCache | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._on_event = on_event
        self._cache = cache if cache is not None else AttributeCache()
        self._rng = rng or random.Random()
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._wall_offset = time.time() - self._loop.time()
        self._log = log.bind(peer=str(config.key), name=config.name or None)
        self._counters = _Counters()
        self._timer: asyncio.TimerHandle | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._connections: dict[int, _Connection] = {}  # id(session) -> its connection
        self.primary = self._new_session(config)
        self.secondary: Session | None = None
        self._stopped = False

    @property
    def key(self) -> PeerKey:
        return self.config.key

    def _new_session(self, config: SessionConfig) -> Session:
        jitter = lambda: self._rng.uniform(0.75, 1.0)  # noqa: E731  RFC 4271 §10
        return Session(config, cache=self._cache, jitter=jitter)

    # ---- API for the supervisor and the listener ----

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Hand over a connection the peer opened to us."""
        self._inbox.put_nowait(_Accepted(reader, writer))

    async def send(self, messages: list[bytes], prefixes: int = 0) -> bool:
        """Send encoded UPDATEs; False when the session is not Established."""
        done: asyncio.Future[bool] = self._loop.create_future()
        self._inbox.put_nowait(_Outgoing(messages, prefixes, done))
        return await done

    async def stop(
        self, subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, message: str = ""
    ) -> None:
        """ManualStop with an RFC 4486 subcode: the session stays down."""
        await self._request_stop(ManualStop(subcode, message), restart=False)

    async def reset(
        self, subcode: int = CeaseSubcode.ADMINISTRATIVE_RESET, message: str = ""
    ) -> None:
        """ManualStop then ManualStart (a hard reset of the session)."""
        await self._request_stop(ManualStop(subcode, message), restart=True)

    async def _request_stop(self, stop: ManualStop, restart: bool) -> None:
        done: asyncio.Future[None] = self._loop.create_future()
        self._inbox.put_nowait(_Stop(stop, restart, done))
        await done

    def statistics(self) -> PeerStatistics:
        sessions = [self.primary] + ([self.secondary] if self.secondary else [])
        retired = self._counters.retired
        totals = _Totals(
            retired.messages_in,
            retired.messages_out,
            retired.updates_in,
            retired.updates_out,
            retired.established,
        )
        for session in sessions:
            totals.add(session.statistics())
        primary = self.primary.statistics()
        return PeerStatistics(
            peer=self.key,
            name=self.config.name,
            state=self.primary.state,
            since=self.primary.since + self._wall_offset,
            last_error=self._counters.last_error,
            messages_in=totals.messages_in,
            messages_out=totals.messages_out,
            updates_in=totals.updates_in,
            updates_out=totals.updates_out,
            prefixes_in=self._counters.prefixes_in,
            prefixes_out=self._counters.prefixes_out,
            established_transitions=totals.established,
            idle_hold_time=primary.idle_hold_time,
            notification_text=self._counters.notification_text,
            negotiated=self.primary.negotiated,
        )

    # ---- the task ----

    async def run(self) -> None:
        """Start the session and process inputs until cancelled."""
        try:
            await self._run_session(self.primary, ManualStart())
            self._rearm()
            while True:
                item = await self._inbox.get()
                try:
                    await self._process(item)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self._log.exception("session crashed; resetting this peer only")
                    await self._crash_reset()
                self._rearm()
                await asyncio.sleep(0)
        finally:
            self._teardown()

    async def _crash_reset(self) -> None:
        self._teardown()
        self._retire(self.primary)
        if self.secondary is not None:
            self._retire(self.secondary)
        self.secondary = None
        self._counters.last_error = "internal-error"
        crashed, self.primary = self.primary, self._new_session(self.config)
        self.primary.promote(self.config, crashed)  # keep the peer's backoff (§8.1.1)
        await asyncio.sleep(CRASH_RESTART_DELAY)
        if not self._stopped:
            await self._run_session(self.primary, ManualStart())

    def _teardown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        for connection in list(self._connections.values()):
            self._close_connection(connection)
        self._connections.clear()

    def _retire(self, session: Session) -> None:
        self._counters.retired.add(session.statistics())

    def _rearm(self) -> None:
        deadlines = [
            d for s in (self.primary, self.secondary) if s and (d := s.next_deadline()) is not None
        ]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadlines:
            self._timer = self._loop.call_at(min(deadlines), self._inbox.put_nowait, _Tick())

    async def _process(self, item: _Item) -> None:
        now = self._loop.time()
        if isinstance(item, _Tick):
            for session in (self.primary, self.secondary):
                if session is not None:
                    await self._execute(session, session.handle_timer(now))
        elif isinstance(item, _FromConnection):
            session = self._session_of(item.connection)
            if session is not None:
                await self._run_session(session, item.event)
        elif isinstance(item, _Connected):
            await self._connected(item)
        elif isinstance(item, _ConnectFailed):
            self._connect_task = None
            if self.primary.state is State.CONNECT and not self.primary.connected:
                self._log_connect_failure(item.error)
                await self._run_session(self.primary, TcpConnectionFails(item.error))
        elif isinstance(item, _Accepted):
            await self._accepted(item)
        elif isinstance(item, _Outgoing):
            await self._outgoing(item)
        elif isinstance(item, _Stop):
            await self._stop(item)
        await self._after_step()

    def _log_connect_failure(self, error: str) -> None:
        if self.config.md5_password:
            # RFC 2385: the kernel drops segments with a wrong or missing signature, so a
            # password mismatch shows up only as a connect that never completes.
            self._log.warning(
                "connect failed; TCP-MD5 is configured, check the password on both sides",
                error=error,
                reason="tcp-md5-connect-failed",
            )
        else:
            self._log.info("connect failed", error=error, reason="connect-failed")

    async def _run_session(self, session: Session, event: Input) -> None:
        await self._execute(session, session.handle(event, self._loop.time()))

    def _session_of(self, connection: _Connection) -> Session | None:
        for session in (self.primary, self.secondary):
            if session is not None and self._connections.get(id(session)) is connection:
                return session
        return None

    # ---- inputs ----

    async def _connected(self, item: _Connected) -> None:
        self._connect_task = None
        primary = self.primary
        if primary.state is not State.CONNECT or id(primary) in self._connections:
            item.writer.close()  # a late connect that lost a race with an incoming one
            return
        self._attach(primary, _Connection(item.reader, item.writer, Direction.OUTGOING))
        await self._run_session(primary, TcpConnectionAcknowledged())

    async def _accepted(self, item: _Accepted) -> None:
        sock = item.writer.get_extra_info("socket")
        if sock is not None:
            apply_session_options(sock, self.config)
        connection = _Connection(item.reader, item.writer, Direction.INCOMING)
        primary = self.primary
        if id(primary) not in self._connections:
            if self._connect_task is not None:
                self._connect_task.cancel()
                self._connect_task = None
            self._attach(primary, connection)
            await self._run_session(primary, TcpConnectionConfirmed())
            return
        if self.secondary is not None:
            self._log.info("third connection refused", reason="connection-collision")
            item.writer.close()
            return
        # RFC 4271 §6.8: track the second connection in its own FSM until OPENs decide.
        self.secondary = self._new_session(incoming_config(self.config))
        self._attach(self.secondary, connection)
        await self._run_session(self.secondary, ManualStart())
        await self._run_session(self.secondary, TcpConnectionConfirmed())

    async def _outgoing(self, item: _Outgoing) -> None:
        session = self.primary
        actions = session.send_messages(item.messages, self._loop.time())
        if not actions:
            item.done.set_result(False)
            return
        self._counters.prefixes_out += item.prefixes
        await self._execute(session, actions)
        connection = self._connections.get(id(session))
        if connection is not None:
            await self._drain(session, connection)
        if not item.done.done():
            item.done.set_result(True)

    async def _stop(self, item: _Stop) -> None:
        self._stopped = not item.restart
        for session in (self.secondary, self.primary):
            if session is not None:
                await self._run_session(session, item.stop)
        if item.restart:
            if self.secondary is not None:
                self._retire(self.secondary)
                self.secondary = None
            await self._run_session(self.primary, ManualStart())
        item.done.set_result(None)

    # ---- actions ----

    async def _execute(self, session: Session, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                connection = self._connections.get(id(session))
                if connection is not None and not connection.writer.is_closing():
                    connection.writer.write(action.data)
            elif isinstance(action, Connect):
                self._start_connect()
            elif isinstance(action, CloseTransport):
                self._detach(session)
            elif isinstance(action, StateChanged):
                self._log_state(session, action)
            elif isinstance(action, OpenReceived):
                pass  # collisions are checked after every step (_after_step)
            else:
                await self._deliver(session, action)
        connection = self._connections.get(id(session))
        if connection is not None:
            await self._drain(session, connection)

    async def _drain(self, session: Session, connection: _Connection) -> None:
        transport = connection.writer.transport
        if transport.is_closing() or transport.get_write_buffer_size() < HIGH_WATER:
            return
        hold = session.negotiated.hold_time if session.negotiated else 0
        try:
            await asyncio.wait_for(connection.writer.drain(), hold or DEFAULT_WRITE_TIMEOUT)
        except (TimeoutError, ConnectionError) as error:
            self._inbox.put_nowait(
                _FromConnection(connection, TcpConnectionFails(f"write stalled: {error!r}"))
            )

    async def _deliver(self, session: Session, action: Action) -> None:
        if isinstance(action, Down):
            self._counters.last_error = action.token
            if action.notification is not None:
                self._counters.notification_text = action.notification.shutdown_message
            self._log.info(
                "session down",
                reason=action.reason.value,
                notification=action.notification.token if action.notification else None,
                sent=action.notification_sent,
                shutdown_message=(
                    action.notification.shutdown_message if action.notification else None
                ),
            )
            if not action.was_established:
                return
        elif isinstance(action, UpdateReceived):
            update = action.update
            self._counters.prefixes_in += sum(len(a.prefixes) for a in update.announced)
        if isinstance(action, Established | Down | UpdateReceived | RouteRefreshReceived):
            await self._on_event(self.key, action)

    def _log_state(self, session: Session, change: StateChanged) -> None:
        self._log.info(
            "state change",
            previous=change.previous.value,
            state=change.current.value,
            reason=change.cause,
            connection="secondary" if session is self.secondary else "primary",
        )

    # ---- collisions (RFC 4271 §6.8) ----

    async def _after_step(self) -> None:
        secondary = self.secondary
        if secondary is None:
            return
        primary = self.primary
        if secondary.state is State.IDLE:
            self._retire(secondary)
            self.secondary = None
            return
        if primary.state is State.IDLE:
            self._promote(secondary)
            return
        first = self._connections.get(id(primary))
        second = self._connections.get(id(secondary))
        if first is None or second is None:
            return
        peer_open = primary.peer_open or secondary.peer_open
        if first.direction is second.direction:
            # The peer opened a new connection while its old one lingers: keep the newest,
            # unless the old one is Established (RFC 4271 §6.8).
            loser = secondary if primary.state is State.ESTABLISHED else primary
        else:
            states = {first.direction: primary.state, second.direction: secondary.state}
            closing = connection_to_close(
                states,
                self.config.bgp_id,
                self.config.local_as,
                peer_open.bgp_id if peer_open else None,
                open_asn(peer_open) if peer_open else 0,
            )
            if closing is None:
                return
            loser = primary if closing is first.direction else secondary
        self._log.info("connection collision", closing="primary" if loser is primary else "new")
        await self._run_session(loser, OpenCollisionDump())
        await self._after_step()

    def _promote(self, survivor: Session) -> None:
        self._retire(self.primary)
        survivor.promote(self.config, self.primary)
        self.primary = survivor
        self.secondary = None

    # ---- connections ----

    def _start_connect(self) -> None:
        if self._connect_task is not None:
            self._connect_task.cancel()
        self._connect_task = asyncio.create_task(self._connect(), name=f"connect {self.key}")

    async def _connect(self) -> None:
        config = self.config
        try:
            sock = outgoing_socket(config)
            try:
                await asyncio.wait_for(
                    self._loop.sock_connect(sock, (str(config.peer_address), config.port)),
                    max(config.connect_retry_time, 1.0),
                )
                reader, writer = await asyncio.open_connection(sock=sock)
            except BaseException:
                sock.close()
                raise
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError) as error:
            self._inbox.put_nowait(_ConnectFailed(repr(error)))
            return
        self._inbox.put_nowait(_Connected(reader, writer))

    def _attach(self, session: Session, connection: _Connection) -> None:
        sock = connection.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections[id(session)] = connection
        connection.read_task = asyncio.create_task(
            self._read(connection), name=f"read {self.key} {connection.direction.value}"
        )

    def _detach(self, session: Session) -> None:
        connection = self._connections.pop(id(session), None)
        if connection is not None:
            self._close_connection(connection)
        elif session is self.primary and self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
            self._log_connect_failure("no answer before the connect retry timer expired")

    @staticmethod
    def _close_connection(connection: _Connection) -> None:
        if connection.read_task is not None and connection.read_task is not asyncio.current_task():
            connection.read_task.cancel()
        connection.writer.close()  # flushes what was written (a NOTIFICATION) first

    async def _read(self, connection: _Connection) -> None:
        try:
            while True:
                data = await connection.reader.read(READ_SIZE)
                if not data:
                    detail = "closed by peer"
                    break
                self._inbox.put_nowait(_FromConnection(connection, DataReceived(data)))
        except asyncio.CancelledError:
            raise
        except OSError as error:
            detail = repr(error)
        self._inbox.put_nowait(_FromConnection(connection, TcpConnectionFails(detail)))
