"""Soak: bgpd under 30 minutes of mixed churn, with RSS, file descriptors and tasks sampled.

Rules:
1. bgpd (``python -m bgpd run``, file datastore, metrics on its namespace's address) runs alone
   in one namespace; simulated speakers (``bgp_load.SimPeer``) run on one event loop in a
   second namespace, each from its own address, as the other nodes of a node-to-node mesh.
2. The churn, all at once for the whole run:
   - one speaker announces and withdraws ``--rate`` routes a second (default 10,000: every
     tenth of a second it withdraws a thousand of its /24s and announces a thousand others, so
     it holds about ``CHURN_HELD`` of them at any time);
   - two speakers flap every ``FLAP_EVERY`` seconds, one with graceful restart (RFC 4724: its
     routes stay as stale until its End-of-RIB), one without (its routes are withdrawn): each
     drops its connection with no NOTIFICATION and a new one connects a second later;
   - the datastore file is rewritten every ``DATASTORE_EVERY`` seconds, adding or removing an
     IP pool (a real reconfiguration: the pools' kernel rules change);
   - a control-socket client (``bgpd show peers``) and a metrics client (``curl /metrics``)
     ask every ``CLIENT_EVERY`` seconds.
3. Once a minute, at a fixed point of the flap cycle (every flapping speaker connected), the
   script samples bgpd's RSS (``VmRSS``), its open file descriptors (``/proc/PID/fd``) and its
   asyncio tasks (``bgpd_asyncio_tasks`` from its own metrics), and, to tell live data from
   allocator retention, the RSS of its ``[heap]`` and anonymous mappings (``/proc/PID/smaps``),
   glibc's bytes in use and held free and CPython's allocated blocks (``bgpd_heap_bytes``,
   ``bgpd_python_allocated_blocks``).
4. Verdict, after the first ``--warmup`` minutes (default 5): RSS grows under 5 % from the
   first sample after the warm-up to the largest later one, and file descriptors and tasks are
   flat: the largest of the last ``FLAT_WINDOW`` samples is no larger than the largest of the
   first ``FLAT_WINDOW``. A single sample is no baseline: it may catch a client being served or
   a flapping session mid-reconnect, each a task and a socket for a moment; a leak shows as a
   trend, the end above the start. Any failed session other than the planned flaps, and any
   failed control or metrics call (printed with its reason), fails the run.

Usage: python3 bench/soak.py [--minutes 30] [--warmup 5] [--rate 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import benchlib
from bgp_load import SimPeer
from bgpd_driver import BgpdNode, OurNode, calico_datastore, calico_resource
from netns import Namespace, inside, sh, veth

from bgpd.wire.types import Prefix, prefix_from_str

ASN = 64512
SUBNET = "10.97.0.0/16"
POOL = "10.244.0.0/16"
EXTRA_POOL = "10.245.0.0/16"
PREFIX = "hC-soak-"
METRICS_PORT = 9179
STEPS_PER_SECOND = 10
CHURN_HELD = 20_000
CHURN_SPACE = 65_536  # /24s in 10.128.0.0/8 .. (the churning speaker's address space)
FLAP_EVERY = 60.0
FLAP_AT = 30.0  # seconds into each minute: samples (at 0) see every flapping speaker connected
DATASTORE_EVERY = 10.0
CLIENT_EVERY = 2.0
FLAT_WINDOW = 5
RSS_GROWTH_LIMIT = 0.05
MIB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    minute: int
    rss_mib: float
    fds: int
    tasks: int
    kernel_routes: int
    heap_rss_mib: float  # rule 3: RSS of the [heap] mapping (glibc's main arena)
    anon_rss_mib: float  # of anonymous mappings (pymalloc arenas, glibc thread arenas, mmaps)
    malloc_in_use_mib: float
    malloc_free_mib: float
    python_blocks: int


def mapped_rss_mib(pid: int) -> tuple[float, float]:
    """RSS of the ``[heap]`` mapping and of the anonymous mappings, from ``/proc/PID/smaps``."""
    heap = anon = 0
    name = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            name = fields[5] if len(fields) > 5 else ""
        elif fields[:1] == ["Rss:"]:
            if name == "[heap]":
                heap += int(fields[1])
            elif name == "":
                anon += int(fields[1])
    return heap / 1024, anon / 1024


def sim_address(index: int) -> str:
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.97.1.1")) + index))


def churn_prefix(index: int) -> Prefix:
    return prefix_from_str(f"{ipaddress.IPv4Address((10 << 24) + (128 << 16) + index * 256)}/24")


def datastore(address: str, speakers: int, extra_pool: bool) -> str:
    node = OurNode("node0", f"{address}/16", blocks=("10.244.0.0/26",))
    others = tuple(OurNode(f"sim{i}", f"{sim_address(i)}/16") for i in range(speakers))
    extra = ()
    if extra_pool:
        pool = {"cidr": EXTRA_POOL, "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never"}
        extra = (calico_resource("IPPool", "soak-extra", pool),)
    return calico_datastore(node, (), POOL, others=others, extra=extra)


class Soak:
    """The churn of rule 2 and the samples of rule 3 for one bgpd."""

    def __init__(self, node: BgpdNode, server: Namespace, address: str, speakers: int) -> None:
        self.node = node
        self.server = server
        self.address = address
        self.speakers = speakers
        self.samples: list[Sample] = []
        self.flaps = 0
        self.changes = 0
        self.datastore_writes = 0
        self.client_calls = 0
        self.client_failures = 0
        self.failure_reasons: Counter[str] = Counter()  # "what: exit code: last stderr line"

    def metrics(self) -> dict[str, float]:
        url = f"http://{self.address}:{METRICS_PORT}/metrics"
        text = sh("ip", "netns", "exec", self.server.name, "curl", "-sf", url).stdout
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(
                (
                    "bgpd_asyncio_tasks ",
                    "bgpd_kernel_routes ",
                    "bgpd_heap_bytes{",
                    "bgpd_python_allocated_blocks ",
                )
            ):
                name, value = line.split()
                values[name] = float(value)
        return values

    def sample(self, minute: int) -> Sample:
        pid = self.node.proc.pid if self.node.proc else 0
        metrics = self.metrics()
        heap_rss, anon_rss = mapped_rss_mib(pid)
        return Sample(
            minute,
            benchlib.rss_mib([pid]),
            len(os.listdir(f"/proc/{pid}/fd")),
            int(metrics.get("bgpd_asyncio_tasks", -1)),
            int(metrics.get("bgpd_kernel_routes", -1)),
            heap_rss,
            anon_rss,
            metrics.get('bgpd_heap_bytes{kind="in_use"}', -1) / MIB,
            metrics.get('bgpd_heap_bytes{kind="free"}', -1) / MIB,
            int(metrics.get("bgpd_python_allocated_blocks", -1)),
        )

    async def churn(self, speaker: SimPeer, rate: int, until: float) -> None:
        loop = asyncio.get_running_loop()
        held = list(range(CHURN_HELD))
        free = list(range(CHURN_HELD, CHURN_SPACE))
        speaker.announce([churn_prefix(i) for i in held])
        per_step = rate // 2 // STEPS_PER_SECOND
        rng = random.Random(7)
        next_step = loop.time()
        while loop.time() < until:
            rng.shuffle(held)
            gone, held = held[:per_step], held[per_step:]
            rng.shuffle(free)
            new, free = free[:per_step], free[per_step:]
            speaker.withdraw([churn_prefix(i) for i in gone])
            speaker.announce([churn_prefix(i) for i in new])
            held += new
            free += gone
            self.changes += 2 * per_step
            next_step += 1 / STEPS_PER_SECOND
            await asyncio.sleep(max(0.0, next_step - loop.time()))

    async def flap(self, index: int, graceful: bool, until: float, started: float) -> None:
        loop = asyncio.get_running_loop()
        prefixes = [f"10.{200 + index}.{n}.0/24" for n in range(50)]
        speaker = SimPeer(
            sim_address(index), self.address, ASN, prefixes, 30, graceful_restart=graceful
        )
        await speaker.start()
        cycle = 0
        while True:
            flap_time = started + FLAP_AT + cycle * FLAP_EVERY
            if flap_time > until:
                break
            await asyncio.sleep(max(0.0, flap_time - loop.time()))
            speaker.drop()
            await speaker.close()
            self.flaps += 1
            await asyncio.sleep(1.0)
            speaker = SimPeer(
                sim_address(index), self.address, ASN, prefixes, 30, graceful_restart=graceful
            )
            await speaker.start()
            cycle += 1
        await speaker.close()

    async def rewrite_datastore(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        extra = False
        while loop.time() + DATASTORE_EVERY < until:
            await asyncio.sleep(DATASTORE_EVERY)
            extra = not extra
            self.node.datastore.write_text(datastore(self.address, self.speakers, extra))
            self.datastore_writes += 1

    async def clients(self, until: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() + CLIENT_EVERY < until:
            await asyncio.sleep(CLIENT_EVERY)
            show = await asyncio.to_thread(self.node.bgpd, "show", "peers")
            url = f"http://{self.address}:{METRICS_PORT}/metrics"
            metrics = await asyncio.to_thread(
                sh, "ip", "netns", "exec", self.server.name, "curl", "-sf", url, check=False
            )
            self.client_calls += 2
            for what, done in (("show peers", show), ("curl /metrics", metrics)):
                if done.returncode != 0:
                    self.client_failures += 1
                    last = (done.stderr.strip().splitlines() or [""])[-1][:160]
                    self.failure_reasons[f"{what}: exit {done.returncode}: {last}"] += 1

    async def run(self, minutes: int, rate: int) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        until = started + minutes * 60
        steady = [
            SimPeer(sim_address(i), self.address, ASN, [f"10.{210 + i}.0.0/24"], hold=30)
            for i in range(3, self.speakers)
        ]
        churner = SimPeer(sim_address(0), self.address, ASN, [], hold=30)
        for speaker in (churner, *steady):
            await speaker.start()
        await asyncio.wait_for(churner.established.wait(), 60)
        work = [
            asyncio.create_task(self.churn(churner, rate, until)),
            asyncio.create_task(self.flap(1, False, until, started)),
            asyncio.create_task(self.flap(2, True, until, started)),
            asyncio.create_task(self.rewrite_datastore(until)),
            asyncio.create_task(self.clients(until)),
        ]
        try:
            for minute in range(minutes + 1):
                await asyncio.sleep(max(0.0, started + minute * 60 - loop.time()))
                failed = [p for p in (churner, *steady) if p.error]
                if failed:
                    raise RuntimeError(f"{failed[0].address}: {failed[0].error}")
                sample = await asyncio.to_thread(self.sample, minute)
                self.samples.append(sample)
                print(
                    f"minute {minute:3d}  RSS {sample.rss_mib:7.1f} MiB  fds {sample.fds:4d}  "
                    f"tasks {sample.tasks:4d}  kernel routes {sample.kernel_routes:6d}  "
                    f"[heap] {sample.heap_rss_mib:5.1f}  anon {sample.anon_rss_mib:5.1f}  "
                    f"malloc {sample.malloc_in_use_mib:5.1f} used {sample.malloc_free_mib:5.1f} "
                    f"free  pyblocks {sample.python_blocks:,}  "
                    f"changes {self.changes:,}  flaps {self.flaps}  "
                    f"datastore writes {self.datastore_writes}  client calls {self.client_calls}",
                    flush=True,
                )
        finally:
            for task in work:
                task.cancel()
            await asyncio.gather(*work, return_exceptions=True)
            await asyncio.gather(*(p.close() for p in (churner, *steady)))


def verdict(samples: list[Sample], warmup: int) -> list[str]:
    after = [s for s in samples if s.minute >= warmup]
    if len(after) < 2:
        return [f"too short: {len(after)} samples after the {warmup}-minute warm-up"]
    base = after[0]
    problems = []
    peak = max(s.rss_mib for s in after)
    growth = (peak - base.rss_mib) / base.rss_mib
    print(f"RSS after warm-up: {base.rss_mib:.1f} -> peak {peak:.1f} MiB ({growth:+.1%})")
    if growth >= RSS_GROWTH_LIMIT:
        problems.append(f"RSS grew {growth:.1%} (limit {RSS_GROWTH_LIMIT:.0%})")
    for name in ("fds", "tasks"):
        values = [getattr(s, name) for s in after]
        start, end = max(values[:FLAT_WINDOW]), max(values[-FLAT_WINDOW:])
        print(
            f"{name} after warm-up: {min(values)}..{max(values)}; "
            f"largest of the first {FLAT_WINDOW} {start}, of the last {FLAT_WINDOW} {end}"
        )
        if end > start:
            problems.append(f"{name} not flat: {values}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rate", type=int, default=10_000, help="route changes a second")
    parser.add_argument("--speakers", type=int, default=6)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    print(f"# machine: {benchlib.machine()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    server = Namespace.create(PREFIX + "d")
    clients = Namespace.create(PREFIX + "c")
    try:
        link = veth(server, clients, SUBNET)
        address = str(link.a_addr.ip)
        batch = work / "addresses.batch"
        batch.write_text(
            "".join(
                f"address add {sim_address(i)}/16 dev {link.b_if}\n" for i in range(args.speakers)
            )
        )
        sh("ip", "-n", clients.name, "-batch", str(batch))
        node = BgpdNode(
            server,
            OurNode("node0", f"{address}/16"),
            (),
            work / "node0",
            metrics_listen=f"{address}:{METRICS_PORT}",
            datastore_text=datastore(address, args.speakers, False),
        )
        node.start()
        soak = Soak(node, server, address, args.speakers)
        began = time.monotonic()
        try:
            with inside(clients):
                asyncio.run(soak.run(args.minutes, args.rate))
        finally:
            node.stop()
        print(f"# {time.monotonic() - began:.0f} s, load average: {benchlib.loadavg()}")
        print(f"# client calls {soak.client_calls}, failed {soak.client_failures}")
        for reason, count in soak.failure_reasons.most_common():
            print(f"#   {count} x {reason}")
        problems = verdict(soak.samples, args.warmup)
        if soak.client_failures:
            problems.append(f"{soak.client_failures} control or metrics calls failed")
    finally:
        clients.delete()
        server.delete()
        shutil.rmtree(work, ignore_errors=True)
    if problems:
        raise SystemExit("SOAK FAILED: " + "; ".join(problems))
    print("SOAK PASSED")


if __name__ == "__main__":
    main()
