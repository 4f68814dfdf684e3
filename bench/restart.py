"""Benchmark: packets lost while bgpd restarts gracefully, and how long a dead peer takes to notice.

Rules:
1. The lab is containerlab's ``mesh3`` (three bgpd nodes, full iBGP mesh, one pod per node,
   embedded datastore), brought up by containerlab's netns runner as ``hCrst`` with a private
   state directory and torn down at the end, also on failure or interrupt.
2. Graceful restart: pod1 pings pod2 about every 10 ms while one node's bgpd is
   stopped with SIGTERM (a graceful stop: its kernel routes stay and it sends no NOTIFICATION,
   so its peers keep its routes as stale, RFC 4724 §4.2), left down for ``--down`` seconds and
   started again; the ping runs on until the node's sessions are Established again plus two
   seconds. Lost = transmitted - received, from ping's own summary. Each node in
   ``--restart`` is restarted in turn (node1 carries pod1, so its restart exercises the
   restarting speaker's forwarding state; node2 carries pod2 and exercises the helpers').
   iputils ping turns ``-i 0.01`` into one packet per ~16 ms on this kernel, so it is given
   ``PING_INTERVAL`` (0.009 s, ~9 ms measured); the table prints the achieved spacing.
3. Dead peer: node2's bgpd is frozen with SIGSTOP (its TCP connections stay open and silent,
   so only the hold timer can notice, RFC 4271 §6.5) and node1's session to node2 is polled
   every 0.2 s until it leaves Established; then node2 is resumed with SIGCONT. The expected
   value is between hold time - keepalive interval and the hold time (defaults 240 s and 80 s,
   BIRD's, as Calico runs it).
4. One table per part; the restart target is zero packets lost.

Usage: python3 bench/restart.py [--restart node1,node2] [--down 1.0] [--skip-dead-peer]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable

import benchlib
import lab_procs
from netlab import LabRunner

from bgpd.calico.sessions import BIRD_HOLD_TIME

LAB_FILE = benchlib.REPO_ROOT / "containerlab" / "mesh3.clab.yml"
LAB_NAME = "hCrst"
NODE_ADDRESS = {"node1": "10.0.0.1", "node2": "10.0.0.2", "node3": "10.0.0.3"}
POD2 = "10.244.2.2"
PING_INTERVAL = "0.009"
DEFAULT_HOLD = BIRD_HOLD_TIME


def session_state(runner: LabRunner, node: str, peer_address: str) -> str:
    """The state of ``node``'s session whose name mentions ``peer_address``."""
    tag = peer_address.replace(".", "_")
    for session in runner.role(node).sessions():
        if tag in session.name or peer_address in session.name:
            return session.state
    return "absent"


def all_established(runner: LabRunner, node: str) -> bool:
    sessions = runner.role(node).sessions()
    return len(sessions) >= 2 and all(s.established for s in sessions)


def wait(predicate: Callable[[], bool], timeout: float, interval: float, what: str) -> float:
    """Poll ``predicate`` until true; the time it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} not reached after {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def graceful_restart(runner: LabRunner, node: str, down: float) -> tuple[int, int, float, float]:
    """(transmitted, received, seconds until the node's sessions are back, seconds pinged)."""
    pod1 = runner.lab.node("pod1").namespace
    ping = subprocess.Popen(
        ["ip", "netns", "exec", pod1, "ping", "-q", "-i", PING_INTERVAL, "-W", "1", POD2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    began = time.monotonic()
    try:
        time.sleep(2.0)
        stopped = time.monotonic()
        runner.stop_daemons(node)
        time.sleep(down)
        runner.restart(node)
        wait(lambda: all_established(runner, node), 120, 0.1, f"{node} sessions Established")
        back = time.monotonic() - stopped
        time.sleep(2.0)
    finally:
        ping.send_signal(signal.SIGINT)
        out, _ = ping.communicate(timeout=10)
        pinged = time.monotonic() - began
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    if not match:
        raise RuntimeError(f"no ping summary in: {out!r}")
    return int(match.group(1)), int(match.group(2)), back, pinged


def dead_peer(runner: LabRunner) -> float:
    """Seconds from freezing node2's bgpd until node1's session to it is down (rule 3)."""
    daemon = runner.runtime("node2").daemon("bgpd")
    pid = lab_procs.read_pid(daemon)
    if pid is None:
        raise RuntimeError("node2's bgpd is not running")
    os.kill(pid, signal.SIGSTOP)
    try:
        return wait(
            lambda: session_state(runner, "node1", NODE_ADDRESS["node2"]).lower() != "established",
            DEFAULT_HOLD * 2,
            0.2,
            "node1's session to node2 down",
        )
    finally:
        os.kill(pid, signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restart", default="node1,node2", help="nodes to restart, in turn")
    parser.add_argument("--down", type=float, default=1.0, help="seconds bgpd stays stopped")
    parser.add_argument("--skip-dead-peer", action="store_true")
    args = parser.parse_args()
    runner: LabRunner = benchlib.lab_runner(LAB_FILE, LAB_NAME, "bench-rst-")
    restarts: list[tuple[str, int, int, float, float]] = []
    detection: float | None = None
    try:
        runner.up()
        runner.wait_converged(120, quiet=True)
        for node in [n for n in args.restart.split(",") if n]:
            sent, received, back, pinged = graceful_restart(runner, node, args.down)
            restarts.append((node, sent, received, back, pinged))
            print(f"# {node}: {sent - received} of {sent} lost; back in {back:.1f} s", flush=True)
            runner.wait_converged(120, quiet=True)
        if not args.skip_dead_peer:
            detection = dead_peer(runner)
    finally:
        runner.down(quiet=True)
    print()
    table = benchlib.Table(
        [("restarted", 9), ("down s", 6), ("pings", 6), ("every ms", 8), ("lost", 5)]
        + [("sessions back s", 15), ("target", 10)]
    )
    for node, sent, received, back, pinged in restarts:
        lost = sent - received
        table.row(
            node,
            f"{args.down:.1f}",
            sent,
            f"{pinged * 1000 / max(sent, 1):.1f}",
            lost,
            f"{back:.1f}",
            "0 lost ok" if lost == 0 else "MISS",
        )
    if detection is not None:
        print()
        print(
            f"dead peer (SIGSTOP, default hold time {DEFAULT_HOLD} s, keepalive "
            f"{DEFAULT_HOLD // 3} s): detected after {detection:.1f} s"
        )
    print(f"# load average: {benchlib.loadavg()}")


if __name__ == "__main__":
    main()
