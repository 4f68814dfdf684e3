"""What this node originates, from the datastore, and those routes as the RIB holds them
(calico-bgp.md §2.10, §2.12, §2.13, §2.16; confd master [BP], [T bird_aggr/bird_ipam]).

Rules:
1. Own blocks come from this node's block affinities (``bgpd.calico.advertise`` rule 3): each
   non-pending block is a blackhole route, except /32 and /128 blocks, which are no route at
   all: BIRD has no static route for them (confd's ``bird_aggr.cfg`` writes none; a blackhole
   would shadow the workload route), so such a block is exported only while Felix's workload
   route for it is in the kernel (``bgpd.calico.learned``), as BIRD exports it.
2. Borrowed addresses are not originated here: Felix's workload route for one (``cali*``) is
   learned from the kernel (``bgpd.calico.learned``) and exported as BIRD exports it.
3. Service ranges and per-service /32s (``bgpd.calico.advertise`` rule 4) are static blackhole
   routes.
4. A route is advertised when ``calico_export`` accepts it towards an iBGP peer, with the
   prefixAdvertisement communities it adds; its blackhole reaches the kernel when the kernel
   plan's own rules (reject CIDRs, pool ownership: ``bgpd.kernel.plan.kernel_refusal``) let it.
   With ``program_vxlan`` (bgpd playing Felix's VXLAN part) a VXLAN pool's own blocks are
   blackholed too, as Felix does for every local non-/32 block (projectcalico/calico 87c15906,
   ``felix/dataplane/linux/route_mgr.go``, its blackhole routes), so traffic to an unused
   address of the block is dropped instead of following the default route.
5. A peer with ``reachableBy`` gets a pinned route to its address (§2.12): BIRD's static
   ``route <peerIP>/32 via <reachableBy>`` (projectcalico/calico 87c15906, confd case
   ``reachable_by/global_peers``, its ``bird_aggr.cfg``). It is in the RIB (where, like BIRD's
   static route, it outranks a learned route) and the kernel (``bgpd.kernel.plan`` rule 6),
   and ``calico_export`` refuses it (it is inside no pool).
6. In the RIB (``local_routes``) our routes carry ORIGIN IGP, an empty AS_PATH, our address as
   next hop (a pinned route: its gateway) and the LOCAL_PREF of the normal priority (§2.10);
   only routes that are advertised, blackholed in the kernel, or pinned are there. The RIB's
   export rules do the rest.
7. ``route_origins`` names the datastore record each local route comes from (``bgpd explain``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bgpd.calico.advertise import (
    ExportPolicy,
    RejectSet,
    RouteContext,
    SourceProtocol,
    build_export_policy,
    calico_export,
    own_affinities,
)
from bgpd.calico.priority import local_pref_for_metric
from bgpd.calico.sessions import FAMILY_OF_VERSION
from bgpd.calico.tunnels import owned_pools, pool_specs
from bgpd.kernel.plan import PlanConfig, destination_of, kernel_refusal, pool_at
from bgpd.wire.constants import Origin
from bgpd.wire.types import Family, PathAttributes, Prefix, prefix_from_network
from peers.model import (
    DEFAULT_NORMAL_ROUTE_PRIORITY,
    IPAddress,
    IPNetwork,
    LargeCommunity,
    Snapshot,
)
from peers.spec import SessionSpec

TUNNEL_ADDRESS_TYPES = frozenset(
    {"ipipTunnelAddress", "vxlanTunnelAddress", "vxlanV6TunnelAddress", "wireguardTunnelAddress"}
)
NORMAL_LOCAL_PREF = local_pref_for_metric(DEFAULT_NORMAL_ROUTE_PRIORITY)


class OriginKind(StrEnum):
    """Why this node originates a route."""

    OWN_BLOCK = "own-block"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class OriginatedRoute:
    """A route this node puts into its own table from the datastore."""

    network: IPNetwork
    kind: OriginKind
    blackhole: bool  # a blackhole route for it sits in the table (BIRD's static protocol)
    advertise: bool  # ``calico_export`` accepts it (towards an iBGP peer without BGPFilters)
    install_blackhole: bool  # the blackhole reaches the kernel (rule 4)
    communities: tuple[int, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    local_pref: int = NORMAL_LOCAL_PREF
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PinnedPeerRoute:
    """``route <peerIP>/32 via <reachableBy>`` for a peer with ``reachableBy`` (rule 5)."""

    network: IPNetwork
    gateway: IPAddress


@dataclass(frozen=True, slots=True)
class Origination:
    """What this node originates for one IP version, and the export policy that decided it."""

    version: int
    routes: tuple[OriginatedRoute, ...]
    reject: RejectSet
    pinned: tuple[PinnedPeerRoute, ...]
    policy: ExportPolicy

    def blackholes(self) -> tuple[IPNetwork, ...]:
        return tuple(r.network for r in self.routes if r.install_blackhole)

    def pinned_routes(self) -> dict[IPNetwork, IPAddress]:
        """Rule 5: peer /32 (/128) -> its ``reachableBy`` gateway."""
        return {p.network: p.gateway for p in self.pinned}


def originate(
    node_name: str,
    snapshot: Snapshot,
    version: int,
    sessions: Iterable[SessionSpec] = (),
    cluster_ips_override: Sequence[IPNetwork] | None = None,
    program_vxlan: bool = False,
    k8s_node: str | None = None,
) -> Origination:
    """Everything ``node_name`` originates for IP ``version`` (rules 1-5)."""
    policy = build_export_policy(node_name, snapshot, version, cluster_ips_override, k8s_node)
    # The kernel plan's own refusal rules (rule 4); VXLAN blackholes are Felix's (§3.4) unless
    # we play its VXLAN part.
    kernel = PlanConfig(
        owned_pools=owned_pools(snapshot),
        reject_cidrs=policy.reject.networks,
        program_vxlan=program_vxlan,
    )
    pools = pool_specs(snapshot)
    local_pref = local_pref_for_metric(policy.normal_priority)
    routes: list[OriginatedRoute] = []

    def add(network: IPNetwork, kind: OriginKind, blackhole: bool, source: SourceProtocol) -> None:
        destination = destination_of(network)
        decision = calico_export(destination, policy, RouteContext(source, internal_peer=True))
        installed = (
            blackhole and kernel_refusal(destination, pool_at(destination, pools), kernel) is None
        )
        routes.append(
            OriginatedRoute(
                network=network,
                kind=kind,
                blackhole=blackhole,
                advertise=decision.accept,
                install_blackhole=installed,
                communities=decision.communities,
                large_communities=decision.large_communities,
                local_pref=local_pref,
                reason=decision.reason,
            )
        )

    for cidr, _state in own_affinities(node_name, snapshot, version):
        if cidr.prefixlen < cidr.max_prefixlen:
            add(cidr, OriginKind.OWN_BLOCK, True, SourceProtocol.STATIC)
    for network in policy.static_routes:
        add(network, OriginKind.SERVICE, True, SourceProtocol.STATIC)
    pinned = tuple(
        PinnedPeerRoute(ipaddress.ip_network(s.peer_ip), s.reachable_by)
        for s in sorted(sessions, key=lambda s: s.name)
        if s.family == version and s.reachable_by is not None
    )
    return Origination(version, tuple(routes), policy.reject, pinned, policy)


def local_routes(
    originations: Iterable[Origination], own_addresses: Mapping[int, bytes]
) -> dict[Family, dict[Prefix, PathAttributes]]:
    """Rule 6: the routes we originate, as RIB routes."""
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
        for network, gateway in origination.pinned_routes().items():
            table[prefix_from_network(network)] = PathAttributes(
                origin=Origin.IGP,
                as_path=(),
                next_hop=gateway.packed,
                local_pref=NORMAL_LOCAL_PREF,
            )
    return out


ORIGIN_RECORDS = {
    OriginKind.OWN_BLOCK: "IPAM block {} (this node's BlockAffinity)",
    OriginKind.SERVICE: "service range {} (BGPConfiguration serviceClusterIPs/ExternalIPs/"
    "LoadBalancerIPs)",
}


def route_origins(originations: Iterable[Origination]) -> dict[Family, dict[Prefix, str]]:
    """Rule 7: each local route's datastore record and export verdict, in words."""
    out: dict[Family, dict[Prefix, str]] = {}
    for origination in originations:
        table = out.setdefault(FAMILY_OF_VERSION[origination.version], {})
        for route in origination.routes:
            record = ORIGIN_RECORDS[route.kind].format(route.network)
            verdict = "advertised" if route.advertise else "not advertised"
            kernel = "; blackhole in the kernel" if route.install_blackhole else ""
            table[prefix_from_network(route.network)] = (
                f"{record}: {verdict}, {route.reason}{kernel}"
            )
        for network, gateway in origination.pinned_routes().items():
            table[prefix_from_network(network)] = (
                f"static route {network} via {gateway} (a BGPPeer's reachableBy)"
            )
    return out
