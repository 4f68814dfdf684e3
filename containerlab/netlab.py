#!/usr/bin/env python3
"""netlab: realise containerlab topologies on plain network namespaces, without Docker.

Usage: ``python3 containerlab/netlab.py up|down|status|exec|demo FILE [...]`` (as root).

Rules:
1. One namespace per node (named as containerlab names the container, ``clab-<lab>-<node>``),
   one veth pair per link with the file's interface names and ``ipv4`` addresses, the node's
   ``sysctls``; then each node's daemon per its role (``lab_kinds``), in ``START_ORDER``,
   each waited for until ready; then every node's ``exec`` commands, in file order, run
   inside its namespace (split like containerlab does, no shell).
2. Levels, not edges: ``up`` creates only what is missing, starts only daemons that are not
   running and runs a node's ``exec`` only the first time its namespace is created, so ``up``
   twice is a no-op; ``down`` removes whatever exists and is a no-op when nothing does.
3. A failing or interrupted ``up`` (exception, Ctrl-C, SIGTERM) tears the whole lab down
   before exiting; so does ``demo`` unless ``--keep``.
4. Logs, pid files and each node's private file tree live under the state directory
   (``/run/netlab/<lab>`` unless ``--state-dir`` or ``NETLAB_STATE_DIR``).
5. Convergence (``demo``, tests): every BGP session of every speaker is Established and every
   bgpd node's kernel has a ``proto bird`` route for each block another Calico node announces
   (a bgpd node's own routes in ``bgpd show routes``; a BIRD node's blackholes), waited for
   with a progress display.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lab_netns  # noqa: E402
import lab_procs  # noqa: E402
from lab_kinds import START_ORDER, Bgpd, Role, Runtime, Session, role_for  # noqa: E402
from lab_topology import Lab, Node, load_lab  # noqa: E402
from lab_wait import Progress, wait  # noqa: E402

DEFAULT_STATE_BASE = Path(os.environ.get("NETLAB_STATE_DIR", "/run/netlab"))
SPEAKERS = ("bgpd", "bird", "bird2", "frr", "gobgp")
POD_LABEL = "netlab.pod-ip"
BIRD_PROTOCOL = "bird"


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node: str
    role: str
    namespace: bool
    daemons: tuple[tuple[str, bool], ...]
    sessions: tuple[Session, ...]

    @property
    def alive(self) -> bool:
        return self.namespace and all(up for _, up in self.daemons)


@dataclass(frozen=True, slots=True)
class KernelRoute:
    dst: str
    kind: str  # "unicast" or "blackhole"
    via: str


class Terminated(Exception):
    """SIGTERM arrived; handled like Ctrl-C (rule 3)."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class LabRunner:
    """Bring one lab up or down, report on it and run commands in it."""

    def __init__(self, lab: Lab, state_dir: Path | None = None, out: TextIO | None = None) -> None:
        self.lab = lab
        self.state_dir = state_dir or DEFAULT_STATE_BASE / lab.name
        self.out = out or sys.stdout

    # -- helpers -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def runtime(self, node: Node | str) -> Runtime:
        found = self.lab.node(node) if isinstance(node, str) else node
        return Runtime(found, self.state_dir)

    def role(self, node: Node | str) -> Role:
        return role_for(self.runtime(node))

    def _record_path(self) -> Path:
        return self.state_dir / "lab.json"

    def _record(self) -> dict[str, list[str]]:
        try:
            value = json.loads(self._record_path().read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"namespaces": [], "exec_done": []}
        return {"namespaces": list(value["namespaces"]), "exec_done": list(value["exec_done"])}

    def _save(self, record: dict[str, list[str]]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._record_path().write_text(json.dumps(record, indent=1))

    # -- up ------------------------------------------------------------------------------

    def up(self) -> bool:
        """Rule 1 and 2; rule 3 on failure. True when anything had to be done."""
        try:
            with sigterm_raises():
                return self._up()
        except BaseException:
            self.say(f"netlab: bringing {self.lab.name} up failed; tearing it down")
            self.down(quiet=True)
            raise

    def _up(self) -> bool:
        record = self._record()
        changed = False
        created: set[str] = set()
        for node in self.lab.nodes:
            if lab_netns.create(node.namespace):
                created.add(node.name)
                changed = True
            if node.namespace not in record["namespaces"]:
                record["namespaces"].append(node.namespace)
                self._save(record)
            self.runtime(node).home.mkdir(parents=True, exist_ok=True)
            for key, value in node.sysctls:
                lab_netns.sysctl(node.namespace, key, value)
        for link in self.lab.links:
            a, b = self.lab.node(link.a.node), self.lab.node(link.b.node)
            if lab_netns.veth(
                a.namespace, link.a.interface, b.namespace, link.b.interface, link.mtu
            ):
                changed = True
            for end, node, cidr in ((link.a, a, link.ipv4[0]), (link.b, b, link.ipv4[1])):
                if cidr:
                    lab_netns.add_address(node.namespace, end.interface, cidr)
        for node in self.lab.nodes:
            if node.role == "bridge":
                ports = [
                    end.interface
                    for link in self.lab.links_of(node.name)
                    for end in (link.a, link.b)
                    if end.node == node.name
                ]
                lab_netns.bridge(node.namespace, node.name[:15], ports)
        for role_name in START_ORDER:
            for node in self.lab.nodes:
                if node.role == role_name:
                    changed |= self._start(node)
        for node in self.lab.nodes:
            if node.name in record["exec_done"]:
                continue
            for command in node.exec_commands:
                lab_netns.exec_in(node.namespace, self.role(node).cli(shlex.split(command)))
            record["exec_done"].append(node.name)
            self._save(record)
            changed = True
        return changed

    def _start(self, node: Node) -> bool:
        role = self.role(node)
        daemons = role.daemons()
        if daemons and all(lab_procs.alive(d) for d in daemons):
            return False
        if not daemons:
            return False
        role.start()
        deadline = time.monotonic() + 20
        while not role.ready():
            dead = [d for d in role.daemons() if not lab_procs.alive(d)]
            if dead:
                raise RuntimeError(
                    f"node {node.name}: {dead[0].name} exited; log tail:\n"
                    + lab_procs.log_tail(dead[0])
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {node.name} ({role.name}) not ready after 20 s")
            time.sleep(0.1)
        return True

    # -- down ----------------------------------------------------------------------------

    def down(self, quiet: bool = False) -> bool:
        """Stop every daemon and delete every namespace of the lab (rule 2)."""
        changed = False
        record = self._record()
        for node in self.lab.nodes:
            role = self.role(node)
            for daemon in reversed(role.daemons()):
                changed |= lab_procs.stop(daemon)
            role.cleanup()
        namespaces = {node.namespace for node in self.lab.nodes} | set(record["namespaces"])
        for namespace in sorted(namespaces):
            changed |= lab_netns.delete(namespace)
        if self.state_dir.exists():
            import shutil

            shutil.rmtree(self.state_dir, ignore_errors=True)
        if changed and not quiet:
            self.say(f"netlab: {self.lab.name} is down")
        return changed

    def restart(self, node: str) -> None:
        """Start the node's daemons again if they are not running (after ``stop_daemons``)."""
        self._start(self.lab.node(node))

    def stop_daemons(self, node: str, kill: bool = False) -> None:
        """Stop (SIGTERM) or kill (SIGKILL, a crash) one node's daemons."""
        for daemon in reversed(self.role(node).daemons()):
            (lab_procs.kill if kill else lab_procs.stop)(daemon)

    # -- status --------------------------------------------------------------------------

    def status(self) -> list[NodeStatus]:
        found = []
        for node in self.lab.nodes:
            role = self.role(node)
            exists = lab_netns.exists(node.namespace)
            daemons = tuple((d.name, lab_procs.alive(d)) for d in role.daemons())
            sessions = tuple(role.sessions()) if exists and all(a for _, a in daemons) else ()
            found.append(NodeStatus(node.name, node.role, exists, daemons, sessions))
        return found

    def is_up(self) -> bool:
        return all(s.alive for s in self.status())

    def exec(
        self, node: str, argv: Sequence[str], check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        found = self.lab.node(node)
        command = self.role(found).cli(list(argv))
        return lab_netns.exec_in(found.namespace, command, check=check, timeout=timeout)

    def kernel_routes(self, node: str, protocol: str = BIRD_PROTOCOL) -> list[KernelRoute]:
        out = self.exec(node, ["ip", "-j", "route", "show", "proto", protocol]).stdout
        try:
            entries = json.loads(out or "[]")
        except json.JSONDecodeError:
            return []
        routes = []
        for entry in entries:
            via = entry.get("gateway") or ",".join(
                str(h.get("gateway")) for h in entry.get("nexthops", [])
            )
            routes.append(KernelRoute(entry["dst"], entry.get("type", "unicast"), via or ""))
        return routes

    def speakers(self) -> list[Node]:
        return [n for n in self.lab.nodes if n.role in SPEAKERS]

    def pods(self) -> list[tuple[Node, str]]:
        return [
            (n, dict(n.labels)[POD_LABEL]) for n in self.lab.nodes if POD_LABEL in dict(n.labels)
        ]

    # -- convergence (rule 5) --------------------------------------------------------------

    def session_progress(self) -> Progress:
        total = done = 0
        missing: list[str] = []
        for node in self.speakers():
            sessions = self.role(node).sessions()
            if not sessions:
                total += 1
                missing.append(f"{node.name}: no sessions yet")
                continue
            for session in sessions:
                total += 1
                if session.established:
                    done += 1
                else:
                    missing.append(f"{node.name}/{session.name}={session.state}")
        return Progress(done, total, "; ".join(missing[:6]))

    def blocks(self) -> dict[str, set[str]]:
        """Per Calico node: the blocks it announces (rule 5)."""
        found: dict[str, set[str]] = {}
        for node in self.lab.nodes:
            role = self.role(node)
            if isinstance(role, Bgpd):
                found[node.name] = role.originated()
            elif node.role == "bird":
                found[node.name] = {
                    r.dst for r in self.kernel_routes(node.name) if r.kind == "blackhole"
                }
        return found

    def route_progress(self) -> Progress:
        own = self.blocks()
        total = done = 0
        missing: list[str] = []
        for node in self.lab.nodes:
            if node.role != "bgpd":
                continue
            if not own.get(node.name):
                total += 1
                missing.append(f"{node.name}: announces no block yet")
                continue
            learned = {r.dst for r in self.kernel_routes(node.name) if r.kind != "blackhole"}
            for other, blocks in own.items():
                if other == node.name:
                    continue
                for block in blocks:
                    total += 1
                    if block in learned:
                        done += 1
                    else:
                        missing.append(f"{node.name} lacks {block}")
        return Progress(done, total, "; ".join(missing[:6]))

    def wait_converged(self, timeout: float = 60, quiet: bool = False) -> None:
        wait("sessions Established", self.session_progress, timeout, stream=self.out, quiet=quiet)
        wait("routes in kernels", self.route_progress, timeout, stream=self.out, quiet=quiet)

    # -- printing ------------------------------------------------------------------------

    def print_status(self) -> None:
        for st in self.status():
            daemons = ", ".join(f"{n}={'up' if a else 'DOWN'}" for n, a in st.daemons) or "-"
            state = "up" if st.namespace else "absent"
            self.say(f"{st.node:<10} {st.role:<6} netns={state:<6} daemons: {daemons}")
            for session in st.sessions:
                self.say(f"    {session.name:<24} {session.state}")

    def print_node_report(self, node: Node) -> None:
        role = self.role(node)
        self.say(f"== {node.name} ({node.role}, netns {node.namespace})")
        for session in role.sessions():
            self.say(f"   session {session.name:<22} {session.state}")
        routes = self.exec(node.name, ["ip", "route", "show", "proto", BIRD_PROTOCOL]).stdout
        self.say("   ip route show proto bird:")
        for line in routes.splitlines() or ["(none)"]:
            self.say(f"     {line}")


def ping(runner: LabRunner, source: Node, target_ip: str, count: int = 3) -> tuple[bool, str]:
    result = runner.exec(
        source.name, ["ping", "-c", str(count), "-i", "0.2", "-W", "2", target_ip], timeout=30
    )
    summary = [line for line in result.stdout.splitlines() if "packet loss" in line]
    return result.returncode == 0, summary[0] if summary else result.stdout.strip()


def demo(runner: LabRunner, keep: bool, timeout: float = 90) -> int:
    """Bring the lab up, wait for convergence, show sessions, routes and pings (rule 3)."""
    started = time.monotonic()
    lab = runner.lab
    try:
        with sigterm_raises():
            runner.say(f"netlab demo: {lab.name} ({len(lab.nodes)} nodes, {len(lab.links)} links)")
            runner.up()
            runner.say(f"  up in {time.monotonic() - started:.1f}s; waiting for convergence")
            runner.wait_converged(timeout)
            for node in runner.speakers():
                runner.print_node_report(node)
            pods = runner.pods()
            failures = 0
            for source, _ in pods[:1]:
                for target, address in pods[1:]:
                    ok, summary = ping(runner, source, address)
                    failures += 0 if ok else 1
                    runner.say(f"== ping {source.name} -> {target.name} ({address}): {summary}")
            runner.say(
                f"netlab demo: converged and checked in {time.monotonic() - started:.1f}s"
                + ("" if not failures else f"; {failures} ping(s) FAILED")
            )
            if keep:
                runner.say(
                    "  kept up; inspect with: python3 containerlab/netlab.py status FILE; "
                    "tear down with: python3 containerlab/netlab.py down FILE"
                )
            return 1 if failures else 0
    except BaseException:
        keep = False
        raise
    finally:
        if not keep:
            runner.down()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netlab", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, help="state directory (default /run/netlab/LAB)")
    parser.add_argument("--name", help="override the lab name (containerlab's --name)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status"):
        sub.add_parser(name).add_argument("file", type=Path)
    run = sub.add_parser("exec", help="run a command inside a node's namespace")
    run.add_argument("file", type=Path)
    run.add_argument("node")
    run.add_argument("argv", nargs=argparse.REMAINDER)
    show = sub.add_parser("demo", help="up, converge, report, ping, down")
    show.add_argument("file", type=Path)
    show.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    show.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    runner = LabRunner(load_lab(args.file, args.name), args.state_dir)
    try:
        if args.command == "up":
            if runner.up():
                runner.say(f"netlab: {runner.lab.name} is up")
            else:
                runner.say(f"netlab: {runner.lab.name} was already up")
            return 0
        if args.command == "down":
            if not runner.down():
                runner.say(f"netlab: {runner.lab.name} was not up")
            return 0
        if args.command == "status":
            runner.print_status()
            return 0 if runner.is_up() else 3
        if args.command == "exec":
            command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            result = runner.exec(args.node, command, timeout=3600)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.returncode
        return demo(runner, args.keep, args.timeout)
    except (KeyboardInterrupt, Terminated):
        runner.say("netlab: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
