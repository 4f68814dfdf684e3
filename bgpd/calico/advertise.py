"""Calico's export function ``calico_export_to_bgp_peers`` and the per-node facts it reads: which
routes this node advertises (calico-bgp.md §2.8 item 6, §2.12, §2.12b, §2.13).

Rules:
1. ``calico_export`` is ``calico_export_to_bgp_peers(internal_peer)`` (§2.12b): the first
   matching step wins; falling off the end rejects. Steps are numbered as in §2.12b.
2. Priority normalisation (§2.8 item 6(a)): a BGP-learned route keeps its LOCAL_PREF (BIRD's
   default 100 when it came without, ``bgpd.calico.priority`` rule 2) and its metric is read
   from it; any other route gets its kernel metric, else the normal route
   priority, and the LOCAL_PREF that carries it (``bgpd.calico.priority``).
3. Own blocks are aggregated (§2.12 ``calico_aggr``): a confirmed (or implicitly confirmed)
   affinity exports the block and suppresses what is beneath it, except routes whose metric is
   below the normal priority (live migration); a ``pendingDeletion`` affinity gets no rule, so
   its blackhole still meets the pool accept of step 8 (we reproduce BIRD rather than invent a
   withdrawal); ``pending`` affinities are dropped (confd issue #6867).
4. Service ranges (§2.13): every ``serviceClusterIPs`` CIDR (or ``CALICO_ADVERTISE_CLUSTER_IPS``),
   every ``serviceExternalIPs`` CIDR that is not a single address, and with LB aggregation
   ``Enabled`` every ``serviceLoadBalancerIPs`` CIDR that is not a single address, is a static
   route (advertised) and a reject CIDR (never installed). A node labelled
   ``node.kubernetes.io/exclude-from-external-load-balancers=true`` keeps the reject CIDRs and
   drops the static routes. A route reflector also accepts routes inside every LB and external
   range (step 7).
5. Communities (§2.12b step 4): the node's prefixAdvertisements if it has any, else the global
   ones; names resolve through the same resource's ``communities``; values sorted, de-duplicated.
6. Destinations are integers (``bgpd.kernel.plan.Destination``), compared with ``covers``: the
   function runs once per exported prefix of a full table, so it builds no ``ipaddress`` object
   and formats no reason unless asked (``ExportDecision.reason``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from bgpd.calico.priority import (
    learned_local_pref,
    local_pref_for_metric,
    metric_for_local_pref,
)
from bgpd.calico.services import service_routes
from bgpd.calico.tunnels import bird_programs_pool, birds_ipip_responsibility
from bgpd.kernel.plan import Destination, covers
from peers.model import (
    EXCLUDE_FROM_LB_LABEL,
    AffinityState,
    BGPConfiguration,
    IPAddress,
    IPNetwork,
    LargeCommunity,
    Snapshot,
)

FELIX_TUNNEL_IFNAMES = ("*.cali", "*.calico")  # [BP rejectForFelixTunnelRoutes]
EBPF_IFNAME = "bpf*.cali"


class SourceProtocol(StrEnum):
    """How a route entered BIRD's table (BIRD's ``source``)."""

    BGP = "bgp"  # RTS_BGP: learned from a BGP peer
    KERNEL = "kernel"  # RTS_INHERIT: learned from the kernel (Felix's routes)
    STATIC = "static"  # RTS_STATIC: originated from the datastore (blocks, services)


@dataclass(frozen=True, slots=True)
class CommunityRule:
    """One prefixAdvertisement: routes inside ``cidr`` get these communities (rule 5)."""

    cidr: IPNetwork
    communities: tuple[int, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()


@dataclass(frozen=True, slots=True)
class RejectSet:
    """Service ranges never installed in the kernel (§2.11 step 1, rule 4)."""

    networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """A pool as the export function reads it."""

    cidr: IPNetwork
    disable_bgp_export: bool
    bird_programs: bool  # ``bgpd.calico.tunnels`` rule 1


@dataclass(frozen=True, slots=True)
class ExportPolicy:
    """Everything ``calico_export`` reads, for one node and IP version, and the WireGuard peers
    the kernel plan needs (§2.11 step 3)."""

    version: int
    normal_priority: int
    pools: tuple[PoolPolicy, ...] = ()
    felix_tunnel_ifnames: tuple[str, ...] = FELIX_TUNNEL_IFNAMES
    community_rules: tuple[CommunityRule, ...] = ()
    aggregated_blocks: tuple[IPNetwork, ...] = ()  # own confirmed blocks (calico_aggr)
    static_routes: tuple[IPNetwork, ...] = ()  # advertised service ranges
    rr_service_ranges: tuple[IPNetwork, ...] = ()  # only on a route reflector
    reject: RejectSet = field(default_factory=RejectSet)
    wireguard_next_hops: frozenset[IPAddress] = frozenset()


def _single_address(cidr: IPNetwork) -> bool:
    return cidr.prefixlen == cidr.max_prefixlen


def _service_ranges(
    config: BGPConfiguration | None,
    version: int,
    cluster_ips_override: Sequence[IPNetwork] | None,
) -> list[IPNetwork]:
    """Rule 4: the global service ranges of one family."""
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
    """Rule 5."""
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
    """This node's non-pending block affinities of one family, sorted by block (rule 3)."""
    found = [
        (aff.cidr, aff.state)
        for (node, _), aff in snapshot.affinities.items()
        if node == node_name
        and aff.cidr.version == version
        and aff.state is not AffinityState.PENDING
        and not aff.deleted
    ]
    return sorted(found, key=lambda item: (int(item[0].network_address), item[0].prefixlen))


def _wireguard(node_name: str, snapshot: Snapshot, version: int) -> IPAddress | None:
    node = snapshot.nodes[node_name]
    return node.wireguard_ipv4_address if version == 4 else node.wireguard_ipv6_address


def build_export_policy(
    node_name: str,
    snapshot: Snapshot,
    version: int,
    cluster_ips_override: Sequence[IPNetwork] | None = None,
    k8s_node: str | None = None,
) -> ExportPolicy:
    """The export function's inputs for ``node_name`` (``k8s_node`` in the Kubernetes API,
    Calico's ``CALICO_K8S_NODE_REF``, when it differs) and IP ``version`` (4 or 6)."""
    config = snapshot.global_config
    node = snapshot.nodes.get(node_name)
    pools = tuple(
        PoolPolicy(
            cidr=pool.cidr,
            disable_bgp_export=pool.disable_bgp_export,
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
    per_service = service_routes(k8s_node or node_name, snapshot, version, cluster_ips_override)
    static = ranges + [route for route in per_service if route not in ranges]
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
        static_routes=() if excluded else tuple(static),
        rr_service_ranges=rr_ranges,
        reject=RejectSet(tuple(ranges)),
        wireguard_next_hops=frozenset(wireguard),
    )


@dataclass(frozen=True, slots=True)
class RouteContext:
    """A route as the export function sees it, towards one peer."""

    source: SourceProtocol
    internal_peer: bool  # the session is iBGP (peer AS == effective local AS)
    ifname: str | None = None  # outgoing interface of a kernel-learned route
    has_gateway: bool = False  # kernel route with a next hop (RTD_ROUTER / RTD_MULTIPATH)
    metric: int | None = None  # krt_metric of a kernel-learned route
    local_pref: int | None = None  # LOCAL_PREF of a BGP-learned route


@dataclass(frozen=True, slots=True)
class ExportDecision:
    """The export function's verdict; ``reason`` is ``template`` filled with ``subject``, and
    the communities are those to add (RFC 1997, RFC 8092)."""

    accept: bool
    template: str
    subject: object = None
    communities: tuple[int, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()

    @property
    def reason(self) -> str:
        return self.template.format(self.subject)


def export_priority(
    source: SourceProtocol, local_pref: int | None, metric: int | None, normal_priority: int
) -> tuple[int, int]:
    """Rule 2: (metric, LOCAL_PREF) after normalisation."""
    if source is SourceProtocol.BGP:
        learned = learned_local_pref(local_pref)
        return metric_for_local_pref(learned, normal_priority), learned
    metric = normal_priority if metric is None else metric
    return metric, local_pref_for_metric(metric)


def calico_export(
    destination: Destination, policy: ExportPolicy, route: RouteContext
) -> ExportDecision:
    """Rule 1, steps numbered as in §2.12b."""
    version, address, length = destination
    for pool in policy.pools:  # 1
        if pool.disable_bgp_export and covers(pool.cidr, version, address, length):
            return ExportDecision(False, "pool {} has disableBGPExport", pool.cidr)
    if route.internal_peer:  # 2
        if route.ifname and any(
            fnmatch.fnmatchcase(route.ifname, p) for p in policy.felix_tunnel_ifnames
        ):
            return ExportDecision(False, "Felix tunnel route via {} (iBGP)", route.ifname)
        if route.source is SourceProtocol.KERNEL and route.has_gateway:
            for pool in policy.pools:
                if (
                    not pool.bird_programs
                    and not pool.disable_bgp_export
                    and covers(pool.cidr, version, address, length)
                ):
                    return ExportDecision(False, "Felix cluster route in {} (iBGP)", pool.cidr)
    if route.ifname and fnmatch.fnmatchcase(route.ifname, EBPF_IFNAME):  # 3
        return ExportDecision(False, "eBPF dataplane route")
    standard, large = _communities(destination, policy.community_rules)  # 4
    for block in policy.aggregated_blocks:  # 5
        if covers(block, version, address, length):
            if length == block.prefixlen:
                return ExportDecision(True, "own block {}", block, standard, large)
            metric, _ = export_priority(
                route.source, route.local_pref, route.metric, policy.normal_priority
            )
            if metric < policy.normal_priority:
                template = "elevated-priority route in own block {}"
                return ExportDecision(True, template, block, standard, large)
            return ExportDecision(False, "inside own block {} (aggregated)", block)
    for cidr in policy.static_routes:  # 6
        if covers(cidr, version, address, length):
            return ExportDecision(True, "service range {}", cidr, standard, large)
    for cidr in policy.rr_service_ranges:  # 7
        if covers(cidr, version, address, length):
            template = "service range {} (route reflector)"
            return ExportDecision(True, template, cidr, standard, large)
    for pool in policy.pools:  # 8
        if not pool.disable_bgp_export and covers(pool.cidr, version, address, length):
            return ExportDecision(True, "inside pool {}", pool.cidr, standard, large)
    return ExportDecision(False, "not inside any IP pool")


def _communities(
    destination: Destination, rules: Sequence[CommunityRule]
) -> tuple[tuple[int, ...], tuple[LargeCommunity, ...]]:
    """Rule 5: the communities of every rule whose CIDR holds the destination, first seen first."""
    standard: list[int] = []
    large: list[LargeCommunity] = []
    for rule in rules:
        if covers(rule.cidr, *destination):
            standard += [c for c in rule.communities if c not in standard]
            large += [c for c in rule.large_communities if c not in large]
    return tuple(standard), tuple(large)
