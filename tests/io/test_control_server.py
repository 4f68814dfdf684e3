"""The control socket over a real unix socket: our CLI, BIRD's own clients, Calico's parsers.

The server runs in the test's event loop; every client (``bgpd`` CLI, ``birdc`` from BIRD 1.6,
``birdcl`` from BIRD 2) is a real subprocess talking to the socket in a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bgpd.control.server import (
    ControlServer,
    ControlSocketInUse,
    HealthChecker,
    ipv6_socket_path,
    serve_control_sockets,
)
from bgpd.status import DaemonStatus, FixedStatus, PeerStatus, RouteStatus

BIRDC = shutil.which("birdc")
BIRDCL = "/opt/bird2/usr/sbin/birdcl"
NOW = time.time()


@dataclass
class RecordingActions:
    reloads: int = 0
    stops: list[tuple[bool, str]] = field(default_factory=list)

    def request_reload(self) -> None:
        self.reloads += 1

    def request_stop(self, withdraw: bool, message: str) -> None:
        self.stops.append((withdraw, message))


def provider() -> FixedStatus:
    status = DaemonStatus("0.1.0", "10.99.0.1", "node-a", NOW - 100, NOW - 50)
    peers = [
        PeerStatus(
            "Mesh_10_99_0_2",
            "10.99.0.2",
            64512,
            64512,
            "Established",
            NOW - 90,
            prefixes_received=2,
            prefixes_advertised=1,
        ),
        PeerStatus(
            "Node_10_99_0_9",
            "10.99.0.9",
            64513,
            64512,
            "Active",
            NOW - 95,
            last_error="connection-refused",
        ),
        PeerStatus("Mesh_fd00__2", "fd00::2", 64512, 64512, "Established", NOW, family="ipv6"),
    ]
    routes = [
        RouteStatus("10.244.1.0/26", "", (), True, "local"),
        RouteStatus("10.244.2.0/26", "10.99.0.2", (), True, "Mesh_10_99_0_2", peer_ip="10.99.0.2"),
        RouteStatus(
            "10.244.2.0/26",
            "10.99.0.9",
            (64513, 64600),
            False,
            "Node_10_99_0_9",
            peer_ip="10.99.0.9",
        ),
    ]
    return FixedStatus(status, peers, routes, explanations=EXPLANATIONS)


# The explain goldens of the mesh3 lab (tests/unit/test_explain.py) as the daemon's answers.
EXPLANATIONS = json.loads(
    (Path(__file__).resolve().parents[1] / "golden" / "explain" / "mesh3-node1.json").read_text()
)


@dataclass
class Running:
    path: str
    provider: FixedStatus
    actions: RecordingActions
    nodename: Path


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[Running]:
    path = str(tmp_path / "run" / "calico" / "bird.ctl")  # the directory does not exist yet
    state = provider()
    actions = RecordingActions()
    nodename = tmp_path / "nodename"
    nodename.write_text("node-a\n")
    health = HealthChecker(state, nodename_file=str(nodename))
    async with serve_control_sockets(path, state, actions, health):
        yield Running(path, state, actions, nodename)
    assert not os.path.exists(path), "the socket is removed on close"


async def run(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def bgpd(*argv: str) -> tuple[int, str, str]:
    return await run(sys.executable, "-m", "bgpd", *argv)


async def raw_exchange(path: str, *commands: str) -> list[str]:
    """Greeting and one full reply per command over one connection, as raw text."""
    reader, writer = await asyncio.open_unix_connection(path)
    replies = [(await reader.readline()).decode()]
    for command in commands:
        writer.write(command.encode() + b"\n")
        reply = ""
        while True:
            line = (await reader.readline()).decode()
            reply += line
            if re.match(r"^\d{4} ", line):
                break
        replies.append(reply)
    writer.close()
    await writer.wait_closed()
    return replies


# -- Calico's readers, ported line for line (node/pkg/health/bird/bird.go, calicoctl status.go)

BGP_PEER = re.compile(r"^(Global|Node|Mesh)_(.+)$")


def calico_scan_peers(reply: str, ip_separator: str) -> list[dict[str, str]]:
    """``scanBIRDPeers`` + ``unmarshalBIRD``: raises where Calico returns an error."""
    peers = []
    for line in reply.splitlines():
        if line.startswith("0000"):
            break
        if line.startswith("0001"):
            continue
        if line.startswith("2002"):
            if line[5:].split() != ["name", "proto", "table", "state", "since", "info"]:
                raise AssertionError("unknown BIRD table output format")
            continue
        if line.startswith("1002"):
            row = line[5:]
        elif line.startswith(" "):
            row = line[1:]
        else:
            raise AssertionError(f"unexpected output line from BIRD: {line!r}")
        columns = row.split()
        if len(columns) < 6 or columns[1] != "BGP":
            continue
        match = BGP_PEER.match(columns[0])
        if match is None:
            continue
        peers.append(
            {
                "ip": match.group(2).replace("_", ip_separator),
                "state": columns[3],
                "since": columns[4],
                "bgp_state": columns[5],
                "info": " ".join(columns[6:]),
            }
        )
    return peers


def calico_gr_in_progress(reply: str) -> bool:
    """``GRInProgress``: any ``0024`` line before ``0013``; other lines must be known."""
    for line in reply.splitlines():
        if line.startswith("0013"):
            return False
        if line.startswith("0024"):
            return True
        if not line.startswith(("0001", "1000", "1011", " ")):
            raise AssertionError(f"unexpected output line from BIRD: {line!r}")
    raise AssertionError("no 0013 line")


# -- the socket itself ---------------------------------------------------------------------------


async def test_socket_file_mode_directory_and_ipv6_sibling(control: Running) -> None:
    mode = os.stat(control.path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    assert os.path.exists(ipv6_socket_path(control.path))
    assert ipv6_socket_path("/var/run/calico/bird.ctl") == "/var/run/calico/bird6.ctl"


async def test_many_commands_on_one_connection_and_calicos_parsers(control: Running) -> None:
    greeting, protocols, status, route = await raw_exchange(
        control.path, "show protocols", "show status", "show route for 10.244.2.7"
    )
    assert greeting == "0001 BIRD v0.1.0+bgpd ready.\n"
    peers = calico_scan_peers(greeting + protocols, ".")
    assert [(p["ip"], p["state"], p["bgp_state"]) for p in peers] == [
        ("10.99.0.2", "up", "Established"),
        ("10.99.0.9", "start", "Active"),
    ]
    assert peers[1]["info"] == "connection-refused"
    assert calico_gr_in_progress(greeting + status) is False
    assert route.startswith("1007-10.244.2.0/26      via 10.99.0.2 [Mesh_10_99_0_2 ")
    assert route.endswith("0000 \n")


async def test_ipv6_socket_serves_the_ipv6_view(control: Running) -> None:
    _, protocols = await raw_exchange(ipv6_socket_path(control.path), "show protocols")
    peers = calico_scan_peers(protocols, ":")
    assert [p["ip"] for p in peers] == ["fd00::2"]


async def test_graceful_restart_line_reaches_calicos_check(control: Running) -> None:
    control.provider.status = DaemonStatus(
        "0.1.0", "10.99.0.1", "node-a", NOW, NOW, graceful_restart_recovering=True
    )
    _, status = await raw_exchange(control.path, "show status")
    assert calico_gr_in_progress(status) is True


async def test_stale_socket_is_replaced_and_live_socket_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "bird.ctl")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: what a killed daemon leaves behind
    state, actions = provider(), RecordingActions()
    async with ControlServer(path, state, actions):
        assert (await raw_exchange(path))[0].startswith("0001 BIRD")
        with pytest.raises(ControlSocketInUse):
            await ControlServer(path, state, actions).start()
    assert not os.path.exists(path)


async def test_birds_configure_and_down_request_actions(control: Running) -> None:
    _, configure, down = await raw_exchange(control.path, "configure", "down")
    assert (
        configure == "0002-Reading configuration from datastore\n0004 Reconfiguration in progress\n"
    )
    assert down == "0007 Shutdown requested\n"
    assert control.actions.reloads == 1
    assert control.actions.stops == [(True, "Shutdown requested")]


async def test_a_failing_provider_answers_an_error_and_keeps_serving(control: Running) -> None:
    def broken(prefix: str | None = None) -> list[RouteStatus]:
        raise RuntimeError("rib is busy")

    control.provider.route_statuses = broken  # type: ignore[method-assign]
    _, failed, status = await raw_exchange(control.path, "show route", "show status")
    assert failed == "9001 internal error: rib is busy\n"
    assert status.endswith("0013 Daemon is up and running\n")


# -- BIRD's own clients --------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists(BIRDCL), reason="BIRD 2's birdcl is not unpacked")
async def test_bird2_birdcl_reads_our_replies(control: Running) -> None:
    code, out, err = await run(BIRDCL, "-s", control.path, "show", "protocols")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "BIRD v0.1.0+bgpd ready."
    assert lines[1] == "name     proto    table    state  since       info"
    assert lines[3].split()[:6] == ["Mesh_10_99_0_2", "BGP", "master", "up"] + lines[3].split()[4:6]
    assert lines[3].split()[5] == "Established"
    # Calico's liveness check (PR #7556): ``birdcl -s SOCK show status`` output starts "BIRD".
    code, out, _ = await run(BIRDCL, "-s", control.path, "show", "status")
    assert code == 0 and out.startswith("BIRD")
    assert "Router ID is 10.99.0.1" in out and "Daemon is up and running" in out
    # birdcl expands abbreviations itself before sending
    code, out, _ = await run(BIRDCL, "-s", control.path, "sh", "ro", "for", "10.244.1.1")
    assert code == 0 and "10.244.1.0/26      blackhole [static1 " in out


@pytest.mark.skipif(BIRDC is None, reason="BIRD 1.6's birdc is not installed")
async def test_bird16_birdc_reads_our_replies(control: Running) -> None:
    assert BIRDC is not None
    code, out, err = await run(
        BIRDC, "-s", control.path, "show", "protocols", "all", "Mesh_10_99_0_2"
    )
    assert code == 0, err
    assert "  BGP state:          Established" in out
    assert "    Neighbor address: 10.99.0.2" in out
    code, out, _ = await run(BIRDC, "-s", control.path, "configure")
    assert code == 0 and "Reconfiguration in progress" in out
    assert control.actions.reloads == 1


# -- our CLI -------------------------------------------------------------------------------------


async def test_show_peers_json_and_table(control: Running) -> None:
    code, out, err = await bgpd("show", "peers", "--json", "--control-socket", control.path)
    assert code == 0, err
    peers = json.loads(out)
    assert [peer["name"] for peer in peers] == ["Mesh_10_99_0_2", "Node_10_99_0_9", "Mesh_fd00__2"]
    required = {"name", "peer_ip", "peer_as", "state", "since", "prefixes_received"}
    assert required | {"prefixes_advertised"} <= set(peers[0])
    assert peers[0]["prefixes_received"] == 2 and peers[1]["state"] == "Active"
    code, out, _ = await bgpd("show", "peers", "--control-socket", control.path)
    assert code == 0
    header, first, second = out.splitlines()[:3]
    assert header.split() == [
        "NAME",
        "PEER",
        "AS",
        "STATE",
        "SINCE",
        "RECEIVED",
        "ADVERTISED",
        "BFD",
        "INFO",
    ]
    assert first.split()[:4] == ["Mesh_10_99_0_2", "10.99.0.2", "64512", "Established"]
    assert first.split()[7] == "-"  # no BFD for this session
    assert second.split()[-1] == "connection-refused"
    assert header.index("PEER") == first.index("10.99.0.2"), "columns are aligned"


async def test_show_routes_json_and_table(control: Running) -> None:
    code, out, err = await bgpd("show", "routes", "--json", "--control-socket", control.path)
    assert code == 0, err
    routes = json.loads(out)
    assert {"prefix", "next_hop", "as_path", "best", "peer"} <= set(routes[0])
    assert routes[2]["as_path"] == [64513, 64600] and routes[2]["best"] is False
    code, out, _ = await bgpd("show", "routes", "10.244.2.0/26", "--control-socket", control.path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["PREFIX", "NEXT", "HOP", "AS", "PATH", "BEST", "PEER"]
    assert lines[1].split() == ["10.244.2.0/26", "10.99.0.2", "-", "*", "Mesh_10_99_0_2"]
    assert lines[2].split() == ["10.244.2.0/26", "10.99.0.9", "64513", "64600", "Node_10_99_0_9"]
    code, _, err = await bgpd("show", "routes", "not-a-prefix", "--control-socket", control.path)
    assert code == 1 and err.startswith("bgpd: bgpd refused")


async def test_explain_json_and_text(control: Running) -> None:
    prefix = "10.244.2.0/26"
    code, out, err = await bgpd("explain", prefix, "--json", "--control-socket", control.path)
    assert code == 0, err
    assert json.loads(out) == EXPLANATIONS[prefix]
    code, out, _ = await bgpd("explain", prefix, "--control-socket", control.path)
    assert code == 0
    assert out.startswith(f"{prefix} (ipv4-unicast)\ncandidates:\n")
    assert "lost at local-pref: best 2147482623 vs 100" in out
    code, _, err = await bgpd("explain", "not-a-prefix", "--control-socket", control.path)
    assert code == 1 and err.startswith("bgpd: bgpd refused")


async def test_status(control: Running) -> None:
    code, out, _ = await bgpd("status", "--control-socket", control.path)
    assert code == 0
    assert "router id:" in out and "10.99.0.1" in out
    code, out, _ = await bgpd("status", "--json", "--control-socket", control.path)
    assert json.loads(out)["node"] == "node-a"


async def test_health_ready_follows_the_nodename_threshold(control: Running) -> None:
    # Freshly started (nodename mtime now): every peer must be up, and one is not.
    code, out, _ = await bgpd("health", "--ready", "--control-socket", control.path)
    assert (code, out) == (1, "not ready: BGP not established with 10.99.0.9\n")
    # Long after start one established peer is enough.
    old = time.time() - 3600
    os.utime(control.nodename, (old, old))
    code, out, _ = await bgpd("health", "--ready", "--control-socket", control.path)
    assert (code, out) == (0, "ready: 2 of 3 BGP peers established\n")  # both families
    code, out, _ = await bgpd(
        "health", "--ready", "--threshold-time", "7200", "--json", "--control-socket", control.path
    )
    assert code == 1 and json.loads(out) == {
        "ok": False,
        "reason": "BGP not established with 10.99.0.9",
    }
    code, out, _ = await bgpd("health", "--live", "--control-socket", control.path)
    assert (code, out) == (0, "live: daemon is up and running\n")


async def test_stop_and_reload(control: Running) -> None:
    code, out, _ = await bgpd(
        "stop", "--withdraw", "--message", "node drained", "--control-socket", control.path
    )
    assert (code, out) == (0, "stop requested (withdrawing routes)\n")
    code, _, _ = await bgpd("stop", "--message", "withdraw later", "--control-socket", control.path)
    assert code == 0
    code, out, _ = await bgpd("reload", "--control-socket", control.path)
    assert (code, out) == (0, "reload requested\n")
    assert control.actions.stops == [(True, "node drained"), (False, "withdraw later")]
    assert control.actions.reloads == 1


async def test_no_daemon_is_one_clear_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "bird.ctl")
    for argv in (("show", "peers"), ("status",), ("health", "--live"), ("reload",)):
        code, out, err = await bgpd(*argv, "--control-socket", missing)
        assert code == 1 and out == ""
        assert err == f"bgpd: bgpd is not running (no control socket at {missing})\n"


async def test_usage_errors_exit_2() -> None:
    code, _, err = await bgpd("health")
    assert code == 2 and "--ready" in err
    code, _, _ = await bgpd("show", "neighbours")
    assert code == 2
