"""Benchmark: a table into a receiver's kernel and out again; bgpd beside BIRD 2, BIRD 1.6, FRR.

Rules:
1. Senders. ``--sender line-rate`` (the default): ``line_rate.py serve`` in a sender namespace on
   a bridge (``lan``) that every receiver's namespace joins, one sender process per receiver,
   writing a table pre-encoded by ``tables.py`` (``--table single,full``: one attribute set, or
   a DFZ-shaped table of size / 5 attribute sets) in one ``sendall``, so the receiver alone is
   measured; before the receivers, ``line_rate.check`` times the same sender into a socket that
   only reads, and the line says how far above any receiver it runs. ``--peers N`` (line-rate;
   a list such as ``1,4`` runs each): N sender processes on the bridge, each its own address and
   eBGP AS (sender i: AS 65001 + i), write the same prefixes at once; sender i's table is the
   first's with its AS prepended i more times, so every prefix has N candidates that differ in
   AS-path length alone (RFC 4271 §9.1.2.2 a: LOCAL_PREF is absent on eBGP routes and equal),
   and the first sender's path is the single best; no two paths tie, so neither BIRD's ``merge
   paths`` nor any multipath makes an ECMP route. ``--family ipv6``: the same with IPv6 /48s
   in MP_REACH_NLRI (RFC 4760) over sessions on ``SUBNET6`` (the IPv4 addresses stay, as router
   IDs; each receiver starts once its link-local address is past DAD). ``--sender gobgp``: GoBGP
   preloaded by ``gobgp mrt inject`` of a TABLE_DUMP_V2 file (RFC 6396 §4.3) holding the N /24s
   from 16.0.0.0 and then ``PAD`` /24s from 100.64.0.0: the CLI drops the tail of a large file
   (real-peers.md), so the pad absorbs the loss and an export policy keeps it from the receivers.
   The load counts as done when the RIB holds more than N prefixes and GoBGP has gone idle.
   GoBGP's first session after the load starts sending about a second later than any later one,
   so a throwaway BIRD 2 (``WARM_UP``) takes the table first, unreported; after it and after
   every receiver GoBGP is left to go idle again.
2. Receivers run one at a time, each in its own namespace (deleted after it), each with one eBGP
   peer per sender: bgpd (``python -m bgpd run`` with a file datastore, one BGPPeer by peerIP
   per sender, log level Info as Calico's default ``logSeverityScreen``; for IPv6 the Node's
   ``ipv6Address``), BIRD 1.6 (``bird6`` for IPv6) with Calico's kernel and device settings
   (calico-bgp.md §2.4–2.5: ``learn; persist; scan time 2; graceful restart; merge paths on``)
   and one BGP protocol per sender, BIRD 2 with the same kernel protocol but BIRD 2's default
   scan time, FRR (zebra with a 128 MiB netlink buffer, real-peers.md; one neighbor per sender,
   ``maximum-paths 1``).
3. Timing starts when the receiver's first BGP connection is up (TCP ESTABLISHED on port 179
   in its namespace, polled every 10 ms; the OPEN exchange follows within milliseconds; with
   several senders the progress line says when the last came up, polled every 50 ms) and ends
   when the receiver's kernel holds all N prefixes, each via the best sender's address as its
   one next hop, seen through ``KernelWatch`` (subscribed before the receiver starts, with that
   gateway). With the line-rate sender every sender then writes the withdrawal of every prefix
   (the commands one after the other), and a second clock runs from the first command until
   the kernel holds none of them, via any next hop; a receiver that has not emptied its kernel
   after ``WITHDRAW_WAIT`` seconds is reported as such, with the routes it still holds (BIRD
   1.6 with four senders of 1M), and the race goes on. Peak
   RSS is the sum of ``VmHWM`` of every process in the receiver's namespace (FRR: zebra +
   bgpd), read at the end; CPU is their ``utime + stime`` since they started, and for the
   withdrawal the CPU it added. A progress line gives the kernel's count at each tenth of N.
   ``--profile FILE`` records bgpd with py-spy (collapsed stacks) during each run; the last run
   (last size, last table) stays in FILE and its top functions are printed.
4. One table: per size, table, senders and reference, the reference's figures, bgpd's, and
   the ratios bgpd / reference (below 1 means bgpd is faster, smaller or cheaper); then the same
   as the README's Markdown table, bgpd / reference in brackets beside each reference's figure.

Usage: python3 bench/e2e_ingest.py [--sender line-rate|gobgp] [--table single,full]
                                   [--sizes 100000,1000000] [--receivers bgpd,bird2,bird,frr]
                                   [--peers 1,4] [--family ipv4|ipv6]
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice, product
from pathlib import Path
from typing import Protocol

import benchlib
import line_rate
import tables
import yaml
from bgpd_driver import BgpdNode, ExternalPeer, OurNode, calico_datastore, lan
from netns import Namespace
from peer_drivers import Bird, Bird2, Frr, GoBgp, PeerSpec, wait_for

from bgpd.wire.attributes import encode_attributes
from bgpd.wire.types import AsPathSegment, PathAttributes

SENDER_AS = 65001
RECEIVER_AS = 64512
FIRST = int(ipaddress.IPv4Address("16.0.0.0"))
WATCHED = {"ipv4": ("16.0.0.0/4", 24), "ipv6": ("2a00::/28", 48)}  # 1,048,576 prefixes each
PAD_FIRST = int(ipaddress.IPv4Address("100.64.0.0"))
PAD = 5000
SUBNET = "10.97.0.0/24"
SUBNET6 = "fd00:97::/64"  # ``--family ipv6``: host i of SUBNET is host i here too
MAX_PEERS = 16
LAN_BRIDGE = "br0"  # the bridge ``lan`` makes in the hub namespace
PREFIX = "hC-e2e-"
MRT_TABLE_DUMP_V2 = 13
MRT_PEER_INDEX_TABLE = 1
MRT_RIB_IPV4_UNICAST = 2
RECEIVERS = ("bgpd", "bird2", "bird", "frr")
SENDERS = ("line-rate", "gobgp")
LABELS = {"bird": "BIRD 1.6", "bird2": "BIRD 2", "frr": "FRR"}
WARM_UP = "bird2"  # the receiver that takes GoBGP's first, slower, session (rule 1)

_PAD_POLICY = f"""
[[defined-sets.prefix-sets]]
  prefix-set-name = "pad"
  [[defined-sets.prefix-sets.prefix-list]]
    ip-prefix = "{ipaddress.IPv4Address(PAD_FIRST)}/10"
    masklength-range = "24..24"

[[policy-definitions]]
  name = "drop-pad"
  [[policy-definitions.statements]]
    name = "pad"
    [policy-definitions.statements.conditions.match-prefix-set]
      prefix-set = "pad"
    [policy-definitions.statements.actions]
      route-disposition = "reject-route"

[global.apply-policy.config]
  export-policy-list = ["drop-pad"]
  default-export-policy = "accept-route"
"""


def write_mrt(path: Path, count: int, next_hop: str) -> None:
    """A TABLE_DUMP_V2 file (RFC 6396 §4.3): one PEER_INDEX_TABLE, then one RIB_IPV4_UNICAST
    record per prefix (``count`` /24s, then the pad), every entry with the same attributes;
    AS_PATH is 4-octet as §4.3.4 requires."""
    attrs = encode_attributes(
        PathAttributes(
            origin=0,
            as_path=(AsPathSegment(2, (65100,)),),
            next_hop=ipaddress.IPv4Address(next_hop).packed,
        ),
        asn4=True,
        next_hop=True,
    )
    entry = struct.pack("!HIH", 0, 0, len(attrs)) + attrs
    header = struct.Struct("!IHHI")
    peer_id = ipaddress.IPv4Address(next_hop).packed
    # peer type 0x02: IPv4 address, 4-octet AS (§4.3.1)
    index = peer_id + struct.pack("!H", 0) + struct.pack("!H", 1) + b"\x02" + peer_id + peer_id
    index += struct.pack("!I", SENDER_AS)
    with path.open("wb") as out:
        out.write(header.pack(0, MRT_TABLE_DUMP_V2, MRT_PEER_INDEX_TABLE, len(index)) + index)
        tail = struct.pack("!H", 1) + entry
        record_len = 4 + 1 + 3 + len(tail)
        head = header.pack(0, MRT_TABLE_DUMP_V2, MRT_RIB_IPV4_UNICAST, record_len)
        chunk = bytearray()
        networks = [FIRST + (i << 8) for i in range(count)]
        networks += [PAD_FIRST + (i << 8) for i in range(PAD)]
        for seq, network in enumerate(networks):
            chunk += head + struct.pack("!IB", seq, 24) + (network >> 8).to_bytes(3, "big") + tail
            if len(chunk) > 1 << 20:
                out.write(chunk)
                chunk.clear()
        out.write(chunk)


class Sender(GoBgp):
    """GoBGP with one neighbour per receiver address and the pad filtered on export (rule 1)."""

    def __init__(self, ns: Namespace, spec: PeerSpec, workdir: Path, neighbors: list[str]) -> None:
        super().__init__(ns, spec, workdir)
        self.neighbors = neighbors

    def config(self) -> str:
        head, block = super().config().split("[[neighbors]]", 1)
        blocks = [
            "[[neighbors]]" + block.replace(f'"{self.spec.neighbor}"', f'"{n}"')
            for n in self.neighbors
        ]
        return head + "".join(blocks) + _PAD_POLICY

    def rib_size(self) -> int:
        out = self.cli("-j", "global", "rib", "summary", "-a", "ipv4").stdout
        try:
            data = json.loads(out)
        except json.JSONDecodeError:
            return 0
        return int(data.get("num_destination", 0)) if isinstance(data, dict) else 0

    def load(self, mrt: Path, count: int) -> float:
        started = time.monotonic()
        self.ns.run(
            "gobgp",
            "-u",
            self.api.split(":")[0],
            "-p",
            self.api.split(":")[1],
            "mrt",
            "inject",
            "global",
            "--nexthop",
            self.spec.address,
            str(mrt),
            timeout=1800,
        )
        wait_for(lambda: self.rib_size() > count, 600, lambda: f"rib {self.rib_size()}", 1.0)
        loaded = time.monotonic() - started
        self.settle()
        return loaded

    def settle(self, quiet_cpu: float = 0.05, timeout: float = 120) -> None:
        """Wait until GoBGP is idle (under ``quiet_cpu`` CPU seconds per second), so no
        receiver is fed by a sender still digesting the injection or the full-table session
        before it (rule 1)."""
        end = time.monotonic() + timeout
        last = benchlib.cpu_seconds(self.ns.pids())
        while time.monotonic() < end:
            time.sleep(1.0)
            now = benchlib.cpu_seconds(self.ns.pids())
            if now - last < quiet_cpu:
                return
            last = now


_CALICO_KERNEL_16 = """
protocol kernel {
    learn; persist; scan time 2; import all; export all;
    graceful restart; merge paths on;
}
"""

_KERNEL_2 = """
protocol kernel {
    ipv4 { import all; export all; };
    learn; persist; graceful restart; merge paths on;
}
"""


@dataclass(frozen=True, slots=True)
class Feed:
    """One line-rate sender of a race (rule 1): its session address (the next hop of its
    table), AS, how many more times its AS leads every path, and its IPv4 router ID."""

    address: str
    asn: int
    prepend: int = 0
    router_id: str = ""


def feeds_for(addresses: Sequence[str], router_ids: Sequence[str] = ()) -> tuple[Feed, ...]:
    """Rule 1: sender ``i`` is AS ``SENDER_AS + i`` and prepends ``i`` times, so the first
    sender's paths are the shortest for every prefix."""
    ids = list(router_ids) or list(addresses)
    return tuple(
        Feed(a, SENDER_AS + i, i, r) for i, (a, r) in enumerate(zip(addresses, ids, strict=True))
    )


def family_of(address: str) -> str:
    return "ipv4" if ipaddress.ip_address(address).version == 4 else "ipv6"


def _bird_peers(config: str, protocol: str, spec: PeerSpec, feeds: Sequence[Feed]) -> str:
    """BIRD's configuration with its one BGP protocol (the last block) once per feed, named
    ``<protocol><index>``, with the feed's address and AS (rule 2)."""
    marker = f"protocol bgp {protocol} "
    head, block = config.split(marker, 1)
    neighbor = f"neighbor {spec.neighbor} as {spec.peer_as};"
    copies = [
        f"protocol bgp {protocol}{index} "
        + block.replace(neighbor, f"neighbor {feed.address} as {feed.asn};")
        for index, feed in enumerate(feeds)
    ]
    return head + "".join(copies)


class BirdReceiver(Bird):
    feeds: tuple[Feed, ...] = ()

    def config(self) -> str:
        device = "protocol device { scan time 2; }"
        base = super().config().replace("protocol device { }", device)
        return _bird_peers(base, self.protocol, self.spec, self.feeds) + _CALICO_KERNEL_16


class Bird6Receiver(BirdReceiver):
    """BIRD 1.6's IPv6 daemon, as calico-node runs it beside ``bird``."""

    kind = "bird6"
    binary = "bird6"
    client = "birdc6"


class Bird2Receiver(Bird2):
    feeds: tuple[Feed, ...] = ()

    def config(self) -> str:
        text = _bird_peers(super().config(), self.protocol, self.spec, self.feeds) + _KERNEL_2
        if family_of(self.spec.address) == "ipv6":
            text = text.replace("ipv4;", "ipv6;").replace("ipv4 {", "ipv6 {")
        return text


class FrrReceiver(Frr):
    feeds: tuple[Feed, ...] = ()

    def config(self) -> str:
        """Every ``neighbor`` line once per feed; one path per prefix into zebra (rule 2)."""
        lines = []
        for line in super().config().splitlines():
            if line.startswith(f" neighbor {self.spec.neighbor} "):
                for feed in self.feeds:
                    mine = line.replace(self.spec.neighbor, feed.address)
                    remote = f"remote-as {self.spec.peer_as}"
                    lines.append(mine.replace(remote, f"remote-as {feed.asn}"))
            elif line == " address-family ipv4 unicast":
                lines += [line, "  maximum-paths 1"]
            else:
                lines.append(line)
        if family_of(self.spec.address) == "ipv6":
            lines += [" address-family ipv6 unicast", "  maximum-paths 1"]
            lines += [f"  neighbor {feed.address} activate" for feed in self.feeds]
            lines.append(" exit-address-family")
        return "\n".join(lines) + "\n"

    def _spawn(self, *cmd: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        if cmd and cmd[0].endswith("/zebra"):
            cmd = (*cmd, "-s", "134217728")
        return super()._spawn(*cmd, env=env)


class Receiver(Protocol):
    def start(self) -> None: ...

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None: ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Figures:
    """One receiver's run (rule 3); the withdrawal's figures only with the line-rate sender."""

    seconds: float
    mib: float
    cpu: float
    withdraw_seconds: float | None = None
    withdraw_cpu: float | None = None
    withdraw_left: int = 0  # routes still in the kernel when ``WITHDRAW_WAIT`` ran out

    @property
    def withdraw_note(self) -> str:
        """The withdrawal's time, or that it did not end within the wait."""
        if self.withdraw_seconds is None:
            return "-"
        if self.withdraw_left:
            return f"> {self.withdraw_seconds:.0f} s ({self.withdraw_left:,} routes left)"
        return f"{self.withdraw_seconds:.2f} s"


WITHDRAW_WAIT = 300.0  # seconds a receiver gets to empty its kernel; longer is reported as such


def make_receiver(
    kind: str,
    ns: Namespace,
    address: str,
    feeds: Sequence[Feed],
    work: Path,
    router_id: str = "",
) -> Receiver:
    """Rule 2: ``kind`` configured with one eBGP peer per feed, on ``address`` (IPv4 or IPv6;
    ``router_id``, the receiver's IPv4 address, when it is IPv6)."""
    router_id = router_id or address
    if kind == "bgpd":
        node = OurNode(name="receiver", address=f"{router_id}/24", asn=RECEIVER_AS)
        peers = tuple(
            ExternalPeer(address=f.address, asn=f.asn, keepalive_time=None) for f in feeds
        )
        text = calico_datastore(node, peers)
        if family_of(address) == "ipv6":
            resources = list(yaml.safe_load_all(text))
            for resource in resources:
                if resource["kind"] == "Node":
                    resource["spec"]["bgp"]["ipv6Address"] = f"{address}/64"
            text = yaml.safe_dump_all(resources, sort_keys=False)
        return BgpdNode(ns, node, peers, work / "bgpd", datastore_text=text, log_level="info")
    spec = PeerSpec(
        local_as=RECEIVER_AS,
        peer_as=SENDER_AS,
        router_id=router_id,
        address=address,
        neighbor=feeds[0].address,
        hold_time=90,
        keepalive=30,
        routes=(),
    )
    classes: dict[str, type[BirdReceiver | Bird2Receiver | FrrReceiver]] = {
        "bird": Bird6Receiver if family_of(address) == "ipv6" else BirdReceiver,
        "bird2": Bird2Receiver,
        "frr": FrrReceiver,
    }
    receiver = classes[kind](ns, spec, work)
    receiver.feeds = tuple(feeds)
    return receiver


def sessions_up(ns: Namespace) -> int:
    """Rule 3: the receiver's BGP connections that are up (TCP ESTABLISHED on port 179). Read
    from the receiver's namespace, not the sender: after a session with a full table goes down
    GoBGP can leave its API unanswered for over 20 s, which would start the clock late."""
    out = ns.run("ss", "-Htn", "state", "established", "( sport = :179 or dport = :179 )")
    return len(out.stdout.splitlines())


class AllUp(threading.Thread):
    """Rule 3: when the receiver's ``count``-th BGP connection came up (polled every 50 ms)."""

    def __init__(self, ns: Namespace, count: int) -> None:
        super().__init__(daemon=True)
        self.ns, self.count = ns, count
        self.at: float | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            if sessions_up(self.ns) >= self.count:
                self.at = time.monotonic()
                return
            self.stopped.wait(0.05)


def measure(
    kind: str,
    ns: Namespace,
    address: str,
    feeds: Sequence[Feed],
    size: int,
    work: Path,
    profile: Path | None = None,
    withdraw: Callable[[], None] | None = None,
    *,
    quiet: bool = False,
    router_id: str = "",
) -> Figures:
    """Rule 3: seconds from the first connection to all ``size`` routes in the kernel via the
    first feed (the best path), peak RSS MiB, CPU seconds the receiver used since it started;
    with ``withdraw`` (which makes every sender withdraw every route), the seconds until the
    kernel holds none and the CPU that took."""
    receiver = make_receiver(kind, ns, address, feeds, work, router_id)
    withdraw_seconds = withdraw_cpu = None
    withdraw_left = 0
    watched, length = WATCHED[family_of(address)]
    with benchlib.KernelWatch(ns.name, watched, length, gateway=feeds[0].address) as watch:
        receiver.start()
        spy = None
        if profile is not None and isinstance(receiver, BgpdNode) and receiver.proc:
            spy = benchlib.py_spy(receiver.proc.pid, profile)
        all_up = AllUp(ns, len(feeds))
        try:
            wait_for(lambda: sessions_up(ns) > 0, 120, receiver.describe, 0.01)
            connected = time.monotonic()
            all_up.start()
            watch.trace_step = max(1, size // 10)
            done = watch.wait(lambda w: w.best >= size, 900)
            marks = " ".join(f"{count / 1000:g}k@{at - connected:.2f}" for at, count in watch.trace)
            if len(feeds) > 1 and all_up.at is not None:
                marks += f"; all {len(feeds)} sessions up @{all_up.at - connected:.2f}"
            if not quiet:
                print(f"# {kind} kernel count by time since connected: {marks}", flush=True)
            cpu = benchlib.cpu_seconds(ns.pids())
            if withdraw is not None:
                started = time.monotonic()
                withdraw()
                try:
                    gone = watch.wait(lambda w: w.count == 0, WITHDRAW_WAIT)
                except TimeoutError:  # a reference that cannot: reported, the race goes on
                    gone, withdraw_left = time.monotonic(), watch.count
                withdraw_seconds = gone - started
                withdraw_cpu = benchlib.cpu_seconds(ns.pids()) - cpu
            if watch.resyncs and not quiet:
                print(f"# {kind}: the kernel watch dumped again {watch.resyncs} times", flush=True)
            peak = benchlib.peak_rss_mib(ns.pids())
        finally:
            all_up.stopped.set()
            if spy is not None:
                benchlib.stop_py_spy(spy)
            receiver.stop()
    return Figures(done - connected, peak, cpu, withdraw_seconds, withdraw_cpu, withdraw_left)


def report(kind: str, figures: Figures, say: Callable[[str], None]) -> None:
    withdrawal = ""
    if figures.withdraw_seconds is not None:
        withdrawal = f"; withdrawal {figures.withdraw_note}, {figures.withdraw_cpu:.2f} CPU s"
    say(
        f"# {kind}: {figures.seconds:.2f} s, {figures.mib:.0f} MiB, {figures.cpu:.2f} CPU s"
        f"{withdrawal} (load {benchlib.loadavg()})"
    )


def run_gobgp(
    size: int,
    kinds: list[str],
    work: Path,
    say: Callable[[str], None],
    profile: Path | None,
) -> dict[str, Figures]:
    """Rule 1, ``--sender gobgp``."""
    sender_ns = Namespace.create(PREFIX + "s")
    warm_ns = Namespace.create(PREFIX + "warm")
    receivers = {kind: Namespace.create(PREFIX + kind[:4]) for kind in kinds}
    results: dict[str, Figures] = {}
    try:
        members = lan(sender_ns, [warm_ns, *receivers.values()], SUBNET)
        sender_address, warm_address = members[0].address, members[1].address
        addresses = {kind: m.address for kind, m in zip(kinds, members[2:], strict=True)}
        spec = PeerSpec(
            local_as=SENDER_AS,
            peer_as=RECEIVER_AS,
            router_id=sender_address,
            address=sender_address,
            neighbor=addresses[kinds[0]],
            hold_time=90,
            keepalive=30,
            routes=(),
        )
        neighbors = [warm_address, *addresses.values()]
        sender = Sender(sender_ns, spec, work / f"sender-{size}", neighbors)
        mrt = work / f"table-{size}.mrt"
        write_mrt(mrt, size, sender_address)
        feeds = feeds_for([sender_address])
        sender.start()
        try:
            seconds = sender.load(mrt, size)
            say(f"# {size:,} prefixes loaded into GoBGP in {seconds:.1f} s")
            mrt.unlink()
            # Rule 1: GoBGP's first session after the load starts sending about a second later
            # than every later one, whoever the peer is; a throwaway BIRD 2 takes it.
            warm = measure(
                WARM_UP, warm_ns, warm_address, feeds, size, work / "warm-up", quiet=True
            )
            warm_ns.delete()
            sender.settle()
            say(f"# warm-up: a throwaway {LABELS[WARM_UP]} took the table in {warm.seconds:.1f} s")
            for kind in kinds:
                ns = receivers.pop(kind)
                try:
                    results[kind] = measure(
                        kind, ns, addresses[kind], feeds, size, work / kind, profile
                    )
                finally:
                    ns.delete()
                sender.settle()  # GoBGP digests the session that just went down (rule 1)
                report(kind, results[kind], say)
        finally:
            sender.stop()
    finally:
        for ns in (sender_ns, warm_ns, *receivers.values()):
            ns.delete()
    return results


def withdraw_all(senders: Sequence[line_rate.SenderProcess]) -> None:
    """Rule 3: every sender writes its withdrawal, one command after the other."""
    for sender in senders:
        sender.command("withdraw")


def interface_of(ns: Namespace, address: str) -> str:
    """The interface in ``ns`` that holds the IPv4 ``address``."""
    for line in ns.ip("-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        if f"{address}/" in line:
            return fields[1]
    raise LookupError(f"no interface holds {address} in {ns.name}")


def link_local_ready(ns: Namespace, interface: str) -> bool:
    """``interface`` has its IPv6 link-local address and it is past duplicate address detection:
    bird6 looks for it when its protocol starts and runs without it otherwise (rule 2)."""
    out = ns.ip("-6", "-o", "addr", "show", "dev", interface, "scope", "link").stdout
    return bool(out.strip()) and "tentative" not in out


def run_line_rate(
    size: int,
    shape: str,
    peers: int,
    family: str,
    kinds: list[str],
    work: Path,
    say: Callable[[str], None],
    profile: Path | None,
) -> dict[str, Figures]:
    """Rule 1, ``--sender line-rate``: the tables, the sender's check, then each receiver with
    ``peers`` senders on the bridge: the hub's address and the addresses after the receiver's
    (with ``family`` ipv6, the same hosts of ``SUBNET6`` carry the sessions)."""
    net = ipaddress.IPv4Network(SUBNET)
    hosts = [str(h) for h in islice(net.hosts(), peers + 1)]
    senders_v4 = [hosts[0], *hosts[2:]]
    net6 = ipaddress.IPv6Network(SUBNET6)
    hosts6 = [str(h) for h in islice(net6.hosts(), peers + 1)]
    if family == "ipv6":
        receiver = hosts6[1]
        feeds = feeds_for([hosts6[0], *hosts6[2:]], senders_v4)
    else:
        receiver = hosts[1]
        feeds = feeds_for(senders_v4)
    specs = [
        tables.TableSpec(
            shape, family, size, next_hop=f.address, sender_as=f.asn, prepend=f.prepend
        )
        for f in feeds
    ]
    started = time.monotonic()
    for index, spec in enumerate(specs):
        table = tables.load(spec)
        if index == 0:
            say(f"# table: {tables.describe(table)} (ready in {time.monotonic() - started:.1f} s)")
    if peers > 1:
        say(
            f"# {peers} senders at once, AS {feeds[0].asn}-{feeds[-1].asn}, sender i's paths i "
            f"hops longer (prepended); best: {feeds[0].address} (all {peers} ready in "
            f"{time.monotonic() - started:.1f} s)"
        )
    say(f"# {line_rate.describe_check(specs[0], line_rate.check(specs[0]))}")
    results: dict[str, Figures] = {}
    for kind in kinds:
        sender_ns = Namespace.create(PREFIX + "s")
        ns = Namespace.create(PREFIX + kind[:4])
        senders: list[line_rate.SenderProcess] = []
        try:
            hub, member = lan(sender_ns, [ns], SUBNET)
            assert (hub.address, member.address) == (hosts[0], hosts[1])
            for address in senders_v4[1:]:
                sender_ns.ip("addr", "add", f"{address}/{net.prefixlen}", "dev", LAN_BRIDGE)
            if family == "ipv6":
                for feed in feeds:
                    sender_ns.ip(
                        "addr",
                        "add",
                        f"{feed.address}/{net6.prefixlen}",
                        "dev",
                        LAN_BRIDGE,
                        "nodad",
                    )
                member_if = interface_of(ns, member.address)
                ns.ip("addr", "add", f"{receiver}/{net6.prefixlen}", "dev", member_if, "nodad")
                for where, interface in ((ns, member_if), (sender_ns, LAN_BRIDGE)):
                    ready = functools.partial(link_local_ready, where, interface)
                    wait_for(ready, 30, None, 0.1)
            prefix = ("ip", "netns", "exec", sender_ns.name)
            for spec, feed in zip(specs, feeds, strict=True):
                senders.append(
                    line_rate.SenderProcess.start(
                        spec, feed.address, 179, prefix=prefix, router_id=feed.router_id
                    )
                )
            for sender in senders:
                sender.event("listening")
            results[kind] = measure(
                kind,
                ns,
                receiver,
                feeds,
                size,
                work / kind,
                profile,
                functools.partial(withdraw_all, senders),
                router_id=member.address,
            )
        finally:
            for sender in senders:
                sender.stop()
            ns.delete()
            sender_ns.delete()
        report(kind, results[kind], say)
    return results


def ratio_row(label: str, ours: Figures, ref: Figures) -> tuple[str, ...]:
    cells: list[str] = [label]
    pairs = [
        (ref.seconds, ours.seconds, 2),
        (ref.mib, ours.mib, 0),
        (ref.cpu, ours.cpu, 2),
        (ref.withdraw_seconds, ours.withdraw_seconds, 2),
        (ref.withdraw_cpu, ours.withdraw_cpu, 2),
    ]
    for theirs, mine, digits in pairs:
        if theirs is None or mine is None:
            cells += ["-", "-", "-"]
            continue
        cells += [f"{theirs:.{digits}f}", f"{mine:.{digits}f}", benchlib.ratio(mine, theirs)]
    return tuple(cells)


@dataclass(frozen=True, slots=True)
class Row:
    """One size, table and number of senders, every receiver's figures (rule 4)."""

    size: int
    shape: str
    peers: int
    family: str
    results: dict[str, Figures]

    @property
    def label(self) -> str:
        family = " IPv6" if self.family == "ipv6" else ""
        senders = f" x {self.peers} peers" if self.peers > 1 else ""
        return f"{self.size:,}{family} {self.shape}{senders}"


def markdown(rows: list[Row], kinds: list[str]) -> list[str]:
    """The README's table: per size and table, bgpd's figures, then each reference's with
    bgpd / reference beside every figure."""
    lines = [
        "| prefixes, table | receiver | into the kernel | peak RSS | CPU | withdrawal | its CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ours = row.results["bgpd"]
        for kind in kinds:
            figures = row.results[kind]
            cells = []
            for theirs, mine, unit, digits in (
                (figures.seconds, ours.seconds, "s", 2),
                (figures.mib, ours.mib, "MiB", 0),
                (figures.cpu, ours.cpu, "s", 2),
                (figures.withdraw_seconds, ours.withdraw_seconds, "s", 2),
                (figures.withdraw_cpu, ours.withdraw_cpu, "s", 2),
            ):
                if theirs is None or mine is None:
                    cells.append("-")
                elif unit == "s" and theirs is figures.withdraw_seconds and figures.withdraw_left:
                    cells.append(f"{figures.withdraw_note} (< {benchlib.ratio(mine, theirs)})")
                elif kind == "bgpd":
                    cells.append(f"**{theirs:.{digits}f} {unit}**")
                else:
                    cells.append(f"{theirs:.{digits}f} {unit} ({benchlib.ratio(mine, theirs)})")
            label = "bgpd" if kind == "bgpd" else LABELS[kind]
            first = row.label if kind == kinds[0] else ""
            lines.append(f"| {first} | {label} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sender", choices=SENDERS, default="line-rate")
    parser.add_argument("--table", default="single,full", help="line-rate: single, full or both")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--receivers", default=",".join(RECEIVERS))
    parser.add_argument("--family", choices=sorted(tables.FAMILIES), default="ipv4")
    parser.add_argument(
        "--peers", default="1", help="line-rate: senders of the same table at once, e.g. 1,4"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--profile", type=Path, help="py-spy bgpd into this file (collapsed stacks)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    kinds = [k for k in args.receivers.split(",") if k]
    if "bgpd" not in kinds:
        raise SystemExit("bgpd must be among the receivers")
    shapes = [t for t in args.table.split(",") if t]
    if args.sender == "gobgp":
        shapes = ["single"]  # GoBGP's MRT injection carries one attribute set
    unknown = sorted(set(shapes) - set(tables.SHAPES))
    if unknown:
        raise SystemExit(f"unknown table {', '.join(unknown)}: choose from {tables.SHAPES}")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    peer_counts = [int(n) for n in args.peers.split(",") if n]
    if args.sender == "gobgp" and (peer_counts != [1] or args.family != "ipv4"):
        raise SystemExit("--sender gobgp: one sender, IPv4")
    if not peer_counts or min(peer_counts) < 1 or max(peer_counts) > MAX_PEERS:
        raise SystemExit(f"--peers: 1 to {MAX_PEERS} senders")
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    print(f"# machine: {benchlib.machine()}; load {benchlib.loadavg()}", flush=True)
    print(f"# sender: {args.sender}; {args.family}", flush=True)
    rows: list[Row] = []

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        for size in sizes:
            for peers, shape in product(peer_counts, shapes):
                row = f"{size}-{shape}-{peers}"
                say(f"# {size:,} prefixes, {shape} table, {peers} sender(s)")
                if args.sender == "gobgp":
                    results = run_gobgp(size, kinds, work / row, say, args.profile)
                else:
                    results = run_line_rate(
                        size, shape, peers, args.family, kinds, work / row, say, args.profile
                    )
                rows.append(Row(size, shape, peers, args.family, results))
            print(f"# load average after {size:,}: {benchlib.loadavg()}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    table = benchlib.Table(
        [
            ("prefixes", 9),
            ("table", 6),
            ("peers", 5),
            ("reference", 9),
            ("ref s", 7),
            ("bgpd s", 7),
            ("x", 6),
            ("ref MiB", 7),
            ("bgpd MiB", 8),
            ("x", 6),
            ("ref CPU", 7),
            ("bgpd CPU", 8),
            ("x", 6),
            ("ref wd s", 8),
            ("bgpd wd s", 9),
            ("x", 6),
            ("ref wd CPU", 10),
            ("bgpd wd CPU", 11),
            ("x", 6),
        ]
    )
    for row in rows:
        ours = row.results["bgpd"]
        for kind in kinds:
            if kind != "bgpd":
                figures = ratio_row(LABELS[kind], ours, row.results[kind])
                table.row(f"{row.size:,}", row.shape, row.peers, *figures)
    print(
        "# x: bgpd / reference; wd: full withdrawal, from the sender's command to an empty "
        f"kernel; load average at the end: {benchlib.loadavg()}"
    )
    print()
    for line in markdown(rows, kinds):
        print(line)
    if args.profile is not None and args.profile.exists():
        benchlib.print_profile(args.profile)


if __name__ == "__main__":
    main()
