"""The router core: Adj-RIBs-In, import rules and policy, the Loc-RIB per family, export rules and
policy, Adj-RIBs-Out, graceful restart and route refresh, composed for every peer (RFC 4271
§3.2, §9). Sessions live elsewhere; a supervisor calls the input methods and runs the outputs.

Rules:
1. Inputs are methods taking ``now``: ``peer_up``, ``peer_down``, ``peer_removed``,
   ``update_received``, ``route_refresh_received``, ``set_local_routes``,
   ``set_learned_routes``, ``set_policy``, ``timer``. After calling
   any of them, call ``drain()`` and run the returned outputs, then re-arm one timer at
   ``next_deadline()``.
2. Outputs are values: ``BestChanged`` (the kernel's view of a prefix), ``PeerHasOutput`` (a
   peer has messages waiting), plus ``RibConverged`` when a deferred selection after our own
   restart ends (the kernel may then remove whatever it still holds that is not in the RIB).
   Messages are pulled, not pushed: ``take(peer_id, budget)`` encodes at most ``budget``
   prefixes of that peer's staged changes when its socket can take them (aioquic's
   ``datagrams_to_send``, BIRD's ``bgp_fire_tx``); the rest stays staged and coalesces, so a
   slow peer holds levels, never a queue of stale encoded UPDATEs.
3. Levels, not edges: a change only marks its prefix dirty; ``drain`` reads the current best
   for each dirty prefix, so bursts coalesce, and stages it in each peer's Adj-RIB-Out, which
   is diffed against what the peer was sent. End-of-RIB (RFC 4724 §2) and the enhanced route
   refresh's EoRR (RFC 7313 §4) follow only once everything staged before them was taken.
4. The hot path works per attribute set, not per prefix, when the policies allow
   (``Policy.prefix_independent``): import and export results are cached per interned
   attributes / path, and equal UPDATE groups are encoded once for all peers in the same
   encoding context (a small cache of the latest encodings, ``ENCODE_CACHE_GROUPS``). An
   export policy that looks at the prefix is evaluated once per (policy, family, prefix,
   attributes, context) for every peer that shares them (``_evaluations``, bounded, emptied
   when full): a reflector's clients share policy and context, so a route costs one
   evaluation, not one per client (FRR's update groups, GoBGP's peer groups do the same).
   Export policies are interned and numbered by value (``_policy_numbers``): peers with equal
   policies share one object (and the memos a policy's steps keep) and the key hashes a small
   int.
5. Pure: imports ``bgpd.rib`` and ``bgpd.wire``; no IO, no clock; never ``bgpd.session``.
6. A peer with ``PeerSettings.max_prefixes`` is watched after each of its UPDATEs: its
   Adj-RIB-In per family (routes received, before import policy, as BIRD's ``receive limit``)
   past the warning threshold, then past the limit, is reported once each per session
   (``PrefixLimitReached``); closing the session is the caller's (RFC 4486 §4).
7. Route-reflector clients (internal, ``rr_client``, no ADD-PATH transmit) that share
   everything the export rules and the encoding read (``_group_key``) share one Adj-RIB-Out per
   family, an ``UpdateGroup`` (``bgpd.rib.update_group``): staged and encoded once per group
   through a stand-in peer, sent to every member, never back to a route's sender. Groups split
   off their slow members and merge again when in step (its rule 5), on ``timer`` and ``drain``.
   Every other session keeps its own ``AdjRibOut``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import NamedTuple

from bgpd.rib.adj_rib_in import AdjRibIn, RouteKey, split_key
from bgpd.rib.adj_rib_out import AddPathState, AdjRibOut, EncodeCache, OutState
from bgpd.rib.best_path import IgpCost, ecmp_set, rank_path
from bgpd.rib.explain import Advertisement, Received, RibExplanation, explain_candidates
from bgpd.rib.export import (
    REJECT_RULES,
    ExportTarget,
    ImportReject,
    export_check,
    export_rewrite,
    import_check,
    import_normalise,
)
from bgpd.rib.graceful_restart import GracefulRestartHelper, SelectionDeferral
from bgpd.rib.loc_rib import LocRib
from bgpd.rib.policy import ACCEPT_ALL, Policy, PolicyContext, SourceKind
from bgpd.rib.route import LOCAL_SOURCE, NextHopMode, Path, PathTable, RouteSource
from bgpd.rib.update_group import UpdateGroup
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.messages import RouteRefresh, Update, encode_route_refresh
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, IPV6_UNICAST, Family, IPAddress, PathAttributes, Prefix
from bgpd.wire.update import encode_end_of_rib

REFRESH_REQUEST, REFRESH_BEGIN, REFRESH_END = 0, 1, 2  # RFC 7313 §3.2 subtypes
_CACHE_LIMIT = 65536
ENCODE_CACHE_GROUPS = 8192  # rule 4: encoded UPDATE groups kept for peers taking the same change
_MISSING = object()


@dataclass(frozen=True, slots=True)
class SpeakerConfig:
    """Speaker-wide settings. ``cluster_id`` defaults to the router id (RFC 4456 §7)."""

    router_id: int
    local_as: int
    cluster_id: int | None = None
    always_compare_med: bool = False
    stale_time: float = 360.0
    families: tuple[Family, ...] = (IPV4_UNICAST, IPV6_UNICAST)
    igp_cost: IgpCost | None = None


@dataclass(frozen=True, slots=True)
class PrefixLimit:
    """Rule 6: at most ``limit`` routes per family in the peer's Adj-RIB-In, a warning past
    ``warning``; ``restart_time`` is the idle time before the session connects again."""

    limit: int
    warning: int
    restart_time: float


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """One session's configuration as the RIB needs it.

    ``local_as`` overrides the speaker's AS on this session (BIRD ``local as``);
    ``next_hop_self`` is our address on the session per family.
    """

    address: IPAddress
    peer_as: int
    local_as: int | None = None
    rr_client: bool = False
    next_hop_mode: NextHopMode = NextHopMode.AUTO
    next_hop_self: Mapping[Family, bytes] = field(default_factory=dict)
    allow_own_as: int = 0
    max_prefixes: PrefixLimit | None = None


@dataclass(frozen=True, slots=True)
class PeerHasOutput:
    """``take(peer_id, budget)`` has messages for this peer (rule 2)."""

    peer_id: str


class BestChanged(NamedTuple):
    """The selection for ``prefix`` is now ``best`` (None: unreachable) with ECMP ``ecmp``.
    A NamedTuple: a full table makes a million of these."""

    family: Family
    prefix: Prefix
    best: Path | None
    ecmp: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class PrefixLimitReached:
    """Rule 6: the peer's Adj-RIB-In of ``family`` holds ``count`` routes, past the warning
    threshold (``exceeded`` False) or past the limit (True: the session must close)."""

    peer_id: str
    family: Family
    count: int
    limit: PrefixLimit
    exceeded: bool


@dataclass(frozen=True, slots=True)
class RibConverged:
    """Deferred selection after our restart is over (RFC 4724 §4.1): every prefix has been
    reported; routes installed before the restart and not reported since are stale."""


Output = PeerHasOutput | BestChanged | RibConverged | PrefixLimitReached


def _everything(loc: LocRib, sent: Mapping[Prefix, object]) -> list[Prefix]:
    """A full sync's prefixes: every route of the Loc-RIB, then what was sent and is gone."""
    routes = loc.routes
    return list(routes) + [p for p in sent if p not in routes]


class _Peer:
    """State of one established session."""

    __slots__ = (
        "peer_id",
        "settings",
        "negotiated",
        "source",
        "target",
        "families",
        "adj_out",
        "groups",
        "group_policy",
        "group_number",
        "full_sync",
        "eor_pending",
        "refresh_answer",
        "refresh_begun",
        "control",
        "import_cache",
        "export_cache",
        "import_ctx",
        "export_ctx_local",
        "export_ctx_remote",
        "learned_ctx",
        "own_addresses",
        "limit_reported",
    )

    def __init__(
        self,
        peer_id: str,
        settings: PeerSettings,
        negotiated: Negotiated,
        source: RouteSource,
        target: ExportTarget,
    ) -> None:
        self.peer_id = peer_id
        self.settings = settings
        self.negotiated = negotiated
        self.source = source
        self.target = target
        self.own_addresses = frozenset(target.next_hop_self.values())
        self.limit_reported: dict[Family, bool] = {}  # rule 6: family -> exceeded reported
        families = negotiated.families
        self.families = tuple(sorted(families))
        self.adj_out = {f: AdjRibOut(f, f in negotiated.add_path_tx) for f in self.families}
        self.groups: dict[Family, UpdateGroup] = {}  # rule 7: families sent through a group
        self.group_policy: Policy | None = None  # a group's stand-in: the group's export policy
        self.group_number: int | None = None  # and its number (rule 4)
        self.full_sync: set[Family] = set(families)
        self.eor_pending: set[Family] = set(families)
        self.refresh_answer: set[Family] = set()
        self.refresh_begun: set[Family] = set()
        self.control: list[bytes] = []
        self.import_cache: dict[tuple[Family, PathAttributes], Path | None] = {}
        self.export_cache: dict[Family, dict[Path, PathAttributes | None]] = {
            f: {} for f in families
        }
        kind = source.kind
        same_as = source.ibgp
        self.import_ctx = PolicyContext(kind, same_as, SourceKind.REMOTE_PEERS)
        self.export_ctx_local = PolicyContext(kind, same_as, SourceKind.LOCAL)
        self.export_ctx_remote = PolicyContext(kind, same_as, SourceKind.REMOTE_PEERS)
        self.learned_ctx: dict[RouteSource, PolicyContext] = {}

    def export_context(self, source: RouteSource) -> PolicyContext:
        """The export policy's context for a path of ``source``: a learned local route's
        carries its interface and gateway flag."""
        if not source.local:
            return self.export_ctx_remote
        if not source.learned:
            return self.export_ctx_local
        ctx = self.learned_ctx.get(source)
        if ctx is None:
            ctx = self.learned_ctx[source] = replace(
                self.export_ctx_local,
                interface=source.interface,
                learned=True,
                gateway=source.gateway,
            )
        return ctx


class Speaker:
    """The pure router core (rules 1-5)."""

    def __init__(
        self,
        config: SpeakerConfig,
        attribute_cache: AttributeCache | None = None,
        restarting: SelectionDeferral | None = None,
    ) -> None:
        self.config = config
        self.cluster_id = config.cluster_id if config.cluster_id is not None else config.router_id
        self.attributes = attribute_cache if attribute_cache is not None else AttributeCache()
        igp = config.igp_cost
        self.paths = PathTable(lambda s, a, i: rank_path(s, a, i, igp))
        self.loc_ribs = {f: LocRib(config.always_compare_med) for f in config.families}
        self.adj_ribs_in: dict[str, dict[Family, AdjRibIn]] = {}
        self.graceful_restart = GracefulRestartHelper(config.stale_time)
        self.deferral = restarting
        self.statistics: dict[str, int] = {}
        self._peers: dict[str, _Peer] = {}
        self._policies: dict[str, tuple[Policy, Policy]] = {}
        self._policy_numbers: dict[Policy, tuple[int, Policy]] = {}  # rule 4: number, object
        self._export_numbers: dict[str, int] = {}  # peer id -> its export policy's number
        self._evaluations: dict[
            tuple[int, Family, Prefix, PathAttributes, PolicyContext], PathAttributes | None
        ] = {}
        self._local: dict[Family, dict[Prefix, PathAttributes]] = {}
        self._learned: dict[Family, dict[Prefix, Path]] = {}
        self._dirty: dict[Family, list[list[Prefix]]] = {f: [] for f in config.families}
        self._tx_ids: dict[tuple[str, int], int] = {}
        self._next_index = 1
        self._converged_pending = False
        self._encode_cache: EncodeCache = {}
        self._limit_events: list[PrefixLimitReached] = []
        self._groups: dict[tuple[object, ...], UpdateGroup] = {}  # rule 7: the main one per key
        self._split_groups: list[UpdateGroup] = []  # split off a main group, until they merge
        self._group_peers: dict[tuple[object, ...], _Peer] = {}  # key -> stand-in for export
        self._now = 0.0  # the latest input's time: when a group's round was made

    # -- queries -------------------------------------------------------------------------------

    def peers(self) -> list[str]:
        return list(self._peers)

    def loc_rib(self, family: Family) -> LocRib:
        return self.loc_ribs[family]

    def advertised(self, peer_id: str, family: Family) -> dict[Prefix, OutState]:
        """What the peer was sent in ``family`` and holds from us (its Adj-RIB-Out's view)."""
        peer = self._peers[peer_id]
        group = peer.groups.get(family)
        if group is not None:
            return dict(group.held(peer_id))
        return dict(peer.adj_out[family].sent)

    def route_counts(self, peer_id: str) -> tuple[int, int]:
        """(routes held from the peer in its Adj-RIB-In, routes it was sent and not withdrawn)."""
        held = sum(len(rib) for rib in self.adj_ribs_in.get(peer_id, {}).values())
        peer = self._peers.get(peer_id)
        if peer is None:
            return held, 0
        sent = sum(len(out) for out in peer.adj_out.values())
        sent += sum(group.held_count(peer_id) for group in peer.groups.values())
        return held, sent

    def update_groups(self) -> list[tuple[Family, int]]:
        """Rule 7: each update group's family and member count, main groups first."""
        groups = [*self._groups.values(), *self._split_groups]
        return [(group.family, len(group)) for group in groups]

    def explain(self, family: Family, prefix: Prefix) -> RibExplanation:
        """Why ``prefix`` is (not) selected and to whom it is sent (``bgpd.rib.explain``),
        recomputed from the RIBs' state: nothing of it is kept in the hot path."""
        loc = self.loc_ribs[family]
        candidates = loc.candidates(prefix)
        held = {(p.source.peer_id, p.path_id) for p in candidates}
        received: list[Received] = []
        for peer_id, tables in self.adj_ribs_in.items():
            adj = tables.get(family)
            if adj is not None:
                received += self._explain_received(peer_id, family, prefix, adj, held)
        best = candidates[0] if candidates else None
        advertisements = tuple(
            self._explain_advertisement(peer, family, prefix, best)
            for peer in self._peers.values()
            if family in peer.families
        )
        return RibExplanation(
            family,
            prefix,
            tuple(received),
            explain_candidates(candidates, loc.always_compare_med),
            advertisements,
        )

    def _explain_received(
        self,
        peer_id: str,
        family: Family,
        prefix: Prefix,
        adj: AdjRibIn,
        held: set[tuple[str, int]],
    ) -> list[Received]:
        keys = adj.keys_for(prefix)
        peer = self._peers.get(peer_id)
        out: list[Received] = []
        for key in keys:
            attrs = adj.get(key)
            if attrs is None:
                continue
            _, path_id = split_key(key)
            stale = bool(adj.stale) and key in adj.stale  # type: ignore[operator]
            refused: str | None = "session not established (kept for graceful restart)"
            trace = None
            if peer is not None:
                reject = self._import_refusal(peer, attrs)
                refused = None if reject is None else f"{reject}: {REJECT_RULES[reject]}"
                if reject is None:
                    import_policy = self._policies.get(peer_id, (ACCEPT_ALL, ACCEPT_ALL))[0]
                    normalised = import_normalise(attrs, peer.source)
                    trace = import_policy.trace(family, prefix, normalised, peer.import_ctx)
            out.append(
                Received(peer_id, path_id, attrs, stale, refused, trace, (peer_id, path_id) in held)
            )
        return out

    def _explain_advertisement(
        self, peer: _Peer, family: Family, prefix: Prefix, best: Path | None
    ) -> Advertisement:
        group = peer.groups.get(family)
        out = peer.adj_out.get(family)
        if group is not None:
            sent: OutState | None = group.holds(peer.peer_id, prefix)
            pending = prefix in group.pending
        else:
            assert out is not None
            sent = out.sent.get(prefix)
            pending = prefix in out.pending
        refused: str | None = None
        trace = None
        if best is None:
            refused = "no route"
        else:
            check = export_check(best, peer.target)
            if check is not None:
                refused = f"{check}: {REJECT_RULES[check]}"
            else:
                export_policy = self._policies.get(peer.peer_id, (ACCEPT_ALL, ACCEPT_ALL))[1]
                ctx = peer.export_ctx_local if best.source.local else peer.export_ctx_remote
                trace = export_policy.trace(family, prefix, best.attrs, ctx)
        return Advertisement(
            peer_id=peer.peer_id,
            advertised=sent is not None,
            sent=sent if isinstance(sent, PathAttributes) else None,
            pending=pending,
            refused=refused,
            policy=trace,
            add_path=out is not None and out.add_path,
        )

    def next_deadline(self) -> float | None:
        deadlines = [self.graceful_restart.next_deadline()]
        if self.deferral is not None:
            deadlines.append(self.deferral.next_deadline())
        for group in chain(self._groups.values(), self._split_groups):
            deadlines.append(group.lag_deadline())
        return min((d for d in deadlines if d is not None), default=None)

    # -- inputs --------------------------------------------------------------------------------

    def peer_up(
        self, peer_id: str, settings: PeerSettings, negotiated: Negotiated, now: float
    ) -> None:
        """A session reached Established. Then call ``drain``."""
        if peer_id in self._peers:
            self.peer_down(peer_id, graceful=False, now=now)
        local_as = settings.local_as if settings.local_as is not None else self.config.local_as
        source = RouteSource(
            peer_id=peer_id,
            address=settings.address,
            router_id=negotiated.peer_id,
            peer_as=settings.peer_as,
            local_as=local_as,
            rr_client=settings.rr_client,
            index=self._next_index,
        )
        self._next_index += 1
        target = ExportTarget(
            peer=source,
            router_id=self.config.router_id,
            cluster_id=self.cluster_id,
            next_hop_mode=settings.next_hop_mode,
            next_hop_self=dict(settings.next_hop_self),
            allow_own_as=settings.allow_own_as,
        )
        peer = _Peer(peer_id, settings, negotiated, source, target)
        self._peers[peer_id] = peer
        self._now = now
        families = [f for f in negotiated.families if f in self.loc_ribs]
        for family in families:
            self._join_group(peer, family)
        # RFC 4724 §4.2: stale routes of families the new OPEN does not preserve go now.
        for family in self.graceful_restart.peer_up(peer_id, negotiated.peer_graceful_restart, now):
            self._sweep(peer_id, family)
        tables = self.adj_ribs_in.setdefault(peer_id, {})
        for family in list(tables):
            if family not in negotiated.families:
                self._flush_family(peer_id, family)
        for family in families:
            adj = tables.get(family)
            if adj is None:
                tables[family] = AdjRibIn(family in negotiated.add_path_rx)
            else:
                adj.add_path = family in negotiated.add_path_rx
        if self.deferral is not None:
            self.deferral.peer_up(peer_id, families)
            self._check_deferral(now)

    def peer_down(self, peer_id: str, graceful: bool, now: float) -> None:
        """The session left Established. ``graceful``: it ended without a NOTIFICATION, so
        RFC 4724 helper rules apply if the peer sent the capability. Then call ``drain``."""
        peer = self._peers.pop(peer_id, None)
        if peer is not None:
            for group in peer.groups.values():
                self._leave_group(group, peer_id)
        if self.deferral is not None:
            self.deferral.peer_down(peer_id)
            self._check_deferral(now)
        tables = self.adj_ribs_in.get(peer_id, {})
        capability = peer.negotiated.peer_graceful_restart if peer is not None else None
        keep = self.graceful_restart.peer_down(peer_id, capability, list(tables), graceful, now)
        for family in list(tables):
            if family in keep:
                tables[family].mark_stale()
            else:
                self._flush_family(peer_id, family)
        if not tables:
            self.adj_ribs_in.pop(peer_id, None)

    def peer_removed(self, peer_id: str, now: float) -> None:
        """The peer is no longer configured: everything held from it goes now, including the
        stale routes of a graceful restart it will never come back to refresh (RFC 4724 covers a
        restarting peer, not a deconfigured one; BIRD drops a removed protocol's routes at once).
        Then call ``drain``."""
        if peer_id in self._peers:
            self.peer_down(peer_id, graceful=False, now=now)
        self.graceful_restart.forget(peer_id)
        for family in list(self.adj_ribs_in.get(peer_id, {})):
            self._flush_family(peer_id, family)
        self.adj_ribs_in.pop(peer_id, None)

    def update_received(self, peer_id: str, update: Update, now: float) -> None:
        """An UPDATE from an established peer (already RFC 7606-processed by the codec)."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        self._now = now
        for withdrawal in update.withdrawn:
            self._withdraw(peer, withdrawal.family, withdrawal.prefixes, withdrawal.path_ids)
        for announcement in update.announced:
            self._announce(
                peer,
                announcement.family,
                announcement.attributes,
                announcement.prefixes,
                announcement.path_ids,
            )
        if update.end_of_rib is not None:
            self._end_of_rib(peer_id, update.end_of_rib, now)
        if peer.settings.max_prefixes is not None:
            self._check_prefix_limit(peer, peer.settings.max_prefixes)

    def _check_prefix_limit(self, peer: _Peer, limit: PrefixLimit) -> None:
        """Rule 6, once per threshold and family while the session lasts."""
        for family, adj in self.adj_ribs_in.get(peer.peer_id, {}).items():
            count = len(adj)
            reported = peer.limit_reported.get(family)
            if count > limit.limit and reported is not True:
                peer.limit_reported[family] = True
                self._limit_events.append(
                    PrefixLimitReached(peer.peer_id, family, count, limit, True)
                )
            elif count > limit.warning and reported is None:
                peer.limit_reported[family] = False
                self._limit_events.append(
                    PrefixLimitReached(peer.peer_id, family, count, limit, False)
                )

    def route_refresh_received(self, peer_id: str, message: RouteRefresh, now: float) -> None:
        """A ROUTE-REFRESH: a request is answered by re-sending our Adj-RIB-Out (RFC 2918 §4),
        framed by BoRR/EoRR with enhanced refresh (RFC 7313 §4); the peer's own BoRR marks its
        routes stale and its EoRR removes those not refreshed (RFC 7313 §4)."""
        peer = self._peers.get(peer_id)
        family = message.family
        if peer is None or family not in peer.families:
            return  # RFC 2918 §4: a refresh for a family not negotiated is ignored
        if message.subtype == REFRESH_REQUEST:
            group = peer.groups.get(family)
            if group is not None:
                group.restart_catch_up(peer_id)
            else:
                peer.adj_out[family].resend_all()
            if peer.negotiated.enhanced_route_refresh:
                peer.refresh_answer.add(family)
        elif message.subtype == REFRESH_BEGIN:
            adj = self.adj_ribs_in.get(peer_id, {}).get(family)
            if adj is not None:
                adj.mark_stale()
        elif message.subtype == REFRESH_END:
            self._sweep(peer_id, family)

    def set_local_routes(
        self, routes: Mapping[Family, Mapping[Prefix, PathAttributes]], now: float
    ) -> None:
        """The complete set of routes this node originates (e.g. its IPAM blocks)."""
        for family, loc in self.loc_ribs.items():
            old = self._local.get(family, {})
            new = {p: self.attributes.intern(a) for p, a in routes.get(family, {}).items()}
            gone = [p for p in old if p not in new]
            changed = loc.withdraw_many(gone, LOCAL_SOURCE.peer_id)
            for prefix, attrs in new.items():
                if old.get(prefix) is not attrs:
                    path = self.paths.get(LOCAL_SOURCE, attrs)
                    changed += loc.announce_many((prefix,), path)
            self._local[family] = new
            self._mark_dirty(family, changed)

    def set_learned_routes(
        self,
        routes: Mapping[Family, Mapping[Prefix, tuple[RouteSource, PathAttributes]]],
        now: float,
    ) -> None:
        """The complete set of routes the node learned from its kernel and interfaces, each with
        its (learned, local) source."""
        for family, loc in self.loc_ribs.items():
            old = self._learned.get(family, {})
            new: dict[Prefix, Path] = {}
            for prefix, (source, attrs) in routes.get(family, {}).items():
                new[prefix] = self.paths.get(source, self.attributes.intern(attrs))
            changed: list[Prefix] = []
            for prefix, path in old.items():
                kept = new.get(prefix)
                if kept is None or kept.source != path.source:
                    changed += loc.withdraw_many([prefix], path.source.peer_id)
            for prefix, path in new.items():
                if old.get(prefix) is not path:
                    changed += loc.announce_many((prefix,), path)
            self._learned[family] = new
            self._mark_dirty(family, changed)
        live = {path.source for table in self._learned.values() for path in table.values()}
        for peer in chain(self._peers.values(), self._group_peers.values()):
            # interfaces come and go with pods: forget theirs
            for gone in [s for s in peer.learned_ctx if s not in live]:
                del peer.learned_ctx[gone]

    def set_policy(
        self, peer_id: str, import_policy: Policy, export_policy: Policy, now: float
    ) -> None:
        """Install a session's policies. A changed export policy re-evaluates everything for
        that peer; a changed import policy asks the peer to resend (RFC 2918 §1) when it can,
        else re-runs import over the stored Adj-RIB-In."""
        previous = self._policies.get(peer_id, (ACCEPT_ALL, ACCEPT_ALL))
        export_policy = self._intern_export_policy(peer_id, export_policy)
        self._policies[peer_id] = (import_policy, export_policy)
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        if export_policy != previous[1]:
            for cache in peer.export_cache.values():
                cache.clear()
            peer.full_sync.update(peer.adj_out)
            for family, group in list(peer.groups.items()):
                self._regroup(peer, family, group)
        if import_policy != previous[0]:
            peer.import_cache.clear()
            if peer.negotiated.route_refresh:
                for family in peer.families:
                    peer.control.append(encode_route_refresh(RouteRefresh(family, REFRESH_REQUEST)))
            else:
                self.reapply_import(peer_id)

    def _intern_export_policy(self, peer_id: str, policy: Policy) -> Policy:
        """Rule 4: the shared object equal to ``policy``, numbered. Policies no peer uses any more
        are dropped once they outnumber the peers' (with the evaluations keyed by them)."""
        numbers = self._policy_numbers
        if policy not in numbers and len(numbers) > 2 * len(self._policies) + 16:
            numbers.clear()
            self._evaluations.clear()
            for other, (_, export) in self._policies.items():
                if other != peer_id:
                    self._export_numbers[other] = numbers.setdefault(
                        export, (len(numbers), export)
                    )[0]
            for stand_in in self._group_peers.values():  # rule 7: groups keep their numbers
                group_policy = stand_in.group_policy
                assert group_policy is not None
                stand_in.group_number = numbers.setdefault(
                    group_policy, (len(numbers), group_policy)
                )[0]
        number, shared = numbers.setdefault(policy, (len(numbers), policy))
        self._export_numbers[peer_id] = number
        return shared

    def reapply_import(self, peer_id: str) -> None:
        """Re-run import rules and policy over the peer's stored routes."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        peer.import_cache.clear()
        for family, adj in self.adj_ribs_in.get(peer_id, {}).items():
            loc = self.loc_ribs[family]
            changed: list[Prefix] = []
            for key, attrs in list(adj.items()):
                prefix, path_id = split_key(key)
                path = self._import_path(peer, family, prefix, attrs, path_id)
                if path is None:
                    change = loc.withdraw(prefix, peer_id, path_id)
                else:
                    change = loc.update(prefix, path)
                if change is not None:
                    changed.append(prefix)
            self._mark_dirty(family, changed)

    def timer(self, now: float) -> None:
        """Run what is due: graceful-restart timers and the selection deferral deadline."""
        self._now = now
        for peer_id, families in self.graceful_restart.expired(now):
            for family in families:
                self._sweep(peer_id, family)
        if self.deferral is not None:
            self._check_deferral(now)
        for group in [*self._groups.values(), *self._split_groups]:
            split = group.split_laggards(now)
            if split is not None:
                self._split_groups.append(split)
                self._follow_group(split)

    def drain(self) -> list[Output]:
        """Rule 3: everything to do now, in order; messages wait for ``take`` (rule 2)."""
        outputs: list[Output] = list(self._limit_events)
        self._limit_events.clear()
        deferring = self.deferral is not None
        if not deferring:
            dirty = {f: self._dirty_prefixes(f) for f in self._dirty}
            for family, prefixes in dirty.items():
                outputs += self._best_changes(family, prefixes)
            if self._converged_pending:
                outputs.append(RibConverged())
                self._converged_pending = False
            self._merge_groups()
            for peer in self._peers.values():
                self._stage_peer(peer, dirty)
            for group in chain(self._groups.values(), self._split_groups):
                self._stage_group(group, dirty)
        outputs += [PeerHasOutput(p) for p in self._peers if self.has_output(p)]
        return outputs

    def has_output(self, peer_id: str) -> bool:
        """Whether ``take`` would return messages for the peer now."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return False
        if peer.control:
            return True
        if self.deferral is not None:
            return False  # RFC 4724 §4.1: our UPDATEs and End-of-RIB wait for the selection
        return bool(
            peer.eor_pending
            or peer.refresh_answer
            or any(out.pending for out in peer.adj_out.values())
            or any(group.has_output(peer_id) for group in peer.groups.values())
        )

    def take(self, peer_id: str, budget: int | None = None) -> list[bytes]:
        """Rule 2: the peer's next messages in order, at most ``budget`` prefixes' worth of
        UPDATEs (all of them without a budget); End-of-RIB and EoRR after the last of a family."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return []
        messages = peer.control
        peer.control = []
        if self.deferral is not None:
            return messages
        room = budget
        cache = self._encode_cache
        for family in peer.families:
            answering = family in peer.refresh_answer
            if answering and family not in peer.refresh_begun:
                peer.refresh_begun.add(family)
                messages.append(encode_route_refresh(RouteRefresh(family, REFRESH_BEGIN)))
            group = peer.groups.get(family)
            if group is not None:
                taken, used = group.take(peer_id, peer.negotiated, room, self._now, cache)
                messages += taken
                if room is not None:
                    room -= min(room, used)
                if group.catching_up(peer_id):
                    continue
            else:
                out = peer.adj_out[family]
                if out.pending and (room is None or room > 0):
                    staged = len(out.pending)
                    messages += out.take(peer.negotiated, None if out.add_path else cache, room)
                    if room is not None:
                        room -= min(room, staged)
                if out.pending:
                    continue
            if answering:
                peer.refresh_answer.discard(family)
                peer.refresh_begun.discard(family)
                messages.append(encode_route_refresh(RouteRefresh(family, REFRESH_END)))
            if family in peer.eor_pending:
                peer.eor_pending.discard(family)
                messages.append(encode_end_of_rib(family))
        while len(cache) > ENCODE_CACHE_GROUPS:
            del cache[next(iter(cache))]
        return messages

    def _dirty_prefixes(self, family: Family) -> list[Prefix]:
        """Every prefix changed since the last drain, once, in order of first change."""
        batches = self._dirty[family]
        self._dirty[family] = []
        if len(batches) == 1:
            return batches[0]  # a prefix repeated inside one UPDATE reports one level twice
        return list(dict.fromkeys(chain.from_iterable(batches)))

    def _best_changes(self, family: Family, prefixes: list[Prefix]) -> list[Output]:
        loc = self.loc_ribs[family]
        get = loc.routes.get
        always = loc.always_compare_med
        # tuple.__new__ builds the NamedTuple three times faster than its constructor.
        new = tuple.__new__
        out: list[Output] = []
        append = out.append
        for prefix in prefixes:
            entry = get(prefix)
            if entry is None:
                append(new(BestChanged, (family, prefix, None, ())))
            elif entry.__class__ is Path:
                append(new(BestChanged, (family, prefix, entry, (entry,))))
            else:
                ordered: tuple[Path, ...] = entry  # type: ignore[assignment]
                append(new(BestChanged, (family, prefix, ordered[0], ecmp_set(ordered, always))))
        return out

    # -- import --------------------------------------------------------------------------------

    def _announce(
        self,
        peer: _Peer,
        family: Family,
        attrs: PathAttributes,
        prefixes: list[Prefix],
        path_ids: list[int] | None,
    ) -> None:
        adj = self.adj_ribs_in[peer.peer_id].get(family)
        if adj is None:
            return  # a family the session did not negotiate
        keys = adj.keys_of(prefixes, path_ids)
        adj.announce(keys, attrs)
        loc = self.loc_ribs[family]
        import_policy = self._policies.get(peer.peer_id, (ACCEPT_ALL, ACCEPT_ALL))[0]
        if not adj.add_path and import_policy.prefix_independent:
            cache_key = (family, attrs)
            path = peer.import_cache.get(cache_key, _MISSING)
            if path is _MISSING:
                if len(peer.import_cache) >= _CACHE_LIMIT:
                    peer.import_cache.clear()
                path = self._import_path(peer, family, b"", attrs, 0)
                peer.import_cache[cache_key] = path
            if path is None:
                changed = loc.withdraw_many(prefixes, peer.peer_id)
            else:
                changed = loc.announce_many(prefixes, path)  # type: ignore[arg-type]
        else:
            changed = []
            for key in keys:
                prefix, path_id = split_key(key)
                found = self._import_path(peer, family, prefix, attrs, path_id)
                if found is None:
                    change = loc.withdraw(prefix, peer.peer_id, path_id)
                else:
                    change = loc.update(prefix, found)
                if change is not None:
                    changed.append(prefix)
        self._mark_dirty(family, changed)

    def _import_path(
        self, peer: _Peer, family: Family, prefix: Prefix, attrs: PathAttributes, path_id: int
    ) -> Path | None:
        source = peer.source
        reject = self._import_refusal(peer, attrs)
        if reject is not None:
            self._count(reject)
            return None
        import_policy = self._policies.get(peer.peer_id, (ACCEPT_ALL, ACCEPT_ALL))[0]
        accepted = import_policy.evaluate(
            family, prefix, import_normalise(attrs, source), peer.import_ctx
        )
        if accepted is None:
            self._count("import-policy-reject")
            return None
        return self.paths.get(source, self.attributes.intern(accepted), path_id)

    def _import_refusal(self, peer: _Peer, attrs: PathAttributes) -> ImportReject | None:
        """The protocol's own import rules (``bgpd.rib.export`` rule 1)."""
        return import_check(
            attrs,
            peer.source,
            self.config.router_id,
            self.cluster_id,
            peer.settings.allow_own_as,
            peer.own_addresses,
        )

    def _withdraw(
        self, peer: _Peer, family: Family, prefixes: list[Prefix], path_ids: list[int] | None
    ) -> None:
        adj = self.adj_ribs_in[peer.peer_id].get(family)
        if adj is None:
            return
        held = adj.withdraw(adj.keys_of(prefixes, path_ids))
        self._remove(peer.peer_id, family, held)

    def _remove(self, peer_id: str, family: Family, keys: Iterable[RouteKey]) -> None:
        loc = self.loc_ribs[family]
        changed: list[Prefix] = []
        by_id: dict[int, list[Prefix]] = {}
        for key in keys:
            prefix, path_id = split_key(key)
            by_id.setdefault(path_id, []).append(prefix)
        for path_id, prefixes in by_id.items():
            changed += loc.withdraw_many(prefixes, peer_id, path_id)
        self._mark_dirty(family, changed)

    def _flush_family(self, peer_id: str, family: Family) -> None:
        tables = self.adj_ribs_in.get(peer_id, {})
        adj = tables.pop(family, None)
        if adj is not None:
            self._remove(peer_id, family, adj.clear())

    def _sweep(self, peer_id: str, family: Family) -> None:
        adj = self.adj_ribs_in.get(peer_id, {}).get(family)
        if adj is not None:
            self._remove(peer_id, family, adj.sweep_stale())
        if peer_id not in self._peers and adj is not None and not len(adj):
            self._flush_family(peer_id, family)
            if not self.adj_ribs_in.get(peer_id):
                self.adj_ribs_in.pop(peer_id, None)

    def _end_of_rib(self, peer_id: str, family: Family, now: float) -> None:
        if self.graceful_restart.end_of_rib(peer_id, family):
            self._sweep(peer_id, family)  # RFC 4724 §4.2
        if self.deferral is not None:
            self.deferral.end_of_rib(peer_id, family)
            self._check_deferral(now)

    def _mark_dirty(self, family: Family, changed: list[Prefix]) -> None:
        if changed:
            self._dirty[family].append(changed)

    def _check_deferral(self, now: float) -> None:
        """End the selection deferral when it is done (RFC 4724 §4.1)."""
        if self.deferral is not None and self.deferral.done(now):
            self.deferral = None
            self._converged_pending = True

    def _count(self, what: str | ImportReject) -> None:
        key = str(what)
        self.statistics[key] = self.statistics.get(key, 0) + 1

    # -- export --------------------------------------------------------------------------------

    def _stage_peer(self, peer: _Peer, dirty: Mapping[Family, list[Prefix]]) -> None:
        """Rule 3: the peer's desired state for every changed prefix (every prefix on a full
        sync) goes into its Adj-RIB-Out, waiting for ``take``."""
        for family, out in peer.adj_out.items():
            loc = self.loc_ribs.get(family)
            if loc is None:
                continue
            if family in peer.full_sync:
                peer.full_sync.discard(family)
                prefixes = _everything(loc, out.sent)
            else:
                prefixes = dirty.get(family, [])
            if out.add_path:
                for prefix in prefixes:
                    out.pending[prefix] = self._add_path_state(peer, family, prefix, loc)
            else:
                self._stage(peer, family, out.pending, out.sent, loc, prefixes)  # type: ignore[arg-type]

    def _stage_group(self, group: UpdateGroup, dirty: Mapping[Family, list[Prefix]]) -> None:
        """Rule 7: the group's desired state for every changed prefix (every prefix when it is
        new to its key), and each route's sender."""
        family = group.family
        loc = self.loc_ribs[family]
        if group.full_sync:
            group.full_sync = False
            prefixes = _everything(loc, group.sent)
        else:
            prefixes = dirty.get(family, [])
        stand_in = self._group_peers[group.key]
        origins = group.pending_origin
        self._stage(stand_in, family, group.pending, group.sent, loc, prefixes, origins)

    def _stage(
        self,
        peer: _Peer,
        family: Family,
        pending: dict[Prefix, PathAttributes | None],
        sent: Mapping[Prefix, object],
        loc: LocRib,
        prefixes: Iterable[Prefix],
        origins: dict[Prefix, str] | None = None,
    ) -> None:
        """Rule 3: the desired state of each prefix into ``pending``, unless it is nothing the
        peer has or is due to get; ``origins`` (a group's, rule 7) gets each route's sender."""
        get = loc.routes.get
        export_policy = self._export_policy(peer)[0]
        cache = peer.export_cache[family]
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache_get = cache.get
        by_path = export_policy.prefix_independent
        desired: PathAttributes | None
        for prefix in prefixes:
            entry = get(prefix)
            if entry is None:
                desired = None
            else:
                best: Path = entry if entry.__class__ is Path else entry[0]  # type: ignore[index]
                if not by_path:
                    desired = self._export(peer, family, prefix, best)
                else:
                    found = cache_get(best, _MISSING)
                    if found is _MISSING:
                        found = cache[best] = self._export(peer, family, prefix, best)
                    desired = found  # type: ignore[assignment]
                if origins is not None and desired is not None:
                    origins[prefix] = best.source.peer_id
            if desired is not None or prefix in sent or prefix in pending:
                pending[prefix] = desired

    def _add_path_state(
        self, peer: _Peer, family: Family, prefix: Prefix, loc: LocRib
    ) -> OutState | None:
        """RFC 7911: every exportable path of the ECMP set, each under a stable identifier."""
        state: list[tuple[int, PathAttributes]] = []
        for path in loc.ecmp(prefix):
            attrs = self._export(peer, family, prefix, path)
            if attrs is not None:
                state.append((self._tx_id(path), attrs))
        result: AddPathState = tuple(sorted(state, key=lambda item: item[0]))
        return result or None

    def _tx_id(self, path: Path) -> int:
        key = (path.source.peer_id, path.path_id)
        found = self._tx_ids.get(key)
        if found is None:
            found = self._tx_ids[key] = len(self._tx_ids) + 1
        return found

    def _export(
        self, peer: _Peer, family: Family, prefix: Prefix, path: Path
    ) -> PathAttributes | None:
        if export_check(path, peer.target) is not None:
            return None
        export_policy, number = self._export_policy(peer)
        ctx = peer.export_context(path.source)
        if number is None:
            attrs = export_policy.evaluate(family, prefix, path.attrs, ctx)
        else:
            evaluations = self._evaluations
            key = (number, family, prefix, path.attrs, ctx)
            attrs = evaluations.get(key, _MISSING)  # type: ignore[arg-type]
            if attrs is _MISSING:
                if len(evaluations) >= _CACHE_LIMIT:
                    evaluations.clear()
                attrs = evaluations[key] = export_policy.evaluate(family, prefix, path.attrs, ctx)
        if attrs is None:
            return None
        rewritten = export_rewrite(family, path, attrs, peer.target)
        return None if rewritten is None else self.attributes.intern(rewritten)

    def _export_policy(self, peer: _Peer) -> tuple[Policy, int | None]:
        """The peer's export policy and its number (rule 4); a group's stand-in has its
        group's (rule 7)."""
        if peer.group_policy is not None:
            return peer.group_policy, peer.group_number
        policy = self._policies.get(peer.peer_id, (ACCEPT_ALL, ACCEPT_ALL))[1]
        return policy, self._export_numbers.get(peer.peer_id)

    # -- update groups (rule 7) ------------------------------------------------------------------

    def _group_key(self, peer: _Peer, family: Family) -> tuple[object, ...] | None:
        """Everything ``bgpd.rib.export`` rules 2-4, the export policy and the encoding read of
        the session, for a reflector's client; None for any other session."""
        source, target, negotiated = peer.source, peer.target, peer.negotiated
        if not (source.ibgp and source.rr_client) or family in negotiated.add_path_tx:
            return None
        return (
            family,
            self._export_policy(peer)[0],
            source.peer_as,
            source.local_as,
            target.next_hop_mode,
            target.next_hop_self.get(family),
            negotiated.asn4,
            negotiated.max_message_len,
            family in negotiated.extended_next_hop,
        )

    def _join_group(self, peer: _Peer, family: Family) -> None:
        """A session up: into its key's main group, which catches it up (update_group rule 4)."""
        key = self._group_key(peer, family)
        if key is None:
            return
        group = self._groups.get(key)
        if group is None:
            self._ensure_stand_in(key, peer)
            group = self._groups[key] = UpdateGroup(key, family)
            group.full_sync = True  # a new group is sent the whole Loc-RIB, in rounds
        group.join(peer.peer_id)
        peer.groups[family] = group
        peer.adj_out.pop(family, None)
        peer.full_sync.discard(family)

    def _ensure_stand_in(self, key: tuple[object, ...], peer: _Peer) -> None:
        """The peer a group's export is evaluated for: ``peer``'s session under an id no
        session has, so only the sender rule differs (update_group rule 3 applies it)."""
        if key not in self._group_peers:
            stand_in_source = replace(peer.source, peer_id=f"\x00update-group {len(self._groups)}")
            stand_in = _Peer(
                stand_in_source.peer_id,
                peer.settings,
                peer.negotiated,
                stand_in_source,
                replace(peer.target, peer=stand_in_source),
            )
            policy, number = self._export_policy(peer)
            stand_in.group_policy, stand_in.group_number = policy, number
            self._group_peers[key] = stand_in

    def _leave_group(self, group: UpdateGroup, peer_id: str) -> None:
        group.leave(peer_id)
        if len(group):
            return
        if self._groups.get(group.key) is group:
            del self._groups[group.key]
        elif group in self._split_groups:
            self._split_groups.remove(group)
        key = group.key
        if key not in self._groups and all(g.key != key for g in self._split_groups):
            self._group_peers.pop(key, None)

    def _regroup(self, peer: _Peer, family: Family, group: UpdateGroup) -> None:
        """A member's export policy changed: it leaves with exactly what it holds, into a group
        of its new key that re-evaluates everything (and merges when in step)."""
        if group.fresh(peer.peer_id):  # it holds nothing yet: it joins its new key's group
            self._leave_group(group, peer.peer_id)
            self._join_group(peer, family)
            return
        key = self._group_key(peer, family)
        assert key is not None  # the session's kind, which decides grouping, did not change
        alone = group.detach([peer.peer_id])
        self._leave_group(group, peer.peer_id)
        self._ensure_stand_in(key, peer)
        alone.key = key
        alone.full_sync = True
        self._split_groups.append(alone)
        peer.groups[family] = alone

    def _follow_group(self, group: UpdateGroup) -> None:
        """Point the members' sessions at ``group``, which now holds them."""
        for member_id in group.members:
            peer = self._peers.get(member_id)
            if peer is not None:
                peer.groups[group.family] = group

    def _merge_groups(self) -> None:
        """Update-group rule 5: split groups back into their key's main group when in step."""
        for group in list(self._split_groups):
            main = self._groups.get(group.key)
            if main is None:
                self._split_groups.remove(group)
                self._groups[group.key] = group
            elif main.merge(group):
                self._split_groups.remove(group)
                self._follow_group(main)
