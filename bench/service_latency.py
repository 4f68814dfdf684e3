"""Benchmark: an EndpointSlice change to a route at the peer, beside the same change through etcd.

Rules:
1. Three namespaces on one bridge: the hub runs BIRD 1.6 (AS 65078, a session with each node,
   every route exported to its kernel), etcd, and the Kubernetes API test double
   (``tests/io/kube_api_server.py``, on its own event loop in a thread, listening inside the
   hub); node-a and node-b run ``bgpd run`` on the etcd datastore with ``KUBECONFIG`` (Services
   and EndpointSlices through the API). The node-to-node mesh is off (a top-of-rack design).
2. A Kubernetes trial flips the readiness of the one endpoint, on node-a, of a Service with
   ``externalTrafficPolicy: Local`` and external IP 198.51.100.7 (one PUT of its EndpointSlice
   to the double): ready announces the /32, not ready withdraws it. The clock starts before the
   write and stops when the hub kernel's RTNLGRP_IPV4_ROUTE notification of the /32 arriving
   (or leaving) is read (``benchlib.KernelWatch``).
3. An etcd trial is the same route change through the datastore: the ``default``
   BGPConfiguration's ``serviceClusterIPs`` gains or loses 198.51.101.7/32 (one etcd put over a
   kept-open connection to etcd's JSON gateway), timed the same way.
4. The two kinds alternate, each trial a separate change spaced by ``--gap``; one table with
   p50, p99 and max per kind and direction; target p99 < 300 ms for the EndpointSlice change.

Usage: python3 bench/service_latency.py [--changes 60] [--gap 0.2]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchlib
from benchlib import KernelWatch
from bgpd_driver import calico_resource, lan
from calico_kdd import endpoint_slice, service
from convergence import EtcdWriter
from kube_lab import api_server_in, write_kubeconfig
from netns import Namespace
from peer_drivers import wait_for

from bgpd.datastore.schema import etcd_pair

SUBNET = "10.213.79.0/24"
OUR_AS, TOR_AS = 64512, 65078
API_PORT, ETCD_PORT = 6443, 2379
SERVICE_IP, ETCD_IP = "198.51.100.7", "198.51.101.7"
TARGET_P99 = 0.300


def bgp_configuration(with_etcd_route: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeToNodeMeshEnabled": False,
        "asNumber": OUR_AS,
        "serviceExternalIPs": [{"cidr": "198.51.100.0/24"}],
    }
    if with_etcd_route:
        spec["serviceClusterIPs"] = [{"cidr": f"{ETCD_IP}/32"}]
    return calico_resource("BGPConfiguration", "default", spec)


def bird_config(hub: str, nodes: list[str], workdir: Path) -> str:
    protocols = "".join(
        f"""
protocol bgp node{index} {{
    local {hub} as {TOR_AS};
    neighbor {address} as {OUR_AS};
    hold time 9; keepalive time 3; connect retry time 2; connect delay time 1;
    import all;
    export none;
}}"""
        for index, address in enumerate(nodes)
    )
    return f"""
router id {hub};
log "{workdir}/bird.log" all;
protocol device {{ }}
protocol kernel {{ persist off; scan time 60; export all; import none; }}
{protocols}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=60, help="changes of each kind")
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between changes")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-svc-"))
    spaces = [Namespace.create("hS-") for _ in range(3)]
    cleanups: list[Callable[[], None]] = []
    results: dict[tuple[str, str], list[float]] = {}
    try:
        hub, a, b = lan(spaces[0], spaces[1:], SUBNET)
        etcd = hub.ns.popen(
            "etcd", "--name", "hub", "--data-dir", str(workdir / "etcd"),
            "--listen-client-urls", f"http://{hub.address}:{ETCD_PORT}",
            "--advertise-client-urls", f"http://{hub.address}:{ETCD_PORT}",
            "--listen-peer-urls", "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
            "--initial-cluster", "hub=http://127.0.0.1:2380",
            log=str(workdir / "etcd.log"),
        )  # fmt: skip
        cleanups.append(lambda: (etcd.send_signal(signal.SIGKILL), etcd.wait()))
        api = api_server_in(hub.ns, hub.address, API_PORT)
        cleanups.append(api.stop)
        api.put("/api/v1/services", service(external_ip=SERVICE_IP))
        api.put("/apis/discovery.k8s.io/v1/endpointslices", endpoint_slice("node-a", ready=False))

        def connected() -> EtcdWriter | None:
            try:
                return EtcdWriter(hub.ns.name, (hub.address, ETCD_PORT))
            except OSError:
                return None

        wait_for(lambda: connected() is not None, 30)
        writer = EtcdWriter(hub.ns.name, (hub.address, ETCD_PORT))
        documents = [
            bgp_configuration(False),
            calico_resource("IPPool", "pool", {"cidr": "10.244.0.0/16", "ipipMode": "Never"}),
        ]
        for member, name in ((a, "node-a"), (b, "node-b")):
            bgp = {"ipv4Address": f"{member.address}/24"}
            documents.append(calico_resource("Node", name, {"bgp": bgp}))
            peer = {"node": name, "peerIP": hub.address, "asNumber": TOR_AS}
            documents.append(calico_resource("BGPPeer", f"tor-{name}", peer))
        for index, document in enumerate(documents):
            writer.put(*etcd_pair(document, f"document {index}"))
        kubeconfig = write_kubeconfig(workdir / "kubeconfig", hub.address, API_PORT)
        for member, name in ((a, "node-a"), (b, "node-b")):
            proc = member.ns.popen(
                sys.executable, "-m", "bgpd", "run", "--node", name,
                "--datastore", f"etcd://{hub.address}:{ETCD_PORT}",
                "--control-socket", str(workdir / f"{name}.ctl"),
                "--metrics-listen", "none", "--log-format", "json",
                env={"PYTHONPATH": str(benchlib.REPO_ROOT), "KUBECONFIG": str(kubeconfig)},
                log=str(workdir / f"{name}.log"),
            )  # fmt: skip
            cleanups.append(lambda p=proc: (p.send_signal(signal.SIGKILL), p.wait()))  # type: ignore[misc]
        conf = workdir / "bird.conf"
        conf.write_text(bird_config(hub.address, [a.address, b.address], workdir))
        bird = hub.ns.popen(
            "bird", "-f", "-c", str(conf), "-s", str(workdir / "bird.ctl"),
            "-P", str(workdir / "bird.pid"), log=str(workdir / "bird.out"),
        )  # fmt: skip
        cleanups.append(lambda: (bird.send_signal(signal.SIGKILL), bird.wait()))

        def established() -> bool:
            control = str(workdir / "bird.ctl")
            out = hub.ns.run("birdc", "-s", control, "show", "protocols", check=False).stdout
            return out.count("Established") == 2

        wait_for(established, 60)
        service_watch = KernelWatch(hub.ns.name, "198.51.100.0/24", 32)
        etcd_watch = KernelWatch(hub.ns.name, "198.51.101.0/24", 32)
        cleanups += [service_watch.close, etcd_watch.close]
        print(f"# lab up; {benchlib.machine()}", flush=True)

        def trial(kind: str, watch: KernelWatch, prefix: str, write: Callable[[bool], None]):
            want = not watch.present(prefix)
            sent = time.monotonic()
            write(want)
            arrived = watch.wait(lambda w: w.present(prefix) is want, 30)
            direction = "announce" if want else "withdraw"
            results.setdefault((kind, direction), []).append(arrived - sent)

        for _ in range(args.changes):
            trial(
                "EndpointSlice (API)",
                service_watch,
                f"{SERVICE_IP}/32",
                lambda ready: api.put(
                    "/apis/discovery.k8s.io/v1/endpointslices", endpoint_slice("node-a", ready)
                ),
            )
            time.sleep(args.gap)
            trial(
                "BGPConfiguration (etcd)",
                etcd_watch,
                f"{ETCD_IP}/32",
                lambda on: writer.put(*etcd_pair(bgp_configuration(on), "trial")),
            )
            time.sleep(args.gap)
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
        for ns in spaces:
            ns.delete()
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    table = benchlib.Table(
        [("change", 24), ("direction", 9), ("trials", 6), ("p50 ms", 7), ("p99 ms", 7)]
        + [("max ms", 7), ("target", 13)]
    )
    for kind in ("EndpointSlice (API)", "BGPConfiguration (etcd)"):
        every: list[float] = []
        for direction in ("announce", "withdraw"):
            values = results.get((kind, direction), [])
            every += values
            table.row(kind, direction, len(values), *_figures(values), "")
        p99 = benchlib.percentile(every, 0.99)
        verdict = "p99<300 ms ok" if p99 < TARGET_P99 else "MISS"
        table.row(kind, "both", len(every), *_figures(every), verdict if "API" in kind else "")
    print(f"# load average: {benchlib.loadavg()}")


def _figures(values: list[float]) -> tuple[str, str, str]:
    if not values:
        return "-", "-", "-"
    return (
        f"{benchlib.percentile(values, 0.5) * 1000:.1f}",
        f"{benchlib.percentile(values, 0.99) * 1000:.1f}",
        f"{max(values) * 1000:.1f}",
    )


if __name__ == "__main__":
    main()
