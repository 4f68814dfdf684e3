"""BFDConfiguration and BGPPeer failureDetectionMode (Calico Enterprise's API) from YAML and
etcd, and the BFD each session asks for (bgpd/calico/bfd.py rules 1-6)."""

from __future__ import annotations

import ipaddress
import json

import pytest

from bgpd.bfd.fsm import Timers
from bgpd.calico.bfd import HostFacts, HostRoute, LocalInterface, plan_bfd
from bgpd.calico.node import NodePlanner
from bgpd.config import DaemonConfig, FileSource
from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.cache import Cache
from bgpd.datastore.file import parse_text
from bgpd.datastore.schema import Kind, RecordError, RecordKey, decode_etcd, etcd_pair
from peers.model import BFDConfiguration, BFDInterface, BGPPeer

BFD_YAML = """
apiVersion: projectcalico.org/v3
kind: BFDConfiguration
metadata: {name: default}
spec:
  nodeSelector: all()
  interfaces:
  - matchPattern: "eth*"
    minimumRecvInterval: 100ms
    minimumSendInterval: 100ms
    idleSendInterval: 1m
    multiplier: 3
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec:
  peerIP: 10.0.0.254
  asNumber: 65000
  failureDetectionMode: BFDIfDirectlyConnected
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: far}
spec:
  peerIP: 192.168.7.1
  asNumber: 65001
  failureDetectionMode: BFDIfDirectlyConnected
"""
ETH0 = LocalInterface("eth0", ipaddress.IPv4Interface("10.0.0.1/24"))
TIMERS = Timers(100_000, 100_000, 3, idle_min_tx=60_000_000)


def _snapshot(extra: str = BFD_YAML):  # type: ignore[no-untyped-def]
    parsed = parse_text(DEFAULT_DATASTORE.read_text() + "\n---\n" + extra, "t.yaml")
    assert parsed.errors == ()
    return Cache().replace(parsed.records, revision=1)


def _plan(snapshot, interfaces=(ETH0,), routes=()):  # type: ignore[no-untyped-def]
    planner = NodePlanner(DaemonConfig(node="node1", datastore=FileSource(DEFAULT_DATASTORE)))
    return planner.plan(snapshot, HostFacts(interfaces, routes))


def test_yaml_gives_the_resource_with_calico_enterprise_defaults() -> None:
    snapshot = _snapshot(BFD_YAML + "---\n" + BFD_YAML.split("---")[0].replace("default", "d2"))
    assert snapshot.bfd_configs["default"] == BFDConfiguration(
        "default", "all()", (BFDInterface("eth*", 0.1, 0.1, 60.0, 3),)
    )
    minimal = parse_text(
        "apiVersion: projectcalico.org/v3\nkind: BFDConfiguration\nmetadata: {name: m}\n"
        "spec: {nodeSelector: all(), interfaces: [{matchPattern: '*'}]}\n"
    )
    ((_, record),) = minimal.records
    assert record == BFDConfiguration("m", "all()", (BFDInterface("*", 0.01, 0.1, 60.0, 5),))
    peer = snapshot.peers["tor"]
    assert isinstance(peer, BGPPeer) and peer.failure_detection_mode == "BFDIfDirectlyConnected"


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("{matchPattern: '*', multiplier: 0}", "multiplier"),
        ("{matchPattern: '*', minimumRecvInterval: 0ms}", "minimumRecvInterval"),
        ("{matchPattern: '*', minimumSendInterval: 1.5ms}", "minimumSendInterval"),
        ("{minimumSendInterval: 100ms}", "matchPattern"),
    ],
)
def test_bad_interface_entries_name_the_field(entry: str, field: str) -> None:
    parsed = parse_text(
        "apiVersion: projectcalico.org/v3\nkind: BFDConfiguration\nmetadata: {name: b}\n"
        f"spec: {{nodeSelector: all(), interfaces: [{entry}]}}\n"
    )
    (error,) = parsed.errors
    assert f"interfaces[0].{field}" in str(error)


def test_etcd_key_is_calico_enterprises_v3_layout() -> None:
    key, value = etcd_pair(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BFDConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeSelector": "all()", "interfaces": [{"matchPattern": "*"}]},
        },
        "t",
    )
    assert key == "/calico/resources/v3/projectcalico.org/bfdconfigurations/default"
    decoded = decode_etcd(key, value)
    assert decoded is not None and decoded[0] == RecordKey(Kind.BFDCONFIGURATION, "default")
    bad = json.dumps({"spec": {"nodeSelector": "all()", "interfaces": [{"multiplier": 3}]}})
    with pytest.raises(RecordError, match="matchPattern"):
        decode_etcd(key, bad)


def test_mesh_and_directly_connected_peers_use_bfd_others_not() -> None:
    plan = _plan(_snapshot())
    bfd = {name: s.bfd for name, s in plan.sessions.items()}
    assert bfd["Mesh_10_0_0_2"] is not None and bfd["Mesh_10_0_0_2"].timers == TIMERS
    assert bfd["Mesh_10_0_0_2"].local == ipaddress.IPv4Address("10.0.0.1")
    assert bfd["Global_10_0_0_254"] is not None  # directly connected, BFDIfDirectlyConnected
    assert bfd["Global_192_168_7_1"] is None  # not directly connected


def test_no_matching_interface_or_no_selection_means_no_bfd() -> None:
    lo = LocalInterface("ens3", ETH0.address)
    assert all(s.bfd is None for s in _plan(_snapshot(), (lo,)).sessions.values())
    unselected = BFD_YAML.replace("nodeSelector: all()", "nodeSelector: rack == 'b'")
    assert all(s.bfd is None for s in _plan(_snapshot(unselected)).sessions.values())
    no_mode = BFD_YAML.replace("failureDetectionMode: BFDIfDirectlyConnected", "")
    assert _plan(_snapshot(no_mode)).sessions["Global_10_0_0_254"].bfd is None


def test_a_bad_selector_is_a_problem_not_a_failure() -> None:
    snapshot = _snapshot()
    problems: list[str] = []
    node = snapshot.nodes["node1"]
    configs = {"x": BFDConfiguration("x", "has(", (BFDInterface("*"),))}
    assert plan_bfd(node, configs, {}, HostFacts((ETH0,)), problems) == {}
    assert problems and "BFDConfiguration x: nodeSelector" in problems[0]


def test_a_mesh_peer_behind_a_router_gets_multihop_bfd_a_bgppeer_none() -> None:
    """Rule 2: node1 on 10.9.0.0/24, its mesh peers reached through a route via eth1."""
    eth1 = LocalInterface("eth1", ipaddress.IPv4Interface("10.9.0.1/24"))
    routes = (HostRoute(ipaddress.IPv4Network("10.0.0.0/16"), "eth1"),)
    text = BFD_YAML.replace('matchPattern: "eth*"', 'matchPattern: "eth1"')
    plan = _plan(_snapshot(text), (eth1,), routes)
    mesh = plan.sessions["Mesh_10_0_0_2"].bfd
    assert mesh is not None and mesh.multihop and mesh.interface == "eth1"
    assert mesh.local == ipaddress.IPv4Address("10.0.0.1")  # the session's source address
    assert plan.sessions["Global_10_0_0_254"].bfd is None  # BFDIfDirectlyConnected: it is not
    direct = _plan(_snapshot())
    assert not direct.sessions["Mesh_10_0_0_2"].bfd.multihop  # type: ignore[union-attr]


def test_host_facts_come_from_the_kernel_view_without_workload_routes() -> None:
    """Rule 7: addresses with their interface, IPv4 main-table unicast routes with an interface,
    and nothing through a ``cali*`` workload interface."""
    from bgpd.calico.bfd import host_facts_of
    from bgpd.kernel.learn import KernelView, ObservedAddress, ObservedRoute

    net = ipaddress.ip_network
    view = KernelView(
        routes=(
            ObservedRoute(net("10.0.0.0/24"), 2, ifname="eth0"),
            ObservedRoute(net("10.1.0.0/16"), 3, ifname="eth1", gateway=True),
            ObservedRoute(net("10.244.1.5/32"), 3, ifname="cali12345"),
            ObservedRoute(net("fd00::/64"), 2, ifname="eth0"),
            ObservedRoute(net("10.9.0.0/16"), 3),
        ),
        addresses=(
            ObservedAddress(net("10.0.0.0/24"), "eth0", 0, ipaddress.ip_address("10.0.0.5")),
            ObservedAddress(net("10.2.0.0/24"), "eth2"),
        ),
    )
    facts = host_facts_of(view)
    assert [(a.name, str(a.address)) for a in facts.addresses] == [("eth0", "10.0.0.5/24")]
    assert [(str(r.network), r.interface) for r in facts.routes] == [
        ("10.0.0.0/24", "eth0"),
        ("10.1.0.0/16", "eth1"),
    ]
