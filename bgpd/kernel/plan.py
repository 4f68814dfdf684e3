"""Desired kernel routes from best routes: BIRD's ``calico_kernel_programming`` export filter and
kernel protocol, plus the VXLAN routes Felix would program, as pure values. This is the one
kernel filter: the router plans every best-path change through ``plan_best``.

Rules (calico-bgp.md §2.4, §2.10, §2.11, §3.3-§3.5):
1. Routes go out with protocol ``bird`` (RTPROT_BIRD = 12) by default, in the main table.
2. Metric: the priority carried in LOCAL_PREF (§2.10: BIRD's ``krt_metric`` from
   ``bgp_local_pref``, ``bgpd.calico.priority`` rules 2-3: 2147483547 for a route learned
   without LOCAL_PREF), else the default metric 1024. Blackholes and pinned peer routes are
   BIRD's static routes, which Calico's kernel filter gives no ``krt_metric``, so BIRD's kernel
   protocol installs them with metric 0; Linux stores an IPv6 route of metric 0 with 1024
   (``IP6_RT_PRIO_USER``), so IPv6 ones are planned with 1024 (``STATIC_METRIC``).
3. Routes inside a reject CIDR (``/rejectcidrs``: advertised service ranges) are never installed
   (§2.11 step 1).
4. WireGuard (§2.11 step 3): a next hop that is the address of another node with a WireGuard
   address (``wireguard_next_hops``, empty when this node has none) is not ours: Felix routes it
   through the WireGuard device. Such a hop is dropped (rule 8).
5. Per pool (§2.11 step 4): a VXLAN pool's routes are Felix's unless the plan is told to program
   VXLAN itself (standalone mode, ``program_vxlan``); other pools are ours only when the caller
   says so (``owned_pools``, its reading of ``programClusterRoutes``); a route outside every pool
   is accepted (e.g. a ToR default route). ``kernel_refusal`` is rules 3 and 5, for any caller
   that must know whether a destination is ours to install.
6. Own-block blackholes pass through the same rules and become ``blackhole <block>``; a pinned
   peer route (``reachableBy``: BIRD's static ``route <peerIP>/32 via <reachableBy>`` in
   Calico's ``bird_aggr.cfg``, projectcalico/calico 87c15906 confd case
   ``reachable_by/global_peers``) becomes ``<peerIP> via <reachableBy>`` through rules 3-8; any
   other local route is not installed.
7. Each next hop is encapsulated per ``encap.decide``: direct ``via NH``; IP-in-IP
   ``via NH dev tunl0 onlink``; VXLAN ``via VTEP dev vxlan.calico onlink``. Several next hops
   (the ECMP set) become one multipath route (BIRD ``merge paths on``); unlike BIRD (calico
   #4462) every hop keeps its own tunnel. Hops are sorted so equal sets compare equal, and
   decided once per (next-hop set, pool) of a ``PlanConfig``: routes through the same next
   hops share one tuple of hops. A 32-octet IPv6 next hop counts as its global address.
8. A next hop of the other address family, a WireGuard hop, or a VXLAN hop without a known VTEP,
   is dropped; a route left with no next hop is skipped with the reason.
9. Kernel identity of a route is (table, destination, metric), packed into one int
   (``route_identity``; ``identity_parts`` unpacks it): a node holds a million routes, each
   keyed by its identity in the desired and known maps, and one int costs a third of a 5-tuple
   and its address int, and hashes without hashing five parts. ``diff`` replaces what differs
   and deletes what is no longer wanted. A desired hop without an interface matches any
   interface the kernel resolved for it.
10. A best route is planned from its packed prefix and next hops (``plan_best``): a full table
    streams through here, so a learned route builds neither a network nor a ``BestRoute``, and
    once its (next hops, LOCAL_PREF, pool) was planned, the same route is made from a memo.
11. A direct next hop is resolved as BIRD's ``gateway recursive`` does (Calico's BGP template):
    once the kernel's view is known (``resolver``, ``bgpd.kernel.learn`` rule 4), a next hop
    outside every connected network is installed via the gateway of the route towards it, and
    a next hop nothing leads to is dropped (rule 8). Tunnel hops are onlink and need none.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import NamedTuple

from bgpd.calico.priority import metric_for_local_pref
from bgpd.kernel.learn import KernelView, Resolver
from bgpd.rib.route import Path
from bgpd.wire.constants import Afi
from bgpd.wire.types import Family, Prefix, prefix_to_network
from encap.decide import Direct, Ipip, Unresolved, Vxlan, decide
from encap.model import Encapsulation, IPAddress, IPNetwork, PoolSpec

RTPROT_BIRD = 12
MAIN_TABLE = 254
DEFAULT_METRIC = 1024
STATIC_METRIC = {4: 0, 6: 1024}  # rule 2


class RouteKind(StrEnum):
    UNICAST = "unicast"
    BLACKHOLE = "blackhole"
    OTHER = "other"  # a route type we never install (unreachable, prohibit...), seen in dumps


class NextHop(NamedTuple):
    """One kernel next hop: gateway, optional output interface, RTNH_F_ONLINK."""

    gateway: IPAddress | None
    ifname: str | None = None
    onlink: bool = False


# (IP version, destination address as int, prefix length): a destination without objects.
Destination = tuple[int, int, int]
# (table, IP version, destination address as int, prefix length, metric), the kernel's key,
# packed into one int (rule 9): address, prefix length, metric, table, then 1 for IPv6.
RouteIdentity = int
IdentityParts = tuple[int, int, int, int, int]
_U32 = 0xFFFFFFFF


def route_identity(table: int, version: int, address: int, prefixlen: int, metric: int) -> int:
    """Rule 9: the identity of (table, destination, metric) as one int."""
    return ((((address << 8 | prefixlen) << 32 | metric) << 32 | table) << 1) | (version == 6)


def identity_parts(identity: RouteIdentity) -> IdentityParts:
    """``(table, version, address, prefix length, metric)`` of an identity."""
    version = 6 if identity & 1 else 4
    identity >>= 1
    table = identity & _U32
    identity >>= 32
    metric = identity & _U32
    identity >>= 32
    return table, version, identity >> 8, identity & 0xFF, metric


def destination_of(network: IPNetwork) -> Destination:
    return network.version, int(network.network_address), network.prefixlen


def prefix_destination(prefix: Prefix, family: Family) -> Destination:
    """A packed prefix as a destination, without an ``ipaddress`` network (rule 10)."""
    size = family.address_bytes
    address = int.from_bytes(prefix[1:], "big") << (8 * (size + 1 - len(prefix)))
    return (4 if size == 4 else 6), address, prefix[0]


def network_of(version: int, address: int, prefixlen: int) -> IPNetwork:
    if version == 4:
        return ipaddress.IPv4Network((address, prefixlen))
    return ipaddress.IPv6Network((address, prefixlen))


def covers(cidr: IPNetwork, version: int, address: int, prefixlen: int) -> bool:
    """Is the destination inside ``cidr``? ``subnet_of`` in integers: it runs per planned route,
    and ``subnet_of`` would build (and cache) broadcast addresses on each network."""
    if cidr.version != version or cidr.prefixlen > prefixlen:
        return False
    return (address ^ int(cidr.network_address)) >> (cidr.max_prefixlen - cidr.prefixlen) == 0


@dataclass(frozen=True, slots=True, init=False, repr=False)
class KernelRoute:
    """A route as the kernel holds it (one ``ip route`` line).

    Stored as its ``identity`` (rule 9: table, destination, metric, packed into one int),
    kind, next hops and protocol: no network object per route, since a node holds a million of
    them. ``dst``, ``metric`` and ``table`` are read from the identity.
    """

    identity: RouteIdentity
    kind: RouteKind
    nexthops: tuple[NextHop, ...]
    protocol: int

    def __init__(
        self,
        dst: IPNetwork,
        kind: RouteKind = RouteKind.UNICAST,
        nexthops: tuple[NextHop, ...] = (),
        metric: int = DEFAULT_METRIC,
        protocol: int = RTPROT_BIRD,
        table: int = MAIN_TABLE,
    ) -> None:
        identity = route_identity(
            table, dst.version, int(dst.network_address), dst.prefixlen, metric
        )
        _init_route(self, identity, kind, nexthops, protocol)

    @classmethod
    def keyed(
        cls,
        identity: RouteIdentity,
        kind: RouteKind,
        nexthops: tuple[NextHop, ...],
        protocol: int,
    ) -> KernelRoute:
        """A route from its identity, without building a network."""
        route = object.__new__(cls)
        _init_route(route, identity, kind, nexthops, protocol)
        return route

    @property
    def dst(self) -> IPNetwork:
        _table, version, address, prefixlen, _metric = identity_parts(self.identity)
        return network_of(version, address, prefixlen)

    @property
    def metric(self) -> int:
        return (self.identity >> 33) & _U32

    @property
    def table(self) -> int:
        return (self.identity >> 1) & _U32

    def __str__(self) -> str:
        head = f"blackhole {self.dst}" if self.kind is RouteKind.BLACKHOLE else str(self.dst)
        hops = "".join(f" {_hop_text(hop)}" for hop in self.nexthops)
        return f"{head}{hops} proto {self.protocol} metric {self.metric} table {self.table}"

    def __repr__(self) -> str:
        return (
            f"KernelRoute(dst={self.dst!r}, kind={self.kind!r}, nexthops={self.nexthops!r}, "
            f"metric={self.metric}, protocol={self.protocol}, table={self.table})"
        )


# The slots' own setters: a frozen instance is filled without ``object.__setattr__``'s lookup
# (a full table builds a million routes; 0.4 us a route against 0.66 us).
_SET_IDENTITY = vars(KernelRoute)["identity"].__set__
_SET_KIND = vars(KernelRoute)["kind"].__set__
_SET_NEXTHOPS = vars(KernelRoute)["nexthops"].__set__
_SET_PROTOCOL = vars(KernelRoute)["protocol"].__set__


def _init_route(
    route: KernelRoute,
    identity: RouteIdentity,
    kind: RouteKind,
    nexthops: tuple[NextHop, ...],
    protocol: int,
) -> None:
    _SET_IDENTITY(route, identity)
    _SET_KIND(route, kind)
    _SET_NEXTHOPS(route, nexthops)
    _SET_PROTOCOL(route, protocol)


def _hop_text(hop: NextHop) -> str:
    parts = [f"via {hop.gateway}"] if hop.gateway is not None else []
    if hop.ifname:
        parts.append(f"dev {hop.ifname}")
    if hop.onlink:
        parts.append("onlink")
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class BestRoute:
    """What the RIB hands the kernel side: the best route of a prefix and its ECMP set."""

    network: IPNetwork
    next_hops: tuple[IPAddress, ...] = ()
    local_pref: int | None = None
    local_blackhole: bool = False
    pool: PoolSpec | None = None
    static: bool = False  # one of BIRD's static routes (rule 2): a blackhole or a pinned route


@dataclass(frozen=True, slots=True)
class PlanConfig:
    """How to turn best routes into kernel routes.

    ``owned_pools``: CIDRs of the non-VXLAN pools whose routes we program (``programClusterRoutes``
    as the caller resolved it). ``program_vxlan``: we also play Felix's VXLAN role.
    ``local_networks``: this node's subnets (of ``spec.bgp.ipv4Address``/``ipv6Address``).
    ``vteps``: remote node IP -> that node's VXLAN tunnel address.
    ``wireguard_next_hops``: the other WireGuard nodes' addresses (rule 4).
    ``resolver``: how a direct next hop is resolved (rule 11).
    """

    protocol: int = RTPROT_BIRD
    table: int = MAIN_TABLE
    default_metric: int = DEFAULT_METRIC
    owned_pools: frozenset[IPNetwork] = frozenset()
    reject_cidrs: tuple[IPNetwork, ...] = ()
    program_vxlan: bool = False
    local_networks: tuple[IPNetwork, ...] = ()
    vteps: Mapping[IPAddress, IPAddress] = field(default_factory=dict)
    wireguard_next_hops: frozenset[IPAddress] = frozenset()
    resolver: Resolver | None = None  # rule 11; None: next hops are used as they are
    # The first local network per IP version, looked up once per planned route.
    _local_by_version: Mapping[int, IPNetwork] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    # Planned next hops by (IP version, next-hop key, id(pool)), the pool kept in the value so
    # its id stays its own: a node has few next-hop sets, so routes share one tuple of hops and
    # the encapsulation is decided once per set, not once per route.
    _hops: dict[tuple[int, Hashable, int], tuple[PoolSpec | None, tuple[NextHop, ...]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    # Rule 10: a learned route's metric and hops by (IP version, packed next hops, LOCAL_PREF,
    # id(pool)), the pool kept in the value as in ``_hops``: without reject CIDRs nothing else
    # of the destination matters, so a full table is planned from this memo, a hit per route.
    _learned: dict[
        tuple[int, tuple[bytes, ...], int | None, int],
        tuple[PoolSpec | None, int, tuple[NextHop, ...]],
    ] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_version: dict[int, IPNetwork] = {}
        for net in self.local_networks:
            by_version.setdefault(net.version, net)
        object.__setattr__(self, "_local_by_version", by_version)

    def local_network(self, version: int) -> IPNetwork | None:
        return self._local_by_version.get(version)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A best route that is deliberately not installed, and why."""

    network: IPNetwork
    reason: str


@dataclass(frozen=True, slots=True)
class KernelPlan:
    routes: tuple[KernelRoute, ...]
    skipped: tuple[Skipped, ...]


def kernel_refusal(
    destination: Destination, pool: PoolSpec | None, config: PlanConfig
) -> str | None:
    """Rules 3 and 5: why a route to ``destination`` in ``pool`` is not ours to install, or None
    when it is."""
    version, address, prefixlen = destination
    for cidr in config.reject_cidrs:
        if covers(cidr, version, address, prefixlen):
            return f"inside reject CIDR {cidr}"
    return _ownership_refusal(pool, config)


def _ownership_refusal(pool: PoolSpec | None, config: PlanConfig) -> str | None:
    """Rule 5: None when the route is ours to install, else why not."""
    if pool is None:
        return None
    if pool.encapsulation is Encapsulation.VXLAN:
        return None if config.program_vxlan else f"VXLAN pool {pool.label} is programmed by Felix"
    if pool.cidr in config.owned_pools:
        return None
    return f"pool {pool.label} is programmed by Felix (programClusterRoutes)"


def _next_hop(decision: Direct | Ipip | Vxlan, resolver: Resolver | None) -> NextHop | str:
    """Rule 7: direct hops leave the interface to the kernel, resolved by rule 11; tunnel hops
    are onlink. A string: why the hop cannot be installed."""
    if isinstance(decision, Direct):
        if resolver is None:
            return NextHop(decision.gateway)
        via = resolver.resolve(decision.gateway)
        if via is None:
            return f"next hop {decision.gateway} is unreachable: no route leads to it"
        return NextHop(via)
    return NextHop(decision.gateway, decision.device, True)


def plan_route(route: BestRoute, config: PlanConfig) -> KernelRoute | Skipped:
    """Rules 2-8 for one best route."""
    return plan_destination(
        destination_of(route.network),
        route.next_hops,
        route.next_hops,
        route.local_pref,
        route.local_blackhole,
        route.pool,
        config,
        static=route.static or route.local_blackhole,
    )


_HOPS_MEMO_LIMIT = 4096


def plan_destination(
    destination: Destination,
    gateways: tuple[IPAddress, ...],
    hops_key: Hashable,
    local_pref: int | None,
    local_blackhole: bool,
    pool: PoolSpec | None,
    config: PlanConfig,
    *,
    static: bool = False,
) -> KernelRoute | Skipped:
    """Rules 2-8 for one best route given as parts; ``hops_key`` stands for ``gateways`` (equal
    keys mean equal gateways), so a caller holding them packed can key on the packed form;
    ``static``: one of BIRD's static routes (rule 2's metric)."""
    refusal = kernel_refusal(destination, pool, config)
    if refusal is not None:
        return Skipped(network_of(*destination), refusal)
    version, address, prefixlen = destination
    metric = (
        STATIC_METRIC[version]
        if static or local_blackhole
        else metric_for_local_pref(local_pref, config.default_metric)
    )
    identity = ((((address << 8 | prefixlen) << 32 | metric) << 32 | config.table) << 1) | (
        version == 6
    )  # route_identity, inline: this runs once per planned route
    if local_blackhole:
        return KernelRoute.keyed(identity, RouteKind.BLACKHOLE, (), config.protocol)
    memo_key = (version, hops_key, id(pool))
    memo = config._hops.get(memo_key)
    if memo is not None and memo[0] is pool:
        return KernelRoute.keyed(identity, RouteKind.UNICAST, memo[1], config.protocol)
    dst = network_of(*destination)
    local_network = config.local_network(version)
    hops: set[NextHop] = set()
    problems: list[str] = []
    for gateway in gateways:
        if gateway.version != version:
            problems.append(f"next hop {gateway} is not IPv{version}")
            continue
        if gateway in config.wireguard_next_hops:
            problems.append(f"next hop {gateway} is a WireGuard peer: Felix routes it")
            continue
        decision = decide(dst, gateway, pool, local_network, config.vteps.get(gateway))
        if isinstance(decision, Unresolved):
            problems.append(decision.reason)
            continue
        hop = _next_hop(decision, config.resolver)
        if isinstance(hop, str):
            problems.append(hop)
        else:
            hops.add(hop)
    if not hops:
        return Skipped(dst, "; ".join(problems) or "no next hop")
    ordered = tuple(sorted(hops, key=_hop_sort_key))
    if len(config._hops) >= _HOPS_MEMO_LIMIT:
        config._hops.clear()
    config._hops[memo_key] = (pool, ordered)
    return KernelRoute.keyed(identity, RouteKind.UNICAST, ordered, config.protocol)


def _hop_sort_key(hop: NextHop) -> tuple[bytes, str, bool]:
    packed = hop.gateway.packed if hop.gateway is not None else b""
    return (packed, hop.ifname or "", hop.onlink)


def pool_of(network: IPNetwork, pools: Iterable[PoolSpec]) -> PoolSpec | None:
    """The first pool holding ``network``."""
    return pool_at(destination_of(network), pools)


def pool_at(destination: Destination, pools: Iterable[PoolSpec]) -> PoolSpec | None:
    """``pool_of`` in integers: this runs once per planned kernel route (rule 10)."""
    version, address, length = destination
    for pool in pools:
        if covers(pool.cidr, version, address, length):
            return pool
    return None


def _next_hop_bytes(best: Path, ecmp: tuple[Path, ...]) -> tuple[bytes, ...]:
    """The packed next hops of a learned best route's ECMP set, first seen first (rule 7)."""
    if len(ecmp) < 2:
        only = ecmp[0] if ecmp else best
        raw = only.attrs.next_hop
        if len(raw) in (4, 16) and not only.source.local:
            return (raw,)  # the common case, without the general loop below
    hops: list[bytes] = []
    for path in ecmp or (best,):
        if path.source.local:
            continue
        raw = path.attrs.next_hop
        if len(raw) == 32:
            raw = raw[:16]
        elif len(raw) not in (4, 16):
            continue
        if raw not in hops:
            hops.append(raw)
    return tuple(hops)


_NO_PINNED: Mapping[IPNetwork, IPAddress] = {}


@functools.lru_cache(maxsize=1024)
def _addresses(packed: tuple[bytes, ...]) -> tuple[IPAddress, ...]:
    """Next-hop address objects, interned: a node has few next-hop sets."""
    return tuple(ipaddress.ip_address(raw) for raw in packed)


def best_route(
    family: Family,
    prefix: Prefix,
    best: Path | None,
    ecmp: tuple[Path, ...],
    blackholes: frozenset[IPNetwork],
    pools: Iterable[PoolSpec],
    pinned: Mapping[IPNetwork, IPAddress] = _NO_PINNED,
) -> BestRoute | None:
    """The kernel's view of a best-path change; None when nothing should be installed
    (no route, or a local route that is neither one of the node's blackholes nor a pinned
    peer route: rule 6)."""
    if best is None:
        return None
    network = prefix_to_network(prefix, family)
    if best.source.local:
        if network in blackholes:
            return BestRoute(network, local_blackhole=True, pool=pool_of(network, pools))
        gateway = pinned.get(network)
        if gateway is not None:
            return BestRoute(network, (gateway,), pool=pool_of(network, pools), static=True)
        return None
    packed = _next_hop_bytes(best, ecmp)
    if not packed:
        return None
    return BestRoute(
        network,
        next_hops=_addresses(packed),
        local_pref=best.attrs.local_pref,
        pool=pool_of(network, pools),
    )


def plan_best(
    family: Family,
    prefix: Prefix,
    best: Path | None,
    ecmp: tuple[Path, ...],
    blackholes: frozenset[IPNetwork],
    pools: Iterable[PoolSpec],
    config: PlanConfig,
    pinned: Mapping[IPNetwork, IPAddress] = _NO_PINNED,
) -> KernelRoute | Skipped | None:
    """``plan_route(best_route(...))``: a best-path change as the kernel route it asks for
    (rules 2-8), a learned route planned from its packed prefix and next hops (rule 10)."""
    if best is None:
        return None
    if best.source.local:
        route = best_route(family, prefix, best, ecmp, blackholes, pools, pinned)
        return None if route is None else plan_route(route, config)
    only = ecmp[0] if len(ecmp) == 1 else None
    raw = best.attrs.next_hop
    if only is best and len(raw) in (4, 16):
        packed: tuple[bytes, ...] = (raw,)  # _next_hop_bytes' common case
    else:
        packed = _next_hop_bytes(best, ecmp)
        if not packed:
            return None
    size = 4 if family.afi == Afi.IPV4 else 16  # prefix_destination, inline
    address = int.from_bytes(prefix[1:], "big") << (8 * (size + 1 - len(prefix)))
    version, prefixlen = (4 if size == 4 else 6), prefix[0]
    pool = pool_at((version, address, prefixlen), pools) if pools else None
    local_pref = best.attrs.local_pref
    if not config.reject_cidrs:
        learned = config._learned.get((version, packed, local_pref, id(pool)))
        if learned is not None and learned[0] is pool:
            _pool, metric, hops = learned
            identity = ((((address << 8 | prefixlen) << 32 | metric) << 32 | config.table) << 1) | (
                version == 6
            )  # route_identity, inline
            return KernelRoute.keyed(identity, RouteKind.UNICAST, hops, config.protocol)
    destination = (version, address, prefixlen)
    planned = plan_destination(
        destination, _addresses(packed), packed, local_pref, False, pool, config
    )
    if isinstance(planned, KernelRoute) and not config.reject_cidrs:
        if len(config._learned) >= _HOPS_MEMO_LIMIT:
            config._learned.clear()
        config._learned[(version, packed, local_pref, id(pool))] = (
            pool,
            planned.metric,
            planned.nexthops,
        )
    return planned


@dataclass(frozen=True, slots=True)
class KernelPlanner:
    """A node's kernel planning as the router uses it: ``route`` is ``plan_best`` over this
    node's blackholes, pools, ``PlanConfig`` and pinned peer routes (peer /32 or /128 ->
    ``reachableBy`` gateway), a skipped route counting as none."""

    blackholes: frozenset[IPNetwork]
    pools: tuple[PoolSpec, ...]
    config: PlanConfig
    pinned: Mapping[IPNetwork, IPAddress] = field(default_factory=dict)

    def route(
        self, family: Family, prefix: Prefix, best: Path | None, ecmp: tuple[Path, ...]
    ) -> KernelRoute | None:
        planned = plan_best(
            family, prefix, best, ecmp, self.blackholes, self.pools, self.config, self.pinned
        )
        return planned if isinstance(planned, KernelRoute) else None

    def explain(
        self, family: Family, prefix: Prefix, best: Path | None, ecmp: tuple[Path, ...]
    ) -> KernelRoute | str:
        """``route``, or in words why there is none (``bgpd explain``)."""
        planned = plan_best(
            family, prefix, best, ecmp, self.blackholes, self.pools, self.config, self.pinned
        )
        if isinstance(planned, KernelRoute):
            return planned
        if isinstance(planned, Skipped):
            return planned.reason
        if best is None:
            return "no route in the Loc-RIB"
        if best.source.local:
            return "a route this node originates without a blackhole: advertised, not installed"
        return "no usable next hop"

    def resolving(self, view: KernelView) -> KernelPlanner:
        """This planner with next hops resolved through ``view`` (rule 11); itself when the
        resolution is unchanged, so the router can tell whether to plan again."""
        resolver = Resolver.of(view, self.config.protocol)
        if resolver == self.config.resolver:
            return self
        return replace(self, config=replace(self.config, resolver=resolver))


def plan_routes(routes: Iterable[BestRoute], config: PlanConfig) -> KernelPlan:
    """The desired kernel table for a set of best routes."""
    installed: list[KernelRoute] = []
    skipped: list[Skipped] = []
    for route in routes:
        outcome = plan_route(route, config)
        if isinstance(outcome, KernelRoute):
            installed.append(outcome)
        else:
            skipped.append(outcome)
    return KernelPlan(tuple(installed), tuple(skipped))


def satisfies(actual: KernelRoute | None, desired: KernelRoute) -> bool:
    """Rule 9: does the kernel's ``actual`` route already do what ``desired`` asks?"""
    if actual is None:
        return False
    if actual == desired:
        return True
    if (
        actual.identity != desired.identity
        or actual.kind is not desired.kind
        or actual.protocol != desired.protocol
        or len(actual.nexthops) != len(desired.nexthops)
    ):
        return False
    remaining = list(actual.nexthops)
    for want in desired.nexthops:
        match = next((have for have in remaining if _hop_satisfies(have, want)), None)
        if match is None:
            return False
        remaining.remove(match)
    return True


def _hop_satisfies(have: NextHop, want: NextHop) -> bool:
    return (
        have.gateway == want.gateway
        and have.onlink == want.onlink
        and (want.ifname is None or have.ifname == want.ifname)
    )


def index_routes(routes: Iterable[KernelRoute]) -> dict[RouteIdentity, KernelRoute]:
    """Routes by kernel identity (rule 9); a later route replaces an earlier one."""
    return {route.identity: route for route in routes}


def diff_indexed(
    have: Mapping[RouteIdentity, KernelRoute], wanted: Mapping[RouteIdentity, KernelRoute]
) -> tuple[list[KernelRoute], list[KernelRoute]]:
    """Rule 9 on indexed tables: ``(to_replace, to_delete)``."""
    to_replace = [route for key, route in wanted.items() if not satisfies(have.get(key), route)]
    to_delete = [route for key, route in have.items() if key not in wanted]
    return to_replace, to_delete


def diff(
    current: Iterable[KernelRoute], desired: Iterable[KernelRoute]
) -> tuple[list[KernelRoute], list[KernelRoute]]:
    """Rule 9: ``(to_replace, to_delete)`` turning ``current`` into ``desired``."""
    return diff_indexed(index_routes(current), index_routes(desired))
