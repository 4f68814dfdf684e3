"""Per-service routes (``bgpd.calico.services``), with the cases of Calico's own tests.

Facts from projectcalico/calico 87c15906f20c4ca1fda55af92295e7678b0cc0b2,
``confd/pkg/backends/calico/routes_test.go``: the services ``foo/bar`` (ClusterIP, ETP Local,
cluster IPs 127.0.0.1 and ::1, external IPs 45.12.70.5 and 172.217.3.5), ``foo/lb``
(LoadBalancer, ETP Local, LB IP 172.217.4.10), ``foo/ext`` (LoadBalancer, ETP Local, external
IP 45.12.70.7), ``foo/lb-cluster`` (ETP Cluster, LB IP only in status) and ``default/test-svc``
(the readiness cases); the node ``foobar``; cluster CIDR 10.0.0.0/16; allowed external ranges
104.244.42.129/32 and 172.217.3.0/24. Expected routes are the tests' ``svcRouteMap``s.
"""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.calico.advertise import build_export_policy
from bgpd.calico.origin import OriginKind, originate
from bgpd.calico.services import advertise_this_service, service_routes
from peers.model import (
    EXCLUDE_FROM_LB_LABEL,
    BGPConfiguration,
    EndpointSlice,
    KubeEndpoint,
    KubeService,
    Node,
    Snapshot,
)

NODE = "foobar"
net = ipaddress.ip_network
ip = ipaddress.ip_address


def config(**overrides: object) -> BGPConfiguration:
    values: dict[str, object] = {
        "name": "default",
        "service_cluster_ips": (net("10.0.0.0/16"),),
        "service_external_ips": (net("104.244.42.129/32"), net("172.217.3.0/24")),
    }
    values.update(overrides)
    return BGPConfiguration(**values)  # type: ignore[arg-type]


def bar(**overrides: object) -> KubeService:
    """``buildSimpleService``: foo/bar."""
    values: dict[str, object] = {
        "namespace": "foo",
        "name": "bar",
        "type": "ClusterIP",
        "cluster_ip": "127.0.0.1",
        "cluster_ips": (ip("127.0.0.1"), ip("::1")),
        "external_ips": (ip("45.12.70.5"), ip("172.217.3.5")),
        "external_traffic_policy": "Local",
        "ip_families": ("IPv4",),
    }
    values.update(overrides)
    return KubeService(**values)  # type: ignore[arg-type]


def endpoints(
    *endpoints: KubeEndpoint, name: str = "bar", address_type: str = "IPv4"
) -> EndpointSlice:
    return EndpointSlice("foo", f"{name}-{len(endpoints)}", name, address_type, endpoints)


def local(ready: bool | None = True) -> KubeEndpoint:
    return KubeEndpoint(NODE, ready)


def remote(ready: bool | None = True) -> KubeEndpoint:
    return KubeEndpoint("other-node", ready)


def snapshot(
    services: list[KubeService],
    slices: list[EndpointSlice],
    cfg: BGPConfiguration | None = None,
    labels: dict[str, str] | None = None,
) -> Snapshot:
    return Snapshot(
        nodes={NODE: Node(NODE, labels=labels or {})},
        configs={"default": cfg or config()},
        services={s.key: s for s in services},
        endpoint_slices={f"{s.namespace}/{s.name}": s for s in slices},
    )


def routes(snap: Snapshot) -> set[str]:
    return {str(n) for v in (4, 6) for n in service_routes(NODE, snap, v)}


EXPECTED_BAR = {"127.0.0.1/32", "::1/128", "172.217.3.5/32"}


def test_local_service_with_a_ready_local_endpoint_advertises_its_allowed_addresses() -> None:
    assert routes(snapshot([bar()], [endpoints(local())])) == EXPECTED_BAR


def test_no_endpoint_here_no_routes() -> None:
    assert routes(snapshot([bar()], [endpoints(remote())])) == set()
    assert routes(snapshot([bar()], [])) == set()


def test_any_slice_with_a_ready_local_endpoint_keeps_the_routes() -> None:
    """ "keeps advertising while any slice still has a ready local endpoint"."""
    slices = [
        EndpointSlice("foo", "bar-a", "bar", "IPv4", (local(True),)),
        EndpointSlice("foo", "bar-b", "bar", "IPv4", (local(False),)),
    ]
    assert routes(snapshot([bar()], slices)) == EXPECTED_BAR


def test_withdrawn_once_no_slice_has_a_ready_local_endpoint() -> None:
    slices = [
        EndpointSlice("foo", "bar-a", "bar", "IPv4", (local(False),)),
        EndpointSlice("foo", "bar-b", "bar", "IPv4", (local(False),)),
    ]
    assert routes(snapshot([bar()], slices)) == set()


@pytest.mark.parametrize(
    ("slice_endpoints", "advertised"),
    [
        ((local(False),), False),  # the only local endpoint is not ready
        ((local(True),), True),
        ((local(None),), True),  # a nil Ready condition is ready
        ((remote(True), local(False)), False),  # a ready remote endpoint does not count
        ((local(False), local(True)), True),
    ],
)
def test_readiness_gating_local(
    slice_endpoints: tuple[KubeEndpoint, ...], advertised: bool
) -> None:
    """ "Endpoint readiness gating for BGP advertisement", externalTrafficPolicy=Local."""
    service = bar(type="LoadBalancer", external_traffic_policy="Local")
    cfg = config(service_load_balancer_aggregation="Disabled")
    result = advertise_this_service(service, [endpoints(*slice_endpoints)], NODE, cfg, False)
    assert result is advertised


@pytest.mark.parametrize(
    ("slice_endpoints", "advertised"),
    [((local(False), remote(False)), False), ((remote(False), remote(True)), True)],
)
def test_readiness_gating_cluster(
    slice_endpoints: tuple[KubeEndpoint, ...], advertised: bool
) -> None:
    """ETP Cluster with aggregation Disabled: any ready endpoint anywhere."""
    service = bar(type="LoadBalancer", external_traffic_policy="Cluster", external_ips=())
    cfg = config(service_load_balancer_aggregation="Disabled")
    result = advertise_this_service(service, [endpoints(*slice_endpoints)], NODE, cfg, False)
    assert result is advertised


def test_cluster_service_skipped_while_aggregation_is_enabled() -> None:
    service = bar(external_traffic_policy="Cluster", external_ips=())
    assert not advertise_this_service(service, [endpoints(local())], NODE, config(), False)


def test_local_service_still_advertised_with_aggregation_enabled() -> None:
    assert advertise_this_service(bar(), [endpoints(local())], NODE, config(), False)


def test_cluster_service_without_endpoints_not_advertised_with_aggregation_disabled() -> None:
    service = bar(external_traffic_policy="Cluster", external_ips=())
    cfg = config(service_load_balancer_aggregation="Disabled")
    assert not advertise_this_service(service, [], NODE, cfg, False)


def test_single_lb_ip_in_status_only_is_advertised_by_every_node_for_etp_cluster() -> None:
    """CI-1944: LB IP assigned from a pool (status only), a /32 serviceLoadBalancerIPs entry."""
    service = KubeService(
        namespace="foo",
        name="lb-cluster",
        type="LoadBalancer",
        cluster_ip="127.0.0.20",
        cluster_ips=(ip("127.0.0.20"),),
        ingress_ips=(ip("192.168.1.50"),),
        external_traffic_policy="Cluster",
        ip_families=("IPv4",),
    )
    cfg = config(service_load_balancer_ips=(net("192.168.1.50/32"),))
    snap = snapshot([service], [], cfg)  # no endpoints at all: rule 3 does not look
    assert routes(snap) == {"127.0.0.20/32", "192.168.1.50/32"}
    cfg = config(service_load_balancer_ips=())
    assert routes(snapshot([service], [], cfg)) == set()


def test_single_external_ip_entry_etp_cluster() -> None:
    service = bar(external_traffic_policy="Cluster", external_ips=(ip("45.12.70.7"),))
    cfg = config(service_external_ips=(net("45.12.70.7/32"),))
    assert routes(snapshot([service], [], cfg)) == {"127.0.0.1/32", "::1/128", "45.12.70.7/32"}


def test_local_lb_service_advertises_its_lb_ip_inside_the_allowed_range() -> None:
    """ "should handle /32 routes for LoadBalancerIPs": foo/lb, ETP Local."""
    service = bar(
        name="lb",
        type="LoadBalancer",
        cluster_ip="127.0.0.10",
        cluster_ips=(ip("127.0.0.10"), ip("::a")),
        external_ips=(),
        load_balancer_ip=ip("172.217.4.10"),
        ingress_ips=(ip("172.217.4.10"),),
    )
    slices = [endpoints(local(), name="lb")]
    assert routes(snapshot([service], slices)) == {"127.0.0.10/32", "::a/128"}
    cfg = config(service_load_balancer_ips=(net("172.217.4.10/32"),))
    assert routes(snapshot([service], slices, cfg)) == {
        "127.0.0.10/32",
        "::a/128",
        "172.217.4.10/32",
    }


def test_external_ips_only_within_the_configured_ranges() -> None:
    slices = [endpoints(local())]
    cfg = config(service_external_ips=(net("45.12.0.0/16"),))
    assert routes(snapshot([bar()], slices, cfg)) == {"127.0.0.1/32", "::1/128", "45.12.70.5/32"}
    cfg = config(service_external_ips=(net("172.217.3.5/32"),))
    assert routes(snapshot([bar()], slices, cfg)) == EXPECTED_BAR


def test_cluster_ips_only_when_a_cluster_range_is_configured() -> None:
    cfg = config(service_cluster_ips=())
    assert routes(snapshot([bar()], [endpoints(local())], cfg)) == {"172.217.3.5/32"}


def test_two_services_sharing_a_route_advertise_it_while_either_wants_it() -> None:
    rem = bar(name="rem", cluster_ip="127.0.0.5", cluster_ips=(ip("127.0.0.5"), ip("::5")))
    slices = [endpoints(local()), endpoints(local(), name="rem")]
    both = routes(snapshot([bar(), rem], slices))
    assert "172.217.3.5/32" in both
    assert "172.217.3.5/32" in routes(snapshot([rem], slices))


@pytest.mark.parametrize(
    ("families", "address_type", "advertised"),
    [
        (("IPv4",), "IPv6", False),
        (("IPv6",), "IPv6", True),
        (("IPv4", "IPv6"), "IPv4", True),
        (("IPv4", "IPv6"), "IPv6", True),
    ],
)
def test_endpoint_slices_of_the_service_families_only(
    families: tuple[str, ...], address_type: str, advertised: bool
) -> None:
    service = bar(ip_families=families)
    slices = [endpoints(local(), address_type=address_type)]
    assert advertise_this_service(service, slices, NODE, config(), False) is advertised


@pytest.mark.parametrize(
    "service",
    [bar(type="ExternalName"), bar(cluster_ip="None"), bar(cluster_ip="")],
)
def test_other_types_and_headless_services_are_not_advertised(service: KubeService) -> None:
    assert routes(snapshot([service], [endpoints(local())])) == set()


def test_excluded_node_advertises_no_service() -> None:
    snap = snapshot([bar()], [endpoints(local())], labels={EXCLUDE_FROM_LB_LABEL: "true"})
    assert routes(snap) == set()
    assert build_export_policy(NODE, snap, 4).static_routes == ()


def test_per_service_routes_are_static_service_routes_after_the_ranges() -> None:
    snap = snapshot([bar()], [endpoints(local())])
    policy = build_export_policy(NODE, snap, 4)
    assert [str(n) for n in policy.static_routes] == [
        "10.0.0.0/16",
        "172.217.3.0/24",
        "127.0.0.1/32",
        "172.217.3.5/32",
    ]
    assert [str(n) for n in policy.reject.networks] == ["10.0.0.0/16", "172.217.3.0/24"]
    origination = originate(NODE, snap, 4)
    service = {str(r.network): r for r in origination.routes if r.kind is OriginKind.SERVICE}
    assert service["172.217.3.5/32"].advertise
    assert service["127.0.0.1/32"].advertise


def test_the_kubernetes_node_name_may_differ() -> None:
    """``CALICO_K8S_NODE_REF``: endpoints name the Kubernetes node."""
    slices = [EndpointSlice("foo", "bar-1", "bar", "IPv4", (KubeEndpoint("k8s-foobar"),))]
    snap = snapshot([bar()], slices)
    assert build_export_policy(NODE, snap, 4, k8s_node="k8s-foobar").static_routes[2:] == (
        net("127.0.0.1/32"),
        net("172.217.3.5/32"),
    )
