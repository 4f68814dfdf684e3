"""Datastore decoding (bgpd.datastore.schema) and the snapshot cache (bgpd.datastore.cache)."""

from __future__ import annotations

import ipaddress
import json

import pytest

from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.cache import Cache, DatastoreEvent
from bgpd.datastore.file import parse_text
from bgpd.datastore.schema import (
    Kind,
    RecordError,
    RecordKey,
    decode_document,
    decode_etcd,
    etcd_key,
    parse_as_number,
    parse_community,
    parse_duration,
    parse_key,
)
from encap.model import EncapMode
from peers.model import (
    AffinityState,
    BGPFilter,
    BGPPeer,
    BlockAffinity,
    FilterAction,
    FilterAddCommunity,
    FilterMatchOperator,
    FilterPrependASPath,
    FilterSetPriority,
    IPPool,
    Node,
    PeerNextHopMode,
)

NODE_KEY = "/calico/resources/v3/projectcalico.org/nodes/node-a"
NODE_JSON = {
    "kind": "Node",
    "apiVersion": "projectcalico.org/v3",
    "metadata": {"name": "node-a", "labels": {"route-reflector": "true"}},
    "spec": {
        "bgp": {
            "ipv4Address": "10.0.0.11/24",
            "ipv4IPIPTunnelAddr": "192.168.10.0",
            "routeReflectorClusterID": "244.0.0.1",
            "asNumber": "1.10",
        },
        "ipv4VXLANTunnelAddr": "192.168.10.1",
        "vxlanTunnelMACAddr": "66:aa:bb:cc:dd:ee",
        "orchRefs": [{"nodeName": "node-a", "orchestrator": "k8s"}],
    },
}


def enc(obj: object) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("text", "asn"),
    [
        (64512, 64512),
        ("64512", 64512),
        ("1.10", 65546),
        ("0.65535", 65535),
        (4294967295, 2**32 - 1),
    ],
)
def test_as_numbers(text: object, asn: int) -> None:
    assert parse_as_number(text, "k") == asn


@pytest.mark.parametrize("bad", ["x", "1.65536", 2**32, -1, True, "1.2.3", None])
def test_bad_as_numbers(bad: object) -> None:
    with pytest.raises(RecordError):
        parse_as_number(bad, "k")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("120s", 120.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        (90, 90.0),
        ("0", 0.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "k") == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["5", "5x", "s", "-1s", "1m-2s", [1]])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(RecordError):
        parse_duration(bad, "k")


def test_communities() -> None:
    assert parse_community("65000:100", "k") == (65000 << 16) | 100
    assert parse_community("4200000000:1:2", "k") == (4200000000, 1, 2)
    for bad in ("65536:1", "1", "a:b", "1:2:3:4", "1:2:4294967296"):
        with pytest.raises(RecordError):
            parse_community(bad, "k")


def test_node_from_etcd() -> None:
    decoded = decode_etcd(NODE_KEY, enc(NODE_JSON))
    assert decoded is not None
    key, node = decoded
    assert key == RecordKey(Kind.NODE, "node-a")
    assert isinstance(node, Node)
    assert node.ipv4_address == ipaddress.IPv4Interface("10.0.0.11/24")
    assert node.as_number == 65546
    assert node.is_route_reflector and node.rr_cluster_id == "244.0.0.1"
    assert node.labels == {"route-reflector": "true"}
    assert str(node.ipv4_vxlan_tunnel_addr) == "192.168.10.1"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "/calico/ipam/v2/host/node1/ipv4/block/10.244.1.0-26",
            RecordKey(Kind.BLOCK_AFFINITY, "node1", ipaddress.ip_network("10.244.1.0/26")),
        ),
        (
            "/calico/ipam/v2/host/node1/ipv6/block/fd00:10:244:1::-122",
            RecordKey(Kind.BLOCK_AFFINITY, "node1", ipaddress.ip_network("fd00:10:244:1::/122")),
        ),
        (
            "/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26",
            RecordKey(Kind.ALLOCATION_BLOCK, "", ipaddress.ip_network("10.244.1.0/26")),
        ),
        ("/calico/ipam/v2/config", RecordKey(Kind.IPAM_CONFIG)),
        ("/calico/resources/v3/projectcalico.org/bgpfilters/f1", RecordKey(Kind.BGPFILTER, "f1")),
        ("/calico/resources/v3/projectcalico.org/felixconfigurations/default", None),
        ("/calico/ipam/v2/handle/k8s-pod-network.1", None),
        ("/calico/ipam/v2/host/node1", None),
        ("/calico/felix/v1/host/node1/status", None),
        ("/unrelated", None),
    ],
)
def test_keys(key: str, expected: RecordKey | None) -> None:
    assert parse_key(key) == expected
    if expected is not None:
        assert etcd_key(expected) == key


@pytest.mark.parametrize(
    "key",
    [
        "/calico/ipam/v2/host/node1/ipv4/block/10.244.1.0",
        "/calico/ipam/v2/host/node1/ipv4/block/fd00::-122",
        "/calico/ipam/v2/assignment/ipv4/block/nonsense-26",
    ],
)
def test_bad_keys(key: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_key(key)
    assert info.value.key == key


def test_affinities_and_blocks() -> None:
    key = "/calico/ipam/v2/host/node1/ipv4/block/10.244.1.0-26"
    _, aff = decode_etcd(key, b'{"state":"pendingDeletion","deleted":false}') or (None, None)
    assert isinstance(aff, BlockAffinity) and aff.state is AffinityState.PENDING_DELETION
    _, implicit = decode_etcd(key, b"") or (None, None)
    assert isinstance(implicit, BlockAffinity) and implicit.implicit
    assert implicit.state is AffinityState.CONFIRMED
    block = {
        "cidr": "10.244.1.0/26",
        "affinity": "host:node1",
        "allocations": [0, None, 1],
        "unallocated": [1],
        "attributes": [
            {"handle_id": "h0", "secondary": {"node": "node1", "type": "ipipTunnelAddress"}},
            {"handle_id": "h1", "secondary": {"node": "node2", "pod": "p"}},
        ],
    }
    decoded = decode_etcd("/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26", enc(block))
    assert decoded is not None
    _, blk = decoded
    assert blk.owner == "node1"  # type: ignore[union-attr]
    assert [(str(a.address), a.node) for a in blk.borrowed] == [("10.244.1.2", "node2")]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (NODE_KEY, b"{not json", "malformed JSON"),
        (NODE_KEY, b"[1,2]", "not a JSON object"),
        (NODE_KEY, enc({**NODE_JSON, "kind": "IPPool"}), "kind 'IPPool'"),
        (NODE_KEY, enc({"spec": {"bgp": {"ipv4Address": "300.0.0.1/24"}}}), "spec.bgp.ipv4Address"),
        (NODE_KEY, enc({"spec": {"bgp": {"ipv4Address": "fd00::1/64"}}}), "not an IPv4"),
        (
            NODE_KEY,
            enc({"spec": {"bgp": {"routeReflectorClusterID": "x"}}}),
            "routeReflectorClusterID",
        ),
        ("/calico/resources/v3/projectcalico.org/ippools/p", enc({"spec": {}}), "spec.cidr"),
        (
            "/calico/resources/v3/projectcalico.org/ippools/p",
            enc({"spec": {"cidr": "10.0.0.0/8", "ipipMode": "Sometimes"}}),
            "ipipMode",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgppeers/p",
            enc({"spec": {"localWorkloadSelector": "all()"}}),
            "asNumber",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgppeers/p",
            enc({"spec": {"peerIP": "nope", "asNumber": 1}}),
            "peerIP",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgppeers/p",
            enc({"spec": {"peerSelector": "a ==", "nodeSelector": ""}}),
            "peerSelector",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgppeers/p",
            enc({"spec": {"peerSelector": "all()", "asNumber": 5}}),
            "must be empty",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgppeers/p",
            enc(
                {"spec": {"node": "a", "nodeSelector": "all()", "peerIP": "1.1.1.1", "asNumber": 1}}
            ),
            "mutually exclusive",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgppeers/p",
            enc({"spec": {"peerIP": "1.1.1.1", "asNumber": 1, "keepaliveTime": "soon"}}),
            "keepaliveTime",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgpconfigurations/other",
            enc({"spec": {}}),
            "neither 'default'",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgpconfigurations/default",
            enc({"spec": {"listenPort": 70000}}),
            "listenPort",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgpfilters/f",
            enc({"spec": {"exportV4": [{"cidr": "10.0.0.0/8"}]}}),
            "action",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgpfilters/f",
            enc({"spec": {"exportV4": [{"action": "Accept", "cidr": "10.0.0.0/8"}]}}),
            "matchOperator",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgpfilters/f",
            enc(
                {
                    "spec": {
                        "importV6": [
                            {"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "In"}
                        ]
                    }
                }
            ),
            "not an IPv6",
        ),
        (
            "/calico/resources/v3/projectcalico.org/bgpfilters/f",
            enc(
                {
                    "spec": {
                        "exportV4": [
                            {"action": "Reject", "operations": [{"setPriority": {"value": 5}}]}
                        ]
                    }
                }
            ),
            "only allowed with action Accept",
        ),
        ("/calico/ipam/v2/host/n/ipv4/block/10.0.0.0-26", b'{"state":"weird"}', "state"),
        (
            "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-30",
            enc({"cidr": "10.0.0.0/30", "allocations": [5]}),
            "bad index",
        ),
    ],
)
def test_bad_values_name_the_field(key: str, value: bytes, reason: str) -> None:
    with pytest.raises(RecordError) as info:
        decode_etcd(key, value)
    assert reason in str(info.value)
    assert info.value.key.startswith(key)


def test_bgppeer_fields() -> None:
    spec = {
        "nodeSelector": "rack == 'a'",
        "peerIP": "[fd00::1]:1790",
        "asNumber": "65001",
        "localASNumber": 65010,
        "nextHopMode": "Keep",
        "password": {"secretKeyRef": {"name": "s", "key": "k"}},
        "maxRestartTime": "2m",
        "keepaliveTime": "10s",
        "ttlSecurity": 3,
        "filters": ["f1", "f2"],
        "reversePeering": "Manual",
    }
    decoded = decode_etcd("/calico/resources/v3/projectcalico.org/bgppeers/p", enc({"spec": spec}))
    assert decoded is not None
    peer = decoded[1]
    assert isinstance(peer, BGPPeer)
    assert (peer.as_number, peer.local_as_number, peer.ttl_security) == (65001, 65010, 3)
    assert peer.next_hop_mode is PeerNextHopMode.KEEP
    assert (peer.max_restart_time, peer.keepalive_time) == (120.0, 10.0)
    assert peer.password is not None and (peer.password.name, peer.password.key) == ("s", "k")
    assert peer.filters == ("f1", "f2") and peer.reverse_peering == "Manual"


def test_bgpfilter_rules() -> None:
    spec = {
        "exportV4": [
            {
                "action": "Accept",
                "cidr": "10.0.0.0/8",
                "matchOperator": "In",
                "prefixLength": {"min": 16, "max": 24},
                "peerType": "eBGP",
                "communities": {"values": ["65000:1:1"]},
                "asPathPrefix": [65001, "65002"],
                "priority": 512,
                "operations": [
                    {"addCommunity": {"value": "65000:7"}},
                    {"prependASPath": {"prefix": [64512, 64512]}},
                    {"setPriority": {"value": 256}},
                ],
            },
            {"action": "Reject", "source": "RemotePeers", "interface": "eth*"},
        ]
    }
    decoded = decode_etcd(
        "/calico/resources/v3/projectcalico.org/bgpfilters/f", enc({"spec": spec})
    )
    assert decoded is not None
    flt = decoded[1]
    assert isinstance(flt, BGPFilter)
    first, second = flt.export_v4
    assert first.action is FilterAction.ACCEPT and first.match_operator is FilterMatchOperator.IN
    assert (first.prefix_length_min, first.prefix_length_max) == (16, 24)
    assert first.community == (65000, 1, 1) and first.as_path_prefix == (65001, 65002)
    assert first.operations == (
        FilterAddCommunity((65000 << 16) | 7),
        FilterPrependASPath((64512, 64512)),
        FilterSetPriority(256),
    )
    assert second.action is FilterAction.REJECT and second.interface == "eth*"


def test_yaml_documents() -> None:
    text = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p6}
spec: {cidr: "fd00:1::/48", vxlanMode: Always}
---
apiVersion: projectcalico.org/v3
kind: NodeList
items:
  - apiVersion: projectcalico.org/v3
    kind: Node
    metadata: {name: n1}
    spec: {bgp: {ipv4Address: 10.0.0.1}}
  - apiVersion: projectcalico.org/v3
    kind: Node
    metadata: {name: n2}
    spec: {bgp: {ipv4Address: [oops]}}
---
apiVersion: projectcalico.org/v3
kind: BlockAffinity
metadata: {name: x}
spec: {node: n1, cidr: 10.244.0.0/26, state: pending, deleted: "false"}
---
apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata: {name: default}
spec: {strictAffinity: true, maxBlocksPerHost: 4}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
"""
    parsed = parse_text(text, "t.yaml")
    records = dict(parsed.records)
    pool = records[RecordKey(Kind.IPPOOL, "p6")]
    assert (
        isinstance(pool, IPPool) and pool.block_size == 122 and pool.vxlan_mode is EncapMode.ALWAYS
    )
    node = records[RecordKey(Kind.NODE, "n1")]
    assert isinstance(node, Node) and str(node.ipv4_address) == "10.0.0.1/32"
    aff = records[RecordKey(Kind.BLOCK_AFFINITY, "n1", ipaddress.ip_network("10.244.0.0/26"))]
    assert isinstance(aff, BlockAffinity) and aff.state is AffinityState.PENDING
    assert records[RecordKey(Kind.IPAM_CONFIG)].strict_affinity  # type: ignore[union-attr]
    reasons = sorted(str(e) for e in parsed.errors)
    assert len(reasons) == 2
    assert "document 1 item 1 (Node n2).spec.bgp.ipv4Address" in reasons[0]
    assert "document 4 (ConfigMap c)" in reasons[1] and "apiVersion" in reasons[1]


def test_document_needs_a_name() -> None:
    with pytest.raises(RecordError, match="metadata.name"):
        decode_document({"apiVersion": "projectcalico.org/v3", "kind": "Node", "spec": {}}, "d")


def test_default_datastore_loads_cleanly() -> None:
    parsed = parse_text(DEFAULT_DATASTORE.read_text(), "default.yaml")
    assert parsed.errors == ()
    snapshot = Cache().replace(parsed.records, revision=1)
    assert sorted(snapshot.nodes) == ["node1", "node2", "node3"]
    assert [str(n.ipv4_address) for n in snapshot.nodes.values()] == [
        "10.0.0.1/24",
        "10.0.0.2/24",
        "10.0.0.3/24",
    ]
    assert snapshot.global_as() == 64512 and snapshot.mesh_enabled()
    (pool,) = snapshot.pools.values()
    assert str(pool.cidr) == "10.244.0.0/16" and pool.block_size == 26
    assert not pool.uses_ipip and not pool.uses_vxlan
    assert sorted((n, str(c), a.state.value) for (n, c), a in snapshot.affinities.items()) == [
        ("node1", "10.244.1.0/26", "confirmed"),
        ("node2", "10.244.2.0/26", "confirmed"),
        ("node3", "10.244.3.0/26", "confirmed"),
    ]


# -- cache ------------------------------------------------------------------------------------

AFF = "/calico/ipam/v2/host/node1/ipv4/block/10.244.1.0-26"


def test_cache_in_sync_only_after_load() -> None:
    cache = Cache()
    assert not cache.in_sync
    cache.put(NODE_KEY, enc(NODE_JSON), 5)
    assert not cache.in_sync
    snap = cache.load([(NODE_KEY, enc(NODE_JSON)), (AFF, b"{}")], revision=7)
    assert cache.in_sync and snap.revision == 7 and list(snap.nodes) == ["node-a"]
    cache.mark_out_of_sync()
    assert not cache.in_sync


def test_cache_put_delete_and_ignore() -> None:
    cache = Cache()
    cache.load([], revision=1)
    assert cache.put(NODE_KEY, enc(NODE_JSON), 2)
    assert not cache.put(NODE_KEY, enc(NODE_JSON), 3)  # same value: no change
    assert not cache.put("/calico/felix/v1/whatever", b"garbage", 4)  # not ours: silent
    assert cache.rejected == 0
    assert cache.apply(DatastoreEvent("put", AFF, b'{"state":"confirmed"}', 5))
    snap = cache.snapshot()
    assert snap.revision == 5 and len(snap.affinities) == 1
    assert cache.apply(DatastoreEvent("delete", AFF, revision=6))
    assert not cache.delete(AFF, 7)
    assert len(cache.snapshot().affinities) == 0 and len(cache) == 1


def test_cache_bad_value_counts_and_keeps_the_last_good_record() -> None:
    """Cache rule 2 (issue 20 point 10): unlike libcalico, a malformed overwrite keeps the last
    good value, through a resync too; a key never good stays absent; a delete still deletes."""
    cache = Cache()
    cache.load([(NODE_KEY, enc(NODE_JSON))], revision=1)
    good = dict(cache.snapshot().nodes)
    assert good
    assert not cache.put(NODE_KEY, b"{broken", 2)
    assert cache.rejected == 1
    error = cache.last_errors[-1]
    assert error.key == NODE_KEY and "malformed JSON" in error.reason and error.kept
    assert cache.snapshot().nodes == good
    cache.load([(NODE_KEY, b"{broken"), (AFF, b"{}")], revision=3)  # a bad record in a listing
    assert cache.rejected == 2 and len(cache.snapshot().affinities) == 1
    assert cache.snapshot().nodes == good and cache.last_errors[-1].kept
    assert cache.delete(NODE_KEY, 4) and cache.snapshot().nodes == {}
    cache.load([(NODE_KEY, b"{broken")], revision=5)
    assert cache.snapshot().nodes == {} and not cache.last_errors[-1].kept


def test_cache_deleted_markers_are_absent() -> None:
    cache = Cache()
    cache.load([(AFF, b'{"state":"confirmed"}')], revision=1)
    assert cache.put(AFF, b'{"state":"confirmed","deleted":true}', 2)
    assert cache.snapshot().affinities == {}


def test_snapshot_reused_until_a_change() -> None:
    cache = Cache()
    cache.load([(NODE_KEY, enc(NODE_JSON))], revision=1)
    first = cache.snapshot()
    assert cache.snapshot() is first
    cache.put(AFF, b"{}", 2)
    second = cache.snapshot()
    assert second is not first and second.nodes is first.nodes  # untouched table shared


def test_empty_list_entries_are_skipped_not_fatal() -> None:
    """Schema rule 6 (Calico confd client.go / bgp_processor.go drop entries without a CIDR)."""
    spec = {
        "asNumber": 64600,
        "nodeToNodeMeshEnabled": False,
        "listenPort": 1790,
        "serviceClusterIPs": [{"cidr": "10.101.0.0/16"}, {}],
        "serviceExternalIPs": [{}, None, {"cidr": "192.0.2.0/24"}],
        "serviceLoadBalancerIPs": [{"cidr": ""}],
        "communities": [{}, {"name": "c", "value": "65000:1"}],
        "prefixAdvertisements": [{}, {"cidr": "10.101.0.0/16", "communities": ["c"]}],
    }
    doc = {"kind": "BGPConfiguration", "metadata": {"name": "default"}, "spec": spec}
    key = "/calico/resources/v3/projectcalico.org/bgpconfigurations/default"
    decoded = decode_etcd(key, enc({**doc, "apiVersion": "projectcalico.org/v3"}))
    assert decoded is not None
    from_yaml = decode_document({**doc, "apiVersion": "projectcalico.org/v3"}, "d")[1]
    for config in (decoded[1], from_yaml):
        assert config.as_number == 64600 and config.listen_port == 1790  # type: ignore[union-attr]
        assert config.node_to_node_mesh_enabled is False  # type: ignore[union-attr]
        assert config.service_cluster_ips == (ipaddress.ip_network("10.101.0.0/16"),)  # type: ignore[union-attr]
        assert config.service_external_ips == (ipaddress.ip_network("192.0.2.0/24"),)  # type: ignore[union-attr]
        assert config.service_load_balancer_ips == ()  # type: ignore[union-attr]
        assert [c.name for c in config.communities] == ["c"]  # type: ignore[union-attr]
        assert len(config.prefix_advertisements) == 1  # type: ignore[union-attr]


def test_yaml_file_reads_scalars_as_calico_does() -> None:
    """file rule 5 / schema rule 7: go-yaml v2's boolean words are booleans, read by a string
    field as ``true``/``false`` (projectcalico/calico 87c15906 confd case reverse_peering/auto:
    ``route-reflector: yes`` matches ``route-reflector == 'true'``); other YAML 1.1 forms stay
    text (communities such as ``5663:12``)."""
    text = """
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: n1
  labels: {global-peer: yes, rr: no, edge: on, mode: 0755, rack: 12, flag: true, y: N, o: Off}
spec: {bgp: {ipv4Address: 10.0.0.1/24, asNumber: 1.10}}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec:
  asNumber: 64512
  communities: [{name: a, value: 5663:12}]
  prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [5663:13, a]}]
"""
    parsed = parse_text(text, "t.yaml")
    assert parsed.errors == ()
    records = dict(parsed.records)
    node = records[RecordKey(Kind.NODE, "n1")]
    assert isinstance(node, Node)
    assert node.labels == {
        "global-peer": "true",
        "rr": "false",
        "edge": "true",
        "mode": "0755",
        "rack": "12",
        "flag": "true",
        "true": "false",
        "o": "false",
    }
    assert node.as_number == (1 << 16) | 10
    config = records[RecordKey(Kind.BGPCONFIGURATION, "default")]
    assert config.communities[0].value == "5663:12"  # type: ignore[union-attr]
    assert config.prefix_advertisements[0].communities == ("5663:13", "a")  # type: ignore[union-attr]


def test_peer_ip_without_as_number_is_accepted() -> None:
    """Calico confd case explicit_peering/route_reflector_v6_by_ip (golden calico-rr-v6-by-ip)."""
    decoded = decode_etcd(
        "/calico/resources/v3/projectcalico.org/bgppeers/p", enc({"spec": {"peerIP": "fe0a::2"}})
    )
    assert decoded is not None
    peer = decoded[1]
    assert isinstance(peer, BGPPeer) and peer.peer_ip == "fe0a::2" and peer.as_number is None
