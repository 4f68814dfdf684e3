"""Benchmark: a node's death to its routes leaving the other nodes' kernels, with BFD.

Rules:
1. One LAN (a bridge in the FRR namespace, ``bgpd_driver.lan``): the dying node D (bgpd), the
   watching node O (bgpd, node-to-node mesh with D) and FRR (bgpd + bfdd, an eBGP BGPPeer of D
   with ``failureDetectionMode: BFDIfDirectlyConnected``): O and FRR hold the same role, each
   learns D's block and installs it in its kernel. Every session runs BFD at 100 ms x 3 (a
   Calico Enterprise BFDConfiguration on the bgpd nodes, bfdd's peer on FRR); BGP keeps its
   default timers (hold time 240 s, as Calico's BIRD runs it).
2. A death is D's bgpd frozen with SIGSTOP (its sockets stay open and silent: only BFD or the
   hold timer can notice). The clock starts just before the signal and stops when the deletion
   of D's block arrives on a route monitor socket in each watcher's namespace
   (``benchlib.KernelWatch``, rule 3), so both watchers are timed on the same death.
3. Then D is thawed and both kernels must hold its block again (checked again just before
   each death); deaths are at least ``--spacing`` seconds apart (default 15 s, one dampening
   half-life), so RFC 5882 flap dampening (a third flap within about one half-life
   suppresses) never holds a session back during the run.
4. Without BFD nothing but the hold timer notices: the figure is the hold time, 240 s at worst
   and 160 s at best (the last keepalive came up to one 80 s keepalive interval before the
   death). It is computed here, not waited for on every run; ``bench/restart.py`` measures the
   dead peer without BFD (87.5 s with the former 90 s hold time).
5. The report: every death's two figures as they come, then p50/p99 of each beside the other,
   with the detection time (300 ms) as the floor and the 1 s p99 target.

Usage: python3 bench/bfd_failover.py [--deaths 20] [--spacing 15]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from bgpd_driver import BgpdNode, ExternalPeer, OurNode, calico_datastore, calico_resource, lan
from netns import Namespace
from peer_drivers import Frr, PeerSpec

from bgpd.calico.sessions import BIRD_HOLD_TIME

OUR_AS, FRR_AS = 64512, 65000
POOL = "10.244.0.0/16"
D_BLOCK = "10.244.2.0/26"
SUBNET = "10.215.0.0/24"
BFD_MS = 100
MULTIPLIER = 3
TARGET_P99 = 1.0
BFD_CONFIG = calico_resource(
    "BFDConfiguration",
    "default",
    {
        "nodeSelector": "all()",
        "interfaces": [
            {
                "matchPattern": "*",
                "minimumRecvInterval": f"{BFD_MS}ms",
                "minimumSendInterval": f"{BFD_MS}ms",
                "idleSendInterval": "1s",
                "multiplier": MULTIPLIER,
            }
        ],
    },
)


def build(workdir: Path) -> tuple[list[Namespace], BgpdNode, BgpdNode, Frr]:
    """Rule 1."""
    hub, d_ns, o_ns = (Namespace.create("hBfd") for _ in range(3))
    members = lan(hub, [d_ns, o_ns], SUBNET)
    frr_address, d_address, o_address = (m.address for m in members)
    d = OurNode("node-d", f"{d_address}/24", OUR_AS, blocks=(D_BLOCK,))
    o = OurNode("node-o", f"{o_address}/24", OUR_AS, blocks=("10.244.1.0/26",))
    frr_peer = ExternalPeer(
        frr_address, FRR_AS, None, failure_detection_mode="BFDIfDirectlyConnected"
    )
    d_text = calico_datastore(d, (frr_peer,), others=(o,), extra=(BFD_CONFIG,))
    o_text = calico_datastore(o, (), others=(d,), extra=(BFD_CONFIG,))
    dying = BgpdNode(d_ns, d, (frr_peer,), workdir / "d", datastore_text=d_text)
    watcher = BgpdNode(o_ns, o, (), workdir / "o", datastore_text=o_text)
    spec = PeerSpec(
        local_as=FRR_AS,
        peer_as=OUR_AS,
        router_id=frr_address,
        address=frr_address,
        neighbor=d_address,
        hold_time=BIRD_HOLD_TIME,
        keepalive=BIRD_HOLD_TIME // 3,
        routes=(),
        bfd_interval=BFD_MS,
    )
    return [hub, d_ns, o_ns], dying, watcher, Frr(hub, spec, workdir)


def freeze(node: BgpdNode, sig: signal.Signals) -> None:
    assert node.proc is not None
    os.killpg(node.proc.pid, sig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deaths", type=int, default=20)
    parser.add_argument("--spacing", type=float, default=15.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    print(f"# machine: {benchlib.machine()}; load {benchlib.loadavg()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bfd-failover-"))
    spaces, dying, watcher, frr = build(workdir)
    try:
        frr.start()
        dying.start()
        watcher.start()
        with (
            benchlib.KernelWatch(watcher.ns.name, POOL, 26) as ours,
            benchlib.KernelWatch(frr.ns.name, POOL, 26) as theirs,
        ):

            def back(_w: benchlib.KernelWatch) -> bool:
                return _w.present(D_BLOCK)

            def gone(_w: benchlib.KernelWatch) -> bool:
                return not _w.present(D_BLOCK)

            benchlib.wait_each([ours, theirs], back, 120)
            print(
                f"# BFD {BFD_MS} ms x {MULTIPLIER} (detection time {BFD_MS * MULTIPLIER} ms); "
                f"BGP hold time {BIRD_HOLD_TIME} s",
                flush=True,
            )
            table = benchlib.Table([("death", 5), ("bgpd ms", 9), ("FRR ms", 9)])
            bgpd_times: list[float] = []
            frr_times: list[float] = []
            for death in range(1, args.deaths + 1):
                benchlib.wait_each([ours, theirs], back, 120)
                time.sleep(1.0)  # both BFD sessions at their fast rate again
                start = time.monotonic()
                freeze(dying, signal.SIGSTOP)
                try:
                    ours_at, theirs_at = benchlib.wait_each([ours, theirs], gone, 60)
                finally:
                    freeze(dying, signal.SIGCONT)
                bgpd_times.append(ours_at - start)
                frr_times.append(theirs_at - start)
                table.row(death, f"{bgpd_times[-1] * 1000:.0f}", f"{frr_times[-1] * 1000:.0f}")
                benchlib.wait_each([ours, theirs], back, 120)
                time.sleep(max(0.0, start + args.spacing - time.monotonic()))
        print(f"# {args.deaths} deaths; load {benchlib.loadavg()}")
        summary = benchlib.Table([("", 24), ("p50", 9), ("p99", 9), ("max", 9)])
        for name, times in (
            ("bgpd, BFD 100 ms x 3", bgpd_times),
            ("FRR, BFD 100 ms x 3", frr_times),
        ):
            summary.row(
                name,
                f"{benchlib.percentile(times, 0.5) * 1000:.0f} ms",
                f"{benchlib.percentile(times, 0.99) * 1000:.0f} ms",
                f"{max(times) * 1000:.0f} ms",
            )
        keepalive = BIRD_HOLD_TIME // 3
        summary.row(
            "without BFD (hold time)", f"{BIRD_HOLD_TIME - keepalive}-{BIRD_HOLD_TIME} s", "", ""
        )
        p99 = benchlib.percentile(bgpd_times, 0.99)
        verdict = "holds" if p99 < TARGET_P99 else "missed"
        print(f"# target: p99 under {TARGET_P99:.0f} s with BFD: {verdict} ({p99 * 1000:.0f} ms)")
        p50s = [benchlib.percentile(times, 0.5) for times in (bgpd_times, frr_times)]
        print(f"# ratio bgpd/FRR at p50: {benchlib.ratio(*p50s)}")
    finally:
        for node in (watcher, dying):
            if node.proc is not None:
                freeze(node, signal.SIGCONT)
            node.stop()
        frr.stop()
        for ns in reversed(spaces):
            ns.delete()
        print(f"# logs in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
