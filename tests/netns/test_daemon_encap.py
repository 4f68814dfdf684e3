"""The daemon with an IP-in-IP pool: tunl0 where the kernel has it, a degraded node where not;
and with other datastores, the static kernel routes Calico's BIRD or Felix would install (the
own VXLAN block's blackhole with ``--program-vxlan``, a ``reachableBy`` peer's pinned route).

Issue contract (calico-bgp.md §3): a kernel without IP-in-IP gives a clear error naming the pool,
a metric (``bgpd_encap_unsupported_pool``), readiness that fails naming the pool, and leaves the
other pools working. Where the kernel has ``ipip``, the same datastore gives ``tunl0`` with the
node's ``ipv4IPIPTunnelAddr`` and no degradation.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from bgpd_driver import calico_resource
from kernel_netns import ipip_supported
from netns import Namespace, have_root
from peer_drivers import wait_for

pytestmark = pytest.mark.netns

REPO_ROOT = Path(__file__).resolve().parents[2]
METRICS = "127.0.0.1:9179"


DATASTORE = [
    # IP-in-IP routes are ours only when programClusterRoutes says so (calico-bgp.md §2.11).
    calico_resource(
        "BGPConfiguration",
        "default",
        {"nodeToNodeMeshEnabled": True, "asNumber": 64512, "programClusterRoutes": "Enabled"},
    ),
    calico_resource("IPPool", "ipip-pool", {"cidr": "10.245.0.0/16", "ipipMode": "Always"}),
    calico_resource("IPPool", "plain-pool", {"cidr": "10.244.0.0/16", "ipipMode": "Never"}),
    calico_resource(
        "Node",
        "node1",
        {"bgp": {"ipv4Address": "10.77.0.1/24", "ipv4IPIPTunnelAddr": "10.245.1.1"}},
    ),
    calico_resource("Node", "node2", {"bgp": {"ipv4Address": "10.77.0.2/24"}}),
    calico_resource("BlockAffinity", "node1-ipip", {"node": "node1", "cidr": "10.245.1.0/26"}),
    calico_resource("BlockAffinity", "node1-plain", {"node": "node1", "cidr": "10.244.1.0/26"}),
]


# bgpd playing Felix's VXLAN part (``--program-vxlan``) blackholes its VXLAN block as Felix does
# (projectcalico/calico 87c15906, felix/dataplane/linux/route_mgr.go).
VXLAN_DATASTORE = [
    calico_resource("BGPConfiguration", "default", {"asNumber": 64512}),
    calico_resource("IPPool", "vxlan-pool", {"cidr": "10.246.0.0/16", "vxlanMode": "Always"}),
    calico_resource(
        "Node",
        "node1",
        {
            "bgp": {"ipv4Address": "10.77.0.1/24"},
            "ipv4VXLANTunnelAddr": "10.246.1.0",
            "vxlanTunnelMACAddr": "66:aa:bb:cc:dd:01",
        },
    ),
    calico_resource("BlockAffinity", "node1-vxlan", {"node": "node1", "cidr": "10.246.1.0/26"}),
]


# A BGPPeer with reachableBy gets BIRD's static route <peerIP>/32 via <reachableBy>
# (projectcalico/calico 87c15906, confd case reachable_by/global_peers, bird_aggr.cfg).
REACHABLE_BY_DATASTORE = [
    calico_resource("BGPConfiguration", "default", {"asNumber": 64512}),
    calico_resource("Node", "node1", {"bgp": {"ipv4Address": "10.77.0.1/24"}}),
    calico_resource(
        "BGPPeer",
        "external-rr",
        {"peerIP": "10.225.0.4", "asNumber": 65515, "reachableBy": "10.77.0.254"},
    ),
]


class Daemon:
    def __init__(
        self,
        ns: Namespace,
        workdir: Path,
        resources: list[dict[str, object]] = DATASTORE,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.ns, self.workdir = ns, workdir
        self.socket = str(workdir / "bird.ctl")
        self.log = workdir / "bgpd.log"
        datastore = workdir / "datastore.yaml"
        datastore.write_text(yaml.safe_dump_all(resources, sort_keys=False))
        self.proc = ns.popen(
            sys.executable,
            "-m",
            "bgpd",
            "run",
            "--node",
            "node1",
            "--datastore",
            f"file:{datastore}",
            "--control-socket",
            self.socket,
            "--metrics-listen",
            METRICS,
            *extra,
            env={"PYTHONPATH": str(REPO_ROOT)},
            log=str(self.log),
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bgpd", *args, "--control-socket", self.socket],
            capture_output=True,
            text=True,
            timeout=20,
            cwd=REPO_ROOT,
        )

    def status(self) -> dict[str, object] | None:
        answer = self.cli("status", "--json")
        return json.loads(answer.stdout) if answer.returncode == 0 else None

    def scrape(self) -> str:
        fetch = (
            f"import urllib.request; print(urllib.request.urlopen('http://{METRICS}/metrics', "
            "timeout=5).read().decode())"
        )
        return self.ns.run(sys.executable, "-c", fetch).stdout

    def describe(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def daemon(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Daemon]:
    if not have_root():
        pytest.skip("needs root and iproute2")
    resources, extra = getattr(request, "param", (DATASTORE, ()))
    ns = Namespace.create("hE-")
    try:
        ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        ns.ip("addr", "add", "10.77.0.1/24", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        ns.ip("link", "set", "eth0p", "up")
        running = Daemon(ns, tmp_path, resources, extra)
        try:
            wait_for(lambda: running.status() is not None, 30, running.describe)
            yield running
        finally:
            running.stop()
    finally:
        ns.delete()


def test_ipip_pool_degrades_the_node_or_builds_tunl0(daemon: Daemon) -> None:
    supported, reason = ipip_supported()
    if supported:
        wait_for(
            lambda: "10.245.1.1" in daemon.ns.ip("-4", "addr", "show", "dev", "tunl0").stdout,
            30,
            daemon.describe,
        )
        status = daemon.status()
        assert status is not None and not status.get("unroutable_pools")
        assert "bgpd_encap_unsupported_pool{" not in daemon.scrape()
        return
    expected = "tunnel encapsulation unsupported for pools: ipip-pool"

    def degraded() -> bool:
        return expected in daemon.cli("health", "--ready").stdout

    wait_for(degraded, 30, daemon.describe)
    ready = daemon.cli("health", "--ready")
    assert ready.returncode == 1, ready
    assert 'bgpd_encap_unsupported_pool{pool="ipip-pool"} 1.0' in daemon.scrape()
    assert "plain-pool" not in daemon.scrape()
    status = daemon.status()
    assert status is not None
    problems = " ".join(str(p) for p in status.get("problems", []))  # type: ignore[attr-defined]
    assert "IP-in-IP is not supported by this kernel" in problems and "ipip-pool" in problems
    # The other pool keeps working: its block is still blackholed and advertised.
    routes = daemon.ns.ip("-4", "route", "show", "proto", "bird").stdout
    assert "blackhole 10.244.1.0/26" in routes
    assert reason


@pytest.mark.parametrize("daemon", [(VXLAN_DATASTORE, ("--program-vxlan",))], indirect=True)
def test_program_vxlan_blackholes_the_own_vxlan_block(daemon: Daemon) -> None:
    def blackholed() -> bool:
        routes = daemon.ns.ip("-4", "route", "show", "proto", "bird").stdout
        return "blackhole 10.246.1.0/26" in routes

    wait_for(blackholed, 30, daemon.describe)


@pytest.mark.parametrize("daemon", [(REACHABLE_BY_DATASTORE, ())], indirect=True)
def test_reachable_by_peer_gets_its_pinned_route(daemon: Daemon) -> None:
    def pinned() -> bool:
        routes = daemon.ns.ip("-4", "route", "show", "proto", "bird").stdout
        return "10.225.0.4 via 10.77.0.254 dev eth0" in routes

    wait_for(pinned, 30, daemon.describe)
