"""Per-service /32 and /128 routes: which Service addresses this node advertises (pure).

Role: confd's route generator (projectcalico/calico 87c15906f20c4ca1fda55af92295e7678b0cc0b2,
``confd/pkg/backends/calico/routes.go``, calico-bgp.md §2.13) as a function of one snapshot:
the Services and EndpointSlices the Kubernetes API holds, the ``default`` BGPConfiguration and
this node. The global service ranges are ``bgpd.calico.advertise`` rule 4; these routes join
them as static routes (BIRD's ``route X/32 blackhole``).

Rules (``advertiseThisService`` and ``getAllRoutesForService``):
1. Nothing is advertised from a node labelled
   ``node.kubernetes.io/exclude-from-external-load-balancers=true``.
2. Only Services of type ClusterIP, NodePort or LoadBalancer with a cluster IP (not headless:
   ``spec.clusterIP`` neither empty nor ``None``) are considered.
3. ``externalTrafficPolicy: Cluster``: every node advertises a LoadBalancer Service with a
   single-IP LB address (``spec.loadBalancerIP`` or a ``status.loadBalancer.ingress`` IP inside
   a /32 or /128 ``serviceLoadBalancerIPs`` entry), and any Service with an external IP inside
   a single-IP ``serviceExternalIPs`` entry, whatever its endpoints.
4. Otherwise a Service that is not ``Local`` is left to the global ranges while
   ``serviceLoadBalancerAggregation`` is ``Enabled`` (the default).
5. The endpoints count only in EndpointSlices whose ``addressType`` is one of the Service's
   ``ipFamilies``, and only when ready (an unset ``ready`` is ready): a ``Local`` Service is
   advertised by the nodes with a ready endpoint on them (``nodeName``), any other by every
   node while it has a ready endpoint anywhere. A node whose local endpoints all go not-ready
   withdraws, as does every node when the Service or its slices go.
6. An advertised Service's routes: its cluster IPs when cluster-IP advertisement is on
   (``serviceClusterIPs`` set, or ``CALICO_ADVERTISE_CLUSTER_IPS``), its external IPs inside
   any ``serviceExternalIPs`` CIDR, and its ``status.loadBalancer.ingress`` IPs inside any
   ``serviceLoadBalancerIPs`` CIDR, each as a /32 (/128). Confd reference-counts a route that
   several Services share; as a set, it is advertised while any of them wants it.
7. Services and EndpointSlices are watched once any service range is configured
   (``client.go``: the route generator starts then, and is never stopped): ``watch_services``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from peers.model import (
    EXCLUDE_FROM_LB_LABEL,
    BGPConfiguration,
    EndpointSlice,
    IPAddress,
    IPNetwork,
    KubeService,
    Snapshot,
)

ADVERTISED_TYPES = frozenset({"ClusterIP", "NodePort", "LoadBalancer"})
LOCAL = "Local"
CLUSTER = "Cluster"


def _inside(address: IPAddress, cidrs: Iterable[IPNetwork], single_only: bool = False) -> bool:
    return any(
        address in cidr and (not single_only or cidr.prefixlen == cidr.max_prefixlen)
        for cidr in cidrs
        if cidr.version == address.version
    )


def _single_ip_entry(service: KubeService, config: BGPConfiguration) -> bool:
    """Rule 3."""
    if service.type == "LoadBalancer":
        lb = (service.load_balancer_ip, *service.ingress_ips)
        if any(ip is not None and _inside(ip, config.service_load_balancer_ips, True) for ip in lb):
            return True
    return any(_inside(ip, config.service_external_ips, True) for ip in service.external_ips)


def advertise_this_service(
    service: KubeService,
    slices: Sequence[EndpointSlice],
    node: str,
    config: BGPConfiguration,
    excluded: bool,
) -> bool:
    """Rules 1-5: whether ``node`` advertises ``service``."""
    if excluded:  # 1
        return False
    if service.type not in ADVERTISED_TYPES or service.cluster_ip in ("", "None"):  # 2
        return False
    if service.external_traffic_policy == CLUSTER and _single_ip_entry(service, config):  # 3
        return True
    local = service.external_traffic_policy == LOCAL
    if not local and config.service_load_balancer_aggregation == "Enabled":  # 4
        return False
    for endpoint_slice in slices:  # 5
        if endpoint_slice.address_type not in service.ip_families:
            continue
        for endpoint in endpoint_slice.endpoints:
            if endpoint.ready is False:
                continue
            if not local or endpoint.node_name == node:
                return True
    return False


def service_addresses(
    service: KubeService, config: BGPConfiguration, advertise_cluster_ips: bool
) -> tuple[IPAddress, ...]:
    """Rule 6: the addresses of an advertised Service."""
    addresses: list[IPAddress] = list(service.cluster_ips) if advertise_cluster_ips else []
    addresses += [ip for ip in service.external_ips if _inside(ip, config.service_external_ips)]
    addresses += [ip for ip in service.ingress_ips if _inside(ip, config.service_load_balancer_ips)]
    return tuple(addresses)


def service_routes(
    node: str,
    snapshot: Snapshot,
    version: int,
    cluster_ips_override: Sequence[IPNetwork] | None = None,
) -> tuple[IPNetwork, ...]:
    """Every per-service /32 (/128) of IP ``version`` that ``node`` advertises, sorted."""
    config = snapshot.global_config
    if config is None or not snapshot.services:
        return ()
    me = snapshot.nodes.get(node)
    excluded = me is not None and me.labels.get(EXCLUDE_FROM_LB_LABEL) == "true"
    cluster_ips = (
        bool(cluster_ips_override)
        if cluster_ips_override is not None
        else bool(config.service_cluster_ips)
    )
    slices_of: dict[str, list[EndpointSlice]] = {}
    for endpoint_slice in snapshot.endpoint_slices.values():
        if endpoint_slice.service:
            slices_of.setdefault(endpoint_slice.service_key, []).append(endpoint_slice)
    routes: set[IPNetwork] = set()
    for key, service in snapshot.services.items():
        if advertise_this_service(service, slices_of.get(key, ()), node, config, excluded):
            for address in service_addresses(service, config, cluster_ips):
                if address.version == version:
                    routes.add(ipaddress.ip_network(address))
    return tuple(sorted(routes, key=lambda n: int(n.network_address)))


def watch_services(snapshot: Snapshot) -> bool:
    """Rule 7: whether the ``default`` BGPConfiguration names any service range."""
    config = snapshot.global_config
    return config is not None and bool(
        config.service_cluster_ips
        or config.service_external_ips
        or config.service_load_balancer_ips
    )
