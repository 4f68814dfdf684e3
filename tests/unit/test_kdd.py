"""KDD objects, shaped as Calico's Kubernetes backend stores them, become the etcd pairs the cache
decodes into the same records as the etcd datastore (``bgpd.datastore.kdd``)."""

from __future__ import annotations

import base64
import ipaddress
import json
from typing import Any

import pytest

from bgpd.datastore import kdd
from bgpd.datastore.cache import Cache
from bgpd.datastore.kdd import V1_RESOURCES, V3_RESOURCES, CalicoResource, calico_pair, node_pair
from bgpd.datastore.schema import RecordError, decode_etcd
from peers.model import (
    AffinityState,
    AllocationBlock,
    BFDConfiguration,
    BFDInterface,
    BGPPeer,
    BlockAffinity,
    IPAMConfig,
    MaxPrefixes,
    Node,
)

RESOURCES = {resource.kind: resource for resource in V1_RESOURCES}


def crd(kind: str, name: str, spec: dict[str, object], labels: dict[str, str] | None = None):
    metadata: dict[str, object] = {"name": name, "resourceVersion": "17", "uid": "u-1"}
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    }


def decoded(resource: CalicoResource, obj: object, node: str = "node1") -> object:
    pair = calico_pair(resource, obj, node)
    assert pair is not None
    result = decode_etcd(pair.key, pair.value)
    assert result is not None
    return result[1]


def test_bgppeer_crd_decodes_as_the_etcd_resource() -> None:
    obj = crd("BGPPeer", "rack1-tor", {"peerIP": "192.0.2.1", "asNumber": 64513, "node": "node1"})
    peer = decoded(RESOURCES["BGPPeer"], obj)
    assert isinstance(peer, BGPPeer)
    assert peer.name == "rack1-tor"
    assert peer.as_number == 64513


def test_bgppeer_keeps_bgpd_annotations_only() -> None:
    obj = crd("BGPPeer", "rack1-tor", {"peerIP": "192.0.2.1", "asNumber": 64513})
    obj["metadata"]["annotations"] = {  # type: ignore[index]
        "bgpd.projectcalico.org/max-prefixes": "100,restart=30s",
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
    }
    pair = calico_pair(RESOURCES["BGPPeer"], obj, "node1")
    assert pair is not None and b"last-applied" not in pair.value
    peer = decoded(RESOURCES["BGPPeer"], obj)
    assert isinstance(peer, BGPPeer)
    assert peer.max_prefixes == MaxPrefixes(100, restart_time=30.0)


def test_bfd_configuration_and_failure_detection_mode_from_kdd() -> None:
    """Calico Enterprise's CRD (kind BFDConfiguration) and BGPPeer field, as etcd has them."""
    spec = {"nodeSelector": "all()", "interfaces": [{"matchPattern": "eth*", "multiplier": 3}]}
    config = decoded(RESOURCES["BFDConfiguration"], crd("BFDConfiguration", "default", spec))
    assert config == BFDConfiguration("default", "all()", (BFDInterface("eth*", multiplier=3),))
    peer_spec = {
        "peerIP": "192.0.2.1",
        "asNumber": 1,
        "failureDetectionMode": "BFDIfDirectlyConnected",
    }
    peer = decoded(RESOURCES["BGPPeer"], crd("BGPPeer", "tor", peer_spec))
    assert isinstance(peer, BGPPeer) and peer.failure_detection_mode == "BFDIfDirectlyConnected"


def test_block_affinity_v1_uses_spec_identity_and_string_deleted() -> None:
    spec = {"node": "node1", "cidr": "10.244.1.0/26", "state": "confirmed", "deleted": "false"}
    pair = calico_pair(
        RESOURCES["BlockAffinity"], crd("BlockAffinity", "node1-10-244-1-0-26", spec), "node1"
    )
    assert pair is not None
    assert pair.key == "/calico/ipam/v2/host/node1/ipv4/block/10.244.1.0-26"
    record = decode_etcd(pair.key, pair.value)
    assert record is not None and isinstance(record[1], BlockAffinity)
    assert record[1].state is AffinityState.CONFIRMED and not record[1].deleted
    deleted = dict(spec, deleted="true")
    gone = decoded(RESOURCES["BlockAffinity"], crd("BlockAffinity", "x", deleted))
    assert isinstance(gone, BlockAffinity) and gone.deleted


def test_other_nodes_and_non_host_affinities_are_not_read() -> None:
    other = {"node": "node2", "cidr": "10.244.2.0/26", "state": "confirmed"}
    assert (
        calico_pair(RESOURCES["BlockAffinity"], crd("BlockAffinity", "a", other), "node1") is None
    )
    virtual = {"node": "node1", "cidr": "10.244.3.0/26", "type": "virtual"}
    assert (
        calico_pair(RESOURCES["BlockAffinity"], crd("BlockAffinity", "b", virtual), "node1") is None
    )


def test_ipam_block_keyed_by_its_cidr() -> None:
    spec = {
        "cidr": "10.244.1.0/30",
        "affinity": "host:node1",
        "allocations": [0, 1, None, None],
        "attributes": [
            {"handle_id": "h0", "secondary": {"node": "node1"}},
            {"secondary": {"node": "node3"}},
        ],
        "deleted": False,
    }
    block = decoded(RESOURCES["IPAMBlock"], crd("IPAMBlock", "10-244-1-0-30", spec))
    assert isinstance(block, AllocationBlock)
    assert block.owner == "node1"
    assert [a.node for a in block.borrowed] == ["node3"]


@pytest.mark.parametrize("resource", [RESOURCES["IPAMConfig"], V3_RESOURCES[-1]])
def test_ipam_config_both_groups(resource: CalicoResource) -> None:
    spec = {"strictAffinity": True, "autoAllocateBlocks": False, "maxBlocksPerHost": 4}
    config = decoded(resource, crd(resource.kind, "default", spec))
    assert config == IPAMConfig(
        strict_affinity=True, auto_allocate_blocks=False, max_blocks_per_host=4
    )


def test_identity_errors_name_the_field() -> None:
    with pytest.raises(RecordError, match=r"ipamblocks/b\.spec\.cidr"):
        calico_pair(RESOURCES["IPAMBlock"], crd("IPAMBlock", "b", {"cidr": "nope"}), "node1")
    with pytest.raises(RecordError, match=r"metadata\.name"):
        calico_pair(RESOURCES["BGPPeer"], {"spec": {}}, "node1")


def test_bad_spec_is_rejected_by_the_cache_like_etcd() -> None:
    pair = calico_pair(RESOURCES["IPPool"], crd("IPPool", "p", {"cidr": "not-a-cidr"}), "node1")
    assert pair is not None
    cache = Cache()
    cache.load([(pair.key, pair.value)], revision=1)
    assert cache.rejected == 1
    assert "cidr" in cache.last_errors[-1].key


def k8s_node(annotations: dict[str, str], labels: dict[str, str] | None = None, pod_cidr: str = ""):
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "node1", "annotations": annotations, "labels": labels or {}},
        "spec": {"podCIDR": pod_cidr} if pod_cidr else {},
    }


def test_node_annotations_map_to_the_calico_node() -> None:
    obj = k8s_node(
        {
            "projectcalico.org/IPv4Address": "10.0.0.1/24",
            "projectcalico.org/IPv6Address": "fd00::1/64",
            "projectcalico.org/ASNumber": "64512",
            "projectcalico.org/RouteReflectorClusterID": "224.0.0.1",
            "projectcalico.org/IPv4IPIPTunnelAddr": "10.244.1.1",
            "projectcalico.org/IPv4VXLANTunnelAddr": "10.244.1.2",
            "projectcalico.org/VXLANTunnelMACAddr": "66:00:00:00:00:01",
            "projectcalico.org/labels": json.dumps({"calico-only": "x", "zone": "old"}),
        },
        labels={"zone": "a", "kubernetes.io/hostname": "node1"},
    )
    pair = node_pair(obj)
    assert pair.ignored == ()
    record = decode_etcd(pair.key, pair.value)
    assert record is not None
    node = record[1]
    assert isinstance(node, Node)
    assert node.ipv4_address == ipaddress.IPv4Interface("10.0.0.1/24")
    assert node.ipv6_address == ipaddress.IPv6Interface("fd00::1/64")
    assert node.as_number == 64512
    assert node.rr_cluster_id == "224.0.0.1"
    assert node.ipv4_ipip_tunnel_addr == ipaddress.IPv4Address("10.244.1.1")
    assert node.ipv4_vxlan_tunnel_addr == ipaddress.IPv4Address("10.244.1.2")
    assert node.vxlan_tunnel_mac == "66:00:00:00:00:01"
    assert dict(node.labels) == {"calico-only": "x", "zone": "a", "kubernetes.io/hostname": "node1"}


def test_invalid_annotation_is_ignored_not_the_node() -> None:
    pair = node_pair(
        k8s_node(
            {"projectcalico.org/IPv4Address": "10.0.0.1/24", "projectcalico.org/ASNumber": "x"}
        )
    )
    assert [annotation for annotation, _ in pair.ignored] == ["projectcalico.org/ASNumber"]
    record = decode_etcd(pair.key, pair.value)
    assert record is not None and isinstance(record[1], Node)
    assert record[1].as_number is None
    assert record[1].ipv4_address is not None


def test_use_pod_cidr_gives_the_tunnel_address() -> None:
    obj = k8s_node({"projectcalico.org/IPv4IPIPTunnelAddr": "10.9.9.9"}, pod_cidr="10.244.7.0/24")
    record = decode_etcd(*_pair(node_pair(obj, use_pod_cidr=True)))
    assert record is not None and isinstance(record[1], Node)
    assert record[1].ipv4_ipip_tunnel_addr == ipaddress.IPv4Address("10.244.7.1")


def _pair(pair):  # type: ignore[no-untyped-def]
    return pair.key, pair.value


# -- Services, EndpointSlices and Secrets ------------------------------------------------------


def _service_object() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "managedFields": [{"x": 1}]},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10", "fd00::a"],
            "externalIPs": ["45.12.70.5", "not-an-ip"],
            "externalTrafficPolicy": "Local",
            "ipFamilies": ["IPv4", "IPv6"],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "172.217.4.10"}, {"hostname": "x"}]}},
    }


def test_a_service_becomes_the_values_advertisement_reads() -> None:
    pair = kdd.cluster_pair(kdd.SERVICES, _service_object())
    assert pair.key == "/bgpd/kubernetes/services/shop/web"
    assert b"managedFields" not in pair.value
    objects = kdd.ClusterObjects("kube-system")
    objects.load([(pair.key, pair.value)], [kdd.SERVICES])
    service = objects.services()["shop/web"]
    assert service.type == "LoadBalancer" and service.external_traffic_policy == "Local"
    assert [str(a) for a in service.cluster_ips] == ["10.96.0.10", "fd00::a"]
    assert [str(a) for a in service.external_ips] == ["45.12.70.5"]
    assert [str(a) for a in service.ingress_ips] == ["172.217.4.10"]
    assert service.ip_families == ("IPv4", "IPv6")
    objects.delete(pair.key)
    assert objects.services() == {}


def test_an_endpoint_slice_keeps_node_and_readiness() -> None:
    obj = {
        "metadata": {
            "name": "web-abc",
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.0.0.2"], "nodeName": "a", "conditions": {"ready": False}},
            {"addresses": ["10.0.0.3"], "nodeName": "b", "conditions": {}},
        ],
    }
    pair = kdd.cluster_pair(kdd.ENDPOINTSLICES, obj)
    objects = kdd.ClusterObjects("kube-system")
    objects.put(pair.key, pair.value)
    (endpoint_slice,) = objects.endpoint_slices().values()
    assert endpoint_slice.service_key == "shop/web"
    assert [(e.node_name, e.ready) for e in endpoint_slice.endpoints] == [("a", False), ("b", None)]


def test_secrets_decode_and_explain_what_is_missing() -> None:
    obj = {
        "metadata": {"name": "bgp-secrets", "namespace": "kube-system"},
        "data": {"peer-a": base64.b64encode(b"s3cret").decode(), "bad": "%%%"},
    }
    pair = kdd.cluster_pair(kdd.SECRETS, obj)
    objects = kdd.ClusterObjects("kube-system")
    objects.put(pair.key, pair.value)
    objects.access("locked", "403 Forbidden")
    table = objects.secrets()
    assert table.lookup("bgp-secrets", "peer-a") == "s3cret"
    assert table.lookup("bgp-secrets", "bad") is None
    assert table.reason("bgp-secrets", "peer-b") == (
        "Secret kube-system/bgp-secrets has no key 'peer-b'"
    )
    assert table.reason("gone", "k") == "Secret kube-system/gone not found"
    assert table.reason("locked", "k") == "Secret kube-system/locked not readable: 403 Forbidden"
    objects.access("locked", None)
    assert objects.secrets().reason("locked", "k") == "Secret kube-system/locked not found"


def test_a_namespaced_object_without_namespace_is_rejected_naming_the_field() -> None:
    with pytest.raises(RecordError) as caught:
        kdd.cluster_pair(kdd.SERVICES, {"metadata": {"name": "web"}})
    assert caught.value.key == "services/web.metadata.namespace"


def test_a_cluster_object_that_does_not_read_is_dropped_with_its_reason() -> None:
    objects = kdd.ClusterObjects("kube-system")
    good = kdd.cluster_pair(kdd.SERVICES, _service_object())
    objects.put(good.key, good.value)
    bad = {"metadata": {"name": "web", "namespace": "shop"}, "spec": ["not", "a", "mapping"]}
    pair = kdd.cluster_pair(kdd.SERVICES, bad)
    error = objects.put(pair.key, pair.value)
    assert error is not None and error.startswith("services shop/web:")
    assert objects.services() == {}  # dropped, as deleted: nothing stale is advertised
    assert objects.load([(pair.key, pair.value)], [kdd.SERVICES]) == [error]
