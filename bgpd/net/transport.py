"""One configured peer on asyncio: TCP connections <-> ``bgpd.session.Session``.

Rules:
1. One task per peer (``PeerRunner.run``) owns the peer's sessions and processes one input at a
   time from its inbox, a FIFO: bytes read, connects, accepted connections, the timer, sends
   from the routing core, stop requests. Processing an input never awaits. After each input it
   re-arms ONE timer at the sessions' earliest deadline, keeping the armed handle while that
   deadline does not move (aioquic ``asyncio/protocol.py``), and yields to the loop: a backlog
   of reads (a full table arriving) is taken one read per loop turn, so the routing and kernel
   tasks keep pace.
2. Every other task of a peer (its connect, one reader per connection, one drain watch per
   connection whose writes are above HIGH_WATER) belongs to the runner's own TaskGroup, ends
   with ``run``, and only posts to the inbox; none touches a session. They catch the socket
   errors they expect; anything else ends ``run`` and, through the supervisor's TaskGroup,
   the daemon.
3. Bounded input, so TCP flow control reaches a fast peer: a reader takes one of READS_AHEAD
   credits before each read of at most READ_SIZE octets, and the runner returns it once that
   read is processed (its events handed to the routing core). With no credit left the reader
   stops reading; asyncio's stream reader pauses the socket once it holds more than
   2 x STREAM_LIMIT octets, and the kernel's receive window closes. A peer's unprocessed input
   in our memory is therefore at most, per connection, READS_AHEAD x READ_SIZE (256 KiB, the
   read being delivered included) plus 2 x STREAM_LIMIT + 256 KiB (the stream reader's pause
   mark and one recv of asyncio's selector transport, its ``max_size``, past it: 384 KiB), so
   640 KiB, plus the decoded events of the one read being delivered; a peer has at most two
   connections attached (rule 5). Control inputs take no credit and wait only for the inbox
   order: the timer posts one tick per arming, a connect one result, and every send or stop
   caller one item that it awaits.
4. Bounded output, pulled by the routing core: ``send`` takes one batch at a time per peer (a
   lock), writes it and returns once the socket's buffer is below HIGH_WATER again (asyncio's
   drain); False when the session is not Established. The runner itself never waits for a
   drain: it keeps reading while a send waits, so two speakers sending to each other cannot
   deadlock on their drains. For a peer
   that stops reading we hold at most HIGH_WATER + one batch in flight in the transport's
   buffer, plus what the kernel's socket send buffer takes; a write stuck above HIGH_WATER
   for longer than the hold time (DEFAULT_WRITE_TIMEOUT before one is negotiated) counts as a
   failed connection, so the session falls within the hold time.
5. Collisions (RFC 4271 §6.8): a peer-initiated connection arriving while the primary session
   has one runs in a second session; ``collision.connection_to_close`` (opposite directions)
   or ``collision.same_direction_to_close`` (the peer reconnected) picks the loser, which gets
   OpenCollisionDump. The survivor is the primary. A third connection is refused.
6. The exception boundary follows blame (architecture §1.6): an exception while the session,
   codec or transport processes an input is the peer's fault; it is logged, this peer alone is
   reset (a routing core that was told Established gets a Down) and restarts after
   CRASH_RESTART_DELAY. Events for the routing core are collected during the input and handed
   to ``on_event`` after it, outside that boundary: an exception there is the core's and ends
   ``run`` (and the supervisor's TaskGroup). ``CancelledError`` always propagates.
7. One INFO log line per state change, with the reason token.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from bgpd.log import debug_enabled
from bgpd.net.sockopts import apply_session_options, outgoing_socket
from bgpd.session import (
    Action,
    AutomaticStop,
    CloseTransport,
    Connect,
    DataReceived,
    Direction,
    Down,
    DownReason,
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
from bgpd.session.collision import Age, same_direction_to_close
from bgpd.session.config import PeerKey
from bgpd.session.fsm import SessionStatistics
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.constants import CeaseSubcode
from bgpd.wire.negotiated import Negotiated, open_asn

PeerEvent = Established | Down | UpdateReceived | RouteRefreshReceived
EventHandler = Callable[[PeerKey, PeerEvent], Awaitable[None]]

READ_SIZE = 65536  # octets per read from a connection
READS_AHEAD = 4  # reads per connection taken from the socket and not yet processed (rule 3)
STREAM_LIMIT = 65536  # asyncio's stream reader pauses the socket above twice this
HIGH_WATER = 256 * 1024
CRASH_RESTART_DELAY = 1.0
DEFAULT_WRITE_TIMEOUT = 30.0

log = structlog.get_logger("bgpd.net")

_T = TypeVar("_T")


@dataclass(eq=False, slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    direction: Direction
    # One credit per read that may be taken from the socket before the runner processed it.
    read_credits: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(READS_AHEAD))
    read_task: asyncio.Task[None] | None = None
    drain_task: asyncio.Task[None] | None = None
    # Sends waiting for the write buffer to fall below HIGH_WATER (at most one, rule 4).
    drain_waiters: list[asyncio.Future[bool]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Start:
    pass


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
    stop: ManualStop | AutomaticStop
    restart: bool
    done: asyncio.Future[None]


_Item = (
    _Start | _Accepted | _Connected | _ConnectFailed | _FromConnection | _Tick | _Outgoing | _Stop
)


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


def _resolve(future: asyncio.Future[_T], value: _T) -> None:
    """Complete a caller's future unless the caller gave up (cancelled) first."""
    if not future.done():
        future.set_result(value)


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
        self._inbox.put_nowait(_Start())  # first, before any connection handed over
        self._loop = asyncio.get_running_loop()
        self._wall_offset = time.time() - self._loop.time()
        self._log = log.bind(peer=str(config.key), name=config.name or None)
        self._counters = _Counters()
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: asyncio.TaskGroup | None = None  # the runner's own, while run() runs
        self._connect_task: asyncio.Task[None] | None = None
        self._connections: dict[int, _Connection] = {}  # id(session) -> its connection
        self._send_lock = asyncio.Lock()  # one batch in flight per peer (rule 4)
        self._for_core: list[PeerEvent] = []  # events of the current input, for on_event
        self._core_told_up = False  # the core saw Established and no Down since
        self.primary = self._new_session(config)
        self.secondary: Session | None = None
        self._stopped = False  # stopped for good: a crash does not restart it
        self._finished = False  # run() has ended: nothing processes the inbox any more

    @property
    def key(self) -> PeerKey:
        return self.config.key

    def _new_session(self, config: SessionConfig) -> Session:
        jitter = lambda: self._rng.uniform(0.75, 1.0)  # noqa: E731  RFC 4271 §10
        return Session(config, cache=self._cache, jitter=jitter)

    # ---- API for the supervisor and the listener ----

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Hand over a connection the peer opened to us."""
        if self._finished:
            writer.close()
            return
        self._inbox.put_nowait(_Accepted(reader, writer))

    async def send(self, messages: list[bytes], prefixes: int = 0) -> bool:
        """Send encoded UPDATEs: returns once they are written and the socket's buffer is below
        HIGH_WATER; False when the session is not Established. One batch at a time (rule 4)."""
        async with self._send_lock:
            if self._finished:
                return False
            self._log.debug("updates sent", messages=len(messages), prefixes=prefixes)
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

    async def stop_automatically(self, stop: AutomaticStop) -> None:
        """AutomaticStop (Event 8): Cease with its data; the session restarts after its idle
        time (a maximum prefix count reached, RFC 4486 §4)."""
        await self._request_stop(stop, restart=False)

    async def _request_stop(self, stop: ManualStop | AutomaticStop, restart: bool) -> None:
        if self._finished:
            return
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
        """Start the session and process inputs until cancelled. An exception raised by
        ``on_event`` (the routing core) propagates (rule 6)."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                try:
                    while True:
                        item = await self._inbox.get()
                        crashed = self._step(item)
                        self._rearm()
                        await self._report()
                        self._settle(item)
                        if crashed:
                            await asyncio.sleep(CRASH_RESTART_DELAY)
                            self._inbox.put_nowait(_Start())
                        await asyncio.sleep(0)
                finally:
                    self._close_all()
        finally:
            self._finish()

    def _step(self, item: _Item) -> bool:
        """Process one input inside the peer's fault boundary (rule 6); True if it crashed."""
        try:
            self._process(item)
        except Exception:
            self._log.exception("session crashed; resetting this peer only")
            self._crash()
            if isinstance(item, _Outgoing):
                _resolve(item.done, False)
            return True
        return False

    async def _report(self) -> None:
        """Hand the input's events to the routing core, outside the peer's boundary (rule 6)."""
        events, self._for_core = self._for_core, []
        for event in events:
            await self._on_event(self.key, event)

    @staticmethod
    def _settle(item: _Item) -> None:
        """After the core has the input's events: the read's credit goes back to its reader
        (rule 3) and a stop is answered (so its Down reached the core first)."""
        if isinstance(item, _FromConnection) and isinstance(item.event, DataReceived):
            item.connection.read_credits.release()
        elif isinstance(item, _Stop):
            _resolve(item.done, None)

    def _crash(self) -> None:
        self._close_all()
        self._retire(self.primary)
        if self.secondary is not None:
            self._retire(self.secondary)
        self.secondary = None
        self._counters.last_error = "internal-error"
        crashed, self.primary = self.primary, self._new_session(self.config)
        self.primary.promote(self.config, crashed)  # keep the peer's backoff (§8.1.1)
        if self._core_told_up:
            # The crashed session never reported its fall; it closed without a NOTIFICATION.
            self._queue_for_core(Down(DownReason.CONNECTION_LOST, was_established=True))

    def _close_all(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        for connection in list(self._connections.values()):
            self._close_connection(connection)
        self._connections.clear()

    def _finish(self) -> None:
        """``run`` has ended: release whoever still waits on an input nobody will process."""
        self._finished = True
        self._tasks = None
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if isinstance(item, _Outgoing):
                _resolve(item.done, False)
            elif isinstance(item, _Stop):
                _resolve(item.done, None)
            elif isinstance(item, _Accepted | _Connected):
                item.writer.close()

    def _retire(self, session: Session) -> None:
        self._counters.retired.add(session.statistics())

    def _rearm(self) -> None:
        deadline = min(
            (
                d
                for s in (self.primary, self.secondary)
                if s is not None and (d := s.next_deadline()) is not None
            ),
            default=None,
        )
        if self._timer is not None:
            if self._timer.when() == deadline:
                return  # armed for the same instant: keep the handle
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._inbox.put_nowait(_Tick())

    def _process(self, item: _Item) -> None:
        now = self._loop.time()
        if isinstance(item, _Tick):
            for session in (self.primary, self.secondary):
                if session is not None:
                    self._execute(session, session.handle_timer(now))
        elif isinstance(item, _FromConnection):
            session = self._session_of(item.connection)
            if session is not None:
                self._run_session(session, item.event)
        elif isinstance(item, _Start):
            if not self._stopped:
                self._run_session(self.primary, ManualStart())
        elif isinstance(item, _Connected):
            self._connected(item)
        elif isinstance(item, _ConnectFailed):
            self._connect_task = None
            if self.primary.state is State.CONNECT and not self.primary.connected:
                self._log_connect_failure(item.error)
                self._run_session(self.primary, TcpConnectionFails(item.error))
        elif isinstance(item, _Accepted):
            self._accepted(item)
        elif isinstance(item, _Outgoing):
            self._outgoing(item)
        elif isinstance(item, _Stop):
            self._stop(item)
        self._after_step()

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

    def _run_session(self, session: Session, event: Input) -> None:
        self._execute(session, session.handle(event, self._loop.time()))

    def _session_of(self, connection: _Connection) -> Session | None:
        for session in (self.primary, self.secondary):
            if session is not None and self._connections.get(id(session)) is connection:
                return session
        return None

    # ---- inputs ----

    def _connected(self, item: _Connected) -> None:
        self._connect_task = None
        primary = self.primary
        if primary.state is not State.CONNECT or id(primary) in self._connections:
            item.writer.close()  # a late connect that lost a race with an incoming one
            return
        self._attach(primary, _Connection(item.reader, item.writer, Direction.OUTGOING))
        self._run_session(primary, TcpConnectionAcknowledged())

    def _accepted(self, item: _Accepted) -> None:
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
            self._run_session(primary, TcpConnectionConfirmed())
            return
        if self.secondary is not None:
            self._log.info("third connection refused", reason="connection-collision")
            item.writer.close()
            return
        # RFC 4271 §6.8: track the second connection in its own FSM until OPENs decide.
        self.secondary = self._new_session(incoming_config(self.config))
        self._attach(self.secondary, connection)
        self._run_session(self.secondary, ManualStart())
        self._run_session(self.secondary, TcpConnectionConfirmed())

    def _outgoing(self, item: _Outgoing) -> None:
        session = self.primary
        actions = session.send_messages(item.messages, self._loop.time())
        if not actions:
            _resolve(item.done, False)
            return
        self._counters.prefixes_out += item.prefixes
        self._execute(session, actions)
        connection = self._connections.get(id(session))
        if connection is not None and connection.drain_task is not None:
            connection.drain_waiters.append(item.done)  # answered once below HIGH_WATER
        else:
            _resolve(item.done, True)

    def _stop(self, item: _Stop) -> None:
        self._stopped = not item.restart and isinstance(item.stop, ManualStop)
        for session in (self.secondary, self.primary):
            if session is not None:
                self._run_session(session, item.stop)
        if item.restart:
            if self.secondary is not None:
                self._retire(self.secondary)
                self.secondary = None
            self._run_session(self.primary, ManualStart())

    # ---- actions ----

    def _execute(self, session: Session, actions: list[Action]) -> None:
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
                self._note(action)
        connection = self._connections.get(id(session))
        if connection is not None:
            self._watch_writes(session, connection)

    def _watch_writes(self, session: Session, connection: _Connection) -> None:
        """Rule 4: once the write buffer passes HIGH_WATER, wait for it to drain beside the
        runner; a drain that takes longer than the hold time fails the connection."""
        transport = connection.writer.transport
        if (
            connection.drain_task is not None
            or transport.is_closing()
            or transport.get_write_buffer_size() < HIGH_WATER
        ):
            return
        hold = session.negotiated.hold_time if session.negotiated else 0
        connection.drain_task = self._owned_task(
            self._drain(connection, hold or DEFAULT_WRITE_TIMEOUT),
            f"drain {self.key} {connection.direction.value}",
        )

    async def _drain(self, connection: _Connection, timeout: float) -> None:
        try:
            await asyncio.wait_for(connection.writer.drain(), timeout)
        except (TimeoutError, ConnectionError) as error:
            self._inbox.put_nowait(
                _FromConnection(connection, TcpConnectionFails(f"write stalled: {error!r}"))
            )
        finally:
            connection.drain_task = None
            self._release_drain_waiters(connection)

    @staticmethod
    def _release_drain_waiters(connection: _Connection) -> None:
        waiters, connection.drain_waiters = connection.drain_waiters, []
        for waiter in waiters:
            _resolve(waiter, True)  # written; a failed connection reports its own Down

    def _note(self, action: Action) -> None:
        """Count and log what the session reports, and queue the core's events (rule 6)."""
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
                data=action.notification.data.hex() if action.notification else None,
            )
            if not action.was_established:
                return
        elif isinstance(action, UpdateReceived):
            update = action.update
            announced = sum(len(a.prefixes) for a in update.announced)
            self._counters.prefixes_in += announced
            if debug_enabled():
                self._log.debug(
                    "update received",
                    announced=announced,
                    withdrawn=sum(len(w.prefixes) for w in update.withdrawn),
                    end_of_rib=str(update.end_of_rib) if update.end_of_rib else None,
                )
        if isinstance(action, Established | Down | UpdateReceived | RouteRefreshReceived):
            self._queue_for_core(action)

    def _queue_for_core(self, event: PeerEvent) -> None:
        if isinstance(event, Established):
            self._core_told_up = True
        elif isinstance(event, Down):
            self._core_told_up = False
        self._for_core.append(event)

    def _log_state(self, session: Session, change: StateChanged) -> None:
        self._log.info(
            "state change",
            previous=change.previous.value,
            state=change.current.value,
            reason=change.cause,
            connection="secondary" if session is self.secondary else "primary",
        )

    # ---- collisions (RFC 4271 §6.8) ----

    def _after_step(self) -> None:
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
        if first.direction is second.direction:
            # The primary's connection is the older one: the secondary came with a later accept.
            closing_age = same_direction_to_close(primary.state)
            loser = primary if closing_age is Age.OLDER else secondary
        else:
            peer_open = primary.peer_open or secondary.peer_open
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
        self._run_session(loser, OpenCollisionDump())
        self._after_step()

    def _promote(self, survivor: Session) -> None:
        self._retire(self.primary)
        survivor.promote(self.config, self.primary)
        self.primary = survivor
        self.secondary = None

    # ---- connections and the runner's tasks (rule 2) ----

    def _owned_task(self, work: Coroutine[None, None, None], name: str) -> asyncio.Task[None]:
        assert self._tasks is not None, "the runner's tasks start only while run() runs"
        return self._tasks.create_task(work, name=name)

    def _start_connect(self) -> None:
        if self._connect_task is not None:
            self._connect_task.cancel()
        self._connect_task = self._owned_task(self._connect(), f"connect {self.key}")

    async def _connect(self) -> None:
        config = self.config
        try:
            sock = outgoing_socket(config)
            try:
                await asyncio.wait_for(
                    self._loop.sock_connect(sock, (str(config.peer_address), config.port)),
                    max(config.connect_retry_time, 1.0),
                )
                reader, writer = await asyncio.open_connection(sock=sock, limit=STREAM_LIMIT)
            except BaseException:
                sock.close()
                raise
        except OSError as error:  # TimeoutError included
            self._inbox.put_nowait(_ConnectFailed(repr(error)))
            return
        self._inbox.put_nowait(_Connected(reader, writer))

    def _attach(self, session: Session, connection: _Connection) -> None:
        sock = connection.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections[id(session)] = connection
        connection.read_task = self._owned_task(
            self._read(connection), f"read {self.key} {connection.direction.value}"
        )

    def _detach(self, session: Session) -> None:
        connection = self._connections.pop(id(session), None)
        if connection is not None:
            self._close_connection(connection)
        elif session is self.primary and self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
            self._log_connect_failure("no answer before the connect retry timer expired")

    def _close_connection(self, connection: _Connection) -> None:
        for task in (connection.read_task, connection.drain_task):
            if task is not None:
                task.cancel()
        self._release_drain_waiters(connection)
        connection.writer.close()  # flushes what was written (a NOTIFICATION) first

    async def _read(self, connection: _Connection) -> None:
        """Rule 3: one credit per read; the runner gives it back once the read is processed."""
        detail = "closed by peer"
        try:
            while True:
                await connection.read_credits.acquire()
                data = await connection.reader.read(READ_SIZE)
                if not data:
                    break
                self._inbox.put_nowait(_FromConnection(connection, DataReceived(data)))
        except OSError as error:
            detail = repr(error)
        self._inbox.put_nowait(_FromConnection(connection, TcpConnectionFails(detail)))
