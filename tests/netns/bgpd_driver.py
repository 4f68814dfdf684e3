"""Our whole daemon (``python3 -m bgpd run``) in a network namespace, for real-router tests.

Rules:
1. The daemon reads a Calico datastore YAML that ``calico_datastore`` writes from plain values
   (one IPv4 pool, our Node, our blocks, BGPPeers by peerIP), so each test states its topology
   in a few lines. ``others`` adds the cluster's other nodes and turns the node-to-node mesh
   on; ``bgp_config`` and ``extra`` add BGPConfiguration fields and whole resources.
2. ``BgpdNode`` runs one daemon process in one namespace with a private control socket, no
   metrics listener (unless ``metrics_listen``) and JSON logs in its work directory; ``stop``
   sends SIGTERM (graceful: kernel routes stay, no NOTIFICATION) or SIGKILL, and a later
   ``start`` is a restart. ``datastore_text`` replaces the generated datastore.
3. What a routing test observes comes from outside the process: the kernel's ``proto bird``
   routes (``ip route show proto bird``) and the JSON log lines. Only tests of the operator
   surface itself use ``control_socket`` and ``bgpd`` (the CLI run in the namespace).
4. ``lan`` joins namespaces on one bridge so every speaker's next hop is directly connected.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from netns import Namespace, unique
from peer_drivers import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
POOL = "10.244.0.0/16"


@dataclass(frozen=True, slots=True)
class ExternalPeer:
    """A BGPPeer by peerIP for our node (calico-bgp.md §1.2.3)."""

    address: str
    asn: int
    keepalive_time: str | None = "3s"
    max_restart_time: str | None = None
    failure_detection_mode: str | None = None  # Calico Enterprise: BFDIfDirectlyConnected


@dataclass(frozen=True, slots=True)
class OurNode:
    """Our Node resource and what it owns."""

    name: str
    address: str  # with prefix length, e.g. "10.213.1.1/24"
    asn: int = 64512
    cluster_id: str | None = None  # spec.bgp.routeReflectorClusterID: we are a route reflector
    blocks: tuple[str, ...] = ()


def calico_datastore(
    node: OurNode,
    peers: tuple[ExternalPeer, ...],
    pool: str = POOL,
    *,
    others: tuple[OurNode, ...] = (),
    bgp_config: dict[str, Any] | None = None,
    extra: tuple[dict[str, Any], ...] = (),
) -> str:
    """The datastore YAML for ``node`` and its ``peers`` (rule 1): one no-encap pool; a
    node-to-node mesh with ``others`` when there are any."""
    config: dict[str, Any] = {
        "nodeToNodeMeshEnabled": bool(others),
        "asNumber": node.asn,
        "logSeverityScreen": "Info",
        **(bgp_config or {}),
    }
    resources: list[dict[str, Any]] = [
        calico_resource("BGPConfiguration", "default", config),
        calico_resource(
            "IPPool",
            "test-pool",
            {"cidr": pool, "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never"},
        ),
    ]
    for member in (node, *others):
        bgp: dict[str, Any] = {"ipv4Address": member.address}
        if member.cluster_id:
            bgp["routeReflectorClusterID"] = member.cluster_id
        if member.asn != node.asn:
            bgp["asNumber"] = member.asn
        resources.append(calico_resource("Node", member.name, {"bgp": bgp}))
    for index, peer in enumerate(peers):
        spec: dict[str, Any] = {"node": node.name, "peerIP": peer.address, "asNumber": peer.asn}
        if peer.keepalive_time:
            spec["keepaliveTime"] = peer.keepalive_time
        if peer.max_restart_time:
            spec["maxRestartTime"] = peer.max_restart_time
        if peer.failure_detection_mode:
            spec["failureDetectionMode"] = peer.failure_detection_mode
        resources.append(calico_resource("BGPPeer", f"peer-{index}", spec))
    for member in (node, *others):
        for block in member.blocks:
            name = f"{member.name}-{block.replace('.', '-').replace('/', '-')}"
            spec = {"node": member.name, "cidr": block, "state": "confirmed"}
            resources.append(calico_resource("BlockAffinity", name, spec))
    resources.extend(extra)
    return yaml.safe_dump_all(resources, sort_keys=False)


def calico_resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


@dataclass
class BgpdNode:
    """One ``bgpd run`` process in ``ns`` (rule 2)."""

    ns: Namespace
    node: OurNode
    peers: tuple[ExternalPeer, ...]
    workdir: Path
    metrics_listen: str = "none"
    datastore_text: str | None = None
    run_args: tuple[str, ...] = ()  # more ``bgpd run`` flags
    log_level: str | None = "debug"  # None: no --log-level (the datastore's level applies)
    env: dict[str, str] = field(default_factory=dict)  # more environment (KUBECONFIG, ...)
    kubernetes: bool = False  # DATASTORE_TYPE=kubernetes from ``env``: no datastore file
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    runs: int = field(default=0, init=False)

    @property
    def datastore(self) -> Path:
        return self.workdir / "datastore.yaml"

    @property
    def control_socket(self) -> Path:
        """The current run's control socket (the IPv4 view; ``bgpd-N6.ctl`` is the IPv6 one)."""
        return self.workdir / f"bgpd-{self.runs}.ctl"

    @property
    def log(self) -> Path:
        return self.workdir / "bgpd.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        datastore: tuple[str, ...] = ()
        if not self.kubernetes:
            text = self.datastore_text or calico_datastore(self.node, self.peers)
            self.datastore.write_text(text)
            datastore = ("--datastore", f"file:{self.datastore}")
        self.runs += 1
        self.proc = self.ns.popen(
            sys.executable,
            "-m",
            "bgpd",
            "run",
            "--node",
            self.node.name,
            *datastore,
            "--control-socket",
            str(self.control_socket),
            "--metrics-listen",
            self.metrics_listen,
            "--log-format",
            "json",
            *(("--log-level", self.log_level) if self.log_level else ()),
            *self.run_args,
            env={"PYTHONPATH": str(REPO_ROOT), **self.env},
            log=str(self.log),
        )
        wait_for(lambda: self._logged("starting"), 20, self.describe)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def bgpd(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """``bgpd ARGS --control-socket <ours>`` run in our namespace (rule 3)."""
        return self.ns.run(
            sys.executable,
            "-m",
            "bgpd",
            *args,
            "--control-socket",
            str(self.control_socket),
            check=check,
            timeout=30,
        )

    # -- what a test observes (rule 3) ----------------------------------------------------------

    def routes(self) -> dict[str, str]:
        """Our kernel routes: prefix -> the rest of its `ip route` line (via or blackhole)."""
        out = self.ns.ip("-4", "route", "show", "proto", "bird").stdout
        found: dict[str, str] = {}
        last = ""
        for line in out.splitlines():
            words = line.split()
            if not words:
                continue
            if line[0].isspace() and last:  # a multipath route's "nexthop via ..." lines
                found[last] += " " + line.strip()
                continue
            last = _network(
                words[1] if words[0] in ("blackhole", "unreachable", "prohibit") else words[0]
            )
            found[last] = line
        return found

    def next_hop(self, prefix: str) -> str | None:
        """The gateway of our kernel route for ``prefix`` (None: absent or not via a gateway)."""
        words = self.routes().get(prefix, "").split()
        return words[words.index("via") + 1] if "via" in words else None

    def events(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        out: list[dict[str, Any]] = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(line)
                if isinstance(value, dict):
                    out.append(value)
        return out

    def events_since_start(self) -> list[dict[str, Any]]:
        """The log lines of the current run (after its last ``starting`` line)."""
        events = self.events()
        starts = [i for i, e in enumerate(events) if e.get("event") == "starting"]
        return events[starts[-1] :] if starts else events

    def established_with(self, address: str) -> bool:
        """Whether, in the current run, the session with ``address`` is Established: the last
        state change of its primary connection says so, or the last of any connection does (a
        collision's winner, RFC 4271 §6.8). A losing second connection's fall to Idle after the
        primary came up does not count."""
        last_any = last_primary = None
        for event in self.events_since_start():
            if event.get("event") == "state change" and event.get("peer") == address:
                last_any = event.get("state")
                if event.get("connection", "primary") == "primary":
                    last_primary = last_any
        return "established" in (str(last_primary).lower(), str(last_any).lower())

    def session_down_logged(self, address: str) -> bool:
        """Whether the current run logged a session going down for ``address``."""
        return any(
            e.get("event") == "session down" and e.get("peer") == address
            for e in self.events_since_start()
        )

    def _logged(self, event: str) -> bool:
        return any(e.get("event") == event for e in self.events_since_start())

    def logged(self, event: str) -> bool:
        return self._logged(event)

    def describe(self) -> str:
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        try:
            routes = self.routes()
        except RuntimeError as error:
            routes = {"error": str(error)}
        alive = "running" if self.running else "stopped"
        return f"bgpd {alive}; kernel routes={routes}\nlog tail:\n{tail}"


def _network(text: str) -> str:
    return str(ipaddress.IPv4Network(text if "/" in text else f"{text}/32"))


@dataclass(frozen=True, slots=True)
class Member:
    ns: Namespace
    address: str  # without prefix length


def lan(hub: Namespace, members: list[Namespace], subnet: str) -> list[Member]:
    """One bridge in ``hub`` with ``hub`` first on it and every member after it (rule 4).
    Returns the addresses in order: hub, then each member."""
    net = ipaddress.IPv4Network(subnet)
    hosts = iter(net.hosts())
    bridge = "br0"
    hub.ip("link", "add", bridge, "type", "bridge")
    hub_address = next(hosts)
    hub.ip("addr", "add", f"{hub_address}/{net.prefixlen}", "dev", bridge)
    hub.ip("link", "set", bridge, "up")
    out = [Member(hub, str(hub_address))]
    for member in members:
        tag = unique("l")[-10:]
        hub_end, member_end = f"{tag}h", f"{tag}m"
        hub.ip("link", "add", hub_end, "type", "veth", "peer", "name", member_end)
        hub.ip("link", "set", member_end, "netns", member.name)
        hub.ip("link", "set", hub_end, "master", bridge)
        hub.ip("link", "set", hub_end, "up")
        address = next(hosts)
        member.ip("addr", "add", f"{address}/{net.prefixlen}", "dev", member_end)
        member.ip("link", "set", member_end, "up")
        out.append(Member(member, str(address)))
    return out


@dataclass
class RouteMonitor:
    """``ip monitor route`` in a namespace, recorded to a file: which routes were deleted."""

    ns: Namespace
    path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.proc = self.ns.popen("ip", "-4", "monitor", "route", log=str(self.path))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def deletions(self, prefix: str) -> list[str]:
        """Every ``Deleted`` line for ``prefix`` seen so far."""
        if not self.path.exists():
            return []
        return [
            line
            for line in self.path.read_text(errors="replace").splitlines()
            if line.startswith("Deleted ") and prefix in line.split()[1:3]
        ]
