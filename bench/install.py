"""Benchmark: install then remove N IPv4 routes with ``KernelProgrammer``, next to ``ip -batch``.

Rules:
1. Each size runs in a fresh network namespace (``hC-bench-<pid>``) with a veth next hop; the
   namespace is deleted at the end, also on failure or interrupt.
2. Both tools get the same routes: ``/24``s via 10.98.0.2 dev bv0, protocol bird (12), metric
   1024. ``ip`` installs with ``route add`` and removes with ``route del`` (one batch file each);
   the programmer installs with ``apply(routes)`` and removes with ``apply([])``.
3. Preparation (writing the batch file, building the route values) is outside the timing; each
   phase is verified by counting the kernel's routes afterwards (outside the timing).
   The machine is shared, so each size runs ``--repeat`` interleaved rounds and the best rate
   of each tool counts.
4. One table: routes/s for both and the ratio programmer / ip, plus the dump time of the full
   table.

Usage: python3 bench/install.py [--sizes 100000,1000000] [--window 2048] [--repeat 3]
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

from bgpd.kernel.netlink import DEFAULT_WINDOW, KernelProgrammer  # noqa: E402
from bgpd.kernel.plan import RTPROT_BIRD, KernelRoute, NextHop  # noqa: E402

GATEWAY = "10.98.0.2"
DEVICE = "bv0"
FIRST_NETWORK = int(ipaddress.IPv4Address("16.0.0.0"))
METRIC = 1024


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def make_namespace(name: str) -> None:
    run("ip", "netns", "add", name)
    run("ip", "-n", name, "link", "add", DEVICE, "type", "veth", "peer", "name", "bv1")
    run("ip", "-n", name, "addr", "add", "10.98.0.1/24", "dev", DEVICE)
    for device in ("lo", DEVICE, "bv1"):
        run("ip", "-n", name, "link", "set", device, "up")


def count_routes(namespace: str) -> int:
    out = run("ip", "-n", namespace, "-4", "route", "show", "proto", str(RTPROT_BIRD))
    return out.count("\n")


def networks(size: int) -> list[str]:
    return [f"{ipaddress.IPv4Address(FIRST_NETWORK + (i << 8))}/24" for i in range(size)]


def ip_batch(namespace: str, lines: list[str]) -> float:
    with tempfile.NamedTemporaryFile("w", prefix="bench-install-", suffix=".batch") as batch:
        batch.write("\n".join(lines) + "\n")
        batch.flush()
        started = time.perf_counter()
        run("ip", "-n", namespace, "-batch", batch.name)
        return time.perf_counter() - started


def expect(namespace: str, wanted: int, what: str) -> None:
    found = count_routes(namespace)
    if found != wanted:
        raise SystemExit(f"{what}: expected {wanted} routes, the kernel has {found}")


async def bench_size(
    namespace: str, size: int, window: int, repeat: int
) -> list[tuple[str, float, float]]:
    """Best of ``repeat`` interleaved rounds (ip, then the programmer) for each operation."""
    cidrs = networks(size)
    suffix = f"via {GATEWAY} dev {DEVICE} proto {RTPROT_BIRD} metric {METRIC}"
    add_lines = [f"route add {cidr} {suffix}" for cidr in cidrs]
    del_lines = [f"route del {cidr} proto {RTPROT_BIRD} metric {METRIC}" for cidr in cidrs]
    hop = (NextHop(ipaddress.IPv4Address(GATEWAY), DEVICE, False),)
    routes = [
        KernelRoute(ipaddress.IPv4Network(cidr), nexthops=hop, metric=METRIC) for cidr in cidrs
    ]
    del cidrs
    best = {"ip install": 0.0, "ip remove": 0.0, "install": 0.0, "remove": 0.0, "dump": 0.0}

    def record(what: str, seconds: float) -> None:
        best[what] = max(best[what], size / seconds)

    async with KernelProgrammer(namespace, window=window) as programmer:
        for _round in range(repeat):
            record("ip install", ip_batch(namespace, add_lines))
            expect(namespace, size, "ip -batch install")
            record("ip remove", ip_batch(namespace, del_lines))
            expect(namespace, 0, "ip -batch remove")

            started = time.perf_counter()
            result = await programmer.apply(routes)
            record("install", time.perf_counter() - started)
            if result.errors or result.replaced != size:
                raise SystemExit(f"programmer install: {result.replaced} ok, {result.errors[:3]}")
            expect(namespace, size, "programmer install")
            started = time.perf_counter()
            dumped = await programmer.dump()
            record("dump", time.perf_counter() - started)
            if len(dumped) != size:
                raise SystemExit(f"dump returned {len(dumped)} of {size} routes")
            del dumped
            started = time.perf_counter()
            result = await programmer.apply([])
            record("remove", time.perf_counter() - started)
            if result.errors or result.deleted != size:
                raise SystemExit(f"programmer remove: {result.deleted} ok, {result.errors[:3]}")
            expect(namespace, 0, "programmer remove")
    return [
        ("install", best["ip install"], best["install"]),
        ("remove", best["ip remove"], best["remove"]),
        ("dump (bgpd only)", 0.0, best["dump"]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size; best counts")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"{'routes':>9}  {'operation':<17} {'ip -batch/s':>12} {'bgpd/s':>12} {'ratio':>7}")
    for size in sizes:
        namespace = f"hC-bench-{os.getpid()}"
        make_namespace(namespace)
        try:
            rows = asyncio.run(bench_size(namespace, size, args.window, args.repeat))
        finally:
            subprocess.run(["ip", "netns", "del", namespace], check=False)
        for operation, ip_rate, our_rate in rows:
            ip_text = f"{ip_rate:12,.0f}" if ip_rate else f"{'-':>12}"
            ratio = f"{our_rate / ip_rate:6.2f}x" if ip_rate else f"{'-':>7}"
            print(f"{size:>9,}  {operation:<17} {ip_text} {our_rate:12,.0f} {ratio}", flush=True)


if __name__ == "__main__":
    main()
