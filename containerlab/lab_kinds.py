"""Per-role start-up of a lab node in its namespace: bgpd, BIRD 1.6, BIRD 2, FRR, GoBGP, etcd.

Rules:
1. The node's command is the container's (entrypoint + cmd, or the image's usual command when
   the file gives none); container paths in it are mapped to host paths through the node's
   binds, the rest to the node's scratch root (``lab_topology`` rule 4). A token is a path
   when it starts with ``/``, ``file:/`` or is ``--flag=/...``. The same mapping applies to
   the arguments of a ``bgpd`` command run with ``exec`` (e.g. ``bgpd datastore load FILE``).
2. Each role adds only what several nodes on one host need to stay apart: a private control
   socket (bgpd, BIRD), an FRR path space (``-N <namespace>``), GoBGP's gRPC API on the
   namespace's own loopback. Everything else comes from the node's own config files.
3. ``sessions`` asks the daemon's own CLI; it never raises (an unreachable daemon has none).
4. FRR drops privileges to user ``frr``: its config is copied into its run directory
   ``/var/run/frr/<namespace>`` (owned by frr) and the daemons run with ``-u frr -g frr``
   (as root it would need ``-g frrvty``, real-peers.md); zebra gets a large netlink buffer.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import lab_netns
import lab_procs
from lab_topology import Node

REPO_ROOT = Path(__file__).resolve().parent.parent
BIRD2_ROOT = Path(os.environ.get("BIRD2", "/opt/bird2"))
FRR_BIN = Path("/usr/lib/frr")
FRR_RUN = Path("/var/run/frr")
GOBGP_API = "127.0.0.1:50051"
BGPD_SOCKET = "/var/run/calico/bird.ctl"
BIRD_SOCKET = "/var/run/bird/bird.ctl"
BGP_STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")
_GOBGP_STATES = {
    "0": "Unknown",
    "1": "Idle",
    "2": "Connect",
    "3": "Active",
    "4": "OpenSent",
    "5": "OpenConfirm",
    "6": "Established",
}


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    state: str

    @property
    def established(self) -> bool:
        return self.state.lower() == "established"


@dataclass(frozen=True, slots=True)
class Runtime:
    """A node plus where its files live on this host."""

    node: Node
    state_dir: Path

    @property
    def home(self) -> Path:
        return self.state_dir / self.node.name

    @property
    def scratch(self) -> Path:
        return self.home / "root"

    @property
    def namespace(self) -> str:
        return self.node.namespace

    def daemon(self, name: str) -> lab_procs.Daemon:
        return lab_procs.Daemon(name, self.home / f"{name}.pid", self.home / f"{name}.log")

    def host_path(self, container_path: str, make_parent: bool = True) -> Path:
        path = self.node.host_path(container_path, self.scratch)
        if make_parent and self.scratch in path.parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def map_token(self, token: str) -> str:
        """Rule 1: a container path in a command becomes its host path."""
        if token.startswith("/"):
            return str(self.host_path(token))
        if token.startswith("file:/"):
            return "file:" + str(self.host_path(token[5:]))
        flag, eq, value = token.partition("=")
        if eq and flag.startswith("-") and value.startswith("/"):
            return f"{flag}={self.host_path(value)}"
        return token

    def map_argv(self, argv: tuple[str, ...] | list[str]) -> list[str]:
        return [self.map_token(t) for t in argv]


def option(argv: list[str], *names: str) -> str | None:
    """The value of the first of ``names`` in ``argv`` (``--x V`` or ``--x=V``)."""
    for index, token in enumerate(argv):
        for name in names:
            if token == name and index + 1 < len(argv):
                return argv[index + 1]
            if token.startswith(name + "=") and name.startswith("--"):
                return token[len(name) + 1 :]
    return None


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Short internal waits (a daemon's socket appearing); raises TimeoutError."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.1)


class Role:
    """A node that runs nothing of its own: pods, routers, switches."""

    name = "plain"
    client: tuple[str, ...] = ()

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def daemons(self) -> list[lab_procs.Daemon]:
        return []

    def start(self) -> None:
        return None

    def ready(self) -> bool:
        return True

    def sessions(self) -> list[Session]:
        return []

    def cleanup(self) -> None:
        return None

    def cli(self, argv: list[str]) -> list[str]:
        """Rewrite a user command for ``exec`` (add the socket/path space the role uses)."""
        return argv

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        lab_procs.start(self.rt.daemon(name), self.rt.namespace, argv, env, cwd=self.rt.home)


def _bird_sessions(output: str) -> list[Session]:
    """Parse BIRD's ``show protocols`` (1.6 and 2 alike; bgpd's control socket speaks it)."""
    found: list[Session] = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "BGP":
            info = parts[5] if len(parts) >= 6 else parts[3]
            found.append(Session(parts[0], info if info in BGP_STATES else parts[3]))
    return found


class Bird(Role):
    """BIRD 1.6, started as the node's command says (Calico: ``bird -R -s SOCK -d -c CFG``)."""

    name = "bird"
    binary = "bird"
    client_binary = "birdc"
    default_argv: tuple[str, ...] = ("bird", "-c", "/etc/bird/bird.conf")

    def daemons(self) -> list[lab_procs.Daemon]:
        return [self.rt.daemon("bird")]

    @property
    def socket_path(self) -> Path:
        argv = list(self.rt.node.argv or self.default_argv)
        return self.rt.host_path(option(argv, "-s") or BIRD_SOCKET)

    def start(self) -> None:
        argv = list(self.rt.node.argv or self.default_argv)
        argv = [self.binary, *argv[1:]]
        if "-s" not in argv:
            argv += ["-s", BIRD_SOCKET]
        if "-f" not in argv and "-d" not in argv:
            argv.append("-f")
        self._spawn("bird", self.rt.map_argv(argv))

    def ready(self) -> bool:
        return self.socket_path.exists()

    def birdc(self, *args: str) -> str:
        result = lab_netns.exec_in(
            self.rt.namespace,
            [self.client_binary, "-s", str(self.socket_path), *args],
            check=False,
            timeout=10,
        )
        return result.stdout

    def sessions(self) -> list[Session]:
        return _bird_sessions(self.birdc("show", "protocols")) if self.ready() else []

    def cli(self, argv: list[str]) -> list[str]:
        if argv and argv[0] in ("birdc", "birdcl") and "-s" not in argv:
            return [self.client_binary, "-s", str(self.socket_path), *argv[1:]]
        return argv


class Bird2(Bird):
    name = "bird2"
    binary = str(BIRD2_ROOT / "usr/sbin/bird")
    client_binary = str(BIRD2_ROOT / "usr/sbin/birdcl")


class Bgpd(Bird):
    """bgpd: ``python3 -m bgpd run`` from this checkout, with a private control socket."""

    name = "bgpd"
    default_argv = ("bgpd", "run")

    def daemons(self) -> list[lab_procs.Daemon]:
        return [self.rt.daemon("bgpd")]

    @property
    def argv(self) -> list[str]:
        argv = list(self.rt.node.argv or self.default_argv)
        if argv and PurePosixPath(argv[0]).name == "bgpd":
            argv = argv[1:]
        elif argv[:2] == ["python3", "-m"] or argv[:2] == ["python", "-m"]:
            argv = argv[3:]
        if "--control-socket" not in argv and not option(argv, "--control-socket"):
            argv += ["--control-socket", BGPD_SOCKET]
        return argv

    @property
    def socket_path(self) -> Path:
        return self.rt.host_path(option(self.argv, "--control-socket") or BGPD_SOCKET)

    def start(self) -> None:
        env = self.rt.node.env_map()
        env.setdefault("NODENAME", self.rt.node.name)
        python_path = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + python_path if python_path else "")
        self._spawn("bgpd", [sys.executable, "-m", "bgpd", *self.rt.map_argv(self.argv)], env=env)

    def ready(self) -> bool:
        return self.socket_path.exists()

    def sessions(self) -> list[Session]:
        if not self.ready():
            return []
        found = _bird_sessions(self.birdc("show", "protocols"))
        if found:
            return found
        result = lab_netns.run(
            [
                sys.executable,
                "-m",
                "bgpd",
                "show",
                "peers",
                "--json",
                "--control-socket",
                str(self.socket_path),
            ],
            check=False,
            timeout=10,
        )
        try:
            peers = json.loads(result.stdout)
        except json.JSONDecodeError:
            return []
        items = peers.get("peers", peers) if isinstance(peers, dict) else peers
        return [
            Session(str(p.get("name", p.get("peer", "?"))), str(p.get("state", "?")))
            for p in items
            if isinstance(p, dict)
        ]

    def originated(self) -> set[str]:
        """The prefixes this node originates (``peer: local`` in ``bgpd show routes``); empty
        while the daemon does not answer (rule 3)."""
        if not self.ready():
            return set()
        result = lab_netns.exec_in(
            self.rt.namespace, self.cli(["bgpd", "show", "routes", "--json"]), check=False
        )
        try:
            routes = json.loads(result.stdout or "[]")
        except json.JSONDecodeError:
            return set()
        return {
            str(r["prefix"]) for r in routes if isinstance(r, dict) and r.get("peer") == "local"
        }

    def cli(self, argv: list[str]) -> list[str]:
        if argv and argv[0] == "bgpd":
            rest = self.rt.map_argv(argv[1:])
            if rest and rest[0] in ("show", "health", "status", "stop"):
                if "--control-socket" not in rest:
                    rest += ["--control-socket", str(self.socket_path)]
            return [sys.executable, "-m", "bgpd", *rest]
        return super().cli(argv)


class Frr(Role):
    """FRR zebra + bgpd (+ staticd when the daemons file enables it) in a path space (rule 4)."""

    name = "frr"

    @property
    def run_dir(self) -> Path:
        return FRR_RUN / self.rt.namespace

    def _enabled(self) -> list[str]:
        wanted = ["zebra", "bgpd"]
        daemons_file = self.rt.host_path("/etc/frr/daemons", make_parent=False)
        if daemons_file.exists():
            for line in daemons_file.read_text().splitlines():
                key, eq, value = line.strip().partition("=")
                if eq and value.strip() == "yes" and key not in wanted and key.endswith("d"):
                    wanted.append(key)
        return [d for d in wanted if (FRR_BIN / d).exists()]

    def daemons(self) -> list[lab_procs.Daemon]:
        return [self.rt.daemon(f"frr-{d}") for d in self._enabled()]

    def start(self) -> None:
        config = self.rt.host_path("/etc/frr/frr.conf", make_parent=False)
        if not config.exists():
            raise FileNotFoundError(f"node {self.rt.node.name}: no /etc/frr/frr.conf bind")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        copy = self.run_dir / "frr.conf"
        shutil.copyfile(config, copy)
        for path in (self.run_dir, copy):
            shutil.chown(path, "frr", "frr")
        for daemon in self._enabled():
            argv = [str(FRR_BIN / daemon), "-N", self.rt.namespace, "-u", "frr", "-g", "frr"]
            argv += ["-f", str(copy), "-i", str(self.run_dir / f"{daemon}.pid"), "--log", "stdout"]
            if daemon == "zebra":
                argv += ["-s", "134217728"]
            self._spawn(f"frr-{daemon}", argv)
            vty = self.run_dir / f"{daemon}.vty"
            wait_for(vty.exists, 10, f"{self.rt.node.name}: {daemon} vty")

    def ready(self) -> bool:
        return all((self.run_dir / f"{d}.vty").exists() for d in self._enabled())

    def vtysh(self, *commands: str) -> str:
        argv = ["vtysh", "-N", self.rt.namespace]
        for command in commands:
            argv += ["-c", command]
        return lab_netns.exec_in(self.rt.namespace, argv, check=False, timeout=15).stdout

    def sessions(self) -> list[Session]:
        if not self.ready():
            return []
        try:
            data = json.loads(self.vtysh("show bgp ipv4 unicast summary json") or "{}")
        except json.JSONDecodeError:
            return []
        peers = data.get("peers", {}) if isinstance(data, dict) else {}
        return [Session(ip, str(info.get("state", "?"))) for ip, info in peers.items()]

    def cleanup(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def cli(self, argv: list[str]) -> list[str]:
        if argv and argv[0] == "vtysh" and "-N" not in argv:
            return ["vtysh", "-N", self.rt.namespace, *argv[1:]]
        return argv


class GoBgp(Role):
    """gobgpd with its gRPC API on the namespace's loopback (rule 2)."""

    name = "gobgp"
    default_argv = ("gobgpd", "-f", "/etc/gobgp/gobgpd.toml")

    def daemons(self) -> list[lab_procs.Daemon]:
        return [self.rt.daemon("gobgpd")]

    def start(self) -> None:
        argv = list(self.rt.node.argv or self.default_argv)
        argv[0] = "gobgpd"
        if option(argv, "--api-hosts") is None:
            argv.append(f"--api-hosts={GOBGP_API}")
        if "--pprof-disable" not in argv:
            argv.append("--pprof-disable")
        self._spawn("gobgpd", self.rt.map_argv(argv))

    def gobgp(self, *args: str) -> tuple[int, str]:
        host, port = GOBGP_API.split(":")
        result = lab_netns.exec_in(
            self.rt.namespace, ["gobgp", "-u", host, "-p", port, *args], check=False, timeout=10
        )
        return result.returncode, result.stdout

    def ready(self) -> bool:
        return lab_procs.alive(self.rt.daemon("gobgpd")) and self.gobgp("global")[0] == 0

    def sessions(self) -> list[Session]:
        code, out = self.gobgp("-j", "neighbor")
        try:
            neighbors = json.loads(out) if code == 0 else []
        except json.JSONDecodeError:
            return []
        found = []
        for n in neighbors or []:
            address = n.get("conf", {}).get("neighbor_address", "?")
            raw = str(n.get("state", {}).get("session_state", "0"))
            found.append(Session(address, _GOBGP_STATES.get(raw, raw.capitalize())))
        return found


class Etcd(Role):
    """etcd as the node's command says; ready when its first client URL serves reads."""

    name = "etcd"
    default_argv = ("etcd", "--data-dir", "/var/lib/etcd")

    def daemons(self) -> list[lab_procs.Daemon]:
        return [self.rt.daemon("etcd")]

    def start(self) -> None:
        argv = list(self.rt.node.argv or self.default_argv)
        argv[0] = "etcd"
        if option(argv, "--data-dir") is None:
            argv += ["--data-dir", "/var/lib/etcd"]
        self._spawn("etcd", self.rt.map_argv(argv), env=self.rt.node.env_map())

    @property
    def endpoint(self) -> str:
        argv = list(self.rt.node.argv or self.default_argv)
        urls = option(argv, "--listen-client-urls") or "http://127.0.0.1:2379"
        return urls.split(",")[0]

    def ready(self) -> bool:
        """Serving, not just listening: ``etcdctl endpoint health`` reads a key, which needs
        the (single-member) cluster to have elected its leader."""
        argv = ["etcdctl", f"--endpoints={self.endpoint}", "--command-timeout=1s"]
        result = lab_netns.exec_in(
            self.rt.namespace, [*argv, "endpoint", "health"], check=False, timeout=10
        )
        return result.returncode == 0

    def cli(self, argv: list[str]) -> list[str]:
        if argv and argv[0] == "etcdctl" and not any(a.startswith("--endpoints") for a in argv):
            return ["etcdctl", f"--endpoints={self.endpoint}", *argv[1:]]
        return argv


class Bridge(Role):
    """containerlab kind ``bridge``: a Linux bridge named after the node, in its namespace."""

    name = "bridge"


ROLE_CLASSES: dict[str, type[Role]] = {
    "plain": Role,
    "bridge": Bridge,
    "bgpd": Bgpd,
    "bird": Bird,
    "bird2": Bird2,
    "frr": Frr,
    "gobgp": GoBgp,
    "etcd": Etcd,
}
START_ORDER = ("etcd", "bird", "bird2", "frr", "gobgp", "bgpd", "plain", "bridge")


def role_for(runtime: Runtime) -> Role:
    return ROLE_CLASSES[runtime.node.role](runtime)
