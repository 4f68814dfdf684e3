"""The composition root: ``bgpd run``. One supervising TaskGroup owns every task.

Data flows (../shared/design/architecture.md §3):
  datastore (file | etcd) -> Snapshot -> peers.resolve -> Supervisor.apply (sessions)
                                      -> bgpd.origin -> Speaker.set_local_routes + blackholes
  session events -> Speaker (the one owner of routing state) -> per-peer outboxes -> sessions
                                                             -> BestChanged -> kernel programmer

Rules:
1. Only the routing loop touches the Speaker; session events arrive in order per peer through
   ``peer_event`` and never wait for another peer (sends go through per-peer outboxes).
2. Nothing is advertised, withdrawn or programmed before the first complete snapshot (confd's
   in-sync rule); a datastore outage keeps the last snapshot.
3. Kernel routes are levels: the programmer keeps our protocol's routes equal to the desired
   set; on start it keeps what a previous run installed until the RIB converges (RFC 4724 §4.1
   restarting speaker), then sweeps the rest. A reconcile repairs drift every 30 s (not while a
   table streams in: ``KERNEL_TABLE_QUIET``) and a second after an interface comes up
   (``LinkWatch``), since the kernel drops routes through a link that goes down and never
   restores them. Changes are written in rounds of at most ``KERNEL_BATCH_ROUTES``, oldest
   first, so no round holds the loop for a whole table.
4. SIGHUP reloads the datastore; SIGTERM stops while preserving forwarding (transports close
   without a NOTIFICATION, kernel routes stay); ``stop --withdraw`` ends sessions with
   Cease/Administrative Shutdown and removes our kernel routes. A stop that comes before the
   first snapshot ends the daemon too.
5. Bad configuration that only shows at start (a datastore file that does not read, a control
   socket another daemon serves, a metrics or BGP address that does not bind) raises one
   ``ConfigError`` naming the setting and its value, never a task-group traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog
from pyroute2 import AsyncIPRoute

from bgpd import __version__
from bgpd.assembly import (
    FAMILY_OF_VERSION,
    capability_names,
    export_policy,
    import_policy,
    kernel_route,
    local_routes,
    peer_settings,
    plan_config,
    pool_specs,
    route_status,
    session_config,
    session_filters,
    session_key,
    tunnel_info,
    tunnel_needs,
)
from bgpd.config import ConfigError, DaemonConfig, EtcdSource, FileSource
from bgpd.control.server import ControlSocketInUse, HealthChecker, serve_control_sockets
from bgpd.datastore.cache import Cache, RejectedRecord
from bgpd.datastore.etcd import Changes, EtcdWatcher, EventKind, Resync
from bgpd.datastore.etcd_settings import calico_watch_keys
from bgpd.datastore.file import FileDatastore
from bgpd.datastore.schema import resource_of_key
from bgpd.kernel.linkwatch import LinkWatch
from bgpd.kernel.netlink import KernelProgrammer
from bgpd.kernel.plan import KernelRoute, PlanConfig, RouteIdentity
from bgpd.metrics import Metrics, serve_http
from bgpd.net.supervisor import Supervisor
from bgpd.net.transport import PeerEvent
from bgpd.origin import Origination, originate
from bgpd.rib.graceful_restart import SelectionDeferral
from bgpd.rib.policy import Policy
from bgpd.session.config import PeerKey, SessionConfig
from bgpd.session.events import (
    Down,
    Established,
    RouteRefreshReceived,
    State,
    UpdateReceived,
)
from bgpd.session.timers import keepalive_interval
from bgpd.speaker import BestChanged, RibConverged, SendToPeer, Speaker, SpeakerConfig
from bgpd.status import DaemonStatus, PeerStatus, RouteStatus
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.types import Family, Prefix, prefix_from_str
from encap.devices import DeviceError, EncapUnsupported, TunnelDevices
from encap.model import PoolSpec
from encap.vxlan import desired_l2, ipip_device_spec, remote_vtep, vxlan_device_spec
from peers.model import IPNetwork, Snapshot
from peers.resolve import Environment, NodePeering, environ_secret_lookup, resolve_node
from peers.spec import SessionSpec

log = structlog.get_logger("bgpd.daemon")
_T = TypeVar("_T")

# RFC 4271 §8.2.2 state names, as BIRD's `show protocols` prints them.
STATE_NAMES = {
    State.IDLE: "Idle",
    State.CONNECT: "Connect",
    State.ACTIVE: "Active",
    State.OPEN_SENT: "OpenSent",
    State.OPEN_CONFIRM: "OpenConfirm",
    State.ESTABLISHED: "Established",
}
KERNEL_RECONCILE_INTERVAL = 30.0
LINK_SETTLE_DELAY = 1.0  # seconds from an interface coming up to the reconcile it triggers
KERNEL_BATCH_DELAY = 0.005
KERNEL_BATCH_ROUTES = 65536  # pending kernel changes written per round of the kernel task
KERNEL_TABLE_ROUND = 1024  # a round this large means a table is streaming in (not pod churn)
KERNEL_TABLE_QUIET = 5.0  # seconds after such a round before a periodic reconcile may run


@dataclass
class _Routing:
    """Everything derived from one snapshot (rebuilt on every snapshot)."""

    snapshot: Snapshot
    peering: NodePeering
    originations: tuple[Origination, ...]
    plan: PlanConfig
    pools: tuple[PoolSpec, ...]
    blackholes: frozenset[IPNetwork]
    sessions: dict[str, SessionSpec] = field(default_factory=dict)
    keys: dict[PeerKey, str] = field(default_factory=dict)


class Daemon:
    """``bgpd run``: composes datastore, sessions, RIB, kernel and the control surface."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.started = time.time()
        self.last_reconfigured = self.started
        self.cache = AttributeCache()
        self.speaker: Speaker | None = None
        self.supervisor: Supervisor | None = None
        self.kernel: KernelProgrammer | None = None
        self.routing: _Routing | None = None
        self.restarting = False
        self.in_sync = False
        self.datastore_rejected = 0
        self.kernel_errors = 0
        self.encap_errors = 0
        self.encap_problems: tuple[str, ...] = ()
        self.unroutable_pools: tuple[str, ...] = ()
        self._loop = asyncio.get_event_loop()
        self._wake = asyncio.Event()
        self._kernel_wake = asyncio.Event()
        self._reload = asyncio.Event()
        self._stop = asyncio.Event()
        self._stop_mode = "graceful"
        self._snapshot: Snapshot | None = None
        self._snapshot_wake = asyncio.Event()
        self._outboxes: dict[str, asyncio.Queue[list[bytes]]] = {}
        # Desired kernel routes by family and prefix (the RIB's own key objects), and the
        # changes the kernel task has yet to write: prefix -> the route it replaces.
        self._desired_kernel: dict[Family, dict[Prefix, KernelRoute]] = {}
        self._kernel_pending: dict[Family, dict[Prefix, KernelRoute | None]] = {}
        self._policy_cache: dict[str, tuple[object, Policy, object, Policy]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._file: FileDatastore | None = None
        self.metrics = Metrics(self)
        self.health = HealthChecker(self)

    # -- the routing core, as the supervisor sees it ----------------------------------------

    async def peer_event(self, peer: PeerKey, event: PeerEvent) -> None:
        """Session events, in order per peer (rule 1). Never blocks on another peer."""
        routing, speaker = self.routing, self.speaker
        if routing is None or speaker is None:
            return
        name = routing.keys.get(peer)
        spec = routing.sessions.get(name) if name else None
        if name is None or spec is None:
            return
        now = self._loop.time()
        if isinstance(event, Established):
            self.metrics.fsm_transition(name, "Established", "established")
            own = self._own_address(spec.family)
            speaker.peer_up(name, peer_settings(spec, own), event.negotiated, now)
            speaker.set_policy(name, *self._policies(name, spec), now)
        elif isinstance(event, Down):
            self.metrics.fsm_transition(name, "Idle", event.token)
            if event.was_established:
                speaker.peer_down(name, graceful=event.notification is None, now=now)
        elif isinstance(event, UpdateReceived):
            speaker.update_received(name, event.update, now)
        elif isinstance(event, RouteRefreshReceived):
            speaker.route_refresh_received(name, event.refresh, now)
        self._wake.set()

    # -- helpers --------------------------------------------------------------------------

    def _policies(self, name: str, spec: SessionSpec) -> tuple[Policy, Policy]:
        """(import, export) policies for a session, reused while their inputs are equal."""
        routing = self.routing
        assert routing is not None
        origination = self._origination_for(spec.family)
        assert origination is not None
        filters = routing.snapshot.filters
        used = session_filters(spec, filters)
        import_key = (spec, used)
        export_key = (spec, used, origination.policy)
        cached = self._policy_cache.get(name)
        if cached is not None and cached[0] == import_key:
            imported = cached[1]
        else:
            imported = import_policy(spec, filters, origination.policy.normal_priority)
        if cached is not None and cached[2] == export_key:
            exported = cached[3]
        else:
            exported = export_policy(spec, origination, filters)
        self._policy_cache[name] = (import_key, imported, export_key, exported)
        return imported, exported

    def _own_address(self, version: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        if self.routing is None:
            return None
        node = self.routing.snapshot.nodes.get(self.config.node)
        return node.ip(version) if node is not None else None

    def _origination_for(self, version: int) -> Origination | None:
        if self.routing is None:
            return None
        for origination in self.routing.originations:
            if origination.version == version:
                return origination
        return None

    # -- datastore ------------------------------------------------------------------------

    async def _snapshots(self) -> AsyncIterator[Snapshot]:
        source = self.config.datastore
        if isinstance(source, FileSource):
            # Opened and first read by ``run`` (rule 5): only the changes after it are polled
            # here (``FileDatastore.watch`` would read, and count its rejects, once more).
            datastore = self._file
            assert datastore is not None
            while True:
                await asyncio.sleep(datastore.poll_interval)
                if not datastore.changed_on_disk():
                    continue
                snapshot = datastore.reload()
                self._count_rejected(datastore.rejected, datastore.last_errors)
                if snapshot is not None:
                    self.metrics.datastore_event("load")
                    yield snapshot
        assert isinstance(source, EtcdSource)
        cache = Cache()
        async with EtcdWatcher(source.settings, calico_watch_keys(self.config.node)) as watcher:
            async for batch in watcher:
                if isinstance(batch, Resync):
                    self.metrics.datastore_event("resync")
                    snapshot = cache.load(batch.pairs, batch.revision)
                else:
                    assert isinstance(batch, Changes)
                    for ev in batch.events:
                        self.metrics.datastore_event(ev.kind.name.lower())
                        if ev.kind == EventKind.DELETE:
                            cache.delete(ev.key, ev.mod_revision)
                        elif ev.value is not None:
                            cache.put(ev.key, ev.value, ev.mod_revision)
                    snapshot = cache.snapshot()
                self._count_rejected(cache.rejected, tuple(cache.last_errors))
                yield snapshot

    def _count_rejected(self, total: int, last_errors: tuple[RejectedRecord, ...]) -> None:
        """Count records rejected since the last batch, by resource (the key's kind segment)."""
        fresh = total - self.datastore_rejected
        self.datastore_rejected = total
        for record in last_errors[-fresh:] if fresh > 0 else ():
            self.metrics.datastore_rejected(resource_of_key(record.key), "invalid")

    async def _datastore_task(self) -> None:
        async for snapshot in self._snapshots():
            self._snapshot = snapshot
            self.in_sync = True
            self._snapshot_wake.set()

    # -- applying a snapshot ----------------------------------------------------------------

    def _derive(self, snapshot: Snapshot) -> _Routing:
        env = Environment(
            router_id=self.config.router_id, secrets=environ_secret_lookup(self.config.environ)
        )
        peering = resolve_node(self.config.node, snapshot, env)
        originations = tuple(
            originate(self.config.node, snapshot, version, peering.sessions.values())
            for version in (4, 6)
        )
        plan = plan_config(
            snapshot,
            self.config.node,
            originations,
            protocol=self.config.kernel_protocol,
            program_vxlan=self.config.program_vxlan,
        )
        blackholes = frozenset(net for o in originations for net in o.blackholes())
        routing = _Routing(snapshot, peering, originations, plan, pool_specs(snapshot), blackholes)
        for name, spec in sorted(peering.sessions.items()):
            key = session_key(spec)
            if key in routing.keys:
                log.warning("duplicate session address", session=name, kept=routing.keys[key])
                continue
            routing.sessions[name] = spec
            routing.keys[key] = name
        return routing

    async def _apply_snapshot(self, snapshot: Snapshot) -> None:
        routing = self._derive(snapshot)
        for problem in routing.peering.problems:
            log.warning("datastore problem", problem=problem)
        if routing.peering.router_id is None:
            log.error("no router id: the node has no IPv4 address; set CALICO_ROUTER_ID")
            return
        previous = self.routing
        self.routing = routing
        self.last_reconfigured = time.time()
        now = self._loop.time()
        if self.speaker is None or (
            previous is not None
            and (
                previous.peering.router_id != routing.peering.router_id
                or previous.peering.local_as != routing.peering.local_as
            )
        ):
            deferral = (
                SelectionDeferral(now + self.config.restart_deadline, frozenset(routing.sessions))
                if self.restarting
                else None
            )
            self.speaker = Speaker(
                SpeakerConfig(
                    router_id=int(routing.peering.router_id),
                    local_as=routing.peering.local_as,
                    cluster_id=self._cluster_id(snapshot),
                ),
                self.cache,
                restarting=deferral,
            )
        speaker = self.speaker
        own = {v: a.packed for v in (4, 6) if (a := self._own_address(v)) is not None}
        speaker.set_local_routes(local_routes(routing.originations, own), now)
        established = set(speaker.peers())
        for name in established - routing.sessions.keys():
            # De-configured: the supervisor ends the session with a Cease NOTIFICATION, so its
            # routes go now, not kept as stale (RFC 4724 §4); its Down event no longer has a
            # session to name once ``self.routing`` is the new one.
            speaker.peer_down(name, graceful=False, now=now)
        for name, spec in routing.sessions.items():
            if name in established:
                # Policies are rebuilt only when their inputs change, so an unrelated datastore
                # change neither re-exports everything nor sends a ROUTE-REFRESH.
                speaker.set_policy(name, *self._policies(name, spec), now)
        desired: dict[PeerKey, SessionConfig] = {}
        for spec in routing.sessions.values():
            desired[session_key(spec)] = session_config(
                spec,
                routing.peering,
                restarting=self.restarting,
                graceful_restart_time=self.config.graceful_restart_time,
            )
        if self.supervisor is not None:
            await self.supervisor.apply(desired)
        await self._converge_tunnels(routing)
        self._refresh_kernel_all()
        self._wake.set()

    async def _converge_tunnels(self, routing: _Routing) -> None:
        """Tunnel devices and VXLAN neighbour/FDB entries for the pools we program (encap/).
        A kernel without IP-in-IP degrades only the pools that need it."""
        if not self.config.program_kernel:
            return
        vxlan_versions, ipip_pools = tunnel_needs(routing.pools, routing.plan)
        me = routing.snapshot.nodes.get(self.config.node)
        problems: list[str] = []
        unroutable: list[str] = []
        if me is None or not (vxlan_versions or ipip_pools):
            self.encap_problems = self.unroutable_pools = ()
            return
        local = tunnel_info(me)
        others = [tunnel_info(n) for n in routing.snapshot.nodes.values() if n.name != me.name]
        async with AsyncIPRoute() as ipr:
            devices = TunnelDevices(ipr)
            for version in vxlan_versions:
                address = local.address(version)
                try:
                    if address is None:
                        raise DeviceError(f"node has no IPv{version} address for VXLAN")
                    parent = await devices.find_parent(address.ip)
                    spec = vxlan_device_spec(local, version, parent.mtu, parent.name)
                    if spec is None:
                        continue
                    report = await devices.ensure_vxlan(spec)
                    if report.recreated_because:
                        log.warning(
                            "recreated tunnel device",
                            device=spec.name,
                            reasons=list(report.recreated_because),
                        )
                    vteps = [v for n in others if (v := remote_vtep(n, version)) is not None]
                    await devices.reconcile_l2(spec.name, desired_l2(vteps, me.name))
                except (DeviceError, OSError) as exc:
                    problems.append(f"vxlan (IPv{version}): {exc}")
            if ipip_pools:
                try:
                    address = local.address(4)
                    mtu = (await devices.find_parent(address.ip)).mtu if address else 1500
                    await devices.ensure_ipip(ipip_device_spec(local, mtu), ipip_pools)
                except EncapUnsupported as exc:
                    problems.append(str(exc))
                    unroutable.extend(exc.pools)
                except (DeviceError, OSError) as exc:
                    problems.append(f"ipip: {exc}")
        for problem in problems:
            self.encap_errors += 1
            log.error("tunnel device problem", problem=problem, reason="encap-unsupported")
        self.encap_problems = tuple(problems)
        self.unroutable_pools = tuple(sorted(set(unroutable)))

    def _cluster_id(self, snapshot: Snapshot) -> int | None:
        node = snapshot.nodes.get(self.config.node)
        if node is None or not node.rr_cluster_id:
            return None
        return int(ipaddress.IPv4Address(node.rr_cluster_id))

    # -- the routing loop (rule 1) --------------------------------------------------------

    async def _routing_task(self) -> None:
        while True:
            speaker = self.speaker
            deadline = speaker.next_deadline() if speaker is not None else None
            timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            speaker = self.speaker
            if speaker is None:
                continue
            speaker.timer(self._loop.time())
            for output in speaker.drain():
                if isinstance(output, SendToPeer):
                    self._outbox(output.peer_id).put_nowait(output.messages)
                elif isinstance(output, BestChanged):
                    self._best_changed(output)
                elif isinstance(output, RibConverged):
                    self._converged()

    def _outbox(self, name: str) -> asyncio.Queue[list[bytes]]:
        box = self._outboxes.get(name)
        if box is None:
            box = self._outboxes[name] = asyncio.Queue()
            assert self._group is not None
            self._tasks.append(
                self._group.create_task(self._sender(name, box), name=f"send {name}")
            )
        return box

    async def _sender(self, name: str, box: asyncio.Queue[list[bytes]]) -> None:
        while True:
            messages = await box.get()
            routing, supervisor = self.routing, self.supervisor
            if routing is None or supervisor is None:
                continue
            spec = routing.sessions.get(name)
            if spec is not None:
                await supervisor.send(session_key(spec), messages)

    def _best_changed(self, change: BestChanged) -> None:
        routing = self.routing
        if routing is None:
            return
        planned = kernel_route(
            change.family,
            change.prefix,
            change.best,
            change.ecmp,
            routing.blackholes,
            routing.pools,
            routing.plan,
        )
        route = planned if isinstance(planned, KernelRoute) else None
        self._set_kernel(change.family, change.prefix, route)

    def _set_kernel(self, family: Family, prefix: Prefix, route: KernelRoute | None) -> None:
        """Record a desired kernel route change; the kernel task writes it (rule 3)."""
        desired = self._desired_kernel.setdefault(family, {})
        old = desired.get(prefix)
        if route is None:
            desired.pop(prefix, None)
        else:
            desired[prefix] = route
        if old == route:
            return
        self._kernel_pending.setdefault(family, {}).setdefault(prefix, old)
        self._kernel_wake.set()

    def _refresh_kernel_all(self) -> None:
        """Re-plan every installed route after a snapshot (pools, rejects, encap may change)."""
        speaker = self.speaker
        if speaker is None:
            return
        for family, loc in speaker.loc_ribs.items():
            for prefix in list(loc.prefixes()):
                self._best_changed(BestChanged(family, prefix, loc.best(prefix), loc.ecmp(prefix)))
        for family, desired in list(self._desired_kernel.items()):
            rib = speaker.loc_ribs.get(family)
            for prefix in [p for p in desired if rib is None or p not in rib]:
                self._set_kernel(family, prefix, None)

    def _converged(self) -> None:
        log.info("routing converged after restart", reason="end-of-rib")
        self.restarting = False
        self._kernel_wake.set()
        self._sweep_pending = True

    _sweep_pending = False

    # -- the kernel (rule 3) --------------------------------------------------------------

    def _links_changed(self) -> None:
        """An interface came up or gained an address (``LinkWatch``): the kernel dropped our
        routes through it while it was away, so reconcile once things settle (rule 3)."""
        if self._reconcile_timer is None:
            self._reconcile_timer = self._loop.call_later(LINK_SETTLE_DELAY, self._reconcile_soon)

    def _reconcile_soon(self) -> None:
        self._reconcile_timer = None
        self._reconcile_requested = True
        self._kernel_wake.set()

    _reconcile_timer: asyncio.TimerHandle | None = None
    _reconcile_requested = False

    def _take_kernel_batch(self) -> list[tuple[Family, Prefix, KernelRoute | None]]:
        """The oldest pending kernel changes, at most ``KERNEL_BATCH_ROUTES`` of them, removed
        from the pending set (rule 3)."""
        batch: list[tuple[Family, Prefix, KernelRoute | None]] = []
        for family, changed in list(self._kernel_pending.items()):
            room = KERNEL_BATCH_ROUTES - len(batch)
            for prefix, old in list(itertools.islice(changed.items(), room)):
                del changed[prefix]
                batch.append((family, prefix, old))
            if not changed:
                del self._kernel_pending[family]
            if len(batch) >= KERNEL_BATCH_ROUTES:
                break
        return batch

    async def _kernel_task(self) -> None:
        kernel = self.kernel
        assert kernel is not None
        last_reconcile = self._loop.time()
        next_link_reconcile = last_reconcile
        table_until = last_reconcile
        while True:
            # The rest of a backlog goes straight into the next round; new changes wait
            # KERNEL_BATCH_DELAY so that a burst is written as one round.
            if not (self._kernel_pending and self.in_sync and self.routing is not None):
                timeout = KERNEL_RECONCILE_INTERVAL - (self._loop.time() - last_reconcile)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kernel_wake.wait(), max(0.0, timeout))
                await asyncio.sleep(KERNEL_BATCH_DELAY)
            self._kernel_wake.clear()
            if not self.in_sync or self.routing is None:
                continue
            upserts: list[KernelRoute] = []
            removals: list[RouteIdentity] = []
            batch = self._take_kernel_batch()
            if len(batch) >= KERNEL_TABLE_ROUND:
                table_until = self._loop.time() + KERNEL_TABLE_QUIET
            desired_by_family = self._desired_kernel
            no_routes: dict[Prefix, KernelRoute] = {}
            for family, prefix, old in batch:
                new = desired_by_family.get(family, no_routes).get(prefix)
                if new is not None:
                    upserts.append(new)
                if old is not None and (new is None or new.identity != old.identity):
                    removals.append(old.identity)
            result = await kernel.update(upserts, removals)
            self.metrics.kernel_route_change("replaced", result.replaced)
            self.metrics.kernel_route_change("deleted", result.deleted)
            # The sweep waits for the whole backlog: a stale route still wanted may be pending.
            if self._sweep_pending and not self.restarting and not self._kernel_pending:
                self._sweep_pending = False
                result = result + await kernel.sweep_stale()
            now = self._loop.time()
            since = now - last_reconcile
            # A reconcile dumps our whole table: not while a table streams in (a backlog to
            # write, or a table-sized round within KERNEL_TABLE_QUIET), unless that has gone on
            # for several intervals.
            streaming = bool(self._kernel_pending) or now < table_until
            backlog = streaming and since < 4 * KERNEL_RECONCILE_INTERVAL
            periodic = since >= KERNEL_RECONCILE_INTERVAL and not backlog
            linked = self._reconcile_requested and now >= next_link_reconcile
            if self._reconcile_requested and not linked:
                self._links_changed()  # too soon after the last one: ask again later
            if periodic or linked:
                self._reconcile_requested = False
                result = result + await kernel.reconcile()
                last_reconcile = self._loop.time()
                # Link-triggered reconciles take at most a fifth of the time (pod churn).
                next_link_reconcile = last_reconcile + 4 * (last_reconcile - now)
            for error in result.errors:
                self.kernel_errors += 1
                self.metrics.netlink_error("route")
                log.warning("kernel route failed", error=str(error))

    # -- status ---------------------------------------------------------------------------

    def daemon_status(self) -> DaemonStatus:
        routing = self.routing
        router_id = str(routing.peering.router_id) if routing and routing.peering.router_id else ""
        return DaemonStatus(
            version=__version__,
            router_id=router_id,
            node=self.config.node,
            started=self.started,
            last_reconfigured=self.last_reconfigured,
            graceful_restart_recovering=self.restarting,
            datastore_in_sync=self.in_sync,
            kernel_routes=sum(len(routes) for routes in self._desired_kernel.values()),
            problems=(routing.peering.problems if routing else ()) + self.encap_problems,
            unroutable_pools=self.unroutable_pools,
        )

    def peer_statuses(self) -> list[PeerStatus]:
        routing, supervisor, speaker = self.routing, self.supervisor, self.speaker
        if routing is None or supervisor is None:
            return []
        stats = supervisor.statistics()
        out: list[PeerStatus] = []
        for key, name in sorted(routing.keys.items(), key=lambda kv: kv[1]):
            spec = routing.sessions[name]
            st = stats.get(key)
            held, sent = speaker.route_counts(name) if speaker is not None else (0, 0)
            negotiated = st.negotiated if st is not None else None
            state = STATE_NAMES[st.state] if st is not None else "Idle"
            helper = speaker is not None and speaker.graceful_restart.is_retaining(name)
            out.append(
                PeerStatus(
                    name=name,
                    peer_ip=str(spec.peer_ip),
                    peer_as=spec.peer_as,
                    local_as=spec.local_as,
                    state=state,
                    since=st.since if st is not None else self.started,
                    passive=spec.passive,
                    family=f"ipv{spec.family}",
                    last_error=(st.last_error or "") if st is not None else "",
                    router_id=str(ipaddress.IPv4Address(negotiated.peer_id)) if negotiated else "",
                    hold_time=negotiated.hold_time if negotiated else 0,
                    keepalive_time=round(
                        keepalive_interval(negotiated.hold_time, spec.keepalive_time)
                    )
                    if negotiated
                    else 0,
                    capabilities=capability_names(negotiated) if negotiated else (),
                    prefixes_received=st.prefixes_in if st is not None else 0,
                    prefixes_accepted=held,
                    prefixes_advertised=sent,
                    messages_in=st.messages_in if st is not None else 0,
                    messages_out=st.messages_out if st is not None else 0,
                    updates_in=st.updates_in if st is not None else 0,
                    updates_out=st.updates_out if st is not None else 0,
                    graceful_restart="helper"
                    if helper
                    else ("restarting" if self.restarting else ""),
                    source_address=str(spec.source_address or ""),
                    port=spec.port,
                )
            )
        return out

    def route_statuses(self, prefix: str | None = None) -> list[RouteStatus]:
        speaker, routing = self.speaker, self.routing
        if speaker is None or routing is None:
            return []
        names = {name: name for name in routing.sessions}
        out: list[RouteStatus] = []
        wanted = prefix_from_str(prefix) if prefix else None
        for family, loc in speaker.loc_ribs.items():
            if wanted is not None and family != FAMILY_OF_VERSION.get(
                ipaddress.ip_network(prefix or "", strict=False).version
            ):
                continue
            for key in [wanted] if wanted is not None else loc.prefixes():
                best = loc.best(key)
                for path in loc.candidates(key):
                    out.append(route_status(family, key, path, path is best, names))
        return out

    # -- control actions ------------------------------------------------------------------

    def request_reload(self) -> None:
        self._reload.set()

    def request_stop(self, withdraw: bool = False, message: str = "") -> None:
        self._stop_mode = "withdraw" if withdraw else "graceful"
        self._stop_message = message
        self._stop.set()

    _stop_message = ""

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        if isinstance(self.config.datastore, FileSource):
            self._open_file_datastore(self.config.datastore)
        log.info("starting", node=self.config.node, version=__version__)
        if self.config.program_kernel:
            self.kernel = KernelProgrammer(protocol=self.config.kernel_protocol)
            await self.kernel.start()
            self.restarting = bool(self.kernel.known)
            if self.restarting:
                log.info(
                    "kept kernel routes from a previous run",
                    routes=len(self.kernel.known),
                    reason="graceful-restart",
                )
        try:
            async with contextlib.AsyncExitStack() as edges, asyncio.TaskGroup() as group:
                await self._open_edges(edges)
                self._group = group
                self._tasks.append(group.create_task(self._datastore_task(), name="datastore"))
                if not await self._first_snapshot():
                    await self._shutdown()
                    return 0
                assert self._snapshot is not None
                first = self._derive(self._snapshot)
                listen = (
                    str(first.peering.listen_addresses[0])
                    if first.peering.listen_addresses
                    else None
                )
                supervisor = Supervisor(
                    self,
                    listen_address=listen,
                    listen_port=first.peering.listen_port,
                    cache=self.cache,
                )
                async with contextlib.AsyncExitStack() as sessions:
                    await _bind(
                        sessions.enter_async_context(supervisor),
                        "BGP listen address",
                        f"{listen or '*'}:{first.peering.listen_port or 179}",
                    )
                    self.supervisor = supervisor
                    self._tasks.append(group.create_task(self._routing_task(), name="routing"))
                    if self.kernel is not None:
                        await sessions.enter_async_context(LinkWatch(self._links_changed))
                        self._tasks.append(group.create_task(self._kernel_task(), name="kernel"))
                    await self._main_loop()
                    await self._shutdown()
        except* asyncio.CancelledError:
            pass
        except* ConfigError as errors:
            raise errors.exceptions[0] from None  # one line at the CLI, not a task traceback
        finally:
            if self.kernel is not None:
                await self.kernel.close()
        return 0

    def _open_file_datastore(self, source: FileSource) -> None:
        """A datastore file that does not read at start is bad configuration (rule 5)."""
        self._file = FileDatastore(source.path)
        snapshot = self._file.reload()
        if snapshot is None:
            errors = self._file.last_errors
            reason = errors[-1].reason if errors else "unreadable"
            raise ConfigError("--datastore", f"file:{source.path}", " ".join(reason.split()))
        self.metrics.datastore_event("load")
        self._count_rejected(self._file.rejected, self._file.last_errors)
        self._snapshot = snapshot
        self.in_sync = True
        self._snapshot_wake.set()

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

    async def _first_snapshot(self) -> bool:
        """Wait for the first complete snapshot; False when a stop came first (rule 4: a
        daemon still waiting for its datastore stops on SIGTERM too)."""
        snapshot = asyncio.ensure_future(self._snapshot_wake.wait())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((snapshot, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            snapshot.cancel()
            stop.cancel()
        return not self._stop.is_set()

    async def _main_loop(self) -> None:
        applied: Snapshot | None = None
        while not self._stop.is_set():
            waiters = [
                asyncio.ensure_future(self._snapshot_wake.wait()),
                asyncio.ensure_future(self._reload.wait()),
                asyncio.ensure_future(self._stop.wait()),
            ]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if self._reload.is_set():
                self._reload.clear()
                log.info("reload requested", reason="sighup")
                if self._file is not None:
                    snapshot = self._file.reload()
                    if snapshot is not None:
                        self._snapshot = snapshot
                applied = None
            self._snapshot_wake.clear()
            if self._snapshot is not None and self._snapshot is not applied:
                applied = self._snapshot
                await self._apply_snapshot(applied)

    async def _shutdown(self) -> None:
        if self._stop_mode == "withdraw":
            log.info("stopping", reason="administrative-shutdown", withdraw=True)
            if self.supervisor is not None:
                await self.supervisor.shutdown(self._stop_message)
            if self.kernel is not None:
                await self.kernel.apply([])
        else:
            log.info("stopping", reason="graceful-restart", withdraw=False)
            # Rule 4: no NOTIFICATION, kernel routes stay; peers keep our routes as stale.
            os._exit(0)
        for task in self._tasks:
            task.cancel()


async def _bind(opening: Awaitable[_T], name: str, value: str) -> _T:
    """Open a listening edge; an address in use or not ours names the setting (rule 5)."""
    try:
        return await opening
    except ControlSocketInUse as exc:
        raise ConfigError(name, value, str(exc)) from None
    except OSError as exc:
        raise ConfigError(name, value, exc.strerror or str(exc)) from None
