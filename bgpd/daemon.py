"""The composition root: ``bgpd run``. A pump around the pure ``Router`` (bgpd/router.py): one
routing task feeds it from one bounded inbox and executes what it asks for; the edges (datastore,
sessions, kernel, tunnel devices, control socket, metrics, heap trimming) are tasks of one
TaskGroup.

Data flows (../shared/design/architecture.md §3):
  datastore -> Snapshot -> inbox -> calico.node plan -> Router -> DesiredSessions -> Supervisor
                                                              -> TunnelsWanted -> encap.devices
  TCP -> PeerRunner -> Session -> inbox -> Router -> MessagesWaiting -> take -> sender -> TCP
                                                  -> KernelWork -> kernel_batch -> KernelSync
  kernel routes not ours, interface addresses -> RouteWatch -> KernelView -> inbox -> Router
  UDP -> BfdEdge (net/bfd) -> BfdReport levels -> inbox -> Router -> DesiredSessions, kernel
                                      Router -> BfdWanted -> BfdEdge

Rules:
1. One writer: the routing task alone calls the Router's inputs, ``drain`` and pulls. Everything
   else reaches it through one bounded inbox (GoBGP's mgmtCh, made literal): snapshots, reloads,
   session events (a peer task awaits room, so TCP pushes back on a fast peer), BFD levels (the
   newest per peer address, handed over by one task; ``bgpd.bfd.client`` rule 2), and the readiness
   of a peer's sender; the kernel task's readiness is a flag the routing task reads (rule 6),
   with an inbox item only to wake it when idle. The routing task never waits on IO: desired
   sessions and tunnel plans go to their own tasks (the newest wins), a peer's sender gets
   messages only once it wrote its last batch (Router rule 6), the kernel task rounds only when
   it asks.
2. Nothing is advertised, withdrawn or programmed before the first complete snapshot; a
   datastore outage keeps the last one (Router rule 2).
3. SIGHUP reloads the datastore; SIGTERM stops while preserving forwarding (transports close
   without a NOTIFICATION, kernel routes stay); ``stop --withdraw`` ends sessions with
   Cease/Administrative Shutdown and removes our kernel routes. A stop that comes before the
   first snapshot ends the daemon too.
4. A failure in the routing core is a bug, not a peer's fault: the routing task's exception
   ends the TaskGroup and ``bgpd run`` exits non-zero with the traceback. Forwarding survives
   it as it survives SIGTERM (no NOTIFICATION, kernel routes stay; the restart reconciles).
5. Bad configuration that only shows at start (a datastore file that does not read, a control
   socket another daemon serves, a metrics or BGP address that does not bind) raises one
   ``ConfigError`` naming the setting and its value, never a task-group traceback.
6. The routing task yields after a slice of ``ROUTING_SLICE`` prefixes (and the drain that
   plans them), even with the inbox still full: a table streaming in is routed in slices with
   the kernel task's rounds and the peers' reads between them, so kernel writes start at once
   and overlap the decoding and routing of the rest. The kernel task's requests do not queue
   behind UPDATEs: a batch it asks for is handed out at the end of the routing task's turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import structlog

from bgpd import __version__
from bgpd.bfd.client import BfdReport, BfdSpec
from bgpd.calico.bfd import HostFacts, host_facts_of, interface_towards, route_towards
from bgpd.calico.node import NodePlanner
from bgpd.config import ConfigError, DaemonConfig
from bgpd.control.presence import bird_placeholders
from bgpd.control.server import ControlSocketInUse, HealthChecker, serve_control_sockets
from bgpd.datastore.source import DatastoreSource
from bgpd.explain import explanation_json
from bgpd.kernel.learn import KernelView
from bgpd.kernel.netlink import KernelProgrammer
from bgpd.kernel.routewatch import RouteWatch
from bgpd.kernel.sync import BATCH_ROUTES, KernelSync
from bgpd.log import set_level
from bgpd.metrics import Metrics, serve_http
from bgpd.net.bfd import BfdEdge
from bgpd.net.heap import heap_trimmer
from bgpd.net.mailbox import Latest
from bgpd.net.supervisor import Supervisor
from bgpd.net.transport import PeerEvent
from bgpd.router import (
    BfdWanted,
    DesiredSessions,
    KernelWork,
    MessagesWaiting,
    Notice,
    Output,
    Router,
    StopSession,
    TunnelsWanted,
)
from bgpd.session.config import IPAddress, PeerKey, SessionConfig
from bgpd.session.events import Down, Established, UpdateReceived
from bgpd.status import DaemonStatus, PeerStatus, RouteStatus
from bgpd.wire.attributes import AttributeCache
from encap.devices import TunnelReport, converge
from encap.vxlan import TunnelPlan
from peers.model import Snapshot

log = structlog.get_logger("bgpd.daemon")
_T = TypeVar("_T")

INBOX_SIZE = 256  # items waiting for the routing task (rule 1)
ROUTING_SLICE = 16384  # prefixes routed between two turns of the other tasks (rule 6)
LISTEN_RETRY = 5.0  # seconds between tries of a listen address that does not bind yet


@dataclass(frozen=True, slots=True)
class _NewSnapshot:
    snapshot: Snapshot | None  # None: re-apply the last one (a reload of etcd)


@dataclass(frozen=True, slots=True)
class _FromPeer:
    peer: PeerKey
    event: PeerEvent


@dataclass(frozen=True, slots=True)
class _SenderReady:
    peer: PeerKey


@dataclass(frozen=True, slots=True)
class _KernelReady:
    """The kernel task waits for a batch and the routing task was idle (rule 6)."""


@dataclass(frozen=True, slots=True)
class _KernelView:
    view: KernelView


@dataclass(frozen=True, slots=True)
class _BfdLevels:
    reports: Mapping[IPAddress, BfdReport]


_Item = _NewSnapshot | _FromPeer | _SenderReady | _KernelReady | _KernelView | _BfdLevels


class _Senders:
    """One sender task per peer, handed its next messages only once it wrote the last ones
    (Router rule 6): the routing task calls ``feed``; a sender's ``ready`` comes back through
    the inbox."""

    def __init__(
        self,
        router: Router,
        inbox: asyncio.Queue[_Item],
        start: Callable[[Coroutine[None, None, None], str], None],
    ) -> None:
        self.supervisor: Supervisor | None = None
        self._router = router
        self._inbox = inbox
        self._start = start
        self._outboxes: dict[PeerKey, asyncio.Queue[list[bytes]]] = {}
        self._sending: set[PeerKey] = set()

    def feed(self, peer: PeerKey) -> None:
        if peer in self._sending:
            return
        messages = self._router.take(peer)
        if not messages:
            return
        outbox = self._outboxes.get(peer)
        if outbox is None:
            outbox = self._outboxes[peer] = asyncio.Queue(1)
            self._start(self._send(peer, outbox), f"send {peer}")
        self._sending.add(peer)
        outbox.put_nowait(messages)

    def ready(self, peer: PeerKey) -> None:
        self._sending.discard(peer)
        self.feed(peer)

    async def _send(self, peer: PeerKey, outbox: asyncio.Queue[list[bytes]]) -> None:
        while True:
            messages = await outbox.get()
            assert self.supervisor is not None
            await self.supervisor.send(peer, messages)
            await self._inbox.put(_SenderReady(peer))


class Daemon:
    """``bgpd run``: the edges, and the routing task that is the Router's only caller."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.started = time.time()
        self.last_reconfigured = self.started
        self.cache = AttributeCache()
        self.router = Router(
            restart_deadline=config.restart_deadline,
            attribute_cache=self.cache,
            bfd_hold=config.bfd_hold,
        )
        self.planner = NodePlanner(config)
        self.metrics = Metrics(self)
        self.health = HealthChecker(self)
        self.source = DatastoreSource(config, self.metrics)
        self.supervisor: Supervisor | None = None
        self.kernel: KernelSync | None = None
        self.tunnels = TunnelReport()
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue(INBOX_SIZE)
        self._sessions: Latest[Mapping[PeerKey, SessionConfig]] = Latest()
        self._bfd_down: set[PeerKey] = set()  # sessions BFD ended, not yet handed over
        self._bfd_wanted: Latest[Mapping[IPAddress, BfdSpec]] = Latest()
        self._bfd_levels: dict[IPAddress, BfdReport] = {}
        self._bfd_changed = asyncio.Event()
        self.bfd = BfdEdge(self._bfd_report)
        self.metrics.bfd_drops = lambda: {str(r): n for r, n in self.bfd.drops.items()}
        self._tunnel_plans: Latest[TunnelPlan] = Latest()
        self._listening: Latest[tuple[tuple[str, ...], int]] = Latest()
        self._log_level = config.log_level
        self._kernel_views: Latest[KernelView] = Latest()
        self._senders = _Senders(self.router, self._inbox, self._start)
        self._kernel_asked = False
        self._kernel_due = False  # the kernel task waits for a batch (rule 6)
        self._snapshot: Snapshot | None = None
        self._host = HostFacts()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._withdraw = False
        self._stop_message = ""

    # -- the routing task (rule 1) --------------------------------------------------------------

    async def peer_event(self, peer: PeerKey, event: PeerEvent) -> None:
        """The supervisor's ``RoutingCore``: a session's event, queued in order per peer."""
        await self._inbox.put(_FromPeer(peer, event))

    async def _route(self) -> None:
        loop = asyncio.get_running_loop()
        inbox, router = self._inbox, self.router
        while True:
            deadline = router.next_deadline()
            if deadline is None:
                item: _Item | None = await inbox.get()
            else:
                try:
                    item = await asyncio.wait_for(inbox.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    item = None
            now = loop.time()
            room = ROUTING_SLICE
            while item is not None:
                room -= self._take_in(item, now)
                if room <= 0:
                    break
                item = inbox.get_nowait() if not inbox.empty() else None
            router.timer(now)
            self._execute(router.drain())
            self._deliver_kernel_batch()
            if room <= 0:
                await asyncio.sleep(0)  # rule 6: the kernel and the peers get their turn

    def _take_in(self, item: _Item, now: float) -> int:
        """One inbox item into the router; returns its weight in the routing slice (rule 6):
        the prefixes of an UPDATE, 1 for anything else."""
        if isinstance(item, _FromPeer) and isinstance(item.event, UpdateReceived):
            self.router.session_event(item.peer, item.event, now)
            update = item.event.update
            weight = 1
            for announcement in update.announced:
                weight += len(announcement.prefixes)
            for withdrawal in update.withdrawn:
                weight += len(withdrawal.prefixes)
            return weight
        self._take_in_other(item, now)
        return 1

    def _take_in_other(self, item: _Item, now: float) -> None:
        if isinstance(item, _FromPeer):
            name = self.router.session_event(item.peer, item.event, now)
            if name is not None and isinstance(item.event, Established):
                self.metrics.fsm_transition(name, "Established", "established")
            elif name is not None and isinstance(item.event, Down):
                self.metrics.fsm_transition(name, "Idle", item.event.token)
        elif isinstance(item, _SenderReady):
            self._senders.ready(item.peer)
        elif isinstance(item, _KernelReady):
            pass  # it woke the task; the batch goes at the end of this turn (rule 6)
        elif isinstance(item, _KernelView):
            self.router.kernel_view(item.view, now)
            host = host_facts_of(item.view)
            if host != self._host:  # BFD planning reads them (calico.bfd rule 7)
                self._host = host
                self._plan(now)
        elif isinstance(item, _BfdLevels):
            for address, report in item.reports.items():
                self.router.bfd_report(address, report, now)
        else:
            self._snapshot = item.snapshot or self._snapshot  # None: a reload of etcd
            self._plan(now)

    def _plan(self, now: float) -> None:
        """The last snapshot planned with the last host facts, into the router and the edges
        that follow the plan (listening sockets, log level)."""
        if self._snapshot is None:
            return
        plan = self.planner.plan(self._snapshot, self._host)
        self.router.apply_plan(plan, now)
        self._listening.put((plan.listen_addresses, plan.listen_port))
        self._follow_log_level(plan.log_severity)
        self.last_reconfigured = time.time()

    def _execute(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, MessagesWaiting):
                self._senders.feed(output.peer)
            elif isinstance(output, KernelWork):
                self._wake_kernel()
            elif isinstance(output, DesiredSessions):
                self._bfd_down |= output.bfd_down  # an edge: kept until the sessions task runs
                self._sessions.put(output.configs)
            elif isinstance(output, BfdWanted):
                self._bfd_wanted.put(output.peers)
            elif isinstance(output, TunnelsWanted):
                if output.plan is not None:
                    self._tunnel_plans.put(output.plan)
            elif isinstance(output, Notice):
                getattr(log, output.level)(output.event, **dict(output.fields))
            elif isinstance(output, StopSession) and self.supervisor is not None:
                assert self._group is not None
                stopping = self.supervisor.stop_automatically(output.peer, output.stop)
                self._group.create_task(stopping, name=f"stop {output.peer}")

    async def _kernel_request(self, batch: bool) -> None:
        """``KernelSync``'s request (kernel.sync rule 1), never queued behind UPDATEs (rule 6):
        asked to be told of work, it is told at once if there is some (a read of the router),
        else by the next drain that makes some; a batch is handed out at the end of the routing
        task's turn, the item in the inbox only waking that task when it is idle."""
        if batch:
            self._kernel_due = True
            if self._inbox.empty():
                self._inbox.put_nowait(_KernelReady())
        else:
            self._kernel_asked = True
            self._wake_kernel()

    def _deliver_kernel_batch(self) -> None:
        """The batch the kernel task asked for, once per request (rule 6)."""
        if self._kernel_due and self.kernel is not None:
            self._kernel_due = False
            self.kernel.deliver(self.router.kernel_batch(BATCH_ROUTES))

    def _wake_kernel(self) -> None:
        """Tell ``KernelSync`` there is work, when it asked to be told (kernel.sync rule 1)."""
        if self.kernel is not None and self._kernel_asked and self.router.kernel.pending:
            self._kernel_asked = False
            self.kernel.wake()

    # -- the edges' tasks -------------------------------------------------------------------------

    async def _apply_sessions(self) -> None:
        assert self.supervisor is not None
        while True:
            configs = await self._sessions.get()
            bfd_down, self._bfd_down = frozenset(self._bfd_down), set()
            if configs is not None:
                await self.supervisor.apply(configs, bfd_down)

    async def _apply_bfd(self) -> None:
        while True:
            wanted = await self._bfd_wanted.get()
            if wanted is not None:
                await self.bfd.apply(wanted)

    def _bfd_report(self, address: IPAddress, report: BfdReport) -> None:
        """A BFD state change: the newest level per address waits for ``_forward_bfd``."""
        self._bfd_levels[address] = report
        self._bfd_changed.set()

    async def _forward_bfd(self) -> None:
        """BFD levels into the inbox (rule 1), all that changed since the last hand-over."""
        while True:
            await self._bfd_changed.wait()
            self._bfd_changed.clear()
            levels, self._bfd_levels = self._bfd_levels, {}
            await self._inbox.put(_BfdLevels(levels))

    async def _follow_listening(self) -> None:
        """bindMode and listenPort at run time (listener rule 6); an address that does not bind
        is tried again every ``LISTEN_RETRY`` seconds until it does or the plan changes."""
        assert self.supervisor is not None
        wanted: tuple[tuple[str, ...], int] | None = None
        failed: list[str] = []
        while True:
            if failed:
                with contextlib.suppress(TimeoutError):
                    wanted = await asyncio.wait_for(self._listening.get(), LISTEN_RETRY) or wanted
            else:
                wanted = await self._listening.get() or wanted
            if wanted is not None:
                failed = await self.supervisor.listen(*wanted)
                for problem in failed:
                    log.error("cannot listen", address=problem, reason="listen-failed")

    def _follow_log_level(self, severity: str) -> None:
        """The datastore's ``logSeverityScreen`` at run time, unless ``--log-level`` fixed the
        level (bgpd.log rule 1); unset, the start level (``BGP_LOGSEVERITYSCREEN``) again."""
        wanted = self.config.log_level if self.config.log_level_fixed else severity
        wanted = wanted or self.config.log_level
        if wanted == self._log_level:
            return
        self._log_level = wanted
        log.info("log level", level=wanted, source="datastore" if severity else "start")
        try:
            set_level(wanted)
        except ValueError as exc:
            log.warning("log level not applied", reason="bad-log-severity", error=str(exc))

    async def _learn_kernel_routes(self) -> None:
        """The kernel's routes that are not ours and the interfaces' addresses, newest view
        first, into the routing task (``bgpd.calico.learned``)."""
        watch = RouteWatch(self._kernel_views.put, own_protocol=self.config.kernel_protocol)
        async with watch:
            while True:
                view = await self._kernel_views.get()
                if view is not None:
                    await self._inbox.put(_KernelView(view))

    async def _converge_tunnels(self) -> None:
        """Tunnel devices and VXLAN neighbour/FDB entries; a kernel without IP-in-IP degrades
        only the pools that need it (encap.devices rule 6)."""
        while True:
            plan = await self._tunnel_plans.get()
            report = await converge(plan)
            for device, reasons in report.recreated:
                log.warning("recreated tunnel device", device=device, reasons=list(reasons))
            for problem in report.problems:
                log.error("tunnel device problem", problem=problem, reason="encap-unsupported")
            self.tunnels = report

    async def _follow_datastore(self, snapshots: AsyncIterator[Snapshot]) -> None:
        async for snapshot in snapshots:
            await self._inbox.put(_NewSnapshot(snapshot))

    # -- status (read by the control socket, health and metrics) ----------------------------------

    def daemon_status(self) -> DaemonStatus:
        status = self.router.status()
        listener = self.supervisor.listener if self.supervisor is not None else None
        return DaemonStatus(
            version=__version__,
            router_id=status.router_id,
            node=self.config.node,
            started=self.started,
            last_reconfigured=self.last_reconfigured,
            graceful_restart_recovering=status.restarting,
            datastore_in_sync=status.in_sync,
            kernel_routes=status.kernel_routes,
            problems=status.problems + self.tunnels.problems,
            unroutable_pools=self.tunnels.unroutable_pools,
            listen_backlog=listener.backlog if listener is not None else 0,
            rejected_keys=self.source.rejected_keys(),
            update_groups=status.update_groups,
        )

    def peer_statuses(self) -> list[PeerStatus]:
        if self.supervisor is None:
            return []
        return self.router.peer_statuses(
            self.supervisor.statistics(), self.started, self.bfd.statuses()
        )

    def route_statuses(self, prefix: str | None = None) -> list[RouteStatus]:
        """The router's routes, each BGP next hop with the interface the host reaches it by
        (BIRD's ``via NH on IFACE``), from the host facts BFD planning reads too; one lookup per
        next hop, however many routes share it."""
        interfaces: dict[str, str] = {}
        out = []
        for route in self.router.route_statuses(prefix):
            if not route.interface and route.next_hop:
                name = interfaces.get(route.next_hop)
                if name is None:
                    name = interfaces[route.next_hop] = self._interface(route.next_hop)
                route = replace(route, interface=name)
            out.append(route)
        return out

    def _interface(self, next_hop: str) -> str:
        try:
            address = ipaddress.ip_address(next_hop.split()[0])
        except ValueError:
            return ""
        connected = interface_towards(address, self._host.addresses)
        if connected is not None:
            return connected.name
        route = route_towards(address, self._host.routes)
        return route.interface if route is not None else ""

    def explain(self, prefix: str) -> dict[str, Any]:
        return explanation_json(self.router.explain(prefix))

    # -- control actions --------------------------------------------------------------------------

    def request_reload(self) -> None:
        log.info("reload requested", reason="sighup")
        snapshot = self.source.reload()
        with contextlib.suppress(asyncio.QueueFull):  # a full inbox is applying snapshots now
            self._inbox.put_nowait(_NewSnapshot(snapshot))

    def request_stop(self, withdraw: bool = False, message: str = "") -> None:
        self._withdraw = withdraw
        self._stop_message = message
        self._stop.set()

    # -- running ----------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        first = self.source.open()
        log.info("starting", node=self.config.node, version=__version__)
        if self.config.kubernetes_unavailable:
            log.warning(
                "no Kubernetes API access: no per-service routes, passwords from the environment",
                reason=self.config.kubernetes_unavailable,
            )
        programmer = None
        if self.config.program_kernel:
            programmer = KernelProgrammer(
                protocol=self.config.kernel_protocol, desired=self.router.kernel.routes
            )
            await programmer.start()
            if programmer.known:
                self.router.restarting = True
                log.info(
                    "kept kernel routes from a previous run",
                    routes=len(programmer.known),
                    reason="graceful-restart",
                )
        try:
            async with contextlib.AsyncExitStack() as edges:
                await self._open_edges(edges)
                snapshots = self.source.snapshots()
                if first is None:
                    first = await _first_snapshot(snapshots, self._stop)
                if first is not None:
                    await self._serve(first, snapshots, programmer)
        finally:
            if programmer is not None:
                await programmer.close()
        return 0

    async def _serve(
        self,
        first: Snapshot,
        snapshots: AsyncIterator[Snapshot],
        programmer: KernelProgrammer | None,
    ) -> None:
        plan = self.planner.plan(first)
        supervisor = Supervisor(
            self,
            listen_addresses=plan.listen_addresses,
            listen_port=plan.listen_port,
            cache=self.cache,
        )
        address = f"{','.join(plan.listen_addresses) or '*'}:{plan.listen_port}"
        async with contextlib.AsyncExitStack() as sessions:
            await _bind(sessions.enter_async_context(supervisor), "BGP listen address", address)
            self.supervisor = self._senders.supervisor = supervisor
            try:
                async with asyncio.TaskGroup() as group:
                    self._group = group
                    self._inbox.put_nowait(_NewSnapshot(first))
                    self._start(self._route(), "routing")
                    self._start(self._follow_datastore(snapshots), "datastore")
                    self._start(self._apply_sessions(), "sessions")
                    self._start(self._converge_tunnels(), "tunnels")
                    self._start(self._follow_listening(), "listening")
                    self._start(heap_trimmer(), "heap")
                    self._start(self._apply_bfd(), "bfd")
                    self._start(self._forward_bfd(), "bfd levels")
                    if programmer is not None:
                        self.kernel = KernelSync(
                            programmer,
                            self.metrics,
                            self._kernel_request,
                        )
                        self._start(self.kernel.run(), "kernel")
                        self._start(self._learn_kernel_routes(), "kernel routes")
                    stopping = asyncio.ensure_future(self._stop.wait())
                    await asyncio.wait(
                        [stopping, *self._tasks], return_when=asyncio.FIRST_COMPLETED
                    )
                    stopping.cancel()
                    await self._shutdown(supervisor, programmer)
                    await self.bfd.close()  # AdminDown to every BFD peer (RFC 5882 §3.2)
                    for task in self._tasks:
                        task.cancel()
            except Exception:
                log.critical("routing core failed; stopping with forwarding kept", exc_info=True)
                supervisor.abort()
                raise

    def _start(self, work: Coroutine[None, None, None], name: str) -> None:
        """A task of the daemon's group, cancelled at stop (rule 3)."""
        assert self._group is not None
        self._tasks.append(self._group.create_task(work, name=name))

    async def _shutdown(self, supervisor: Supervisor, programmer: KernelProgrammer | None) -> None:
        if self._withdraw:
            log.info("stopping", reason="administrative-shutdown", withdraw=True)
            await supervisor.shutdown(self._stop_message)
            if programmer is not None:
                await programmer.apply([])
        else:
            log.info("stopping", reason="graceful-restart", withdraw=False)
            supervisor.abort()  # rule 3: no NOTIFICATION, kernel routes stay

    async def _open_edges(self, edges: contextlib.AsyncExitStack) -> None:
        """The control sockets and the metrics listener; failing to bind is bad configuration."""
        await _bind(
            edges.enter_async_context(
                serve_control_sockets(self.config.control_socket, self, self, self.health)
            ),
            "--control-socket",
            self.config.control_socket,
        )
        if self.config.metrics_listen is not None:
            host, port = self.config.metrics_listen
            http = await _bind(
                serve_http(host, port, self.metrics, self.health.check),
                "--metrics-listen",
                f"{host}:{port}",
            )
            edges.callback(http.close)
        if self.config.bird_process_names:
            edges.enter_context(bird_placeholders())


async def _first_snapshot(
    snapshots: AsyncIterator[Snapshot], stop: asyncio.Event
) -> Snapshot | None:
    """The datastore's first snapshot; None when a stop came first (rule 3)."""
    first = asyncio.ensure_future(anext(snapshots))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((first, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not first.done():
            first.cancel()
    return first.result() if first.done() and not first.cancelled() else None


async def _bind(opening: Awaitable[_T], name: str, value: str) -> _T:
    """Open a listening edge; an address in use or not ours names the setting (rule 5)."""
    try:
        return await opening
    except ControlSocketInUse as exc:
        raise ConfigError(name, value, str(exc)) from None
    except OSError as exc:
        raise ConfigError(name, value, exc.strerror or str(exc)) from None
