"""bgpd's BFD (bgpd/bfd, bgpd/net/bfd.py) against FRR's bfdd in a namespace pair.

Rules:
1. FRR's zebra and bfdd run in the peer namespace with a private path space, configured for a
   single-hop peer at our address (RFC 5881), 100 ms x 3 both ways; our ``BfdEndpoint`` runs in
   our namespace on an asyncio loop in this thread.
2. Both sides reach Up; freezing bfdd (SIGSTOP) takes our session Down with "Control Detection
   Time Expired"; thawing it brings the session back; closing our endpoint sends AdminDown and
   bfdd sees the session go down. Waits have generous deadlines; no timing is asserted, the
   measured detection time is printed.
3. Multihop (RFC 5883): bfdd two hops away behind the pair's peer namespace as a router, a
   ``multihop`` peer in bfdd and a multihop endpoint on our side (UDP 4784).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import Namespace, Pair, inside, veth
from peer_drivers import wait_for

from bgpd.bfd.fsm import StateChanged, Timers
from bgpd.bfd.packet import Diagnostic, SessionState
from bgpd.net.bfd import BfdEndpoint

pytestmark = pytest.mark.netns

FRR = Path("/usr/lib/frr")
FAST = Timers(desired_min_tx=100_000, required_min_rx=100_000, detect_mult=3)


class FrrBfd:
    """zebra + bfdd in ``ns`` (rule 1)."""

    def __init__(self, ns: Namespace, local: str, peer: str, multihop: bool = False) -> None:
        self.ns = ns
        self.multihop = multihop
        self.peer = peer
        self.run_dir = Path("/var/run/frr") / ns.name
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.local = local

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "zebra.conf").write_text("hostname peer\n")
        (self.run_dir / "bfdd.conf").write_text(
            "\n".join(
                [
                    "hostname peer",
                    "bfd",
                    f" peer {self.peer}{' multihop' if self.multihop else ''}"
                    f" local-address {self.local}",
                    "  detect-multiplier 3",
                    "  receive-interval 100",
                    "  transmit-interval 100",
                    "  no shutdown",
                    " exit",
                    "exit",
                    "",
                ]
            )
        )
        for path in (self.run_dir, self.run_dir / "zebra.conf", self.run_dir / "bfdd.conf"):
            shutil.chown(path, "frr", "frr")
        for daemon in ("zebra", "bfdd"):
            conf, pid = self.run_dir / f"{daemon}.conf", self.run_dir / f"{daemon}.pid"
            cmd = ["ip", "netns", "exec", self.ns.name, str(FRR / daemon), "-N", self.ns.name]
            cmd += ["-u", "frr", "-g", "frr", "-f", str(conf), "-i", str(pid)]
            self.procs[daemon] = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            vty = self.run_dir / f"{daemon}.vty"
            wait_for(vty.exists, 10, lambda d=daemon: f"{d} did not start")

    def status(self) -> str:
        out = self.ns.run("vtysh", "-N", self.ns.name, "-c", "show bfd peers json", check=False)
        try:
            peers = json.loads(out.stdout or "[]")
        except json.JSONDecodeError:
            return "unknown"
        found = [p for p in peers if p.get("peer") == self.peer]
        return str(found[0].get("status")) if found else "absent"

    def signal(self, sig: signal.Signals) -> None:
        pid = int((self.run_dir / "bfdd.pid").read_text())
        os.kill(pid, sig)

    def stop(self) -> None:
        for name in ("bfdd", "zebra"):
            pid_file = self.run_dir / f"{name}.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text()), signal.SIGCONT)
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for proc in self.procs.values():
            proc.wait(timeout=10)
        shutil.rmtree(self.run_dir, ignore_errors=True)


@pytest.fixture
def frr(pair: Pair) -> Iterator[FrrBfd]:
    if not (FRR / "bfdd").exists():
        pytest.skip("FRR's bfdd is not installed")
    daemon = FrrBfd(pair.peer, str(pair.peer_address), str(pair.our_address))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


async def _until(condition: object, timeout: float, what: str) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():  # type: ignore[operator]
        if loop.time() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
    return loop.time() - start


def test_a_session_with_frr_comes_up_detects_a_frozen_peer_and_goes_admin_down(
    pair: Pair, frr: FrrBfd
) -> None:
    changes: list[StateChanged] = []

    async def scenario() -> float:
        endpoint = BfdEndpoint(pair.our_address, lambda _peer, change: changes.append(change))
        await endpoint.start()
        try:
            session = endpoint.add_peer(ipaddress.IPv4Address(pair.peer_address), FAST)
            await _until(lambda: session.state is SessionState.UP, 30, "our session Up")
            await _until(lambda: frr.status() == "up", 30, "FRR's session up")
            await _until(  # both Poll Sequences from the slow rate completed
                lambda: (
                    session.transmit_interval() == pytest.approx(0.1)
                    and session.detection_time() == pytest.approx(0.3)
                ),
                30,
                "100 ms intervals",
            )
            frr.signal(signal.SIGSTOP)
            detected = await _until(
                lambda: session.state is SessionState.DOWN, 10, "our session Down"
            )
            assert changes[-1].diagnostic is Diagnostic.DETECTION_EXPIRED
            frr.signal(signal.SIGCONT)
            await _until(lambda: session.state is SessionState.UP, 30, "Up again")
            assert not endpoint.drops, dict(endpoint.drops)  # every packet of bfdd's was valid
        finally:
            await endpoint.close()
        await _until(lambda: frr.status() == "down", 30, "FRR's session down")
        return detected

    with inside(pair.us):
        detected = asyncio.run(scenario())
    print(f"frozen bfdd detected after {detected * 1000:.0f} ms (detection time 300 ms)")
    assert [c.new for c in changes if c.new is SessionState.UP][:2] == [SessionState.UP] * 2


def test_a_multihop_session_with_frr_behind_a_router(pair: Pair) -> None:
    """RFC 5883: bfdd two hops away (the pair's peer namespace routes), UDP 4784, TTL 254 on
    arrival; both sides come Up and a frozen bfdd is detected."""
    if not (FRR / "bfdd").exists():
        pytest.skip("FRR's bfdd is not installed")
    far = Namespace.create("hD-")
    pair.extra.append(far)
    link = veth(far, pair.peer, "10.219.2.0/30")
    pair.peer.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    pair.us.ip("route", "add", str(link.a_addr.network), "via", str(pair.peer_address))
    far.ip("route", "add", str(pair.link.a_addr.network), "via", str(link.b_addr.ip))
    daemon = FrrBfd(far, str(link.a_addr.ip), str(pair.our_address), multihop=True)
    daemon.start()

    async def scenario() -> None:
        endpoint = BfdEndpoint(pair.our_address, lambda _peer, _change: None, multihop=True)
        await endpoint.start()
        try:
            session = endpoint.add_peer(link.a_addr.ip, FAST)
            await _until(lambda: session.state is SessionState.UP, 30, "our session Up")
            await _until(lambda: daemon.status() == "up", 30, "FRR's session up")
            daemon.signal(signal.SIGSTOP)
            await _until(lambda: session.state is SessionState.DOWN, 10, "our session Down")
            daemon.signal(signal.SIGCONT)
            await _until(lambda: session.state is SessionState.UP, 30, "Up again")
            assert not endpoint.drops, dict(endpoint.drops)
        finally:
            await endpoint.close()

    try:
        with inside(pair.us):
            asyncio.run(scenario())
    finally:
        daemon.stop()
