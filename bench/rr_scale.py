"""Benchmark: bgpd as route reflector for 500 simulated clients, and one node of a 200-node mesh.

Rules:
1. bgpd (``python -m bgpd run``, file datastore) runs alone in one namespace on 10.96.0.1/16;
   the simulated speakers (``bgp_load.SimPeer``, our codec) run on one event loop in a second
   namespace, each from its own address on the same veth (10.96.1.1 on), so every session is a
   real TCP connection to the daemon.
2. Reflector: the datastore makes bgpd a route reflector (``routeReflectorClusterID``), turns
   the node-to-node mesh off and adds one global BGPPeer (``nodeSelector: all()``,
   ``peerSelector: all()``) so bgpd peers with all ``--clients`` client Nodes (calico-bgp.md
   §1.2.3); a client is a Node without a cluster ID, so bgpd treats each as a route-reflector
   client (RFC 4456 §8). Every client announces one /26 once Established. The clock starts when
   the clients start connecting and stops when every client holds all N routes (its own and
   the N - 1 reflected ones).
3. Mesh: the datastore has ``--mesh-nodes`` Nodes with the node-to-node mesh on; bgpd is one of
   them and the other ones are simulated, so bgpd has one iBGP session per other node, which
   is what each node of a real full mesh has. The clock stops when every simulated node holds
   bgpd's block and bgpd's kernel holds every simulated node's block.
4. Reported per scenario: sessions, seconds, the CPU seconds bgpd used during the run
   (``utime + stime``), its RSS at the end and its RSS growth per session over the idle daemon.

Usage: python3 bench/rr_scale.py [--clients 500] [--mesh-nodes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
from bgp_load import SimPeer, wait_all
from bgpd_driver import BgpdNode, OurNode, calico_datastore
from netns import Namespace, inside, sh, veth

from bgpd.wire.types import prefix_from_str

ASN = 64512
SUBNET = "10.96.0.0/16"
FIRST_SIM = int(ipaddress.IPv4Address("10.96.1.1"))
FIRST_BLOCK = int(ipaddress.IPv4Address("10.244.0.0"))
POOL = "10.244.0.0/16"
PREFIX = "hC-rrs-"
TARGET_SECONDS = 10.0


def sim_address(index: int) -> str:
    return str(ipaddress.IPv4Address(FIRST_SIM + index))


def sim_block(index: int) -> str:
    return f"{ipaddress.IPv4Address(FIRST_BLOCK + (index + 1) * 64)}/26"


def all_peers_resource() -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPPeer",
        "metadata": {"name": "everyone"},
        "spec": {"nodeSelector": "all()", "peerSelector": "all()"},
    }


def datastore(scenario: str, count: int, address: str) -> str:
    others = tuple(OurNode(f"sim{i}", f"{sim_address(i)}/16") for i in range(count))
    if scenario == "reflector":
        node = OurNode("rr", f"{address}/16", cluster_id="224.0.0.1")
        return calico_datastore(
            node,
            (),
            POOL,
            others=others,
            bgp_config={"nodeToNodeMeshEnabled": False},
            extra=(all_peers_resource(),),
        )
    node = OurNode("node0", f"{address}/16", blocks=(f"{ipaddress.IPv4Address(FIRST_BLOCK)}/26",))
    return calico_datastore(node, (), POOL, others=others)


def add_addresses(ns: Namespace, device: str, count: int, work: Path) -> None:
    batch = work / "addresses.batch"
    batch.write_text(
        "".join(f"address add {sim_address(i)}/16 dev {device}\n" for i in range(count))
    )
    sh("ip", "-n", ns.name, "-batch", str(batch))


async def drive(
    scenario: str, count: int, target: str, watch: benchlib.KernelWatch | None
) -> tuple[float, int]:
    """Start every simulated speaker, wait for rule 2's or rule 3's end state; (seconds,
    sessions Established)."""
    own = prefix_from_str(f"{ipaddress.IPv4Address(FIRST_BLOCK)}/26")
    peers = [SimPeer(sim_address(i), target, ASN, [sim_block(i)]) for i in range(count)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.gather(*(p.start() for p in peers))
        if scenario == "reflector":
            finished = await wait_all(peers, lambda p: p.holds() >= count, 120)
        else:
            finished = await wait_all(peers, lambda p: own in p.received, 120)
            assert watch is not None
            while watch.count < count + 1:  # every simulated node's block and our blackhole
                watch.sock.settimeout(0)
                try:
                    watch.receive()
                except BlockingIOError:
                    await asyncio.sleep(0.02)
                finally:
                    watch.sock.settimeout(None)
                if loop.time() - started > 120:
                    raise TimeoutError(f"bgpd's kernel has {watch.count} of {count + 1} blocks")
            finished = max(finished, loop.time())
        return finished - started, sum(1 for p in peers if p.established.is_set())
    finally:
        await asyncio.gather(*(p.close() for p in peers))


def run(scenario: str, count: int, work: Path) -> dict[str, float]:
    server_ns = Namespace.create(PREFIX + "d")
    clients_ns = Namespace.create(PREFIX + "c")
    try:
        link = veth(server_ns, clients_ns, SUBNET)
        address = str(link.a_addr.ip)
        add_addresses(clients_ns, link.b_if, count, work)
        node_name = "rr" if scenario == "reflector" else "node0"
        node = BgpdNode(
            server_ns,
            OurNode(node_name, f"{address}/16"),
            (),
            work / scenario,
            datastore_text=datastore(scenario, count, address),
        )
        node.start()
        try:
            assert node.proc is not None
            pid = node.proc.pid
            time.sleep(1.0)
            idle_rss = benchlib.rss_mib([pid])
            cpu_before = benchlib.cpu_seconds([pid])
            watch = benchlib.KernelWatch(server_ns.name, POOL, 26) if scenario == "mesh" else None
            with inside(clients_ns):
                seconds, sessions = asyncio.run(drive(scenario, count, address, watch))
            if watch is not None:
                watch.close()
            cpu = benchlib.cpu_seconds([pid]) - cpu_before
            rss = benchlib.rss_mib([pid])
            peak = benchlib.peak_rss_mib([pid])
        finally:
            node.stop()
    finally:
        clients_ns.delete()
        server_ns.delete()
    return {
        "sessions": sessions,
        "seconds": seconds,
        "cpu": cpu,
        "rss": rss,
        "peak": peak,
        "per_session_kib": (rss - idle_rss) * 1024 / max(sessions, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--mesh-nodes", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    print(f"# machine: {benchlib.machine()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-rrs-"))
    results = []
    try:
        results.append(("reflector", args.clients, run("reflector", args.clients, work)))
        results.append(("mesh node", args.mesh_nodes, run("mesh", args.mesh_nodes - 1, work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    table = benchlib.Table(
        [("scenario", 9), ("nodes", 5), ("sessions", 8), ("seconds", 7), ("bgpd CPU s", 10)]
        + [("RSS MiB", 7), ("peak MiB", 8), ("KiB/session", 11), ("target", 13)]
    )
    for label, nodes, r in results:
        verdict = ""
        if label == "reflector":
            verdict = "<10 s ok" if r["seconds"] < TARGET_SECONDS else "MISS"
        table.row(
            label,
            nodes,
            int(r["sessions"]),
            f"{r['seconds']:.2f}",
            f"{r['cpu']:.2f}",
            f"{r['rss']:.0f}",
            f"{r['peak']:.0f}",
            f"{r['per_session_kib']:.0f}",
            verdict,
        )
    print(f"# load average: {benchlib.loadavg()}")


if __name__ == "__main__":
    main()
