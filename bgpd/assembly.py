"""Pure glue between the parts: Calico's session specs become session configs, RIB peer
settings and policies; originated routes become local RIB routes; best-path changes become
kernel routes; RIB state becomes status values.

Rules:
1. Every function here is a pure translation of values; the daemon owns all state and IO.
2. Export towards every session runs Calico's export filter (calico-bgp.md §2.8 item 6: the
   priority normalisation, the session's BGPFilters, ``calico_export_to_bgp_peers``); import runs
   the session's BGPFilters and the priority rule (§2.8 item 5, §2.10).
3. Routes we originate carry ORIGIN IGP, an empty AS_PATH, our address as next hop, and
   LOCAL_PREF from the priority encoding (§2.10); the RIB's export rules do the rest.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import replace

from bgpd.kernel.plan import (
    BestRoute,
    Destination,
    KernelRoute,
    PlanConfig,
    Skipped,
    covers,
    destination_of,
    plan_destination,
    plan_route,
)
from bgpd.origin import (
    Origination,
    RouteContext,
    bird_programs_pool,
    session_export,
    session_import,
)
from bgpd.rib.policy import ACCEPT_ALL, Policy, PolicyContext, SourceKind
from bgpd.rib.route import Path
from bgpd.session.config import PeerKey, SessionConfig
from bgpd.speaker import PeerSettings
from bgpd.status import RouteStatus
from bgpd.wire.constants import Origin, SegmentType
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    Family,
    IPAddress,
    PathAttributes,
    Prefix,
    next_hop_to_str,
    prefix_from_network,
    prefix_to_network,
)
from encap.model import EncapMode, Encapsulation, NodeTunnelInfo, PoolSpec
from peers.bgpfilter import RouteSource as CalicoSource
from peers.bgpfilter import RouteView
from peers.model import BGPFilter, IPNetwork, Node, Snapshot
from peers.resolve import NodePeering
from peers.spec import SessionSpec

NORMAL_PRIORITY = 1024
FAMILY_OF_VERSION = {4: IPV4_UNICAST, 6: IPV6_UNICAST}


def session_key(spec: SessionSpec) -> PeerKey:
    return PeerKey(spec.peer_ip, spec.port)


def session_config(
    spec: SessionSpec,
    peering: NodePeering,
    *,
    restarting: bool,
    graceful_restart_time: int,
) -> SessionConfig:
    """One Calico session as the FSM runs it: multihop, GR and ADD-PATH on, Calico's short
    connect timers (calico-bgp.md §2.7), passive side and TTL security per §2.8."""
    assert peering.router_id is not None
    family = FAMILY_OF_VERSION[spec.family]
    return SessionConfig(
        local_as=spec.local_as,
        peer_as=spec.peer_as,
        router_id=peering.router_id,
        peer_address=spec.peer_ip,
        port=spec.port,
        keepalive_time=spec.keepalive_time,
        connect_retry_time=5.0,
        connect_delay_time=2.0,
        error_wait_min=5.0,
        error_wait_max=30.0,
        passive=spec.passive,
        families=(family,),
        add_path=3,
        graceful_restart_time=spec.restart_time or graceful_restart_time,
        graceful_restart_restarting=restarting,
        graceful_restart_forwarding=True,
        md5_password=spec.password,
        ttl_security=spec.ttl_security,
        multihop_ttl=None if spec.ttl_security else 255,
        source_address=spec.source_address,
        name=spec.name,
    )


def peer_settings(
    spec: SessionSpec, own_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
) -> PeerSettings:
    family = FAMILY_OF_VERSION[spec.family]
    return PeerSettings(
        address=spec.peer_ip,
        peer_as=spec.peer_as,
        local_as=spec.local_as,
        rr_client=spec.rr_client,
        next_hop_mode=spec.next_hop_mode,
        next_hop_self={family: own_address.packed} if own_address is not None else {},
        allow_own_as=spec.num_allowed_local_as,
    )


def _flat_path(attrs: PathAttributes) -> tuple[int, ...]:
    return tuple(
        asn
        for seg in attrs.as_path
        if seg.type in (SegmentType.AS_SEQUENCE, SegmentType.AS_SET)
        for asn in seg.asns
    )


def _view(attrs: PathAttributes, source: CalicoSource) -> RouteView:
    return RouteView(
        source=source,
        communities=attrs.communities,
        large_communities=attrs.large_communities,
        as_path=_flat_path(attrs),
    )


def session_filters(spec: SessionSpec, filters: Mapping[str, BGPFilter]) -> tuple[object, ...]:
    """The BGPFilter resources a session uses, in order: what its policies depend on."""
    return tuple(filters.get(name) for name in spec.filters)


def export_policy(
    spec: SessionSpec, origination: Origination, filters: Mapping[str, BGPFilter]
) -> Policy:
    """The session's export filter (rule 2)."""
    calico = origination.policy

    def hook(
        family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> PathAttributes | None:
        source = CalicoSource.STATIC if ctx.source is SourceKind.LOCAL else CalicoSource.BGP
        network = prefix_to_network(prefix, family)
        route = RouteContext(source=source, internal_peer=spec.is_ibgp, local_pref=attrs.local_pref)
        decision = session_export(network, calico, route, spec, filters, _view(attrs, source))
        if not decision.accept:
            return None
        communities = attrs.communities + tuple(
            c for c in decision.communities if c not in attrs.communities
        )
        large = attrs.large_communities + tuple(
            c for c in decision.large_communities if c not in attrs.large_communities
        )
        out = replace(
            attrs,
            communities=communities,
            large_communities=large,
            local_pref=decision.local_pref if decision.local_pref is not None else attrs.local_pref,
        )
        if decision.as_path_prepend:
            out = replace(
                out,
                as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, decision.as_path_prepend),)
                + out.as_path,
            )
        return out

    return Policy(hook=hook)


def import_policy(
    spec: SessionSpec, filters: Mapping[str, BGPFilter], normal_priority: int = NORMAL_PRIORITY
) -> Policy:
    """The session's import filter (rule 2): accept all unless it has BGPFilters."""
    if not spec.filters:
        return ACCEPT_ALL

    def hook(
        family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> PathAttributes | None:
        network = prefix_to_network(prefix, family)
        decision = session_import(
            network,
            spec.family,
            _view(attrs, CalicoSource.BGP),
            attrs.local_pref,
            spec,
            filters,
            normal_priority,
        )
        if not decision.accept:
            return None
        view = decision.view
        return replace(
            attrs,
            communities=view.communities,
            large_communities=view.large_communities,
            local_pref=(2147483647 - view.priority)
            if view.priority is not None
            else attrs.local_pref,
        )

    return Policy(hook=hook)


def local_routes(
    originations: Iterable[Origination], own_addresses: Mapping[int, bytes]
) -> dict[Family, dict[Prefix, PathAttributes]]:
    """The routes we originate, as RIB routes (rule 3); only the advertised ones."""
    out: dict[Family, dict[Prefix, PathAttributes]] = {}
    for origination in originations:
        family = FAMILY_OF_VERSION[origination.version]
        table = out.setdefault(family, {})
        for route in origination.routes:
            if not (route.advertise or route.install_blackhole):
                continue
            table[prefix_from_network(route.network)] = PathAttributes(
                origin=Origin.IGP,
                as_path=(),
                next_hop=own_addresses.get(origination.version, b""),
                local_pref=route.local_pref,
                communities=route.communities,
                large_communities=route.large_communities,
            )
    return out


def pool_specs(snapshot: Snapshot) -> tuple[PoolSpec, ...]:
    return tuple(
        PoolSpec(
            cidr=p.cidr,
            ipip_mode=EncapMode(p.ipip_mode.value),
            vxlan_mode=EncapMode(p.vxlan_mode.value),
            name=p.name,
        )
        for p in snapshot.pools.values()
        if not p.disabled
    )


def plan_config(
    snapshot: Snapshot,
    node: str,
    originations: Iterable[Origination],
    *,
    protocol: int,
    program_vxlan: bool,
) -> PlanConfig:
    """What the kernel programmer needs from the datastore (calico-bgp.md §2.11)."""
    config = snapshot.configs.get("default")
    owned = frozenset(p.cidr for p in snapshot.pools.values() if bird_programs_pool(p, config))
    reject: list[IPNetwork] = []
    for origination in originations:
        reject += origination.reject.networks
    me = snapshot.nodes.get(node)
    local_networks: list[IPNetwork] = []
    if me is not None:
        for version in (4, 6):
            address = me.address(version)
            if address is not None:
                local_networks.append(address.network)
    vteps: dict[IPAddress, IPAddress] = {
        n.ipv4_address.ip: n.ipv4_vxlan_tunnel_addr
        for n in snapshot.nodes.values()
        if n.ipv4_address is not None and n.ipv4_vxlan_tunnel_addr is not None
    }
    return PlanConfig(
        protocol=protocol,
        owned_pools=owned,
        reject_cidrs=tuple(reject),
        program_vxlan=program_vxlan,
        local_networks=tuple(local_networks),
        vteps=vteps,
    )


def pool_of(network: IPNetwork, pools: Iterable[PoolSpec]) -> PoolSpec | None:
    """The first pool holding ``network``."""
    return _pool_at(destination_of(network), pools)


def _pool_at(destination: Destination, pools: Iterable[PoolSpec]) -> PoolSpec | None:
    """``pool_of`` in integers: this runs once per planned kernel route (rule 4)."""
    version, address, length = destination
    for pool in pools:
        if covers(pool.cidr, version, address, length):
            return pool
    return None


def _destination(prefix: Prefix, family: Family) -> Destination:
    """A canonical prefix as (version, address, length), without an ``ipaddress`` network."""
    size = family.address_bytes
    address = int.from_bytes(prefix[1:], "big") << (8 * (size + 1 - len(prefix)))
    return (4 if size == 4 else 6), address, prefix[0]


def _next_hop_bytes(best: Path, ecmp: tuple[Path, ...]) -> tuple[bytes, ...]:
    """The packed next hops of a learned best route's ECMP set, first seen first; a 32-octet
    IPv6 next hop (global and link-local) counts as its global address."""
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
) -> BestRoute | None:
    """The kernel's view of a best-path change; None when nothing should be installed."""
    if best is None:
        return None
    network = prefix_to_network(prefix, family)
    if best.source.local:
        if network in blackholes:
            return BestRoute(network, local_blackhole=True, pool=pool_of(network, pools))
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


def kernel_route(
    family: Family,
    prefix: Prefix,
    best: Path | None,
    ecmp: tuple[Path, ...],
    blackholes: frozenset[IPNetwork],
    pools: Iterable[PoolSpec],
    plan: PlanConfig,
) -> KernelRoute | Skipped | None:
    """``plan_route(best_route(...))``: a best-path change as the kernel route it asks for.
    A learned route is planned from its packed prefix and next hops, building neither a
    network nor a ``BestRoute`` (a full table streams through here)."""
    if best is None:
        return None
    if best.source.local:
        route = best_route(family, prefix, best, ecmp, blackholes, pools)
        return None if route is None else plan_route(route, plan)
    packed = _next_hop_bytes(best, ecmp)
    if not packed:
        return None
    destination = _destination(prefix, family)
    return plan_destination(
        destination,
        _addresses(packed),
        packed,
        best.attrs.local_pref,
        False,
        _pool_at(destination, pools),
        plan,
    )


def capability_names(negotiated: Negotiated) -> tuple[str, ...]:
    """The negotiated capabilities as BIRD's ``Neighbor caps`` line names them
    (``bgp_show_capabilities``): refresh, enhanced-refresh, restart-able/aware, llgr, AS4,
    add-path, ext-messages."""
    names: list[str] = []
    if negotiated.route_refresh:
        names.append("refresh")
    if negotiated.enhanced_route_refresh:
        names.append("enhanced-refresh")
    restart = negotiated.peer_graceful_restart
    if restart is not None:
        names.append("restart-able" if restart.families else "restart-aware")
    if negotiated.peer_llgr is not None:
        names.append("llgr-aware")
    if negotiated.asn4:
        names.append("AS4")
    if negotiated.add_path_rx or negotiated.add_path_tx:
        rx, tx = bool(negotiated.add_path_rx), bool(negotiated.add_path_tx)
        names.append("add-path" + ("-rx" if rx and not tx else "-tx" if tx and not rx else ""))
    if negotiated.extended_message:
        names.append("ext-messages")
    return tuple(names)


def route_status(
    family: Family, prefix: Prefix, path: Path, best: bool, names: Mapping[str, str]
) -> RouteStatus:
    attrs = path.attrs
    return RouteStatus(
        prefix=str(prefix_to_network(prefix, family)),
        next_hop=next_hop_to_str(attrs.next_hop) if attrs.next_hop else "",
        as_path=_flat_path(attrs),
        best=best,
        peer="local" if path.source.local else names.get(path.source.peer_id, path.source.peer_id),
        peer_ip="" if path.source.local else str(path.source.address),
        origin=Origin(attrs.origin).name.lower(),
        local_pref=attrs.local_pref,
        med=attrs.med,
        communities=tuple(f"{c >> 16}:{c & 0xFFFF}" for c in attrs.communities),
        large_communities=tuple(f"{a}:{b}:{c}" for a, b, c in attrs.large_communities),
    )


def tunnel_info(node: Node) -> NodeTunnelInfo:
    """A Calico Node's addresses as the encapsulation needs them (calico-bgp.md §1.2.1)."""
    return NodeTunnelInfo(
        name=node.name,
        ipv4_address=node.ipv4_address,
        ipv6_address=node.ipv6_address,
        ipv4_vxlan_tunnel_addr=node.ipv4_vxlan_tunnel_addr,
        ipv6_vxlan_tunnel_addr=node.ipv6_vxlan_tunnel_addr,
        vxlan_tunnel_mac=node.vxlan_tunnel_mac or None,
        vxlan_tunnel_mac_v6=node.vxlan_tunnel_mac_v6 or None,
        ipv4_ipip_tunnel_addr=node.ipv4_ipip_tunnel_addr,
    )


def tunnel_needs(
    pools: Iterable[PoolSpec], plan: PlanConfig
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Which tunnel devices this node must keep: (IP versions needing a VXLAN device, names of the
    IP-in-IP pools we program, which need ``tunl0``)."""
    vxlan: set[int] = set()
    ipip: list[str] = []
    for pool in pools:
        if pool.encapsulation is Encapsulation.VXLAN and plan.program_vxlan:
            vxlan.add(pool.cidr.version)
        elif pool.encapsulation is Encapsulation.IPIP and pool.cidr in plan.owned_pools:
            ipip.append(pool.label)
    return tuple(sorted(vxlan)), tuple(ipip)
