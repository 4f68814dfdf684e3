"""Repeated restarts of bgpd against a graceful-restart-capable feeder (issue 20 points 6 and 7).

Rules:
1. bgpd (``python -m bgpd run``, file datastore, one eBGP BGPPeer) runs in one namespace; the
   feeder runs in a second one. ``--feeder sim`` is a simulated speaker built on bgpd's codec:
   on every connection it sends its OPEN (Multiprotocol IPv4, 4-octet AS, Graceful Restart with
   the F bit for IPv4, RFC 4724 §3), its whole table as UPDATEs and End-of-RIB, then KEEPALIVEs.
   ``--feeder gobgp`` is a real GoBGP with graceful restart on for IPv4 unicast, preloaded once
   by ``gobgp mrt inject`` (``e2e_ingest.Sender``: the pad it needs stays out by export policy)
   and sending the table on every new session, as the issue's reporter ran it.
2. ``ingest``: per run, bgpd starts with an empty kernel, is killed (``--signal`` TERM or KILL)
   a random 0 to ``--kill-within`` seconds after the first of the ``--routes`` /24s (in whatever
   order the feeder sends them) reached the kernel (100k routes reach it within about 2 s), and
   starts again; the run has converged when the kernel holds exactly the table (no route
   missing, none stale) and bgpd's log says the selection deferral ended. Limit ``--limit``
   seconds.
3. ``loop``: bgpd is restarted (SIGTERM) every ``--every`` seconds for ``--for`` seconds with a
   10-route table; an ``ip monitor route`` in its namespace records every deletion of one of
   those routes. A run passes when none was deleted.
4. Every run is reported on one line; a tally ends the output.

Usage: python3 bench/restart_ingest.py ingest --runs 20 --signal TERM|KILL [--feeder gobgp]
       python3 bench/restart_ingest.py loop --runs 3 [--every 3 --for 60] [--feeder gobgp]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import benchlib  # noqa: F401  (puts tests/netns on sys.path)
from bgpd_driver import BgpdNode, ExternalPeer, OurNode
from e2e_ingest import Sender, write_mrt
from netns import Namespace, inside, veth
from peer_drivers import PeerSpec

from bgpd.wire.capabilities import FourOctetAs, GracefulRestart, Multiprotocol
from bgpd.wire.codec import encode_message
from bgpd.wire.constants import HEADER_LEN
from bgpd.wire.messages import Keepalive, Open
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, AsPathSegment, PathAttributes, prefix_from_str
from bgpd.wire.update import encode_end_of_rib, encode_updates

SUBNET = "10.98.0.0/30"
OUR_AS, FEEDER_AS = 64512, 65001
FIRST = int(ipaddress.IPv4Address("16.0.0.0"))
AS_SEQUENCE = 2
TABLE_SPAN = "16.0.0.0/4"  # every table route; GoBGP sends them in no particular order


def table(count: int) -> list[str]:
    return [f"{ipaddress.IPv4Address(FIRST + (i << 8))}/24" for i in range(count)]


class Feeder:
    """Rule 1: the table to every connection, in a thread with its own event loop."""

    def __init__(self, ns: Namespace, address: str, prefixes: list[str]) -> None:
        self.address = address
        self.prefixes = [prefix_from_str(p) for p in prefixes]
        with inside(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 179))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(asyncio.start_server(self._session, sock=self.sock))
        self.loop.run_forever()

    def _messages(self) -> list[bytes]:
        attrs = PathAttributes(
            origin=0,
            as_path=(AsPathSegment(AS_SEQUENCE, (FEEDER_AS,)),),
            next_hop=ipaddress.IPv4Address(self.address).packed,
        )
        negotiated = Negotiated()
        updates = encode_updates(IPV4_UNICAST, attrs, self.prefixes, negotiated)
        return [*updates, encode_end_of_rib(IPV4_UNICAST)]

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        capabilities = (
            Multiprotocol(IPV4_UNICAST),
            FourOctetAs(FEEDER_AS),
            GracefulRestart(restart_time=120, families=((IPV4_UNICAST, 0x80),)),
        )
        bgp_id = int(ipaddress.IPv4Address(self.address))
        try:
            writer.write(encode_message(Open(FEEDER_AS, 9, bgp_id, capabilities)))
            writer.write(encode_message(Keepalive()))
            header = await reader.readexactly(HEADER_LEN)  # bgpd's OPEN
            await reader.readexactly(struct.unpack_from("!H", header, 16)[0] - HEADER_LEN)
            for message in self._messages():
                writer.write(message)
                await writer.drain()
            while True:
                await asyncio.sleep(3)
                writer.write(encode_message(Keepalive()))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        """Stop listening; the daemon thread's sessions end with the process."""
        self.loop.call_soon_threadsafe(self.sock.close)


class GoBgpFeeder(Sender):
    """Rule 1, ``--feeder gobgp``: GoBGP with RFC 4724 graceful restart for IPv4 unicast."""

    def config(self) -> str:
        return (
            super()
            .config()
            .replace(
                "  [[neighbors.afi-safis]]\n",
                "  [neighbors.graceful-restart.config]\n"
                "    enabled = true\n"
                "    restart-time = 120\n"
                "  [[neighbors.afi-safis]]\n",
            )
            .replace(
                '      afi-safi-name = "ipv4-unicast"\n',
                '      afi-safi-name = "ipv4-unicast"\n'
                "    [neighbors.afi-safis.mp-graceful-restart.config]\n"
                "      enabled = true\n",
            )
        )

    def close(self) -> None:
        self.stop(signal.SIGKILL)


def gobgp_feeder(ns: Namespace, address: str, ours: str, count: int, work: Path) -> GoBgpFeeder:
    spec = PeerSpec(FEEDER_AS, OUR_AS, address, address, ours, 90, 30, routes=())
    feeder = GoBgpFeeder(ns, spec, work / "gobgp", [ours])
    feeder.start()
    mrt = work / "table.mrt"
    write_mrt(mrt, count, address)
    print(f"# GoBGP loaded {count} routes in {feeder.load(mrt, count):.1f} s", flush=True)
    mrt.unlink()
    return feeder


def kernel_prefixes(ns: Namespace) -> set[str]:
    out = ns.ip("-4", "route", "show", "proto", "bird").stdout
    return {
        line.split()[1] if line.startswith("blackhole") else line.split()[0]
        for line in out.splitlines()
        if line and not line[0].isspace()
    }


def lab(
    work: Path, prefixes: list[str], kind: str
) -> tuple[Namespace, Namespace, BgpdNode, Feeder | GoBgpFeeder]:
    ours, theirs = Namespace.create("hR-d"), Namespace.create("hR-f")
    link = veth(ours, theirs, SUBNET)
    us, feeder_address = str(link.a_addr.ip), str(link.b_addr.ip)
    feeder: Feeder | GoBgpFeeder
    if kind == "gobgp":
        feeder = gobgp_feeder(theirs, feeder_address, us, len(prefixes), work)
    else:
        feeder = Feeder(theirs, feeder_address, prefixes)
    node = BgpdNode(
        ours,
        OurNode("node-a", f"{us}/30", OUR_AS),
        (ExternalPeer(feeder_address, FEEDER_AS),),
        work / "bgpd",
    )
    return ours, theirs, node, feeder


def ingest(args: argparse.Namespace, work: Path) -> list[bool]:
    prefixes = table(args.routes)
    wanted = set(prefixes)
    sig = signal.Signals[f"SIG{args.signal}"]
    ours, theirs, node, feeder = lab(work, prefixes, args.feeder)
    results: list[bool] = []
    try:
        for run in range(1, args.runs + 1):
            ours.ip("route", "flush", "proto", "bird", check=False)
            node.start()
            deadline = time.monotonic() + 120
            while not ours.ip("route", "show", "root", TABLE_SPAN, "proto", "bird").stdout:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            time.sleep(random.uniform(0.0, args.kill_within))
            node.stop(sig)
            at_kill = len(kernel_prefixes(ours))
            started = time.monotonic()
            node.start()
            converged = False
            have: set[str] = set()
            while time.monotonic() - started < args.limit:
                have = kernel_prefixes(ours)
                if wanted <= have and node.logged("routing converged after restart"):
                    converged = not (have - wanted - {"10.244.0.0/26"})
                    if converged:
                        break
                time.sleep(0.5)
            seconds = time.monotonic() - started
            missing, stale = len(wanted - have), len(have - wanted)
            results.append(converged)
            print(
                f"ingest SIG{args.signal} run {run:2d}: killed at {at_kill:6d} routes; "
                f"converged={'yes' if converged else 'NO'} in {seconds:5.1f} s; "
                f"missing={missing} stale={stale}",
                flush=True,
            )
            node.stop(signal.SIGKILL)
    finally:
        node.stop(signal.SIGKILL)
        feeder.close()
        theirs.delete()
        ours.delete()
    return results


def loop(args: argparse.Namespace, work: Path) -> list[bool]:
    prefixes = table(10)
    ours, theirs, node, feeder = lab(work, prefixes, args.feeder)
    results: list[bool] = []
    try:
        for run in range(1, args.runs + 1):
            ours.ip("route", "flush", "proto", "bird", check=False)
            node.start()
            deadline = time.monotonic() + 30
            while not set(prefixes) <= kernel_prefixes(ours) and time.monotonic() < deadline:
                time.sleep(0.1)
            monitor_log = work / f"monitor-{run}.log"
            monitor = subprocess.Popen(
                ["ip", "-n", ours.name, "monitor", "route"],
                stdout=monitor_log.open("w"),
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
            restarts = 0
            until = time.monotonic() + args.duration
            while time.monotonic() < until:
                time.sleep(args.every)
                node.stop(signal.SIGTERM)
                node.start()
                restarts += 1
            time.sleep(args.every)
            monitor.terminate()
            monitor.wait(5)
            deleted = sorted(
                {
                    line.split()[1]
                    for line in monitor_log.read_text().splitlines()
                    if line.startswith("Deleted") and line.split()[1] in prefixes
                }
            )
            held = set(prefixes) <= kernel_prefixes(ours)
            results.append(not deleted and held)
            print(
                f"loop run {run:2d}: {restarts} restarts; routes deleted={len(deleted)} "
                f"{deleted[:3]}; all held at the end={'yes' if held else 'NO'}",
                flush=True,
            )
            node.stop(signal.SIGKILL)
    finally:
        node.stop(signal.SIGKILL)
        feeder.close()
        theirs.delete()
        ours.delete()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=("ingest", "loop"))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--signal", choices=("TERM", "KILL"), default="TERM")
    parser.add_argument("--feeder", choices=("sim", "gobgp"), default="sim")
    parser.add_argument("--routes", type=int, default=100_000)
    parser.add_argument("--limit", type=float, default=120.0)
    parser.add_argument("--kill-within", type=float, default=1.0)
    parser.add_argument("--every", type=float, default=3.0)
    parser.add_argument("--for", dest="duration", type=float, default=60.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    work = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    try:
        results = ingest(args, work) if args.case == "ingest" else loop(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"# {args.case} ({args.feeder}): {sum(results)} of {len(results)} runs passed")


if __name__ == "__main__":
    main()
