"""Kernel route learning against a real peer (issue 17 point 2): routes that Felix or a user puts
in the kernel are exported by Calico's rules, as BIRD's ``protocol kernel { learn; }`` and
``protocol direct`` do for Calico.

Two namespaces on one bridge:

    hub 10.213.79.1   BIRD 1.6, AS 64512 (iBGP, so LOCAL_PREF travels), BGPPeer of node-a
    a   10.213.79.2   bgpd node-a, AS 64512, pool 10.244.0.0/16, own block 10.244.1.0/26

node-a's BGPPeer uses a BGPFilter that rejects routes through interfaces ``blk*`` on export,
and its BGPConfiguration ignores interfaces ``ign*``. Each test changes node-a's kernel with
``ip`` and watches what BIRD receives.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bgpd_driver import BgpdNode, OurNode, calico_datastore, calico_resource, lan
from netns import Namespace, have_root
from peer_drivers import Bird, PeerSpec, wait_for

pytestmark = pytest.mark.netns

PREFIX = "kL-"
SUBNET = "10.213.79.0/24"
AS = 64512
BLOCK = "10.244.1.0/26"
SESSION_TIMEOUT = 40.0
ROUTE_TIMEOUT = 30.0
ELEVATED_LOCAL_PREF = 2147483647 - 512  # a KubeVirt VM's /32 with metric 512
FAR_ROUTE = "10.50.79.0/24"  # BIRD's route whose next hop is outside node-a's networks
FAR_NEXT_HOP = "10.213.99.9"


class ThirdPartyBird(Bird):
    """BIRD announcing ``FAR_ROUTE`` with a next hop on no network node-a is connected to."""

    def config(self) -> str:
        export = f"export filter {{ bgp_next_hop = {FAR_NEXT_HOP}; accept; }};"
        return (
            super()
            .config()
            .replace("{\n    \n}", f"{{\n    route {FAR_ROUTE} blackhole;\n}}")
            .replace("export where source = RTS_STATIC;", export)
        )


@dataclass
class Lab:
    a_ns: Namespace
    hub_ip: str
    a: BgpdNode
    bird: ThirdPartyBird

    def describe(self) -> str:
        routes = self.bird.cli("show", "route")
        return f"A: {self.a.describe()}\nBIRD: {self.bird.describe()}\n{routes}"

    def ip(self, *args: str) -> None:
        self.a_ns.ip(*args)

    def received(self) -> set[str]:
        return self.bird.received()

    def local_pref(self, prefix: str) -> int | None:
        for line in self.bird.cli("show", "route", prefix, "all").splitlines():
            if "BGP.local_pref:" in line:
                return int(line.split(":")[1])
        return None


def datastore(node: OurNode, hub_ip: str) -> str:
    return calico_datastore(
        node,
        (),
        bgp_config={"ignoredInterfaces": ["ign*"]},
        extra=(
            calico_resource(
                "BGPFilter",
                "no-blocked",
                {"exportV4": [{"action": "Reject", "interface": "blk*"}]},
            ),
            calico_resource(
                "BGPPeer",
                "hub",
                {
                    "node": node.name,
                    "peerIP": hub_ip,
                    "asNumber": AS,
                    "keepaliveTime": "3s",
                    "filters": ["no-blocked"],
                },
            ),
        ),
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not have_root():
        pytest.skip("needs root and iproute2")
    if not Bird.available():
        pytest.skip("BIRD 1.6 is not installed")
    workdir = tmp_path_factory.mktemp("kernel-learning")
    spaces: list[Namespace] = []
    cleanups: list[Callable[[], None]] = []
    try:
        for _ in range(2):
            spaces.append(Namespace.create(PREFIX))
        hub, member = lan(spaces[0], spaces[1:], SUBNET)
        node = OurNode("node-a", f"{member.address}/24", AS, blocks=(BLOCK,))
        a = BgpdNode(
            member.ns, node, (), Path(workdir) / "a", datastore_text=datastore(node, hub.address)
        )
        bird = ThirdPartyBird(
            hub.ns,
            PeerSpec(
                local_as=AS,
                peer_as=AS,
                router_id=hub.address,
                address=hub.address,
                neighbor=member.address,
                hold_time=9,
                keepalive=3,
                routes=(),
            ),
            Path(workdir),
        )
        cleanups.append(lambda: a.stop(signal.SIGKILL))
        cleanups.append(bird.stop)
        for name in ("cali1a2b3c4d", "wl0", "blk0", "ign0", "dir0"):
            member.ns.ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
            member.ns.ip("link", "set", f"{name}p", "up")
            member.ns.ip("link", "set", name, "up")
        bird.start()
        a.start()
        lab = Lab(member.ns, hub.address, a, bird)
        wait_for(
            lambda: bird.established() and BLOCK in bird.received(), SESSION_TIMEOUT, lab.describe
        )
        yield lab
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
        for ns in spaces:
            ns.delete()


def test_a_static_route_inside_a_pool_is_advertised_and_withdrawn(lab: Lab) -> None:
    lab.ip("route", "add", "10.244.5.0/28", "dev", "wl0")
    wait_for(lambda: "10.244.5.0/28" in lab.received(), ROUTE_TIMEOUT, lab.describe)
    lab.ip("route", "del", "10.244.5.0/28", "dev", "wl0")
    wait_for(lambda: "10.244.5.0/28" not in lab.received(), ROUTE_TIMEOUT, lab.describe)


def test_a_route_outside_every_pool_is_not_advertised(lab: Lab) -> None:
    lab.ip("route", "add", "198.51.100.0/24", "dev", "wl0")
    lab.ip("route", "add", "10.244.9.0/28", "dev", "wl0")  # a marker that must arrive
    wait_for(lambda: "10.244.9.0/28" in lab.received(), ROUTE_TIMEOUT, lab.describe)
    assert "198.51.100.0/24" not in lab.received()


def test_elevated_workload_route_passes_block_aggregation_with_its_local_pref(lab: Lab) -> None:
    """A KubeVirt VM's /32 with metric 512 inside our block is exported with LOCAL_PREF
    2147483135; a normal /32 (metric 1024, or Felix's metric 0, which the kernel reports as
    none) stays behind the block."""
    lab.ip("route", "add", "10.244.1.7/32", "dev", "cali1a2b3c4d", "metric", "512")
    lab.ip("route", "add", "10.244.1.8/32", "dev", "cali1a2b3c4d", "metric", "1024")
    lab.ip("route", "add", "10.244.1.9/32", "dev", "cali1a2b3c4d")  # Felix's: metric 0, none
    wait_for(lambda: "10.244.1.7/32" in lab.received(), ROUTE_TIMEOUT, lab.describe)
    wait_for(lambda: lab.local_pref("10.244.1.7/32") is not None, ROUTE_TIMEOUT, lab.describe)
    assert lab.local_pref("10.244.1.7/32") == ELEVATED_LOCAL_PREF
    assert "10.244.1.8/32" not in lab.received()
    assert "10.244.1.9/32" not in lab.received()
    assert BLOCK in lab.received()


def test_bgpfilter_interface_rule_matches_a_learned_route(lab: Lab) -> None:
    lab.ip("route", "add", "10.244.6.0/28", "dev", "blk0")
    lab.ip("route", "add", "10.244.6.16/28", "dev", "wl0")  # the same range, another interface
    wait_for(lambda: "10.244.6.16/28" in lab.received(), ROUTE_TIMEOUT, lab.describe)
    assert "10.244.6.0/28" not in lab.received()


def test_ignored_interfaces_give_no_direct_route(lab: Lab) -> None:
    lab.ip("addr", "add", "10.244.7.1/28", "dev", "ign0")
    lab.ip("addr", "add", "10.244.8.1/28", "dev", "dir0")
    wait_for(lambda: "10.244.8.0/28" in lab.received(), ROUTE_TIMEOUT, lab.describe)
    assert "10.244.7.0/28" not in lab.received()


def test_a_next_hop_outside_every_connected_network_resolves_recursively(lab: Lab) -> None:
    """BIRD's ``gateway recursive``: the route is installed via the gateway of the route towards
    its next hop once one exists, and is removed when that route goes."""
    wait_for(
        lambda: FAR_NEXT_HOP in lab.a.bgpd("show", "routes", FAR_ROUTE).stdout,
        ROUTE_TIMEOUT,
        lab.describe,
    )
    assert FAR_ROUTE not in lab.a.routes()  # nothing leads to 10.213.99.9 yet
    lab.ip("route", "add", "10.213.99.0/24", "via", lab.hub_ip)
    wait_for(lambda: lab.a.next_hop(FAR_ROUTE) == lab.hub_ip, ROUTE_TIMEOUT, lab.describe)
    lab.ip("route", "del", "10.213.99.0/24", "via", lab.hub_ip)
    wait_for(lambda: FAR_ROUTE not in lab.a.routes(), ROUTE_TIMEOUT, lab.describe)
