"""What calico-node's CalicoNodeStatus reporter reads from the BIRD sockets, as it reads it.

A port, for tests, of the parsing in projectcalico/calico ``node/pkg/status/populators``
(``bird_status.go``, ``peers.go``, ``route.go``) at revision
87c15906f20c4ca1fda55af92295e7678b0cc0b2: the same commands on one Unix-socket connection per
reader, the same reply codes accepted, the same line parsing and the same failures ("unexpected
output line" ends a reader with an error).
Only what decides the CalicoNodeStatus fields is kept: the status (ready, version, router id,
boot and reconfiguration times), the BGP peers (type, peer IP, BGP state, since) and the routes
(destination, gateway, interface, learned from, FIB or RIB).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

TIMEOUT = 2.0  # birdTimeOut
PEER_NAME = re.compile(r"^(Global|Node|Mesh)_(.+)$")  # bgpPeerRegex
PEER_TYPES = {"Global": "GlobalPeer", "Mesh": "NodeMesh", "Node": "NodePeer"}  # bgpTypeMap
EXPECTED_HEADINGS = ["name", "proto", "table", "state", "since", "info"]
VIA = re.compile(
    r"(?P<dest>\S*)\s*via\s(?P<gateway>\S*)\s*on\s(?P<iface>.*)\s\[(?P<src>\S*)\s.*\].*"
)
DEV = re.compile(r"(?P<dest>\S*)\s*dev\s(?P<iface>.*)\s\[(?P<src>\S*)\s.*\].*")
BLACKHOLE = re.compile(r"(?P<dest>\S*)\s*blackhole\s\[(?P<src>\S*)\s.*\].*")
UNREACHABLE = re.compile(r"(?P<dest>\S*)\s*unreachable\s\[(?P<src>\S*)\s.*\].*")


class ReaderError(Exception):
    """The reporter's ``Error executing command``: the reply did not have BIRD's shape."""


@dataclass
class DaemonStatus:
    ready: bool = False
    version: str = ""
    router_id: str = ""
    server_time: str = ""
    last_boot_time: str = ""
    last_reconfig_time: str = ""


@dataclass
class Peer:
    session: str
    peer_type: str  # Global, Mesh or Node
    state: str
    since: str
    peer_ip: str = ""
    bgp_state: str = ""


@dataclass
class Route:
    dest: str
    gateway: str
    iface: str
    learned_from: str
    primary: bool

    @property
    def source_type(self) -> str:
        """``toNodeStatusAPI``'s ``LearnedFrom.SourceType`` (an error for an unknown source)."""
        for prefix, kind in (("kernel", "Kernel"), ("static", "Static"), ("direct", "Direct")):
            if self.learned_from.startswith(prefix):
                return kind
        match = PEER_NAME.match(self.learned_from)
        if match is None:
            raise ReaderError(f"session name {self.learned_from!r} is not a correct format")
        return "NodeMesh" if match.group(1) == "Mesh" else "BGPPeer"


class _Connection:
    """``net.Dial("unix", ...)`` with a ``bufio.Scanner`` over it."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.pending = b""

    def write(self, command: str) -> None:
        self.sock.sendall(command.encode())

    def next_line(self) -> str | None:
        """The next line, read as the scanner reads it; None at the end of the stream."""
        while b"\n" not in self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                if not self.pending:
                    return None
                line, self.pending = self.pending, b""
                return line.decode()
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        self.sock.close()


def read_status(path: str) -> DaemonStatus:
    """``readBIRDStatus``/``scanBIRDStatus``: ``show status``, ends at 0013."""
    conn = _Connection(path)
    try:
        conn.write("show status\n")
        status = DaemonStatus()
        while (line := conn.next_line()) is not None:
            if line.startswith("0013"):
                break
            if line.startswith(("0001", "1000", "1011")):
                _status_field(status, line[5:])
            elif line.startswith(" "):
                _status_field(status, line[1:])
            else:
                break  # the reporter warns and stops reading here
        return status
    finally:
        conn.close()


def _status_field(status: DaemonStatus, line: str) -> None:
    if "BIRD" in line and "ready" in line:
        status.ready = True
    elif line.startswith("BIRD v"):
        status.version = line.removeprefix("BIRD ")
    elif line.startswith("Router ID is "):
        status.router_id = line.removeprefix("Router ID is ")
    elif line.startswith("Current server time is "):
        status.server_time = line.removeprefix("Current server time is ")
    elif line.startswith("Last reboot on "):
        status.last_boot_time = line.removeprefix("Last reboot on ")
    elif line.startswith("Last reconfiguration on "):
        status.last_reconfig_time = line.removeprefix("Last reconfiguration on ")


def read_peers(path: str) -> list[Peer]:
    """``readBIRDPeers``: ``show protocols``, then ``show protocols all NAME`` per BGP peer on
    the same connection."""
    conn = _Connection(path)
    try:
        conn.write("show protocols\n")
        peers: list[Peer] = []
        while (line := conn.next_line()) is not None:
            if line.startswith("0000"):
                break
            if line.startswith("0001"):
                continue
            if line.startswith("2002"):
                if line[5:].split() != EXPECTED_HEADINGS:
                    raise ReaderError("unknown BIRD table output format")
            elif line.startswith("1002") or line.startswith(" "):
                peer = _peer_row(line[5:] if line.startswith("1002") else line[1:])
                if peer is not None:
                    peers.append(peer)
            else:
                raise ReaderError(f"unexpected output line from BIRD: {line}")
        for peer in peers:
            conn.write(f"show protocols all {peer.session}\n")
            while (line := conn.next_line()) is not None:
                if line.startswith("0000"):
                    break
                if "BGP state:" in line:
                    peer.bgp_state = line.replace("BGP state:", " ").strip()
                elif "Neighbor address:" in line:
                    peer.peer_ip = line.replace("Neighbor address:", " ").strip()
        return peers
    finally:
        conn.close()


def _peer_row(line: str) -> Peer | None:
    columns = line.split()
    if len(columns) < 6 or columns[1] != "BGP":
        return None
    match = PEER_NAME.match(columns[0])
    if match is None:
        return None
    return Peer(session=columns[0], peer_type=match.group(1), state=columns[3], since=columns[4])


def read_routes(path: str) -> list[Route]:
    """``readBIRDRoutes``: ``show route``; 1007 and continuation lines, anything else an error."""
    conn = _Connection(path)
    try:
        conn.write("show route\n")
        routes: list[Route] = []
        previous = ""
        while (line := conn.next_line()) is not None:
            if line.startswith("0000"):
                break
            if line.startswith("0001"):
                continue
            if line.startswith("1007") or line.startswith(" "):
                route = _route_row(line[5:] if line.startswith("1007") else line[1:], previous)
                if route is not None:
                    routes.append(route)
                    previous = route.dest
            else:
                raise ReaderError(f"unexpected output line from BIRD: {line}")
        return routes
    finally:
        conn.close()


def _route_row(line: str, previous: str) -> Route | None:
    dest = gateway = iface = source = ""
    for marker, pattern, fixed_gateway, fixed_iface in (
        (" via ", VIA, None, None),
        (" dev ", DEV, "N/A", None),
        (" blackhole ", BLACKHOLE, "N/A", "blackhole"),
        (" unreachable ", UNREACHABLE, "N/A", "unreachable"),
    ):
        if marker in line:
            match = pattern.search(line)
            if match is None:
                return None  # "Failed to parse"
            groups = match.groupdict()
            dest, source = groups["dest"], groups["src"]
            gateway = fixed_gateway or groups["gateway"]
            iface = fixed_iface or groups["iface"]
            break
    if not dest:
        if not previous:
            return None
        dest = previous
    return Route(dest, gateway, iface, source, primary="] *" in line)
