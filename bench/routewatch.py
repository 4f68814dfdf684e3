"""Benchmark: what kernel route learning (``bgpd.kernel.routewatch``) costs next to a full table
of our own routes.

Rules:
1. One fresh network namespace (``kW-bench-<pid>``) with a veth next hop, deleted at the end,
   also on failure or interrupt.
2. ``--ours`` /24s with protocol bird (12, ours: dropped at the header) and ``--foreign`` /32s
   with protocol boot (3, learned) are installed with ``ip -batch`` (outside the timing).
3. Timed: the watch's start (links, addresses and the hand-parsed route dump) until its first
   view, best of ``--repeat``; then one foreign route added with ``ip`` until the view that
   holds it arrives (the notification path), best of ``--repeat``.

Usage: python3 bench/routewatch.py [--ours 100000] [--foreign 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bgpd.kernel.learn import KernelView  # noqa: E402
from bgpd.kernel.routewatch import RouteWatch  # noqa: E402

RTPROT_BIRD = 12


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=600)


def install(ns: str, ours: int, foreign: int) -> None:
    lines = []
    base = int(ipaddress.IPv4Address("16.0.0.0"))
    for i in range(ours):
        net = ipaddress.IPv4Address(base + (i << 8))
        lines.append(f"route add {net}/24 via 10.98.0.2 dev bv0 proto bird")
    first_foreign = int(ipaddress.IPv4Address("10.244.0.0"))
    for i in range(foreign):
        address = ipaddress.IPv4Address(first_foreign + i)
        lines.append(f"route add {address}/32 dev bv0 proto boot")
    with tempfile.NamedTemporaryFile("w", suffix=".batch", delete=False) as batch:
        batch.write("\n".join(lines) + "\n")
    try:
        ip(ns, "-batch", batch.name)
    finally:
        os.unlink(batch.name)


async def measure(ns: str, repeat: int) -> tuple[float, float, int]:
    start_best = change_best = float("inf")
    learned = 0
    for round_ in range(repeat):
        views: asyncio.Queue[KernelView] = asyncio.Queue()
        watch = RouteWatch(views.put_nowait, own_protocol=RTPROT_BIRD, netns=ns, settle=0.0)
        began = time.perf_counter()
        await watch.start()
        first = await views.get()
        start_best = min(start_best, time.perf_counter() - began)
        learned = len(first.routes)
        probe = f"10.250.{round_}.0/24"
        began = time.perf_counter()
        await asyncio.to_thread(ip, ns, "route", "add", probe, "dev", "bv0", "proto", "boot")
        while True:
            view = await views.get()
            if any(str(r.network) == probe for r in view.routes):
                break
        change_best = min(change_best, time.perf_counter() - began)
        await watch.close()
    return start_best, change_best, learned


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ours", type=int, default=100_000)
    parser.add_argument("--foreign", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ns = f"kW-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ip(ns, "link", "add", "bv0", "type", "veth", "peer", "name", "bv1")
        ip(ns, "link", "set", "bv0", "up")
        ip(ns, "link", "set", "bv1", "up")
        ip(ns, "addr", "add", "10.98.0.1/24", "dev", "bv0")
        install(ns, args.ours, args.foreign)
        start, change, learned = asyncio.run(measure(ns, args.repeat))
        print(f"our routes {args.ours}, foreign routes {args.foreign} (+ connected)")
        print(f"start to first view: {start * 1000:.0f} ms ({learned} routes in the view)")
        print(f"one foreign route added to its view: {change * 1000:.1f} ms")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    main()
