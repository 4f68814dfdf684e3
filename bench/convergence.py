"""Benchmark: datastore-to-kernel convergence in the mesh3 lab on etcd, 100 trials, p50 and p99.

Rules:
1. The lab is ``bench/labs/mesh3-etcd.clab.yml`` (mesh3's three bgpd nodes on an etcd v3
   datastore), brought up with containerlab's netns runner under the name ``hCconv`` and a
   private state directory, and torn down at the end, also on failure or interrupt.
2. A trial writes one new confirmed block affinity for node1 straight into etcd (the key and
   value Calico's IPAM writes, ``bgpd.datastore.schema.etcd_pair``) over one kept-open HTTP
   connection to etcd's v3 JSON gateway made inside the etcd namespace; the clock starts just
   before the request is sent.
3. The clock stops, per other node, when its kernel's RTNLGRP_IPV4_ROUTE notification of the
   block arrives (``KernelWatch``, both nodes read with one ``select``); a trial's latency is
   the later of the two. Trials are spaced by ``--gap`` so each one is a separate change.
4. One table: p50, p99 and max over the trials, per node and for both; target p99 < 100 ms.

Usage: python3 bench/convergence.py [--trials 100] [--gap 0.1]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import ipaddress
import json
import time
from functools import partial
from pathlib import Path

import benchlib
from benchlib import KernelWatch
from netlab import LabRunner
from netns import Namespace, inside

from bgpd.datastore.schema import etcd_pair

LAB_FILE = Path(__file__).resolve().parent / "labs" / "mesh3-etcd.clab.yml"
LAB_NAME = "hCconv"
ETCD = ("10.0.0.100", 2379)
POOL = "10.244.0.0/16"
FIRST_BLOCK = int(ipaddress.IPv4Address("10.244.64.0"))
TARGET_P99 = 0.100


def affinity(node: str, block: str) -> dict[str, object]:
    name = f"{node}-{block.replace('.', '-').replace('/', '-')}"
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BlockAffinity",
        "metadata": {"name": name},
        "spec": {"node": node, "cidr": block, "state": "confirmed"},
    }


class EtcdWriter:
    """One HTTP/1.1 connection to etcd's JSON gateway at ``address``, opened inside
    ``namespace`` (rule 2)."""

    def __init__(self, namespace: str, address: tuple[str, int] = ETCD) -> None:
        self.conn = http.client.HTTPConnection(*address, timeout=10)
        with inside(Namespace(namespace)):
            self.conn.connect()

    def put(self, key: str, value: bytes) -> None:
        body = json.dumps(
            {
                "key": base64.b64encode(key.encode()).decode(),
                "value": base64.b64encode(value).decode(),
            }
        )
        self.conn.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        text = response.read()
        if response.status != 200:
            raise RuntimeError(f"etcd put {key}: {response.status} {text[:200]!r}")

    def close(self) -> None:
        self.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between trials")
    args = parser.parse_args()
    runner: LabRunner = benchlib.lab_runner(LAB_FILE, LAB_NAME, "bench-conv-")
    per_node: dict[str, list[float]] = {"node2": [], "node3": []}
    both: list[float] = []
    try:
        started = time.monotonic()
        runner.up()
        runner.wait_converged(120, quiet=True)
        print(f"# lab up and converged in {time.monotonic() - started:.1f} s", flush=True)
        names = list(per_node)
        watches = [benchlib.KernelWatch(runner.lab.node(n).namespace, POOL, 26) for n in names]
        writer = EtcdWriter(runner.lab.node("etcd").namespace)
        try:
            for trial in range(args.trials):
                block = f"{ipaddress.IPv4Address(FIRST_BLOCK + trial * 64)}/26"
                key, value = etcd_pair(affinity("node1", block), f"trial {trial}")
                sent = time.monotonic()
                writer.put(key, value)
                arrived = benchlib.wait_each(
                    watches, partial(KernelWatch.present, prefix=block), 30
                )
                for name, at in zip(names, arrived, strict=True):
                    per_node[name].append(at - sent)
                both.append(max(arrived) - sent)
                time.sleep(args.gap)
        finally:
            writer.close()
            for watch in watches:
                watch.close()
    finally:
        runner.down(quiet=True)
    print()
    table = benchlib.Table(
        [("datastore", 9), ("nodes", 12), ("trials", 6), ("p50 ms", 7), ("p99 ms", 7)]
        + [("max ms", 7), ("target", 13)]
    )
    for label, values in (*per_node.items(), ("both", both)):
        p99 = benchlib.percentile(values, 0.99)
        verdict = "" if label != "both" else ("p99<100 ms ok" if p99 < TARGET_P99 else "MISS")
        table.row(
            "etcd",
            label,
            len(values),
            f"{benchlib.percentile(values, 0.5) * 1000:.1f}",
            f"{p99 * 1000:.1f}",
            f"{max(values) * 1000:.1f}",
            verdict,
        )
    print(f"# load average: {benchlib.loadavg()}")


if __name__ == "__main__":
    main()
