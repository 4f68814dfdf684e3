"""Real packets: pods on three nodes ping each other through the routes and tunnels that
plan + KernelProgrammer + TunnelDevices program (no BGP: the plan is fed directly).

Topology (every box a namespace; the router knows no pod routes, so cross-subnet pod traffic
only flows when it is encapsulated):

    pod-a  pod-c                                pod-b
      |      |                                    |
    node-a node-c --- br1 [router] rB --- node-b
    192.168.1.10/.30   192.168.1.1  192.168.2.1   192.168.2.20
    block 10.244.1.0/26, 10.244.3.0/26            block 10.244.2.0/26
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kernel_netns import Namespaces, exec_in, ip_in, ping, routes, sysctl, veth
from pyroute2 import AsyncIPRoute

from bgpd.kernel.netlink import ApplyResult, KernelProgrammer
from bgpd.kernel.plan import BestRoute, PlanConfig, plan_routes
from encap.devices import TunnelDevices
from encap.model import EncapMode, NodeTunnelInfo, PoolSpec
from encap.vxlan import desired_l2, remote_vtep, vxlan_device_spec

pytestmark = pytest.mark.netns

POOL_CIDR = ipaddress.IPv4Network("10.244.0.0/16")


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    address: ipaddress.IPv4Interface
    block: ipaddress.IPv4Network
    pod_ip: ipaddress.IPv4Address
    router_port: str

    @property
    def tunnel(self) -> NodeTunnelInfo:
        return NodeTunnelInfo(
            self.name, ipv4_address=self.address, ipv4_vxlan_tunnel_addr=self.block[0]
        )


NODES = (
    Node(
        "node-a",
        ipaddress.IPv4Interface("192.168.1.10/24"),
        ipaddress.IPv4Network("10.244.1.0/26"),
        ipaddress.IPv4Address("10.244.1.5"),
        "rA",
    ),
    Node(
        "node-b",
        ipaddress.IPv4Interface("192.168.2.20/24"),
        ipaddress.IPv4Network("10.244.2.0/26"),
        ipaddress.IPv4Address("10.244.2.5"),
        "rB",
    ),
    Node(
        "node-c",
        ipaddress.IPv4Interface("192.168.1.30/24"),
        ipaddress.IPv4Network("10.244.3.0/26"),
        ipaddress.IPv4Address("10.244.3.5"),
        "rC",
    ),
)
A, B, C = NODES


@dataclass(frozen=True, slots=True)
class Topology:
    nodes: dict[str, str]  # node name -> namespace
    pods: dict[str, str]  # node name -> pod namespace


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    with Namespaces("dp") as spaces:
        router = spaces.new()
        sysctl(router, "net.ipv4.ip_forward", "1")
        ip_in(router, "link", "add", "br1", "type", "bridge")
        ip_in(router, "addr", "add", "192.168.1.1/24", "dev", "br1")
        ip_in(router, "link", "set", "br1", "up")
        nodes: dict[str, str] = {}
        pods: dict[str, str] = {}
        for node in NODES:
            ns = nodes[node.name] = spaces.new()
            pod = pods[node.name] = spaces.new()
            for key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter"):
                sysctl(ns, key, "1" if key.endswith("forward") else "0")
            veth(router, node.router_port, ns, "eth0")
            if node.address in ipaddress.IPv4Network("192.168.1.0/24"):
                ip_in(router, "link", "set", node.router_port, "master", "br1")
                gateway = "192.168.1.1"
            else:
                ip_in(router, "addr", "add", "192.168.2.1/24", "dev", node.router_port)
                gateway = "192.168.2.1"
            ip_in(ns, "addr", "add", str(node.address), "dev", "eth0")
            ip_in(ns, "route", "add", "default", "via", gateway)
            # the pod, wired the way Calico's CNI does it: /32 + 169.254.1.1 via proxy ARP
            veth(ns, "cali0", pod, "eth0")
            sysctl(ns, "net.ipv4.conf.cali0.proxy_arp", "1")
            ip_in(ns, "route", "add", f"{node.pod_ip}/32", "dev", "cali0", "scope", "link")
            ip_in(pod, "addr", "add", f"{node.pod_ip}/32", "dev", "eth0")
            ip_in(pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
            ip_in(pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
        yield Topology(nodes, pods)


async def program(topology: Topology, pool: PoolSpec) -> dict[str, ApplyResult]:
    """Program every node for ``pool``: VXLAN device + L2 entries, then the planned routes."""
    results: dict[str, ApplyResult] = {}
    for me in NODES:
        namespace = topology.nodes[me.name]
        others = [n for n in NODES if n is not me]
        async with AsyncIPRoute(netns=namespace, flags=0) as ipr:
            devices = TunnelDevices(ipr)
            spec = vxlan_device_spec(me.tunnel, 4, host_mtu=1500)
            assert spec is not None
            await devices.ensure_vxlan(spec)
            vteps = [v for v in (remote_vtep(o.tunnel, 4) for o in others) if v is not None]
            await devices.reconcile_l2(spec.name, desired_l2(vteps, me.name))
        best = [BestRoute(me.block, local_blackhole=True, pool=pool)] + [
            BestRoute(o.block, (o.address.ip,), local_pref=2147482623, pool=pool) for o in others
        ]
        config = PlanConfig(
            owned_pools=frozenset({pool.cidr}),
            program_vxlan=True,
            local_networks=(me.address.network,),
            vteps={o.address.ip: o.block[0] for o in others},
        )
        plan = plan_routes(best, config)
        assert plan.skipped == ()
        async with KernelProgrammer(namespace) as programmer:
            results[me.name] = await programmer.apply(plan.routes)
            await programmer.sweep_stale()
    return results


def route_to(topology: Topology, node: Node, block: ipaddress.IPv4Network) -> dict[str, object]:
    [route] = routes(topology.nodes[node.name], str(block), "proto", "bird")
    return dict(route)


def pod_ping(topology: Topology, src: Node, dst: Node) -> bool:
    return ping(topology.pods[src.name], str(dst.pod_ip))


async def test_cross_subnet_vxlan_across_and_direct_within(topology: Topology) -> None:
    results = await program(topology, PoolSpec(POOL_CIDR, vxlan_mode=EncapMode.CROSS_SUBNET))
    assert all(r.errors == () for r in results.values()), results
    across = route_to(topology, A, B.block)
    assert (across["gateway"], across["dev"]) == ("10.244.2.0", "vxlan.calico")
    within = route_to(topology, A, C.block)
    assert (within["gateway"], within["dev"]) == ("192.168.1.30", "eth0")
    assert pod_ping(topology, A, B)
    assert pod_ping(topology, B, C)
    assert pod_ping(topology, A, C)


async def test_always_vxlan_everywhere(topology: Topology) -> None:
    results = await program(topology, PoolSpec(POOL_CIDR, vxlan_mode=EncapMode.ALWAYS))
    assert all(r.errors == () for r in results.values()), results
    within = route_to(topology, A, C.block)
    assert (within["gateway"], within["dev"]) == ("10.244.3.0", "vxlan.calico")
    assert pod_ping(topology, A, B)
    assert pod_ping(topology, C, A)
    # the bytes really crossed the tunnel: the VXLAN device counted them
    stats = exec_in(
        topology.nodes[A.name], "cat", "/sys/class/net/vxlan.calico/statistics/tx_packets"
    )
    assert int(stats.stdout) > 0


async def test_never_direct_within_subnet_only(topology: Topology) -> None:
    results = await program(topology, PoolSpec(POOL_CIDR))
    within = route_to(topology, A, C.block)
    assert (within["gateway"], within["dev"]) == ("192.168.1.30", "eth0")
    assert pod_ping(topology, A, C)
    # without encapsulation the next hop across the router is not on-link: the kernel refuses
    # that route (reported per route), and the router, which knows no pods, cannot carry it
    refused = {(str(e.route.dst), e.errno) for e in results[A.name].errors}
    assert refused == {(str(B.block), errno.ENETUNREACH)}
    assert not ping(topology.pods[A.name], str(B.pod_ip), count=1)
