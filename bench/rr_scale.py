"""Benchmark: a route reflector for simulated clients, and one node of a full mesh, bgpd beside
BIRD 2 and BIRD 1.6 in the same role.

Rules:
1. Each run has two fresh namespaces: the daemon under test alone in one on 10.96.0.1/16, the
   simulated speakers (``bgp_load.Fleet``: ``SimPeer`` sessions in ``--load-processes`` forked
   workers, our codec) in the other, each from its own address on the same veth (10.96.1.1 on),
   so every session is a real TCP connection to the daemon. Every daemon sees the same clients
   announcing the same routes.
2. Reflector, bgpd: the datastore makes bgpd a route reflector (``routeReflectorClusterID``),
   turns the node-to-node mesh off and adds one global BGPPeer (``nodeSelector: all()``,
   ``peerSelector: all()``) so bgpd peers with every client Node (calico-bgp.md §1.2.3); a
   client is a Node without a cluster ID, so bgpd treats each as a route-reflector client
   (RFC 4456 §8).
3. Reflector, BIRD (``bird_config``): what confd renders for a route-reflector node
   (calico-bgp.md §2.4-2.8, 2.11, 2.12b): ``protocol kernel`` (learn, persist, scan time 2,
   graceful restart, merge paths, export through ``calico_kernel_programming``, which accepts
   every route of a no-encap pool), ``protocol device``, ``protocol direct`` without cali* and
   kube-ipvs*, and one ``protocol bgp Global_<ip>`` per client from a template with ``gateway
   recursive``, ``add paths on``, ``graceful restart``, Calico's connect timers and ``debug {
   states }`` (sessions only: bgpd logs no route at Info either); each session has ``source
   address``, ``ttl security off; multihop``, ``import all``, an export filter that accepts the
   pool (``calico_export_to_bgp_peers(true)``), ``passive on`` (the client's address string is
   the larger, §2.8 item 7) and ``rr client; rr cluster id``. BIRD runs without ``-R``: its
   graceful-restart wait would hold the kernel export until a timeout, as the simulated clients
   send no End-of-RIB.
4. Mesh: the datastore has ``--mesh-nodes`` Nodes with the node-to-node mesh on; the daemon is
   one of them and owns 10.128.0.0/26, the other ones are simulated, so it has one iBGP session
   per other node, as each node of a real full mesh has. BIRD's config is the mesh form of
   rule 3 (``Mesh_<ip>`` sessions without ``rr client``; a static blackhole for the own block
   and ``calico_aggr``, §2.12). The clock stops when every simulated node holds the daemon's
   block and the daemon's kernel holds every simulated node's block.
5. Routes: ``--per-client B,A``: each client announces B /26 blocks of its own and A /32s
   borrowed from the blocks of the next client (at most 64 B); the default is one /26 each.
   Every client must be sent every other client's routes; the clock starts when the clients
   start connecting and stops when the last one was sent all of them. A client whose
   connection fails or is reset before Established connects again ``RETRY`` seconds later, as
   a Calico node's BIRD does (a listener with a short accept queue resets some of a thousand
   connections arriving at once). Clients count what they
   are sent (``SimPeer(keep=False)``); while the clients are sent no more than
   ``EXACT_LIMIT`` routes in all, every client keeps its set and must hold exactly the routes
   announced; above it two clients per worker do. A client sent more than it should have (a
   route sent again: BIRD re-sends a few) is reported as "over".
6. Reported per run: sessions, when the last one was Established ("up s"), seconds, the CPU
   seconds the daemon used during the run (``utime + stime``), its peak RSS (``VmHWM``), RSS
   at the end and growth per session over the idle daemon, the listener's accept-queue size
   (``ss``'s Send-Q) and how often the queue overflowed (``TcpExt ListenOverflows`` of its
   namespace), and the load generator's CPU seconds. bgpd's figures are printed beside each
   BIRD's with ratios, and the issue's target checked: bgpd no slower than BIRD 2 and at most
   twice its peak memory.
7. ``--connect-window N`` paces the clients: at most N sessions opening (connected, not yet
   Established) at a time, so a listener with a short accept queue is not overflowed and the
   figures are the reflection work; without it every client connects at once (a storm).
8. ``--profile FILE`` records bgpd's runs with py-spy (the last run's stacks stay in FILE).
9. ``--accept-only`` first times the load generator's connects against a listener that only
   accepts (accept queue ``net.core.somaxconn``), to show whether the clients are what limits a
   connection storm.

Usage: python3 bench/rr_scale.py [--clients 1000] [--per-client 20,100]
    [--per-client-clients N] [--mesh-nodes 500] [--reflectors bgpd,bird2,bird]
    [--mesh-peers bgpd,bird] [--load-processes 2] [--connect-window N] [--accept-only]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib
from bgp_load import Fleet, PeerPlan
from bgpd_driver import BgpdNode, OurNode, calico_datastore
from netns import Namespace, inside, sh, veth
from peer_drivers import Bird, Bird2, wait_for

ASN = 64512
SUBNET = "10.96.0.0/16"
FIRST_SIM = int(ipaddress.IPv4Address("10.96.1.1"))
FIRST_BLOCK = int(ipaddress.IPv4Address("10.128.0.0"))
POOL = "10.128.0.0/10"
CLUSTER_ID = "224.0.0.1"
PREFIX = "hC-rrs-"
TIMEOUT = 600.0
RETRY = 5.0  # calico-bgp.md §2.7: a client's BIRD has connect retry time 5
EXACT_LIMIT = 3_000_000  # rule 5: up to this many routes in all, every client keeps its set
BIRDS = {"bird": Bird, "bird2": Bird2}


def sim_address(index: int) -> str:
    return str(ipaddress.IPv4Address(FIRST_SIM + index))


def block(number: int) -> str:
    """The pool's ``number``-th /26; block 0 is the mesh node's own."""
    return f"{ipaddress.IPv4Address(FIRST_BLOCK + number * 64)}/26"


def sim_block(index: int) -> str:
    return block(index + 1)


@dataclass(frozen=True)
class Load:
    """Rule 5: how many clients and what each announces."""

    clients: int
    blocks: int = 1
    borrowed: int = 0

    def blocks_of(self, index: int) -> list[str]:
        return [block(1 + index * self.blocks + k) for k in range(self.blocks)]

    def borrowed_of(self, index: int) -> list[str]:
        lender = (index + 1) % self.clients
        base = FIRST_BLOCK + (1 + lender * self.blocks) * 64
        return [f"{ipaddress.IPv4Address(base + m)}/32" for m in range(self.borrowed)]

    def plans(self) -> list[PeerPlan]:
        return [
            PeerPlan(sim_address(i), tuple(self.blocks_of(i) + self.borrowed_of(i)))
            for i in range(self.clients)
        ]

    @property
    def per_client(self) -> int:
        return self.blocks + self.borrowed

    def label(self) -> str:
        if self.borrowed:
            return f"{self.blocks}x/26+{self.borrowed}x/32"
        return f"{self.blocks}x/26"


def all_peers_resource() -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPPeer",
        "metadata": {"name": "everyone"},
        "spec": {"nodeSelector": "all()", "peerSelector": "all()"},
    }


def datastore(scenario: str, count: int, address: str) -> str:
    """Rule 2 (``reflector``) or rule 4 (``mesh``) for bgpd."""
    others = tuple(OurNode(f"sim{i}", f"{sim_address(i)}/16") for i in range(count))
    if scenario == "reflector":
        node = OurNode("rr", f"{address}/16", cluster_id=CLUSTER_ID)
        return calico_datastore(
            node,
            (),
            POOL,
            others=others,
            bgp_config={"nodeToNodeMeshEnabled": False},
            extra=(all_peers_resource(),),
        )
    node = OurNode("node0", f"{address}/16", blocks=(block(0),))
    return calico_datastore(node, (), POOL, others=others)


def bird_config(version: int, scenario: str, count: int, address: str, work: Path) -> str:
    """Rule 3 (``reflector``) or rule 4 (``mesh``) for BIRD ``version`` (1 for 1.6, 2)."""
    mesh = scenario == "mesh"
    aggr = (
        f"if ( net = {block(0)} ) then {{ accept; }}\n  if ( net ~ {block(0)} ) then {{ reject; }}"
    )
    lines = [
        f"router id {address};",
        f'log "{work}/bird-proto.log" all;',
        "filter calico_kernel_programming { accept; }",
        f"function calico_aggr() {{\n  {aggr if mesh else ''}\n}}",
        "function calico_export_to_bgp_peers(bool internal_peer) {",
        f"  calico_aggr();\n  if ( net ~ {POOL} ) then {{ accept; }}\n}}",
    ]
    kernel_opts = "learn; persist; scan time 2; graceful restart; merge paths on;"
    channel_opts = "gateway recursive; add paths on;"
    export = "export filter { calico_export_to_bgp_peers(true); reject; };"
    if version == 1:
        lines += [
            "protocol kernel {",
            f"  {kernel_opts} import all; export filter calico_kernel_programming;",
            "}",
            "protocol device { scan time 2; }",
            'protocol direct { interface -"cali*", -"kube-ipvs*", "*"; }',
        ]
        if mesh:
            lines.append(f"protocol static {{ route {block(0)} blackhole; }}")
        template = f"  local as {ASN};\n  {channel_opts}"
        session = f"  import all;\n  {export}"
    else:
        lines += [
            "protocol kernel {",
            f"  ipv4 {{ import all; export filter calico_kernel_programming; }};\n  {kernel_opts}",
            "}",
            "protocol device { scan time 2; }",
            'protocol direct { ipv4; interface -"cali*", -"kube-ipvs*", "*"; }',
        ]
        if mesh:
            lines.append(f"protocol static {{ ipv4; route {block(0)} blackhole; }}")
        template = f"  local as {ASN};\n  ipv4 {{ {channel_opts} import all; {export} }};"
        session = ""
    lines += [
        "template bgp bgp_template {",
        template,
        "  graceful restart;",
        "  debug { states };",  # sessions only: bgpd logs no route at Info either
        "  connect delay time 2;\n  connect retry time 5;\n  error wait time 5,30;",
        "}",
    ]
    kind = "Mesh" if mesh else "Global"
    for i in range(count):
        peer = sim_address(i)
        lines += [
            f"protocol bgp {kind}_{peer.replace('.', '_')} from bgp_template {{",
            f"  neighbor {peer} as {ASN};",
            f"  source address {address};",
            "  ttl security off;\n  multihop;",
        ]
        if session:
            lines.append(session)
        lines.append("  passive on;")  # calico-bgp.md §2.8 item 7: our address string is smaller
        if not mesh:
            lines.append(f"  rr client;\n  rr cluster id {CLUSTER_ID};")
        lines.append("}")
    return "\n".join(lines) + "\n"


class Daemon:
    """The daemon under test in its namespace: bgpd (rules 2, 4) or BIRD (rules 3, 4)."""

    def __init__(self, kind: str, ns: Namespace, scenario: str, count: int, address: str) -> None:
        self.kind = kind
        self.ns = ns
        self.scenario = scenario
        self.count = count
        self.address = address
        self.node: BgpdNode | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, work: Path) -> int:
        """Start it and wait for its listener; its pid."""
        work.mkdir(parents=True, exist_ok=True)
        if self.kind == "bgpd":
            name = "rr" if self.scenario == "reflector" else "node0"
            self.node = BgpdNode(
                self.ns,
                OurNode(name, f"{self.address}/16"),
                (),
                work,
                datastore_text=datastore(self.scenario, self.count, self.address),
                log_level="info",  # Calico's default logSeverityScreen, as BIRD runs without -D
            )
            self.node.start()
            assert self.node.proc is not None
            pid = self.node.proc.pid
        else:
            driver = BIRDS[self.kind]
            version = 2 if self.kind == "bird2" else 1
            conf = work / "bird.conf"
            conf.write_text(bird_config(version, self.scenario, self.count, self.address, work))
            self.proc = self.ns.popen(
                driver.binary,
                "-f",
                "-c",
                str(conf),
                "-s",
                str(work / "bird.ctl"),
                "-P",
                str(work / "bird.pid"),
                log=str(work / "daemon.log"),
            )
            pid = self.proc.pid
        wait_for(lambda: listen_queue(self.ns) is not None, 60, lambda: self.describe(work))
        return pid

    def describe(self, work: Path) -> str:
        logs = sorted(work.glob("*.log"))
        return "\n".join(f"{log}:\n{log.read_text(errors='replace')[-6000:]}" for log in logs)

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)


def listen_queue(ns: Namespace) -> int | None:
    """The accept-queue size of the namespace's BGP listener (``ss -ltn``'s Send-Q), if any."""
    for line in ns.run("ss", "-Hltn", "sport = :179", check=False).stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "LISTEN":
            return int(fields[2])
    return None


def listen_overflows(ns: Namespace) -> int:
    """TcpExt ListenOverflows of ``ns`` (/proc/net/netstat: a names line, then a values line)."""
    lines = ns.run("cat", "/proc/net/netstat").stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    return 0


def add_addresses(ns: Namespace, device: str, count: int, work: Path) -> None:
    batch = work / "addresses.batch"
    batch.write_text(
        "".join(f"address add {sim_address(i)}/16 dev {device}\n" for i in range(count))
    )
    sh("ip", "-n", ns.name, "-batch", str(batch))


@dataclass(frozen=True)
class Figures:
    """One run's rule-6 figures."""

    sessions: int
    up: float  # until the last session was Established
    seconds: float
    cpu: float
    peak: float
    rss: float
    per_session_kib: float
    backlog: int
    overflows: int
    load_cpu: float
    retries: int
    checks: str


def run(
    kind: str,
    scenario: str,
    load: Load,
    processes: int,
    window: int,
    work: Path,
    profile: Path | None = None,
) -> Figures:
    """One daemon, one scenario, in fresh namespaces (rule 1)."""
    server_ns = Namespace.create(PREFIX + "d")
    clients_ns = Namespace.create(PREFIX + "c")
    work = Path(tempfile.mkdtemp(prefix=f"{scenario}-{kind}-", dir=work))
    try:
        link = veth(server_ns, clients_ns, SUBNET)
        address = str(link.a_addr.ip)
        add_addresses(clients_ns, link.b_if, load.clients, work)
        daemon = Daemon(kind, server_ns, scenario, load.clients, address)
        plans = load.plans()
        if scenario == "reflector":
            want = frozenset(p for plan in plans for p in plan.prefixes)
            expected = len(want) - load.per_client
        else:
            want, expected = frozenset({block(0)}), 1
        with inside(clients_ns):
            witnesses = len(plans) if len(plans) * len(want) <= EXACT_LIMIT else 2
            fleet = Fleet(plans, address, ASN, expected, want, processes, witnesses, RETRY, window)
        try:
            pid = daemon.start(work)
            time.sleep(1.0)
            backlog = listen_queue(server_ns) or 0
            idle_rss = benchlib.rss_mib([pid])
            cpu_before = benchlib.cpu_seconds([pid])
            overflows_before = listen_overflows(server_ns)
            watch = benchlib.KernelWatch(server_ns.name, POOL, 26) if scenario == "mesh" else None
            spy = benchlib.py_spy(pid, profile) if profile and kind == "bgpd" else None
            started = fleet.go()
            kernel_done = started
            if watch is not None:  # read as the routes come; the workers' reports wait
                try:
                    kernel_done = watch.wait(lambda w: w.count >= load.clients + 1, TIMEOUT)
                finally:
                    watch.close()
            try:
                result = fleet.done(TIMEOUT)
            except (RuntimeError, TimeoutError):
                print(daemon.describe(work), file=sys.stderr)
                raise
            finished = max(result.finished, kernel_done)
            if spy is not None:
                benchlib.stop_py_spy(spy)
            cpu = benchlib.cpu_seconds([pid]) - cpu_before
            rss = benchlib.rss_mib([pid])
            peak = benchlib.peak_rss_mib([pid])
            overflows = listen_overflows(server_ns) - overflows_before
        finally:
            load_cpu = fleet.stop()
            daemon.stop()
    finally:
        clients_ns.delete()
        server_ns.delete()
    checks = "; ".join(result.witness_errors[:2]) or "exact"
    if result.over:
        checks += f", {result.over} sent some again"
    return Figures(
        sessions=result.sessions,
        up=result.established - started,
        seconds=finished - started,
        cpu=cpu,
        peak=peak,
        rss=rss,
        per_session_kib=(rss - idle_rss) * 1024 / max(result.sessions, 1),
        backlog=backlog,
        overflows=overflows,
        load_cpu=load_cpu,
        retries=result.retries,
        checks=checks,
    )


def accept_only(count: int, processes: int, work: Path) -> tuple[float, int, int]:
    """Rule 9: (seconds for ``count`` connects, accept queue, overflows) against a listener
    that only accepts."""
    server_ns = Namespace.create(PREFIX + "d")
    clients_ns = Namespace.create(PREFIX + "c")
    script = (
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('0.0.0.0', 179))\n"
        "s.listen(int(open('/proc/sys/net/core/somaxconn').read()))\n"
        "held = []\n"
        "while True:\n"
        "    held.append(s.accept()[0])\n"
    )
    try:
        link = veth(server_ns, clients_ns, SUBNET)
        address = str(link.a_addr.ip)
        add_addresses(clients_ns, link.b_if, count, work)
        plans = [PeerPlan(sim_address(i), ()) for i in range(count)]
        with inside(clients_ns):
            fleet = Fleet(plans, address, ASN, None, frozenset(), processes)
        proc = server_ns.popen(sys.executable, "-c", script)
        try:
            wait_for(lambda: listen_queue(server_ns) is not None, 20)
            backlog = listen_queue(server_ns) or 0
            before = listen_overflows(server_ns)
            started = fleet.go()
            result = fleet.done(120)
            overflows = listen_overflows(server_ns) - before
        finally:
            fleet.stop()
            proc.kill()
            proc.wait(5)
    finally:
        clients_ns.delete()
        server_ns.delete()
    return result.connected - started, backlog, overflows


def parse_load(clients: int, per_client: str | None) -> Load:
    if not per_client:
        return Load(clients)
    blocks, borrowed = (int(x) for x in per_client.split(","))
    if borrowed > 64 * blocks:
        raise SystemExit("--per-client B,A: at most 64 B borrowed /32s (the next client's blocks)")
    return Load(clients, blocks, borrowed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--per-client", default=None, help="B,A: B /26s and A borrowed /32s")
    parser.add_argument("--per-client-clients", type=int, default=None)
    parser.add_argument("--reflectors", default="bgpd,bird2,bird")
    parser.add_argument("--mesh-nodes", type=int, default=500)
    parser.add_argument("--mesh-peers", default="bgpd,bird")
    parser.add_argument("--load-processes", type=int, default=2)
    parser.add_argument("--accept-only", action="store_true")
    parser.add_argument("--connect-window", type=int, default=0, help="0: all clients at once")
    parser.add_argument(
        "--profile", type=Path, help="py-spy bgpd's last run into this file (collapsed stacks)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    print(f"# machine: {benchlib.machine()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-rrs-"))
    scenarios: list[tuple[str, Load, list[str]]] = []
    reflectors = [r for r in args.reflectors.split(",") if r]
    if args.clients and reflectors:
        scenarios.append(("reflector", Load(args.clients), reflectors))
    if args.per_client and reflectors:
        count = args.per_client_clients or args.clients
        scenarios.append(("reflector", parse_load(count, args.per_client), reflectors))
    mesh_peers = [r for r in args.mesh_peers.split(",") if r]
    if args.mesh_nodes and mesh_peers:
        scenarios.append(("mesh", Load(args.mesh_nodes - 1), mesh_peers))
    try:
        if args.accept_only:
            count = max([load.clients for _s, load, _k in scenarios] or [args.clients])
            seconds, backlog, overflows = accept_only(count, args.load_processes, work)
            print(
                f"# load generator: {count} connects against an accept-only listener in "
                f"{seconds:.2f} s ({args.load_processes} processes; accept queue {backlog}, "
                f"{overflows} overflows)",
                flush=True,
            )
        table = benchlib.Table(
            [("scenario", 9), ("routes/client", 13), ("daemon", 6), ("sessions", 8)]
            + [("up s", 6), ("seconds", 7), ("CPU s", 6), ("peak MiB", 8), ("RSS MiB", 7)]
            + [("KiB/sess", 8), ("acceptq", 7), ("overflow", 8), ("retries", 7), ("load CPU", 8)]
            + [("check", 5)]
        )
        results: list[tuple[str, Load, dict[str, Figures]]] = []
        for scenario, load, kinds in scenarios:
            figures: dict[str, Figures] = {}
            for kind in kinds:
                f = run(
                    kind,
                    scenario,
                    load,
                    args.load_processes,
                    args.connect_window,
                    work,
                    args.profile,
                )
                figures[kind] = f
                table.row(
                    scenario,
                    load.label(),
                    kind,
                    f.sessions,
                    f"{f.up:.2f}",
                    f"{f.seconds:.2f}",
                    f"{f.cpu:.1f}",
                    f"{f.peak:.0f}",
                    f"{f.rss:.0f}",
                    f"{f.per_session_kib:.0f}",
                    f.backlog,
                    f.overflows,
                    f.retries,
                    f"{f.load_cpu:.1f}",
                    f.checks,
                )
            results.append((scenario, load, figures))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    for scenario, load, figures in results:
        ours = figures.get("bgpd")
        if ours is None:
            continue
        for kind, theirs in figures.items():
            if kind == "bgpd":
                continue
            line = (
                f"# {scenario} {load.clients} x {load.label()}: bgpd vs {kind}: "
                f"time {benchlib.ratio(ours.seconds, theirs.seconds)}, "
                f"CPU {benchlib.ratio(ours.cpu, theirs.cpu)}, "
                f"peak RSS {benchlib.ratio(ours.peak, theirs.peak)}"
            )
            if scenario == "reflector" and kind == "bird2":
                met = ours.seconds <= theirs.seconds and ours.peak <= 2 * theirs.peak
                line += f"; target (no slower, <= 2x memory): {'met' if met else 'MISSED'}"
            print(line)
    print(f"# load average: {benchlib.loadavg()}")
    if args.profile is not None and args.profile.exists():
        benchlib.print_profile(args.profile)


if __name__ == "__main__":
    main()
