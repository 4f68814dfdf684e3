"""A 3-node cluster on the Kubernetes API datastore, in namespaces: three ``bgpd run`` nodes with
``DATASTORE_TYPE=kubernetes`` whose API server is the test double (listening inside the hub's
namespace), each owning one block, in a full iBGP mesh::

    hub     10.213.80.1   the test double API server (``tests/io/kube_api_server.py``)
    node-1  10.213.80.2   block 10.244.1.0/26
    node-2  10.213.80.3   block 10.244.2.0/26
    node-3  10.213.80.4   block 10.244.3.0/26
    node-4  10.213.80.5   block 10.244.4.0/26, added and removed through the API

The cluster is written as a KDD cluster stores it: core/v1 Nodes with Calico's annotations and
``crd.projectcalico.org/v1`` BGPConfiguration, IPPool and BlockAffinities. Covered, in order:
sessions come up and every block reaches the other kernels; a node added through the API joins
the mesh and its block is routed, and removed through the API it leaves (sessions and route
withdrawn); the API server's watches dropped and its history compacted while a block is added:
nothing is withdrawn (no kernel route deleted, no session down) and the relist converges on the
change the watches missed.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bgpd_driver import BgpdNode, OurNode, RouteMonitor, calico_resource, lan
from calico_kdd import kdd_object
from kube_lab import ThreadedKubeApiServer, api_server_in, write_kubeconfig
from netns import Namespace, have_root
from peer_drivers import wait_for

pytestmark = pytest.mark.netns

PREFIX = "hL-"
SUBNET = "10.213.80.0/24"
V1 = "/apis/crd.projectcalico.org/v1"
NODES = "/api/v1/nodes"
TIMEOUT = 40.0


def k8s_node(name: str, address: str) -> dict[str, Any]:
    annotations = {"projectcalico.org/IPv4Address": f"{address}/24"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "annotations": annotations},
    }


def affinity(node: str, block: str) -> dict[str, Any]:
    name = f"{node}-{block.replace('.', '-').replace('/', '-')}"
    return calico_resource(
        "BlockAffinity", name, {"node": node, "cidr": block, "state": "confirmed"}
    )


def block_of(index: int) -> str:
    return f"10.244.{index}.0/26"


@dataclass
class Lab:
    api: ThreadedKubeApiServer
    nodes: dict[str, BgpdNode]
    addresses: dict[str, str]
    hub: Namespace
    workdir: Path
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def describe(self) -> str:
        return "\n".join(f"{name}: {node.describe()}" for name, node in self.nodes.items())

    def running(self) -> dict[str, BgpdNode]:
        return {name: node for name, node in self.nodes.items() if node.running}

    def meshed(self) -> bool:
        running = self.running()
        return all(
            node.established_with(self.addresses[other])
            for name, node in running.items()
            for other in running
            if other != name
        )

    def routed(self) -> bool:
        """Every running node's kernel routes every other running node's block via it."""
        running = self.running()
        return all(
            node.next_hop(block_of(int(other[-1]))) == self.addresses[other]
            for name, node in running.items()
            for other in running
            if other != name
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not have_root():
        pytest.skip("needs root and iproute2")
    workdir = tmp_path_factory.mktemp("kdd-lab")
    spaces: list[Namespace] = []
    cleanups: list[Callable[[], None]] = []
    try:
        for _ in range(5):
            spaces.append(Namespace.create(PREFIX))
        hub, *members = lan(spaces[0], spaces[1:], SUBNET)
        api = api_server_in(hub.ns, hub.address)
        cleanups.append(api.stop)
        config = {"nodeToNodeMeshEnabled": True, "asNumber": 64512}
        api.put(*kdd_object(calico_resource("BGPConfiguration", "default", config)))
        pool = {"cidr": "10.244.0.0/16", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never"}
        api.put(*kdd_object(calico_resource("IPPool", "pool", pool)))
        env = {
            "DATASTORE_TYPE": "kubernetes",
            "KUBECONFIG": str(write_kubeconfig(workdir / "kubeconfig", hub.address)),
        }
        nodes: dict[str, BgpdNode] = {}
        addresses: dict[str, str] = {}
        for index, member in enumerate(members, start=1):
            name = f"node-{index}"
            addresses[name] = member.address
            nodes[name] = BgpdNode(
                member.ns,
                OurNode(name, f"{member.address}/24"),
                (),
                workdir / name,
                env=env,
                kubernetes=True,
            )
            cleanups.append(lambda n=nodes[name]: n.stop(signal.SIGKILL))  # type: ignore[misc]
        current = Lab(api, nodes, addresses, hub.ns, workdir, cleanups)
        for index in (1, 2, 3):
            name = f"node-{index}"
            api.put(NODES, k8s_node(name, addresses[name]))
            api.put(*kdd_object(affinity(name, block_of(index))))
        for index in (1, 2, 3):
            nodes[f"node-{index}"].start()
        yield current
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
        for ns in spaces:
            ns.delete()


def test_sessions_come_up_and_blocks_reach_the_kernels(lab: Lab) -> None:
    wait_for(lab.meshed, TIMEOUT, lab.describe)
    wait_for(lab.routed, TIMEOUT, lab.describe)
    for name, node in lab.running().items():
        own = node.routes().get(block_of(int(name[-1])), "")
        assert own.startswith("blackhole"), (name, own)


def test_a_node_added_and_removed_through_the_api(lab: Lab) -> None:
    wait_for(lab.meshed, TIMEOUT, lab.describe)
    lab.api.put(NODES, k8s_node("node-4", lab.addresses["node-4"]))
    lab.api.put(*kdd_object(affinity("node-4", block_of(4))))
    lab.nodes["node-4"].start()
    wait_for(lambda: lab.meshed() and lab.routed(), TIMEOUT, lab.describe)
    assert len(lab.running()) == 4

    lab.api.delete(
        V1 + "/blockaffinities", f"node-4-{block_of(4).replace('.', '-').replace('/', '-')}"
    )
    lab.api.delete(NODES, "node-4")
    lab.nodes["node-4"].stop(signal.SIGKILL)
    others = {name: node for name, node in lab.nodes.items() if name != "node-4"}
    gone = lab.addresses["node-4"]
    wait_for(
        lambda: all(
            not node.established_with(gone) and block_of(4) not in node.routes()
            for node in others.values()
        ),
        TIMEOUT,
        lab.describe,
    )
    for node in others.values():
        assert any(
            e.get("event") == "peer removed" and e.get("peer") == gone
            for e in node.events_since_start()
        )
    assert lab.meshed() and lab.routed()


def test_watches_dropped_and_history_compacted_withdraw_nothing(lab: Lab) -> None:
    wait_for(lambda: lab.meshed() and lab.routed(), TIMEOUT, lab.describe)
    monitor = RouteMonitor(lab.nodes["node-1"].ns, lab.workdir / "node-1-routes.log")
    monitor.start()
    downs_before = {
        name: sum(1 for e in node.events_since_start() if e.get("event") == "session down")
        for name, node in lab.running().items()
    }
    try:
        lab.api.server.drop_watches()
        lab.api.server.compact()
        extra = "10.244.12.0/26"
        lab.api.put(*kdd_object(affinity("node-2", extra)))  # lost with the history
        wait_for(
            lambda: lab.nodes["node-1"].next_hop(extra) == lab.addresses["node-2"],
            TIMEOUT,
            lab.describe,
        )
        assert lab.routed()
    finally:
        monitor.stop()
    deleted = [line for line in monitor.path.read_text().splitlines() if line.startswith("Deleted")]
    assert deleted == [], deleted
    for name, node in lab.running().items():
        downs = sum(1 for e in node.events_since_start() if e.get("event") == "session down")
        assert downs == downs_before[name], name
        assert any(e.get("event") == "datastore.kubernetes.gone" for e in node.events_since_start())
