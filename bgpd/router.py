"""The router: where a node's routing decisions are made, as pure code (aioquic's shape, one floor
up from the session). The daemon is its only caller and executes what it asks for.

Inputs (each with ``now``, the caller's monotonic clock):
  ``apply_plan``     the node's routing plan, derived from a datastore snapshot by
                     ``bgpd.calico.node`` (sessions with their policies, local routes, kernel
                     planner, tunnels) — the router itself knows nothing of Calico;
  ``session_event``  a session's Established, Down, UPDATE or ROUTE-REFRESH, by peer key;
  ``bfd_report``     a BFD session's level (``bgpd.bfd.client.BfdReport``), by peer address;
  ``timer``          graceful-restart, selection-deferral and BFD dampening deadlines
                     (``next_deadline``).
Outputs, drained with ``drain()`` after any input:
  ``DesiredSessions`` (the supervisor's desired set), ``BfdWanted`` (the BFD sessions the BGP
  sessions ask for), ``TunnelsWanted`` (tunnel devices),
  ``MessagesWaiting`` (a peer has messages: pull them with ``take``), ``KernelWork`` (pull a
  round with ``kernel_batch``), ``Notice`` (a line for the log), ``StopSession`` (rule 8).

Rules:
1. One writer: only the daemon's routing task calls the input, drain and pull methods; the
   control surface only reads (``peer_statuses``, ``route_statuses``, ``status``, ``explain``).
2. Nothing is advertised, withdrawn or programmed before the first plan (confd's in-sync rule);
   a datastore outage just means no new plan, and the last one stays.
3. The Speaker is rebuilt when the router id, AS or cluster id changes; otherwise a new plan
   only updates local routes and the policies of established sessions (a policy equal to the
   installed one changes nothing, so an unrelated datastore change resets and refreshes
   nothing). A de-configured session's routes go at once, not kept as stale (RFC 4724 §4: it
   ends with a Cease NOTIFICATION).
4. After our own restart (the kernel held our routes at start) selection is deferred until the
   peers' End-of-RIB or the restart deadline (RFC 4724 §4.1); a peer not Established within
   ``ESTABLISH_WAIT`` of the plan that started the deferral is no longer waited for
   (``bgpd.rib.graceful_restart`` rule 3). Sessions advertise the Restart State bit meanwhile;
   then the kernel sweeps what the RIB no longer wants.
5. Every best-path change is planned into a desired kernel route (``bgpd.kernel.desired``);
   every new plan re-plans all of them (pools, rejects and encapsulation may have changed).
6. Messages are pulled per peer, at most ``budget`` prefixes at a time (Speaker rule 2).
7. Pure: no IO, no clock, no Calico model (``tests/test_layers.py``).
8. A session past its maximum prefix count (``bgpd.speaker`` rule 6) is stopped: ``StopSession``
   with Cease/Maximum Number of Prefixes Reached and RFC 4486 §4's data (AFI, SAFI, the upper
   bound), and an idle time before it connects again; past the warning threshold a ``Notice``.
9. The kernel's view (``kernel_view``: routes not ours, interface addresses) is kept; the plan's
   ``learning`` turns it into the learned local routes whenever either changes, and the kernel
   planning resolves next hops through it (``KernelPlanning.resolving``); every prefix is
   planned again only when the resolution changed.
10. BFD (RFC 5882, the rules in ``bgpd.bfd.client``): a session whose plan has ``bfd`` has a
    ``BfdGate``. A BFD failure ends the BGP session at once: the peer's routes leave the RIB and
    the kernel without graceful-restart retention, and the supervisor ends the TCP session with
    Cease/BFD Down (RFC 9384). While the gate does not allow BGP (BFD not Up, or dampened) the
    session is left out of ``DesiredSessions`` and its late events are ignored. A plan change
    keeps the gates of the sessions it keeps, so it resets nothing BFD does not concern.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from bgpd.bfd.client import BfdGate, BfdReport, BfdSpec
from bgpd.explain import Explanation
from bgpd.kernel.desired import DesiredKernel, KernelBatch
from bgpd.kernel.learn import KernelView
from bgpd.kernel.plan import KernelRoute
from bgpd.rib.graceful_restart import ESTABLISH_WAIT, SelectionDeferral
from bgpd.rib.policy import Policy
from bgpd.rib.route import Path, RouteSource
from bgpd.session.config import IPAddress, PeerKey, SessionConfig
from bgpd.session.events import (
    AutomaticStop,
    Down,
    Established,
    RouteRefreshReceived,
    State,
    UpdateReceived,
)
from bgpd.session.timers import keepalive_interval
from bgpd.speaker import (
    BestChanged,
    PeerHasOutput,
    PeerSettings,
    PrefixLimitReached,
    RibConverged,
    Speaker,
    SpeakerConfig,
)
from bgpd.status import BfdStatus, PeerStatus, RouteStatus, capability_names, route_status
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.constants import Afi, CeaseSubcode
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Family,
    PathAttributes,
    Prefix,
    prefix_from_str,
)
from encap.vxlan import TunnelPlan

SessionEvent = Established | Down | UpdateReceived | RouteRefreshReceived
TAKE_BUDGET = 65536  # prefixes of UPDATEs handed to a peer's sender at a time (rule 6)


class Learning(Protocol):
    """Turns what the kernel shows (routes not ours, interface addresses) into the node's learned
    local routes, each with its learned source (``RouteSource.learned``)."""

    def routes(
        self, view: KernelView
    ) -> Mapping[Family, Mapping[Prefix, tuple[RouteSource, PathAttributes]]]: ...


class KernelPlanning(Protocol):
    """Turns a prefix's best path and ECMP set into the kernel route it asks for (None: none)."""

    def route(
        self, family: Family, prefix: Prefix, best: Path | None, ecmp: tuple[Path, ...]
    ) -> KernelRoute | None: ...

    def explain(
        self, family: Family, prefix: Prefix, best: Path | None, ecmp: tuple[Path, ...]
    ) -> KernelRoute | str:
        """``route``, or in words why there is none."""
        ...

    def resolving(self, view: KernelView) -> KernelPlanning:
        """This planning with next hops resolved through ``view``; itself when that changes
        nothing."""
        ...


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """One desired session: how the FSM runs it, how the RIB treats it, and its policies."""

    config: SessionConfig
    settings: PeerSettings
    import_policy: Policy
    export_policy: Policy
    problem: str = ""  # for status only: e.g. its password's Secret cannot be read
    bfd: BfdSpec | None = None


@dataclass(frozen=True, slots=True)
class RoutingPlan:
    """A node's routing intent, derived from one datastore snapshot (``bgpd.calico.node``).
    ``router_id`` None: the node has no router id yet (nothing can run, rule 2).
    ``local_route_origins``: each local route's datastore record, in words (``bgpd explain``)."""

    router_id: ipaddress.IPv4Address | None
    local_as: int
    cluster_id: int | None
    sessions: Mapping[str, SessionPlan]
    local_routes: Mapping[Family, Mapping[Prefix, PathAttributes]]
    kernel: KernelPlanning
    tunnels: TunnelPlan | None = None
    listen_addresses: tuple[str, ...] = ()  # empty: every address (bindMode None)
    listen_port: int = 179
    log_severity: str = ""  # the datastore's logSeverityScreen for this node, "" if unset
    problems: tuple[str, ...] = ()
    local_route_origins: Mapping[Family, Mapping[Prefix, str]] = field(default_factory=dict)
    learning: Learning | None = None


@dataclass(frozen=True, slots=True)
class DesiredSessions:
    """The sessions that should run; ``bfd_down``: those BFD ended (rule 10), to be ended or
    reset with Cease/BFD Down."""

    configs: Mapping[PeerKey, SessionConfig]
    bfd_down: frozenset[PeerKey] = frozenset()


@dataclass(frozen=True, slots=True)
class BfdWanted:
    """The BFD sessions the planned BGP sessions ask for, by peer address (rule 10)."""

    peers: Mapping[IPAddress, BfdSpec]


@dataclass(frozen=True, slots=True)
class TunnelsWanted:
    plan: TunnelPlan | None


@dataclass(frozen=True, slots=True)
class MessagesWaiting:
    peer: PeerKey


@dataclass(frozen=True, slots=True)
class StopSession:
    """Close the session with ``stop`` (its Cease and idle time) and let it restart (rule 8)."""

    peer: PeerKey
    stop: AutomaticStop


@dataclass(frozen=True, slots=True)
class KernelWork:
    """Desired kernel routes changed: the kernel side should pull a ``kernel_batch``."""


@dataclass(frozen=True, slots=True)
class Notice:
    """A line for the log: ``level`` is a log level name, ``fields`` its key-value pairs."""

    level: str
    event: str
    fields: tuple[tuple[str, object], ...] = ()


Output = (
    DesiredSessions
    | BfdWanted
    | TunnelsWanted
    | MessagesWaiting
    | KernelWork
    | Notice
    | StopSession
)


@dataclass(frozen=True, slots=True)
class RouterStatus:
    router_id: str
    in_sync: bool
    restarting: bool
    kernel_routes: int
    problems: tuple[str, ...]
    update_groups: tuple[tuple[str, int], ...] = ()  # (family, members) of each update group


class SessionCounters(Protocol):
    """What ``peer_statuses`` reads of a running session (the transport's statistics)."""

    @property
    def state(self) -> State: ...
    @property
    def since(self) -> float: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def negotiated(self) -> Negotiated | None: ...
    @property
    def prefixes_in(self) -> int: ...
    @property
    def messages_in(self) -> int: ...
    @property
    def messages_out(self) -> int: ...
    @property
    def updates_in(self) -> int: ...
    @property
    def updates_out(self) -> int: ...


@dataclass
class _Applied:
    plan: RoutingPlan
    names: dict[PeerKey, str] = field(default_factory=dict)


class Router:
    """Rules 1-7."""

    def __init__(
        self,
        *,
        restarting: bool = False,
        restart_deadline: float = 120.0,
        establish_wait: float = ESTABLISH_WAIT,
        attribute_cache: AttributeCache | None = None,
        bfd_hold: bool = True,
    ) -> None:
        self.restarting = restarting
        self.bfd_hold = bfd_hold
        self.bfd_gates: dict[str, BfdGate] = {}
        self._held: frozenset[str] = frozenset()  # rule 10: left out of DesiredSessions
        self.speaker: Speaker | None = None
        self.kernel = DesiredKernel()
        self._restart_deadline = restart_deadline
        self._establish_wait = establish_wait
        self._cache = attribute_cache if attribute_cache is not None else AttributeCache()
        self._applied: _Applied | None = None
        self._outputs: list[Output] = []
        self._view: KernelView | None = None
        self._planner: KernelPlanning | None = None

    # -- inputs ---------------------------------------------------------------------------------

    def apply_plan(self, plan: RoutingPlan, now: float) -> None:
        """A new routing plan (rules 2, 3, 5)."""
        known = set(self._applied.plan.problems) if self._applied is not None else set()
        for problem in plan.problems:
            if problem not in known:  # one line per problem, not one per datastore change
                self._notice("warning", "datastore problem", problem=problem)
        if plan.router_id is None:
            self._notice(
                "error", "no router id: the node has no IPv4 address; set CALICO_ROUTER_ID"
            )
            return
        previous = self._applied.plan if self._applied is not None else None
        applied = self._applied = _Applied(plan)
        for name, session in plan.sessions.items():
            applied.names[session.config.key] = name
        speaker = self.speaker
        if (
            speaker is None
            or previous is None
            or (previous.router_id, previous.local_as, previous.cluster_id)
            != (plan.router_id, plan.local_as, plan.cluster_id)
        ):
            deferral = (
                SelectionDeferral(
                    now + self._restart_deadline,
                    frozenset(plan.sessions),
                    establish_by=now + self._establish_wait,
                )
                if self.restarting
                else None
            )
            config = SpeakerConfig(int(plan.router_id), plan.local_as, plan.cluster_id)
            speaker = self.speaker = Speaker(config, self._cache, restarting=deferral)
        speaker.set_local_routes(plan.local_routes, now)
        view = self._view
        self._planner = plan.kernel if view is None else plan.kernel.resolving(view)
        self._learn(now)
        established = set(speaker.peers())
        held = established | speaker.adj_ribs_in.keys()  # a peer down in graceful restart too
        for name in held - plan.sessions.keys():
            speaker.peer_removed(name, now)
        for name, session in plan.sessions.items():
            if name in established:
                speaker.set_policy(name, session.import_policy, session.export_policy, now)
        self._plan_bfd(plan, now)
        self._outputs.append(DesiredSessions(self._session_configs(plan)))
        self._outputs.append(TunnelsWanted(plan.tunnels))
        self._replan_kernel()

    def kernel_view(self, view: KernelView, now: float) -> None:
        """What the kernel shows now (routes not ours, interface addresses): the node's learned
        routes follow it (rule 9)."""
        if view == self._view:
            return
        self._view = view
        self._learn(now)
        planner = self._planner
        if planner is not None:
            resolving = planner.resolving(view)
            if resolving is not planner:
                self._planner = resolving
                self._replan_kernel()

    def _learn(self, now: float) -> None:
        speaker, applied, view = self.speaker, self._applied, self._view
        if speaker is None or applied is None or applied.plan.learning is None or view is None:
            return
        speaker.set_learned_routes(applied.plan.learning.routes(view), now)

    def session_event(self, peer: PeerKey, event: SessionEvent, now: float) -> str | None:
        """A session's event, in order per peer; returns the session's name (None: a session
        no longer in the plan, whose late events are ignored)."""
        applied, speaker = self._applied, self.speaker
        name = applied.names.get(peer) if applied is not None else None
        if applied is None or speaker is None or name is None:
            return None
        session = applied.plan.sessions[name]
        if name in self._held and not isinstance(event, Down):
            return name  # rule 10: a late event of a session BFD ended
        if isinstance(event, Established):  # policies first: the peer joins its update group
            speaker.set_policy(name, session.import_policy, session.export_policy, now)
            speaker.peer_up(name, session.settings, event.negotiated, now)
        elif isinstance(event, Down):
            if event.was_established:
                speaker.peer_down(name, graceful=event.notification is None, now=now)
        elif isinstance(event, UpdateReceived):
            speaker.update_received(name, event.update, now)
        else:
            speaker.route_refresh_received(name, event.refresh, now)
        return name

    def bfd_report(self, address: IPAddress, report: BfdReport, now: float) -> None:
        """A BFD session's new level (rule 10)."""
        applied = self._applied
        if applied is None:
            return
        ended: set[PeerKey] = set()
        for name, session in applied.plan.sessions.items():
            gate = self.bfd_gates.get(name)
            if gate is None or session.config.peer_address != address:
                continue
            established = self.speaker is not None and name in set(self.speaker.peers())
            if gate.take(report, now, established):
                ended.add(session.config.key)
                if self.speaker is not None and established:
                    self.speaker.peer_down(name, graceful=False, now=now)
                self._notice("info", "bfd down: bgp session ended", peer=name, reason="bfd-down")
        self._gate_sessions(now, frozenset(ended))

    def timer(self, now: float) -> None:
        if self.speaker is not None:
            self.speaker.timer(now)
        if self._held:
            self._gate_sessions(now)

    def next_deadline(self) -> float | None:
        deadlines = [
            d
            for name in self._held
            if (gate := self.bfd_gates.get(name)) is not None
            and (d := gate.next_deadline()) is not None
        ]
        if self.speaker is not None and (d := self.speaker.next_deadline()) is not None:
            deadlines.append(d)
        return min(deadlines) if deadlines else None

    # -- outputs --------------------------------------------------------------------------------

    def drain(self) -> list[Output]:
        """Everything the daemon must do now, in order."""
        outputs, self._outputs = self._outputs, []
        speaker, applied = self.speaker, self._applied
        if speaker is not None and applied is not None:
            plan = (self._planner or applied.plan.kernel).route
            desire = self.kernel.set
            for change in speaker.drain():
                if change.__class__ is BestChanged:  # a full table: one per prefix
                    family, prefix, best, ecmp = change
                    desire(family, prefix, plan(family, prefix, best, ecmp))
                elif isinstance(change, PeerHasOutput):
                    session = applied.plan.sessions.get(change.peer_id)
                    if session is not None:
                        outputs.append(MessagesWaiting(session.config.key))
                elif isinstance(change, RibConverged):
                    self._converged(outputs)
                elif isinstance(change, PrefixLimitReached):
                    self._prefix_limit(change, applied, outputs)
        if self.kernel.pending:
            outputs.append(KernelWork())
        return outputs

    def take(self, peer: PeerKey, budget: int = TAKE_BUDGET) -> list[bytes]:
        """Rule 6: the peer's next messages, pulled when its socket can take them."""
        name = self._applied.names.get(peer) if self._applied is not None else None
        if name is None or self.speaker is None:
            return []
        return self.speaker.take(name, budget)

    def has_messages(self, peer: PeerKey) -> bool:
        name = self._applied.names.get(peer) if self._applied is not None else None
        return name is not None and self.speaker is not None and self.speaker.has_output(name)

    def kernel_batch(self, limit: int) -> KernelBatch:
        """The next round of kernel writes (``bgpd.kernel.desired`` rule 2)."""
        return self.kernel.take(limit)

    # -- reads (rule 1) -------------------------------------------------------------------------

    def status(self) -> RouterStatus:
        plan = self._applied.plan if self._applied is not None else None
        return RouterStatus(
            router_id=str(plan.router_id) if plan is not None else "",
            in_sync=plan is not None,
            restarting=self.restarting,
            kernel_routes=len(self.kernel),
            problems=plan.problems if plan is not None else (),
            update_groups=tuple(
                (str(family), members)
                for family, members in (self.speaker.update_groups() if self.speaker else [])
            ),
        )

    def peer_statuses(
        self,
        counters: Mapping[PeerKey, SessionCounters],
        started: float,
        bfd: Mapping[str, BfdStatus] | None = None,
    ) -> list[PeerStatus]:
        """Each planned session as ``show protocols`` and ``bgpd show peers`` present it;
        ``started`` (wall clock) stands for "since" of a session that never ran; ``bfd`` the
        running BFD sessions by peer address."""
        bfd = bfd or {}
        applied, speaker = self._applied, self.speaker
        if applied is None:
            return []
        out: list[PeerStatus] = []
        for name, session in sorted(applied.plan.sessions.items()):
            config = session.config
            st = counters.get(config.key)
            held, sent = speaker.route_counts(name) if speaker is not None else (0, 0)
            negotiated = st.negotiated if st is not None else None
            helper = speaker is not None and speaker.graceful_restart.is_retaining(name)
            restart_state = "helper" if helper else ("restarting" if self.restarting else "")
            out.append(
                PeerStatus(
                    name=name,
                    peer_ip=str(config.peer_address),
                    peer_as=session.settings.peer_as,
                    local_as=config.local_as,
                    state=st.state.bird_name if st is not None else State.IDLE.bird_name,
                    since=st.since if st is not None else started,
                    passive=config.passive,
                    family="ipv6" if config.families[0].afi is Afi.IPV6 else "ipv4",
                    last_error=(st.last_error or "") if st is not None else "",
                    router_id=str(ipaddress.IPv4Address(negotiated.peer_id)) if negotiated else "",
                    hold_time=negotiated.hold_time if negotiated else 0,
                    keepalive_time=round(
                        keepalive_interval(negotiated.hold_time, config.keepalive_time)
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
                    graceful_restart=restart_state,
                    source_address=str(config.source_address or ""),
                    port=config.port,
                    problem=session.problem,
                    bfd=bfd.get(str(config.peer_address)) if session.bfd is not None else None,
                    bfd_holds=name in self._held,
                )
            )
        return out

    def route_statuses(self, prefix: str | None = None) -> list[RouteStatus]:
        """Loc-RIB candidates, every prefix's or one prefix's (the filter pushed down)."""
        speaker = self.speaker
        if speaker is None:
            return []
        wanted = prefix_from_str(prefix) if prefix else None
        version = ipaddress.ip_network(prefix, strict=False).version if prefix else 0
        names = {name: name for name in self._applied.plan.sessions} if self._applied else {}
        out: list[RouteStatus] = []
        for family, loc in speaker.loc_ribs.items():
            if wanted is not None and (family.afi is Afi.IPV6) != (version == 6):
                continue
            for key in [wanted] if wanted is not None else loc.prefixes():
                best = loc.best(key)
                for path in loc.candidates(key):
                    out.append(route_status(family, key, path, path is best, names))
        return out

    def explain(self, prefix: str) -> Explanation:
        """Everything about one prefix (``bgpd.explain``): read only (rule 1), computed on
        demand. ``prefix`` is a network (``10.0.0.0/26``) or an address (its host route); a bad
        one raises ValueError."""
        network = ipaddress.ip_network(prefix, strict=False)
        wanted = prefix_from_str(str(network))
        family = IPV6_UNICAST if network.version == 6 else IPV4_UNICAST
        applied, speaker = self._applied, self.speaker
        if applied is None or speaker is None or family not in speaker.loc_ribs:
            return Explanation(str(network), family, None, (), None, "", "", in_sync=False)
        rib = speaker.explain(family, wanted)
        loc = speaker.loc_ribs[family]
        kernel = applied.plan.kernel.explain(family, wanted, loc.best(wanted), loc.ecmp(wanted))
        down = tuple(
            name for name in sorted(applied.plan.sessions) if name not in set(speaker.peers())
        )
        origin = applied.plan.local_route_origins.get(family, {}).get(wanted, "")
        covering = ""
        if not rib.candidates:  # the route that forwards it instead, if any (longest match)
            for length in range(network.prefixlen - 1, -1, -1):
                wider = network.supernet(new_prefix=length)
                if prefix_from_str(str(wider)) in loc:
                    covering = str(wider)
                    break
        return Explanation(
            str(network),
            family,
            rib,
            down,
            kernel if isinstance(kernel, KernelRoute) else None,
            "" if isinstance(kernel, KernelRoute) else kernel,
            origin,
            in_sync=True,
            kernel_pending=self.kernel.is_pending(family, wanted),
            covered_by=covering,
        )

    # -- internals ------------------------------------------------------------------------------

    def _session_configs(self, plan: RoutingPlan) -> dict[PeerKey, SessionConfig]:
        """The supervisor's desired set without the sessions BFD holds (rule 10); the Restart
        State bit while we restart (rule 4)."""
        return {
            session.config.key: replace(session.config, graceful_restart_restarting=self.restarting)
            for name, session in plan.sessions.items()
            if name not in self._held
        }

    def _plan_bfd(self, plan: RoutingPlan, now: float) -> None:
        """Rule 8: a gate per session that asks for BFD, kept across plans; the BFD sessions
        wanted."""
        wanted: dict[IPAddress, BfdSpec] = {}
        gates: dict[str, BfdGate] = {}
        for name, session in sorted(plan.sessions.items()):
            if session.bfd is None:
                continue
            gates[name] = self.bfd_gates.get(name) or BfdGate(self.bfd_hold)
            wanted.setdefault(session.config.peer_address, session.bfd)
        self.bfd_gates = gates
        self._held = frozenset(n for n, g in gates.items() if not g.allows(now))
        self._outputs.append(BfdWanted(wanted))

    def _gate_sessions(self, now: float, ended: frozenset[PeerKey] = frozenset()) -> None:
        """Rule 8: a new desired set when the sessions BFD holds changed or BFD ended one."""
        applied = self._applied
        if applied is None:
            return
        held = frozenset(n for n, g in self.bfd_gates.items() if not g.allows(now))
        if held == self._held and not ended:
            return
        self._held = held
        self._outputs.append(DesiredSessions(self._session_configs(applied.plan), ended))

    def _replan_kernel(self) -> None:
        """Rule 5: every prefix of the Loc-RIBs planned again; routes of prefixes the RIB no
        longer has are no longer desired."""
        speaker, applied = self.speaker, self._applied
        if speaker is None or applied is None:
            return
        planner = self._planner or applied.plan.kernel
        kernel = self.kernel
        for family, loc in speaker.loc_ribs.items():
            for prefix in list(loc.prefixes()):
                route = planner.route(family, prefix, loc.best(prefix), loc.ecmp(prefix))
                kernel.set(family, prefix, route)
            for prefix in kernel.prefixes(family):
                if prefix not in loc:
                    kernel.set(family, prefix, None)

    def _prefix_limit(
        self, reached: PrefixLimitReached, applied: _Applied, outputs: list[Output]
    ) -> None:
        """Rule 8."""
        session = applied.plan.sessions.get(reached.peer_id)
        if session is None:
            return
        limit = reached.limit
        fields = {
            "session": reached.peer_id,
            "peer": str(session.config.key),
            "family": f"{reached.family.afi}/{reached.family.safi}",
            "prefixes": reached.count,
            "limit": limit.limit,
        }
        if not reached.exceeded:
            self._notice_to(outputs, "warning", "prefix count past warning threshold", fields)
            return
        fields["restart_after"] = limit.restart_time
        self._notice_to(outputs, "warning", "maximum prefixes reached: closing session", fields)
        # RFC 4486 §4: the Data field is AFI (2 octets), SAFI (1 octet), upper bound (4 octets).
        data = (
            reached.family.afi.to_bytes(2, "big")
            + reached.family.safi.to_bytes(1, "big")
            + limit.limit.to_bytes(4, "big")
        )
        stop = AutomaticStop(
            CeaseSubcode.MAXIMUM_PREFIXES_REACHED, data=data, idle_time=limit.restart_time
        )
        outputs.append(StopSession(session.config.key, stop))

    @staticmethod
    def _notice_to(
        outputs: list[Output], level: str, event: str, fields: Mapping[str, object]
    ) -> None:
        outputs.append(Notice(level, event, tuple(fields.items())))

    def _converged(self, outputs: list[Output]) -> None:
        """Rule 4: the selection deferral is over."""
        outputs.append(
            Notice("info", "routing converged after restart", (("reason", "end-of-rib"),))
        )
        self.restarting = False
        self.kernel.converged()

    def _notice(self, level: str, event: str, **fields: object) -> None:
        self._outputs.append(Notice(level, event, tuple(fields.items())))
