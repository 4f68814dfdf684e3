"""What this node originates, and Calico's export and kernel functions, as pure values.

Rules (calico-bgp.md §2.10-§2.13, §2.16; confd master [BP], [T bird_aggr/bird_ipam]):
1. Own blocks come from this node's block affinities: ``confirmed`` (or no state, "implicitly
   confirmed") -> a blackhole plus the aggregation rules (export the block, suppress what is
   beneath it); ``pendingDeletion`` -> the blackhole only, no aggregation rules; ``pending`` ->
   nothing (confd drops pending affinities, issue #6867). /32 and /128 blocks get no blackhole:
   it would shadow the workload route.
2. Borrowed addresses: an allocation in another node's block whose ``secondary.node`` is this
   node is a workload route here (Felix's ``cali*`` route that BIRD learns from the kernel);
   it is exported as a /32 (/128) because no aggregation rule covers it. Tunnel addresses are
   not routes in the main table and are skipped.
3. Service ranges (§2.13): every ``serviceClusterIPs`` CIDR (or ``CALICO_ADVERTISE_CLUSTER_IPS``),
   every ``serviceExternalIPs`` CIDR that is not a single address, and with LB aggregation
   ``Enabled`` every ``serviceLoadBalancerIPs`` CIDR that is not a single address, is a static
   blackhole route (advertised) and a reject CIDR (never installed). A node labelled
   ``node.kubernetes.io/exclude-from-external-load-balancers=true`` keeps the reject CIDRs and
   drops the static routes.
4. ``calico_export`` is ``calico_export_to_bgp_peers`` (§2.12b): the first matching step wins;
   falling off the end rejects. ``session_export`` runs the session's export filter around it:
   priority normalisation (§2.10), the session's BGPFilters (an accept or reject there ends the
   whole filter, as in BIRD), then ``calico_export``.
5. Priority encoding (§2.10): LOCAL_PREF = 2147483647 - metric; the default metric is the
   normal route priority (1024).
6. ``bird_programs_pool`` is confd master's ``clusterRoutePolicy.programsPool``: VXLAN pools
   never; IPIP pools under ``Enabled``/``EnabledIPIPOnly``; unencapsulated pools under
   ``Enabled``/``EnabledNoEncapOnly`` (the default, also for an unknown value).
7. ``calico_kernel_filter`` is ``calico_kernel_programming`` (§2.11).
8. A ``pendingDeletion`` block keeps its blackhole and loses its aggregation rules; the blackhole
   route then meets the pool accept of step 8, so BIRD still advertises it (and the /32s under
   it). We reproduce that rather than invent a withdrawal.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from peers.bgpfilter import RouteSource, RouteView, Verdict, run_session_filters
from peers.model import (
    EXCLUDE_FROM_LB_LABEL,
    AffinityState,
    BGPConfiguration,
    BGPFilter,
    EncapMode,
    IPAddress,
    IPNetwork,
    IPPool,
    LargeCommunity,
    ProgramClusterRoutes,
    Snapshot,
)
from peers.spec import SessionSpec

BIRD_INT_MAX = 2147483647  # [TF BirdIntMaxValue]
OVERRIDE_PREFERENCE = 200  # [BP birdOverridePreference]
TUNNEL_ADDRESS_TYPES = frozenset(
    {"ipipTunnelAddress", "vxlanTunnelAddress", "vxlanV6TunnelAddress", "wireguardTunnelAddress"}
)
FELIX_TUNNEL_IFNAMES = ("*.cali", "*.calico")  # [BP rejectForFelixTunnelRoutes]
EBPF_IFNAME = "bpf*.cali"


def local_pref_for_metric(metric: int) -> int:
    """Rule 5: the LOCAL_PREF that carries a route metric across iBGP."""
    return BIRD_INT_MAX - metric


def metric_for_local_pref(local_pref: int) -> int:
    return BIRD_INT_MAX - local_pref


def _inside(network: IPNetwork, cidr: IPNetwork) -> bool:
    """BIRD's ``net ~ cidr``: the route is the CIDR or inside it."""
    return network.version == cidr.version and network.subnet_of(cidr)  # type: ignore[arg-type]


def _inside_any(network: IPNetwork, cidrs: Iterable[IPNetwork]) -> IPNetwork | None:
    for cidr in cidrs:
        if _inside(network, cidr):
            return cidr
    return None


def _single_address(cidr: IPNetwork) -> bool:
    return cidr.prefixlen == cidr.max_prefixlen


# ---------------------------------------------------------------------------------------------
# Cluster-route responsibility (§2.11)


def bird_programs_pool(pool: IPPool, config: BGPConfiguration | None) -> bool:
    """Rule 6: whether this daemon (in BIRD's place) installs the pool's cluster routes."""
    mode = config.program_cluster_routes if config is not None else None
    if mode is None:
        mode = ProgramClusterRoutes.ENABLED_NO_ENCAP_ONLY
    if pool.uses_vxlan:
        return False
    if pool.uses_ipip:
        return mode in (ProgramClusterRoutes.ENABLED, ProgramClusterRoutes.ENABLED_IPIP_ONLY)
    return mode in (ProgramClusterRoutes.ENABLED, ProgramClusterRoutes.ENABLED_NO_ENCAP_ONLY)


def birds_ipip_responsibility(config: BGPConfiguration | None) -> bool:
    """Whether IPIP pools are ours to program (then ``tunl0`` routes are ours, not Felix's)."""
    probe = IPPool(name="", cidr=ipaddress.ip_network("0.0.0.0/0"), ipip_mode=EncapMode.ALWAYS)
    return bird_programs_pool(probe, config)


# ---------------------------------------------------------------------------------------------
# Policy inputs, per node and family


@dataclass(frozen=True, slots=True)
class CommunityRule:
    """One prefixAdvertisement: routes inside ``cidr`` get these communities (§2.12b step 4)."""

    cidr: IPNetwork
    communities: tuple[int, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()


@dataclass(frozen=True, slots=True)
class RejectSet:
    """Service ranges never installed in the kernel (§2.11 step 1)."""

    networks: tuple[IPNetwork, ...] = ()

    def contains(self, network: IPNetwork) -> bool:
        return _inside_any(network, self.networks) is not None


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    cidr: IPNetwork
    disable_bgp_export: bool
    uses_vxlan: bool
    ipip_mode: EncapMode
    bird_programs: bool


@dataclass(frozen=True, slots=True)
class ExportPolicy:
    """Everything ``calico_export`` and ``calico_kernel_filter`` read, for one node and family."""

    version: int
    normal_priority: int
    pools: tuple[PoolPolicy, ...] = ()
    felix_tunnel_ifnames: tuple[str, ...] = FELIX_TUNNEL_IFNAMES
    community_rules: tuple[CommunityRule, ...] = ()
    aggregated_blocks: tuple[IPNetwork, ...] = ()  # own confirmed blocks (calico_aggr)
    static_routes: tuple[IPNetwork, ...] = ()  # advertised service ranges
    rr_service_ranges: tuple[IPNetwork, ...] = ()  # only on a route reflector
    reject: RejectSet = field(default_factory=RejectSet)
    local_subnet: IPNetwork | None = None
    wireguard_next_hops: frozenset[IPAddress] = frozenset()


def _service_ranges(
    config: BGPConfiguration | None,
    version: int,
    cluster_ips_override: Sequence[IPNetwork] | None,
) -> list[IPNetwork]:
    """Rule 3: the global service ranges of one family."""
    if cluster_ips_override is not None:
        ranges = list(cluster_ips_override)
    else:
        ranges = [] if config is None else list(config.service_cluster_ips)
    if config is not None:
        ranges += [c for c in config.service_external_ips if not _single_address(c)]
        if config.service_load_balancer_aggregation == "Enabled":
            ranges += [c for c in config.service_load_balancer_ips if not _single_address(c)]
    return list(dict.fromkeys(c for c in ranges if c.version == version))


def _community_rules(node_name: str, snapshot: Snapshot, version: int) -> tuple[CommunityRule, ...]:
    """§2.12b step 4: the node's prefixAdvertisements if it has any, else the global ones;
    names resolve through the same resource's ``communities``; values sorted, de-duplicated."""
    source = snapshot.node_config(node_name)
    if source is None or not source.prefix_advertisements:
        source = snapshot.global_config
    if source is None:
        return ()
    named = {c.name: c.value for c in source.communities}
    rules = []
    for advert in source.prefix_advertisements:
        if advert.cidr.version != version:
            continue
        values = sorted({named.get(v, v) for v in advert.communities if ":" in named.get(v, v)})
        standard: list[int] = []
        large: list[LargeCommunity] = []
        for value in values:
            parts = tuple(int(p) for p in value.split(":"))
            if len(parts) == 2:
                standard.append((parts[0] << 16) | parts[1])
            else:
                large.append((parts[0], parts[1], parts[2]))
        if standard or large:
            rules.append(CommunityRule(advert.cidr, tuple(standard), tuple(large)))
    return tuple(rules)


def own_affinities(
    node_name: str, snapshot: Snapshot, version: int
) -> list[tuple[IPNetwork, AffinityState]]:
    """This node's non-pending block affinities of one family, sorted by block."""
    found = [
        (aff.cidr, aff.state)
        for (node, _), aff in snapshot.affinities.items()
        if node == node_name
        and aff.cidr.version == version
        and aff.state is not AffinityState.PENDING
        and not aff.deleted
    ]
    return sorted(found, key=lambda item: (int(item[0].network_address), item[0].prefixlen))


def build_export_policy(
    node_name: str,
    snapshot: Snapshot,
    version: int,
    cluster_ips_override: Sequence[IPNetwork] | None = None,
) -> ExportPolicy:
    """The policy inputs of ``node_name`` for IP ``version`` (4 or 6)."""
    config = snapshot.global_config
    node = snapshot.nodes.get(node_name)
    pools = tuple(
        PoolPolicy(
            cidr=pool.cidr,
            disable_bgp_export=pool.disable_bgp_export,
            uses_vxlan=pool.uses_vxlan,
            ipip_mode=pool.ipip_mode,
            bird_programs=bird_programs_pool(pool, config),
        )
        for pool in sorted(snapshot.pools.values(), key=lambda p: p.name)
        if pool.version == version
    )
    ifnames: tuple[str, ...] = FELIX_TUNNEL_IFNAMES
    if not birds_ipip_responsibility(config):
        ifnames += ("tunl0",)
    ranges = _service_ranges(config, version, cluster_ips_override)
    excluded = node is not None and node.labels.get(EXCLUDE_FROM_LB_LABEL) == "true"
    rr_ranges: tuple[IPNetwork, ...] = ()
    if node is not None and node.is_route_reflector and config is not None:
        rr_ranges = tuple(
            c
            for c in (*config.service_load_balancer_ips, *config.service_external_ips)
            if c.version == version
        )
    wireguard: set[IPAddress] = set()
    own_wireguard = None if node is None else _wireguard(node_name, snapshot, version)
    if own_wireguard is not None:
        for other_name, other in snapshot.nodes.items():
            other_ip = other.ip(version)
            if other_name != node_name and other_ip and _wireguard(other_name, snapshot, version):
                wireguard.add(other_ip)
    address = None if node is None else node.address(version)
    return ExportPolicy(
        version=version,
        normal_priority=snapshot.normal_route_priority(version),
        pools=pools,
        felix_tunnel_ifnames=ifnames,
        community_rules=_community_rules(node_name, snapshot, version),
        aggregated_blocks=tuple(
            cidr
            for cidr, state in own_affinities(node_name, snapshot, version)
            if state is AffinityState.CONFIRMED
        ),
        static_routes=() if excluded else tuple(ranges),
        rr_service_ranges=rr_ranges,
        reject=RejectSet(tuple(ranges)),
        local_subnet=None if address is None else address.network,
        wireguard_next_hops=frozenset(wireguard),
    )


def _wireguard(node_name: str, snapshot: Snapshot, version: int) -> IPAddress | None:
    node = snapshot.nodes[node_name]
    return node.wireguard_ipv4_address if version == 4 else node.wireguard_ipv6_address


# ---------------------------------------------------------------------------------------------
# The export function (§2.12b) and the session export filter (§2.8 item 6)


@dataclass(frozen=True, slots=True)
class RouteContext:
    """A route as the export function sees it, towards one peer."""

    source: RouteSource
    internal_peer: bool  # the session is iBGP (peer AS == effective local AS)
    ifname: str | None = None  # outgoing interface of a kernel-learned route
    has_gateway: bool = False  # kernel route with a next hop (RTD_ROUTER / RTD_MULTIPATH)
    metric: int | None = None  # krt_metric of a kernel-learned route
    local_pref: int | None = None  # LOCAL_PREF of a BGP-learned route


@dataclass(frozen=True, slots=True)
class ExportDecision:
    accept: bool
    reason: str
    communities: tuple[int, ...] = ()  # to add (RFC 1997)
    large_communities: tuple[LargeCommunity, ...] = ()  # to add (RFC 8092)
    local_pref: int | None = None
    metric: int | None = None
    as_path_prepend: tuple[int, ...] = ()


def export_priority(policy: ExportPolicy, route: RouteContext) -> tuple[int, int]:
    """§2.8 item 6(a): (metric, LOCAL_PREF) after normalisation."""
    if route.source is RouteSource.BGP and route.local_pref is not None:
        return metric_for_local_pref(route.local_pref), route.local_pref
    metric = route.metric if route.metric is not None else policy.normal_priority
    return metric, local_pref_for_metric(metric)


def calico_export(network: IPNetwork, policy: ExportPolicy, route: RouteContext) -> ExportDecision:
    """``calico_export_to_bgp_peers(internal_peer)``: rule 4, steps numbered as in §2.12b."""
    metric, local_pref = export_priority(policy, route)

    def decide(
        accept: bool, reason: str, communities: CommunityRule | None = None
    ) -> ExportDecision:
        std = communities.communities if communities else ()
        large = communities.large_communities if communities else ()
        return ExportDecision(accept, reason, std, large, local_pref, metric)

    for pool in policy.pools:  # 1
        if pool.disable_bgp_export and _inside(network, pool.cidr):
            return decide(False, f"pool {pool.cidr} has disableBGPExport")
    if route.internal_peer:  # 2
        if route.ifname and any(
            fnmatch.fnmatchcase(route.ifname, p) for p in policy.felix_tunnel_ifnames
        ):
            return decide(False, f"Felix tunnel route via {route.ifname} (iBGP)")
        if route.source is RouteSource.KERNEL and route.has_gateway:
            for pool in policy.pools:
                if (
                    not pool.bird_programs
                    and not pool.disable_bgp_export
                    and _inside(network, pool.cidr)
                ):
                    return decide(False, f"Felix cluster route in {pool.cidr} (iBGP)")
    if route.ifname and fnmatch.fnmatchcase(route.ifname, EBPF_IFNAME):  # 3
        return decide(False, "eBPF dataplane route")
    added = _collect_communities(network, policy.community_rules)  # 4
    for block in policy.aggregated_blocks:  # 5
        if network == block:
            return decide(True, f"own block {block}", added)
        if _inside(network, block):
            if metric < policy.normal_priority:
                return decide(True, f"elevated-priority route in own block {block}", added)
            return decide(False, f"inside own block {block} (aggregated)")
    if (cidr := _inside_any(network, policy.static_routes)) is not None:  # 6
        return decide(True, f"service range {cidr}", added)
    if (cidr := _inside_any(network, policy.rr_service_ranges)) is not None:  # 7
        return decide(True, f"service range {cidr} (route reflector)", added)
    for pool in policy.pools:  # 8
        if not pool.disable_bgp_export and _inside(network, pool.cidr):
            return decide(True, f"inside pool {pool.cidr}", added)
    return decide(False, "not inside any IP pool")


def _collect_communities(
    network: IPNetwork, rules: Sequence[CommunityRule]
) -> CommunityRule | None:
    standard: list[int] = []
    large: list[LargeCommunity] = []
    for rule in rules:
        if _inside(network, rule.cidr):
            standard += [c for c in rule.communities if c not in standard]
            large += [c for c in rule.large_communities if c not in large]
    if not standard and not large:
        return None
    return CommunityRule(network, tuple(standard), tuple(large))


def session_export(
    network: IPNetwork,
    policy: ExportPolicy,
    route: RouteContext,
    session: SessionSpec,
    filters: Mapping[str, BGPFilter],
    view: RouteView | None = None,
) -> ExportDecision:
    """The whole export filter of one session (§2.8 item 6): priority normalisation, the
    session's BGPFilters in order, ``calico_export``, else reject. ``view`` carries the route's
    current communities and AS path for filter matching."""
    metric, local_pref = export_priority(policy, route)
    base = view or RouteView(source=route.source, ifname=route.ifname)
    base = RouteView(
        source=base.source,
        communities=base.communities,
        large_communities=base.large_communities,
        as_path=base.as_path,
        priority=metric,
        ifname=base.ifname,
    )
    verdict, after = run_session_filters(
        filters, session.filters, "export", policy.version, network, base, session.is_ibgp
    )
    if verdict is Verdict.NONE:
        return calico_export(network, policy, route)
    new_metric = after.priority if after.priority is not None else metric
    new_pref = local_pref if new_metric == metric else local_pref_for_metric(new_metric)
    return ExportDecision(
        accept=verdict is Verdict.ACCEPT,
        reason=f"BGPFilter {verdict.value}",
        communities=tuple(c for c in after.communities if c not in base.communities),
        large_communities=tuple(
            c for c in after.large_communities if c not in base.large_communities
        ),
        local_pref=new_pref,
        metric=new_metric,
        as_path_prepend=after.as_path[: len(after.as_path) - len(base.as_path)],
    )


@dataclass(frozen=True, slots=True)
class ImportDecision:
    accept: bool
    reason: str
    view: RouteView
    override_local_workload: bool = False  # BIRD ``preference = 200`` (§2.10)


def session_import(
    network: IPNetwork,
    version: int,
    view: RouteView,
    local_pref: int | None,
    session: SessionSpec,
    filters: Mapping[str, BGPFilter],
    normal_priority: int,
) -> ImportDecision:
    """The import filter of one session (§2.8 item 5): BGPFilters, then accept; a LOCAL_PREF
    implying a metric below the normal priority wins over a local workload route."""
    verdict, after = run_session_filters(
        filters, session.filters, "import", version, network, view, session.is_ibgp
    )
    if verdict is Verdict.REJECT:
        return ImportDecision(False, "BGPFilter reject", after)
    if after.priority is not None and after.priority != view.priority:
        local_pref = local_pref_for_metric(after.priority)
    override = local_pref is not None and local_pref > BIRD_INT_MAX - normal_priority
    reason = "BGPFilter accept" if verdict is Verdict.ACCEPT else "default accept"
    return ImportDecision(True, reason, after, override)


# ---------------------------------------------------------------------------------------------
# The kernel filter (§2.11)


@dataclass(frozen=True, slots=True)
class KernelDecision:
    accept: bool
    reason: str
    tunnel: str | None = None  # "tunl0" for IPIP (``krt_tunnel``), "" for direct, None: untouched
    metric: int | None = None


def calico_kernel_filter(
    network: IPNetwork,
    policy: ExportPolicy,
    source: RouteSource,
    bgp_next_hop: IPAddress | None = None,
    local_pref: int | None = None,
) -> KernelDecision:
    """``calico_kernel_programming``: whether a best route is installed, via which tunnel, and
    with which metric (rule 7)."""
    rejected = _inside_any(network, policy.reject.networks)
    if rejected is not None:
        return KernelDecision(False, f"reject CIDR {rejected}")
    metric = None
    if source is RouteSource.BGP:
        metric = policy.normal_priority if local_pref is None else metric_for_local_pref(local_pref)
        if bgp_next_hop is not None and bgp_next_hop in policy.wireguard_next_hops:
            return KernelDecision(False, "WireGuard peer: Felix routes it", metric=metric)
    for pool in policy.pools:
        if not _inside(network, pool.cidr):
            continue
        if pool.uses_vxlan:
            return KernelDecision(False, "VXLAN routes are handled by Felix", metric=metric)
        if not pool.bird_programs:
            return KernelDecision(False, "cluster routes are handled by Felix", metric=metric)
        tunnel = None
        if policy.version == 4 and pool.ipip_mode is EncapMode.ALWAYS:
            tunnel = "tunl0"
        elif policy.version == 4 and pool.ipip_mode is EncapMode.CROSS_SUBNET:
            on_subnet = (
                bgp_next_hop is not None
                and policy.local_subnet is not None
                and bgp_next_hop in policy.local_subnet
            )
            tunnel = "" if on_subnet else "tunl0"
        return KernelDecision(True, f"pool {pool.cidr}", tunnel, metric)
    return KernelDecision(True, "default accept", metric=metric)


# ---------------------------------------------------------------------------------------------
# Origination (rules 1-3)


class RouteKind(StrEnum):
    OWN_BLOCK = "own-block"
    BORROWED = "borrowed"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class OriginatedRoute:
    """A route this node puts into its own table from the datastore."""

    network: IPNetwork
    kind: RouteKind
    blackhole: bool  # a blackhole route for it sits in the table (BIRD's static protocol)
    advertise: bool  # ``calico_export`` accepts it (towards an iBGP peer without BGPFilters)
    install_blackhole: bool  # the blackhole reaches the kernel (``calico_kernel_filter``)
    communities: tuple[int, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    local_pref: int = local_pref_for_metric(1024)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PinnedPeerRoute:
    """``route <peerIP>/32 via <reachableBy>`` for a peer with ``reachableBy`` (§2.12)."""

    network: IPNetwork
    gateway: IPAddress


@dataclass(frozen=True, slots=True)
class Origination:
    version: int
    routes: tuple[OriginatedRoute, ...]
    reject: RejectSet
    pinned: tuple[PinnedPeerRoute, ...]
    policy: ExportPolicy

    def advertised(self) -> tuple[IPNetwork, ...]:
        return tuple(r.network for r in self.routes if r.advertise)

    def blackholes(self) -> tuple[IPNetwork, ...]:
        return tuple(r.network for r in self.routes if r.install_blackhole)


def originate(
    node_name: str,
    snapshot: Snapshot,
    version: int,
    sessions: Iterable[SessionSpec] = (),
    cluster_ips_override: Sequence[IPNetwork] | None = None,
) -> Origination:
    """Everything ``node_name`` originates for IP ``version`` (rules 1-3 and 8)."""
    policy = build_export_policy(node_name, snapshot, version, cluster_ips_override)
    routes: list[OriginatedRoute] = []

    def add(network: IPNetwork, kind: RouteKind, blackhole: bool, source: RouteSource) -> None:
        decision = calico_export(network, policy, RouteContext(source, internal_peer=True))
        installed = blackhole and calico_kernel_filter(network, policy, source).accept
        routes.append(
            OriginatedRoute(
                network=network,
                kind=kind,
                blackhole=blackhole,
                advertise=decision.accept,
                install_blackhole=installed,
                communities=decision.communities,
                large_communities=decision.large_communities,
                local_pref=decision.local_pref or local_pref_for_metric(policy.normal_priority),
                reason=decision.reason,
            )
        )

    own_blocks = own_affinities(node_name, snapshot, version)
    for cidr, _state in own_blocks:
        add(cidr, RouteKind.OWN_BLOCK, not _single_address(cidr), RouteSource.STATIC)
    borrowed: set[IPNetwork] = set()
    for block in snapshot.blocks.values():
        if block.cidr.version != version or block.owner == node_name or block.deleted:
            continue
        for allocation in block.borrowed:
            if allocation.node != node_name or allocation.kind in TUNNEL_ADDRESS_TYPES:
                continue
            network = ipaddress.ip_network(allocation.address)
            if _inside_any(network, (cidr for cidr, _ in own_blocks)) is None:
                borrowed.add(network)
    for network in sorted(borrowed, key=lambda n: int(n.network_address)):
        add(network, RouteKind.BORROWED, False, RouteSource.KERNEL)
    for network in policy.static_routes:
        add(network, RouteKind.SERVICE, True, RouteSource.STATIC)
    pinned = tuple(
        PinnedPeerRoute(ipaddress.ip_network(s.peer_ip), s.reachable_by)
        for s in sorted(sessions, key=lambda s: s.name)
        if s.family == version and s.reachable_by is not None
    )
    return Origination(version, tuple(routes), policy.reject, pinned, policy)
