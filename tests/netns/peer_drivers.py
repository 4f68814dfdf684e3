"""Drivers for real BGP speakers in network namespaces: BIRD 1.6, BIRD 2, FRR, GoBGP, ExaBGP.

One interface for all (GoBGP's ``test/lib/base.py`` idea): ``start``, ``stop``, ``established``,
``state``, ``received`` (prefixes the peer learned from us), ``disable``/``enable`` (an
administrative shutdown that sends a Cease), and ``describe`` for failure output.

Rules:
1. Each daemon runs in the namespace it is given, with its own config, control socket, pid
   file and log under a private work directory, so several can run at once.
2. Configs come from ``PeerSpec``; the peer originates ``spec.routes`` (static/blackhole or
   API-injected) and imports everything from us.
3. ``wait_for`` prints the last observed state on timeout.
4. ``spec.graceful_restart`` turns on RFC 4724 in the BIRD and FRR configs; ``stop(SIGKILL)``
   kills without a NOTIFICATION, as a crash does.
5. ``spec.bfd_interval`` (milliseconds) turns on BFD for the session (RFC 5882) in BIRD 2
   (``protocol bfd`` and ``bfd on``) and FRR (bfdd, a single-hop peer and ``neighbor ... bfd``),
   with that interval both ways and multiplier 3; ``freeze``/``thaw`` stop and continue every
   process of the daemon (SIGSTOP/SIGCONT).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netns import Namespace

BIRD2_ROOT = Path(os.environ.get("BIRD2", "/opt/bird2"))


@dataclass(frozen=True)
class PeerSpec:
    """The reference peer's side of one session."""

    local_as: int  # the peer's AS
    peer_as: int  # our AS, as the peer sees it
    router_id: str
    address: str  # the peer's own address
    neighbor: str  # our address
    hold_time: int = 6
    keepalive: int = 2
    passive: bool = False
    password: str | None = None
    routes: tuple[str, ...] = ("10.50.1.0/24", "10.50.2.0/24")
    connect_delay: int = 1
    graceful_restart: bool = False
    bfd_interval: int | None = None  # rule 5

    @property
    def internal(self) -> bool:
        return self.local_as == self.peer_as


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    describe: Callable[[], str] | None = None,
    interval: float = 0.25,
) -> None:
    """Poll ``predicate`` until true; on timeout raise with the last observed state."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > end:
            state = describe() if describe else "(no description)"
            raise AssertionError(f"timed out after {timeout} s; last state:\n{state}")
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], bool],
    timeout: float,
    describe: Callable[[], str] | None = None,
    interval: float = 0.25,
) -> None:
    """``wait_for`` for tests whose own speaker runs on the same event loop."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        if predicate():
            return
        if loop.time() > end:
            state = describe() if describe else "(no description)"
            raise AssertionError(f"timed out after {timeout} s; last state:\n{state}")
        await asyncio.sleep(interval)


class PeerDaemon(ABC):
    kind = "peer"

    def __init__(self, ns: Namespace, spec: PeerSpec, workdir: Path) -> None:
        self.ns = ns
        self.spec = spec
        self.dir = workdir / self.kind
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "daemon.log"
        self._procs: list[subprocess.Popen[bytes]] = []

    @classmethod
    def available(cls) -> bool:
        return True

    @abstractmethod
    def start(self) -> None: ...

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(3)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(3)
        self._procs.clear()

    def freeze(self, sig: signal.Signals = signal.SIGSTOP) -> None:
        """Rule 5: every process of the daemon stops (or, with SIGCONT, goes on)."""
        for proc in self._procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def thaw(self) -> None:
        self.freeze(signal.SIGCONT)

    @abstractmethod
    def state(self) -> str: ...

    def established(self) -> bool:
        return self.state().lower() == "established"

    @abstractmethod
    def received(self) -> set[str]: ...

    @abstractmethod
    def disable(self) -> None: ...

    @abstractmethod
    def enable(self) -> None: ...

    def describe(self) -> str:
        tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
        try:
            state, routes = self.state(), sorted(self.received())
        except Exception as error:  # noqa: BLE001 - description of a failure
            state, routes = f"unknown ({error!r})", []
        return f"{self.kind} state={state} received={routes}\nlog tail:\n{tail}"

    def _spawn(self, *cmd: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = self.ns.popen(*cmd, env=env, log=str(self.log))
        self._procs.append(proc)
        return proc


# ---- BIRD 1.6 and BIRD 2 ----


class Bird(PeerDaemon):
    """BIRD 1.6 (``bird``/``birdc``), the line Calico forks."""

    kind = "bird"
    binary = "bird"
    client = "birdc"
    protocol = "calico_peer"

    @classmethod
    def available(cls) -> bool:
        return shutil.which(cls.binary) is not None

    @property
    def socket(self) -> Path:
        return self.dir / "bird.ctl"

    def _timers(self) -> str:
        s = self.spec
        lines = [
            f"local {s.address} as {s.local_as};",
            f"neighbor {s.neighbor} as {s.peer_as};",
            f"hold time {s.hold_time};",
            f"keepalive time {s.keepalive};",
            "connect retry time 2;",
            f"connect delay time {s.connect_delay};",
            "error wait time 1,4;",
        ]
        if s.passive:
            lines.append("passive on;")
        if s.password:
            lines.append(f'password "{s.password}";')
        if s.graceful_restart:
            lines.append("graceful restart on;")
        if s.bfd_interval:
            lines.append("bfd on;")
        return "\n    ".join(lines)

    def config(self) -> str:
        s = self.spec
        routes = "\n    ".join(f"route {r} blackhole;" for r in s.routes)
        return f"""
router id {s.router_id};
log "{self.dir}/bird-proto.log" all;
protocol device {{ }}
protocol direct {{ interface "*"; }}
protocol static {{
    {routes}
}}
protocol bgp {self.protocol} {{
    {self._timers()}
    import all;
    export where source = RTS_STATIC;
}}
"""

    def start(self) -> None:
        conf = self.dir / "bird.conf"
        conf.write_text(self.config())
        self._spawn(
            self.binary,
            "-f",
            "-c",
            str(conf),
            "-s",
            str(self.socket),
            "-P",
            str(self.dir / "bird.pid"),
        )
        wait_for(self.socket.exists, 10, self.describe)

    def cli(self, *args: str) -> str:
        return self.ns.run(self.client, "-s", str(self.socket), *args, check=False).stdout

    def state(self) -> str:
        for line in self.cli("show", "protocols", self.protocol).splitlines():
            if line.startswith(self.protocol):
                parts = line.split()
                return (
                    parts[-1]
                    if parts[-1]
                    in ("Established", "Idle", "Active", "Connect", "OpenSent", "OpenConfirm")
                    else " ".join(parts[3:])
                )
        return "unknown"

    def received(self) -> set[str]:
        out = self.cli("show", "route", "protocol", self.protocol)
        found = set()
        for line in out.splitlines():
            first = line.split()[0] if line.split() else ""
            if "/" in first and first[0].isdigit():
                found.add(first)
        return found

    def disable(self) -> None:
        self.cli("disable", self.protocol)

    def enable(self) -> None:
        self.cli("enable", self.protocol)


class Bird2(Bird):
    """BIRD 2, unpacked beside BIRD 1.6 (it conflicts with the ``bird`` package)."""

    kind = "bird2"
    binary = str(BIRD2_ROOT / "usr/sbin/bird")
    client = str(BIRD2_ROOT / "usr/sbin/birdcl")

    @classmethod
    def available(cls) -> bool:
        return Path(cls.binary).exists()

    def config(self) -> str:
        s = self.spec
        routes = "\n    ".join(f"route {r} blackhole;" for r in s.routes)
        return f"""
router id {s.router_id};
log "{self.dir}/bird-proto.log" all;
protocol device {{ }}
protocol direct {{ ipv4; interface "*"; }}
protocol static {{
    ipv4;
    {routes}
}}
{self._bfd_protocol()}
protocol bgp {self.protocol} {{
    {self._timers()}
    ipv4 {{ import all; export where source = RTS_STATIC; add paths on; }};
}}
"""

    def _bfd_protocol(self) -> str:
        """Rule 5."""
        ms = self.spec.bfd_interval
        if not ms:
            return ""
        return (
            f'protocol bfd {{ interface "*" {{ min rx interval {ms} ms; '
            f"min tx interval {ms} ms; idle tx interval 1000 ms; multiplier 3; }}; }}"
        )


# ---- FRR ----


class Frr(PeerDaemon):
    """FRR zebra + bgpd with a private path space (``-N``), driven through vtysh."""

    kind = "frr"
    base = Path("/usr/lib/frr")

    @classmethod
    def available(cls) -> bool:
        return (cls.base / "bgpd").exists() and shutil.which("vtysh") is not None

    @property
    def pathspace(self) -> str:
        return self.ns.name

    def config(self) -> str:
        s = self.spec
        n = s.neighbor
        lines = [
            "frr defaults traditional",
            "hostname peer",
            f"router bgp {s.local_as}",
            f" bgp router-id {s.router_id}",
            " no bgp ebgp-requires-policy",
            " no bgp network import-check",
            # preserve-fw-state: the Forwarding State bit, without which a helper drops the
            # stale routes at once (RFC 4724 §4.2).
            *(
                (" bgp graceful-restart", " bgp graceful-restart preserve-fw-state")
                if s.graceful_restart
                else ()
            ),
            f" neighbor {n} remote-as {s.peer_as}",
            f" neighbor {n} timers {s.keepalive} {s.hold_time}",
            f" neighbor {n} timers connect 2",
            f" neighbor {n} update-source {s.address}",
            *((f" neighbor {n} bfd",) if s.bfd_interval else ()),
        ]
        if s.passive:
            lines.append(f" neighbor {n} passive")
        if s.password:
            lines.append(f" neighbor {n} password {s.password}")
        lines.append(" address-family ipv4 unicast")
        lines += [f"  network {r}" for r in s.routes]
        lines += [" exit-address-family", ""]
        return "\n".join(lines)

    @property
    def run_dir(self) -> Path:
        return Path("/var/run/frr") / self.pathspace

    def start(self) -> None:
        # FRR drops to the frr user: its configs, pid files and log live in its run directory.
        run_dir = self.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "zebra.conf").write_text("hostname peer\n")
        (run_dir / "bgpd.conf").write_text(self.config())
        for path in (run_dir, run_dir / "zebra.conf", run_dir / "bgpd.conf"):
            shutil.chown(path, "frr", "frr")
        common = ("-N", self.pathspace, "-u", "frr", "-g", "frr")
        self._spawn(
            str(self.base / "zebra"),
            *common,
            "-f",
            str(run_dir / "zebra.conf"),
            "-i",
            str(run_dir / "zebra.pid"),
        )
        wait_for(lambda: (run_dir / "zserv.api").exists(), 10, self.describe)
        if self.spec.bfd_interval:
            self._start_bfdd(common)
        self._spawn(
            str(self.base / "bgpd"),
            *common,
            "-f",
            str(run_dir / "bgpd.conf"),
            "-i",
            str(run_dir / "bgpd.pid"),
        )
        wait_for(lambda: (run_dir / "bgpd.vty").exists(), 10, self.describe)

    def _start_bfdd(self, common: tuple[str, ...]) -> None:
        """Rule 5: bfdd with the single-hop peer configured; bgpd's ``neighbor ... bfd`` uses
        that session."""
        s, run_dir = self.spec, self.run_dir
        ms = s.bfd_interval
        conf = run_dir / "bfdd.conf"
        conf.write_text(
            f"hostname peer\nlog file {run_dir}/bfdd.log debugging\ndebug bfd peer\n"
            f"bfd\n peer {s.neighbor} local-address {s.address}\n"
            f"  detect-multiplier 3\n  receive-interval {ms}\n  transmit-interval {ms}\n"
            "  no shutdown\n exit\nexit\n"
        )
        shutil.chown(conf, "frr", "frr")
        self._spawn(
            str(self.base / "bfdd"), *common, "-f", str(conf), "-i", str(run_dir / "bfdd.pid")
        )
        wait_for(lambda: (run_dir / "bfdd.vty").exists(), 10, self.describe)

    def bfd_status(self) -> str:
        """bfdd's state of the session with us ("up", "down", "absent")."""
        try:
            peers = json.loads(self.vtysh("show bfd peers json") or "[]")
        except json.JSONDecodeError:
            return "unknown"
        found = [p for p in peers if p.get("peer") == self.spec.neighbor]
        return str(found[0].get("status")) if found else "absent"

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        super().stop(sig)
        shutil.rmtree(Path("/var/run/frr") / self.pathspace, ignore_errors=True)

    def vtysh(self, *commands: str) -> str:
        args: list[str] = []
        for command in commands:
            args += ["-c", command]
        return self.ns.run("vtysh", "-N", self.pathspace, *args, check=False).stdout

    def _json(self, command: str) -> dict[str, object]:
        try:
            value = json.loads(self.vtysh(command) or "{}")
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    def state(self) -> str:
        data = self._json(f"show bgp neighbors {self.spec.neighbor} json")
        info = data.get(self.spec.neighbor)
        return str(info.get("bgpState", "unknown")) if isinstance(info, dict) else "unknown"

    def received(self) -> set[str]:
        data = self._json("show bgp ipv4 unicast json")
        routes = data.get("routes", {})
        found = set()
        if isinstance(routes, dict):
            for prefix, paths in routes.items():
                if any(p.get("peerId") == self.spec.neighbor for p in paths if isinstance(p, dict)):
                    found.add(prefix)
        return found

    def _neighbor(self, command: str) -> None:
        self.vtysh(
            "configure terminal",
            f"router bgp {self.spec.local_as}",
            f"{command}neighbor {self.spec.neighbor} shutdown",
        )

    def disable(self) -> None:
        self._neighbor("")

    def enable(self) -> None:
        self._neighbor("no ")


# ---- GoBGP ----


class GoBgp(PeerDaemon):
    """gobgpd with a private gRPC port on the namespace's loopback; the gobgp CLI for queries."""

    kind = "gobgp"
    api = "127.0.0.1:50051"

    @classmethod
    def available(cls) -> bool:
        return shutil.which("gobgpd") is not None and shutil.which("gobgp") is not None

    def config(self) -> str:
        s = self.spec
        passive = "true" if s.passive else "false"
        password = f'    auth-password = "{s.password}"\n' if s.password else ""
        return f"""[global.config]
  as = {s.local_as}
  router-id = "{s.router_id}"
  port = 179
  local-address-list = ["{s.address}"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{s.neighbor}"
    peer-as = {s.peer_as}
{password}  [neighbors.timers.config]
    hold-time = {s.hold_time}
    keepalive-interval = {s.keepalive}
    connect-retry = 2
    idle-hold-time-after-reset = 1
  [neighbors.transport.config]
    passive-mode = {passive}
    local-address = "{s.address}"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"""

    def start(self) -> None:
        conf = self.dir / "gobgpd.toml"
        conf.write_text(self.config())
        self._spawn(
            "gobgpd", "-f", str(conf), "--api-hosts", self.api, "-l", "warn", "--pprof-disable"
        )
        wait_for(lambda: self.cli("global").returncode == 0, 10, self.describe)
        for route in self.spec.routes:
            self.cli("global", "rib", "add", route, "-a", "ipv4", "nexthop", self.spec.address)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        host, port = self.api.split(":")
        return self.ns.run("gobgp", "-u", host, "-p", port, *args, check=False)

    def state(self) -> str:
        out = self.cli("-j", "neighbor", self.spec.neighbor).stdout
        try:
            data = json.loads(out)
        except json.JSONDecodeError:
            return "unknown"
        state = data.get("state", {}).get("session_state", "unknown")
        return str(state).lower()

    def established(self) -> bool:
        return self.state() in ("established", "6")

    def received(self) -> set[str]:
        out = self.cli("-j", "neighbor", self.spec.neighbor, "adj-in").stdout
        try:
            data = json.loads(out or "{}")
        except json.JSONDecodeError:
            return set()
        return set(data) if isinstance(data, dict) else set()

    def disable(self) -> None:
        self.cli("neighbor", self.spec.neighbor, "disable")

    def enable(self) -> None:
        self.cli("neighbor", self.spec.neighbor, "enable")


# ---- ExaBGP ----

_EXABGP_RECEIVER = """
import json, sys
out = open(sys.argv[1], "a", buffering=1)
for line in sys.stdin:
    out.write(line)
"""


class ExaBgp(PeerDaemon):
    """ExaBGP 5 with static routes and a JSON API process that logs what it receives."""

    kind = "exabgp"

    @classmethod
    def available(cls) -> bool:
        try:
            import exabgp  # noqa: F401
        except ImportError:
            return False
        return True

    @property
    def events(self) -> Path:
        return self.dir / "events.jsonl"

    def config(self) -> str:
        s = self.spec
        routes = "\n        ".join(f"route {r} next-hop {s.address};" for r in s.routes)
        passive = "    passive true;\n" if s.passive else ""
        md5 = f"    md5-password {s.password};\n" if s.password else ""
        return f"""process receive {{
    run {sys.executable} {self.dir / "receiver.py"} {self.events};
    encoder json;
}}
neighbor {s.neighbor} {{
    router-id {s.router_id};
    local-address {s.address};
    local-as {s.local_as};
    peer-as {s.peer_as};
    hold-time {s.hold_time};
{passive}{md5}    family {{ ipv4 unicast; }}
    static {{
        {routes}
    }}
    api {{
        processes [ receive ];
        receive {{ parsed; update; }}
        neighbor-changes;
    }}
}}
"""

    def start(self) -> None:
        (self.dir / "receiver.py").write_text(_EXABGP_RECEIVER)
        conf = self.dir / "exabgp.conf"
        conf.write_text(self.config())
        env = {
            "exabgp_daemon_user": "root",
            "exabgp_daemon_drop": "false",
            "exabgp_api_cli": "false",
            "exabgp_api_ack": "false",
            "exabgp_log_level": "WARNING",
            "exabgp_tcp_bind": self.spec.address if self.spec.passive else "",
            "exabgp_tcp_port": "179",
        }
        self._spawn(sys.executable, "-m", "exabgp", str(conf), env=env)

    def _messages(self) -> list[dict[str, object]]:
        if not self.events.exists():
            return []
        out = []
        for line in self.events.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(line)
                if isinstance(value, dict):
                    out.append(value)
        return out

    def state(self) -> str:
        state = "idle"
        for message in self._messages():
            if message.get("type") == "state":
                neighbor = message.get("neighbor", {})
                if isinstance(neighbor, dict):
                    state = str(neighbor.get("state", state))
        return "established" if state == "up" else state

    def received(self) -> set[str]:
        found: set[str] = set()
        for message in self._messages():
            if message.get("type") == "state":
                neighbor = message.get("neighbor", {})
                if isinstance(neighbor, dict) and neighbor.get("state") == "down":
                    found.clear()
            update = _dig(message, "neighbor", "message", "update")
            if not isinstance(update, dict):
                continue
            for by_nh in (_dig(update, "announce", "ipv4 unicast") or {}).values():
                found |= {entry["nlri"] for entry in by_nh if isinstance(entry, dict)}
            for entry in _dig(update, "withdraw", "ipv4 unicast") or []:
                if isinstance(entry, dict):
                    found.discard(entry["nlri"])
        return found

    def disable(self) -> None:
        raise NotImplementedError("ExaBGP has no per-neighbour shutdown without its CLI")

    def enable(self) -> None:
        raise NotImplementedError


def _dig(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


DRIVERS: dict[str, type[PeerDaemon]] = {
    "bird": Bird,
    "bird2": Bird2,
    "frr": Frr,
    "gobgp": GoBgp,
    "exabgp": ExaBgp,
}
