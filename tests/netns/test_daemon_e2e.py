"""The daemon's operator surface end to end (issue 7 point 7): ``bgpd run`` in namespaces with the
file datastore, read through BIRD's own clients, the ``bgpd`` CLI, HTTP metrics and signals.

One lab for the module (its tests run in file order; the last one shuts node A down for good):
three namespaces on one bridge.

    hub 10.213.77.1   BIRD 1.6, AS 65077, originates BIRD_ROUTES; BGPPeer of node-a only
    a   10.213.77.2   bgpd node-a, AS 64512, block 10.244.1.0/26, metrics on 127.0.0.1:9179
    b   10.213.77.3   bgpd node-b, AS 64512, block 10.244.2.0/26

node-a and node-b are a node-to-node mesh (sessions ``Mesh_10_213_77_3`` / ``Mesh_10_213_77_2``),
node-a peers with BIRD as ``Node_10_213_77_1``. node-a's BGPConfiguration tags its block with a
community through ``prefixAdvertisements``; the SIGHUP test changes only that value.

The bad-configuration tests run ``bgpd run`` in a scratch namespace of their own, so a daemon
that wrongly starts can touch nothing outside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import calico_node_status
import pytest
from bgpd_driver import BgpdNode, ExternalPeer, OurNode, RouteMonitor, calico_datastore, lan
from netns import Namespace, have_root
from peer_drivers import BIRD2_ROOT, Bird, PeerSpec, wait_for
from prometheus_client.parser import text_string_to_metric_families

from bgpd.control.server import ipv6_socket_path

pytestmark = pytest.mark.netns

PREFIX = "hQ-"
SUBNET = "10.213.77.0/24"
OUR_AS = 64512
BIRD_AS = 65077
BIRD_ROUTES = ("10.50.77.0/24", "10.50.78.0/24")
BLOCK_A, BLOCK_B = "10.244.1.0/26", "10.244.2.0/26"
# Same length on purpose: the SIGHUP test rewrites the file in place with its size and mtime
# kept, so the file datastore's poll cannot see the change and only the reload applies it.
COMMUNITY_BEFORE, COMMUNITY_AFTER = "64512:100", "64512:200"
SHUTDOWN_MESSAGE = "node-a drained for maintenance"
PROBE = "192.0.2.0/24"  # TEST-NET-1: a route the monitors must see come and go
METRICS = "127.0.0.1:9179"  # inside node-a's namespace: its own loopback
SESSION_TIMEOUT = 40.0  # connect delay and retry on both sides, on a loaded 2-core machine
ROUTE_TIMEOUT = 30.0
BIRDCL = BIRD2_ROOT / "usr/sbin/birdcl"
# Calico's bgpPeerRegex (node/pkg/health/bird/bird.go; calico-bgp.md §4.1 step 2).
CALICO_PEER_NAME = re.compile(r"^(Global|Node|Mesh)_(.+)$")
PROTOCOL_HEADER = ["name", "proto", "table", "state", "since", "info"]


def session_name(kind: str, address: str) -> str:
    return f"{kind}_{address.replace('.', '_')}"


@dataclass
class Lab:
    hub: Namespace
    a: BgpdNode
    b: BgpdNode
    bird: Bird
    hub_ip: str
    a_ip: str
    b_ip: str
    started: float
    early_ready: subprocess.CompletedProcess[str] | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def a_sessions(self) -> dict[str, str]:
        """node-a's session names -> peer addresses."""
        return {
            session_name("Mesh", self.b_ip): self.b_ip,
            session_name("Node", self.hub_ip): self.hub_ip,
        }

    def describe(self) -> str:
        return f"A: {self.a.describe()}\nB: {self.b.describe()}\nBIRD: {self.bird.describe()}"


def node_a_datastore(node_a: OurNode, node_b: OurNode, hub_ip: str, community: str) -> str:
    return calico_datastore(
        node_a,
        (ExternalPeer(hub_ip, BIRD_AS),),
        others=(node_b,),
        bgp_config={"prefixAdvertisements": [{"cidr": BLOCK_A, "communities": [community]}]},
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not have_root():
        pytest.skip("needs root and iproute2")
    if not Bird.available():
        pytest.skip("BIRD 1.6 is not installed")
    workdir = tmp_path_factory.mktemp("daemon-e2e")
    spaces: list[Namespace] = []
    cleanups: list[Callable[[], None]] = []
    try:
        for _ in range(3):
            spaces.append(Namespace.create(PREFIX))
        hub, a_member, b_member = lan(spaces[0], spaces[1:], SUBNET)
        node_a = OurNode("node-a", f"{a_member.address}/24", OUR_AS, blocks=(BLOCK_A,))
        node_b = OurNode("node-b", f"{b_member.address}/24", OUR_AS, blocks=(BLOCK_B,))
        a = BgpdNode(
            a_member.ns,
            node_a,
            (),
            workdir / "a",
            metrics_listen=METRICS,
            datastore_text=node_a_datastore(node_a, node_b, hub.address, COMMUNITY_BEFORE),
            run_args=("--bird-process-names",),
        )
        b = BgpdNode(
            b_member.ns,
            node_b,
            (),
            workdir / "b",
            datastore_text=calico_datastore(node_b, (), others=(node_a,)),
        )
        bird = Bird(
            hub.ns,
            PeerSpec(
                local_as=BIRD_AS,
                peer_as=OUR_AS,
                router_id=hub.address,
                address=hub.address,
                neighbor=a_member.address,
                hold_time=9,
                keepalive=3,
                routes=BIRD_ROUTES,
            ),
            workdir,
        )
        lab = Lab(
            hub.ns,
            a,
            b,
            bird,
            hub.address,
            a_member.address,
            b_member.address,
            time.time(),
            cleanups=cleanups,
        )
        for daemon in (a, b):
            cleanups.append(lambda d=daemon: d.stop(signal.SIGKILL))  # type: ignore[misc]
        cleanups.append(bird.stop)
        # node-a alone first: readiness must say which peers are missing (test_readiness).
        a.start()
        wait_for(lambda: _answers(a.bgpd("health", "--ready")), 20, a.describe)
        lab.early_ready = a.bgpd("health", "--ready")
        bird.start()
        b.start()
        wait_established(lab)
        wait_for(lambda: converged(lab), ROUTE_TIMEOUT, lab.describe)
        yield lab
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
        for ns in spaces:
            ns.delete()


def _answers(result: subprocess.CompletedProcess[str]) -> bool:
    """The daemon answered a health query (as opposed to "not running")."""
    return result.stdout.startswith(("ready:", "not ready:"))


def wait_established(lab: Lab) -> None:
    def up() -> bool:
        return (
            lab.bird.established()
            and all(lab.a.established_with(ip) for ip in lab.a_sessions.values())
            and lab.b.established_with(lab.a_ip)
        )

    wait_for(up, SESSION_TIMEOUT, lab.describe)


def converged(lab: Lab) -> bool:
    a, b = lab.a.routes(), lab.b.routes()
    return (
        lab.a.next_hop(BLOCK_B) == lab.b_ip
        and all(lab.a.next_hop(prefix) == lab.hub_ip for prefix in BIRD_ROUTES)
        and a.get(BLOCK_A, "").startswith("blackhole")
        and lab.b.next_hop(BLOCK_A) == lab.a_ip
        and b.get(BLOCK_B, "").startswith("blackhole")
        and BLOCK_A in lab.bird.received()
    )


def ensure_running(lab: Lab) -> None:
    if not lab.a.running:
        pytest.skip("node-a was shut down by an earlier test")


# ---- reading BIRD's clients the way Calico does ------------------------------------------------


def calico_peers(output: str) -> dict[str, tuple[str, str]]:
    """``show protocols`` as printed by ``birdc``/``birdcl``, read by Calico's rules
    (calico-bgp.md §4.1, §4.3; bird.go ``unmarshalBIRD``): the header row must be exactly the six
    words; a row is a peer when its proto column is ``BGP`` and its name matches Calico's pattern;
    the sixth column is the BGP state. Returns session name -> (peer address, BGP state)."""
    lines = output.splitlines()
    headers = [index for index, line in enumerate(lines) if line.split()[:1] == ["name"]]
    assert len(headers) == 1, output
    assert lines[headers[0]].split() == PROTOCOL_HEADER, output
    peers: dict[str, tuple[str, str]] = {}
    for row in lines[headers[0] + 1 :]:
        columns = row.split()
        if len(columns) < 6 or columns[1] != "BGP":
            continue
        match = CALICO_PEER_NAME.match(columns[0])
        if match is None:
            continue
        peers[columns[0]] = (match.group(2).replace("_", "."), columns[5])
    return peers


def bird_clients() -> list[str]:
    clients = []
    if BIRDCL.exists():
        clients.append(str(BIRDCL))
    if Bird.available():
        clients.append(Bird.client)  # BIRD 1.6's birdc
    return clients


def client(daemon: BgpdNode, program: str, *command: str, socket_path: Path | None = None) -> str:
    path = str(socket_path or daemon.control_socket)
    result = daemon.ns.run(program, "-s", path, *command, check=False)
    assert result.returncode == 0, f"{program} {' '.join(command)}: {result.stderr}"
    return result.stdout


def peers_json(daemon: BgpdNode) -> dict[str, dict[str, Any]]:
    result = daemon.bgpd("show", "peers", "--json")
    assert result.returncode == 0, result.stderr
    return {peer["name"]: peer for peer in json.loads(result.stdout)}


def routes_json(daemon: BgpdNode, *prefix: str) -> list[dict[str, Any]]:
    result = daemon.bgpd("show", "routes", "--json", *prefix)
    assert result.returncode == 0, result.stderr
    routes: list[dict[str, Any]] = json.loads(result.stdout)
    return routes


def status_json(daemon: BgpdNode) -> dict[str, Any]:
    result = daemon.bgpd("status", "--json")
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


_HTTP_GET = """
import sys, urllib.error, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(sys.argv[1], timeout=10) as response:
        code, body = response.status, response.read()
except urllib.error.HTTPError as error:
    code, body = error.code, error.read()
sys.stdout.write(f"{code}\\n{body.decode()}")
"""


def http_get(ns: Namespace, url: str) -> tuple[int, str]:
    """GET ``url`` from inside ``ns`` (the metrics listener is on that namespace's loopback)."""
    out = ns.run(sys.executable, "-c", _HTTP_GET, url).stdout
    code, _, body = out.partition("\n")
    return int(code), body


def scrape(ns: Namespace) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, body = http_get(ns, f"http://{METRICS}/metrics")
    assert code == 200, body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def sample(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    matching = [
        value
        for (found, found_labels), value in samples.items()
        if found == name and labels.items() <= dict(found_labels).items()
    ]
    assert len(matching) == 1, f"{name}{labels}: {matching}"
    return matching[0]


def bird_route(lab: Lab, prefix: str) -> str:
    return lab.bird.cli("show", "route", prefix, "all")


# ---- the tests, in the lab's order -------------------------------------------------------------


@pytest.mark.parametrize("program", bird_clients())
def test_bird_clients_read_protocols_status_and_routes(lab: Lab, program: str) -> None:
    ensure_running(lab)
    protocols = client(lab.a, program, "show", "protocols")
    assert calico_peers(protocols) == {
        name: (address, "Established") for name, address in lab.a_sessions.items()
    }
    assert calico_peers(client(lab.b, program, "show", "protocols")) == {
        session_name("Mesh", lab.a_ip): (lab.a_ip, "Established")
    }
    # The IPv6 view (bird6.ctl's place) has the same table and no IPv4 sessions.
    ipv6 = Path(ipv6_socket_path(str(lab.a.control_socket)))
    assert calico_peers(client(lab.a, program, "show", "protocols", socket_path=ipv6)) == {}

    bird_session = session_name("Node", lab.hub_ip)
    details = client(lab.a, program, "show", "protocols", "all", bird_session)
    assert "  BGP state:          Established" in details, details
    assert f"    Neighbor address: {lab.hub_ip}" in details, details
    assert f"    Neighbor AS:      {BIRD_AS}" in details, details
    assert f"  Routes:         {len(BIRD_ROUTES)} imported," in details, details
    assert f"    Neighbor ID:      {lab.hub_ip}" in details, details  # BIRD's router ID
    assert "    Hold timer:       -/" in details and " AS4" in details, details

    status = client(lab.a, program, "show", "status")
    assert status.startswith("BIRD"), status  # Calico's liveness check (PR #7556)
    assert f"Router ID is {lab.a_ip}" in status, status
    assert "Daemon is up and running" in status, status
    assert "Graceful restart recovery" not in status, status

    routes = client(lab.a, program, "show", "route")
    mesh = session_name("Mesh", lab.b_ip)
    mesh_route = rf"^{re.escape(BLOCK_B)}\s+via {lab.b_ip} on \S+ \[{mesh} "
    assert re.search(mesh_route, routes, re.M), routes
    for prefix in BIRD_ROUTES:
        pattern = (
            rf"^{re.escape(prefix)}\s+via {lab.hub_ip} on \S+ \[{bird_session} .*\[AS{BIRD_AS}i\]"
        )
        assert re.search(pattern, routes, re.M), routes
    assert re.search(rf"^{re.escape(BLOCK_A)}\s+blackhole \[static1 ", routes, re.M), routes
    covering = client(lab.a, program, "show", "route", "for", "10.244.2.7")
    assert re.search(rf"^{re.escape(BLOCK_B)}\s+via {lab.b_ip} on ", covering, re.M), covering


def calicoctl_finds(name: str, parent: int) -> list[int]:
    """``calicoctl node status``'s ``psContains`` (status.go, revision 87c15906): processes whose
    first command-line word, split at NUL as gopsutil's ``CmdlineSlice`` does, is exactly
    ``name``; kept to the children of ``parent`` so a real BIRD in the lab cannot count."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if words[0] == name.encode() and ppid == parent:
            found.append(int(entry.name))
    return found


def test_calicoctl_node_status_finds_bird_and_bird6_then_reads_the_sockets(lab: Lab) -> None:
    """With ``--bird-process-names`` calicoctl's process check passes for both families, and
    what it then reads from each socket is the peer table (bgpd.control.presence)."""
    ensure_running(lab)
    assert lab.a.proc is not None
    assert len(calicoctl_finds("bird", lab.a.proc.pid)) == 1
    assert len(calicoctl_finds("bird6", lab.a.proc.pid)) == 1
    assert calicoctl_finds("bird", lab.b.proc.pid if lab.b.proc else 0) == []  # not asked for
    program = bird_clients()[0]
    assert calico_peers(client(lab.a, program, "show", "protocols")) == {
        name: (address, "Established") for name, address in lab.a_sessions.items()
    }


def test_calico_node_status_reporter_reads_status_peers_and_routes(lab: Lab) -> None:
    """calico-node's CalicoNodeStatus reporter (``node/pkg/status/populators``, ported in
    ``calico_node_status``) reads bgpd's sockets as it reads BIRD's: no reader fails, and every
    field it fills has bgpd's values."""
    ensure_running(lab)
    v4, v6 = str(lab.a.control_socket), ipv6_socket_path(str(lab.a.control_socket))
    for path in (v4, v6):
        status = calico_node_status.read_status(path)
        assert status.ready and status.router_id == lab.a_ip, status
        assert status.version.startswith("v"), status
        assert status.last_boot_time and status.last_reconfig_time, status
    peers = calico_node_status.read_peers(v4)
    assert {(p.peer_type, p.peer_ip, p.bgp_state) for p in peers} == {
        ("Mesh", lab.b_ip, "Established"),
        ("Node", lab.hub_ip, "Established"),
    }, peers
    assert all(p.state == "up" and p.since for p in peers), peers
    assert calico_node_status.read_peers(v6) == []
    found = calico_node_status.read_routes(v4)
    routes = {(r.dest, r.gateway, r.source_type, r.primary) for r in found}
    assert all(r.iface for r in found), found
    assert (BLOCK_B, lab.b_ip, "NodeMesh", True) in routes, routes
    assert (BLOCK_A, "N/A", "Static", True) in routes, routes
    for prefix in BIRD_ROUTES:
        assert (prefix, lab.hub_ip, "BGPPeer", True) in routes, routes
    assert calico_node_status.read_routes(v6) == []


def test_readiness_names_missing_peers_then_turns_true(lab: Lab) -> None:
    ensure_running(lab)
    early = lab.early_ready
    assert early is not None
    # Before BIRD and node-b ran: exit 1 and Calico's text naming both missing peers.
    assert early.returncode == 1, early
    verdict, _, missing = early.stdout.strip().partition("BGP not established with ")
    assert verdict == "not ready: ", early.stdout
    assert sorted(missing.split(",")) == sorted(lab.a_sessions.values()), early.stdout
    for daemon in (lab.a, lab.b):
        ready = daemon.bgpd("health", "--ready")
        assert ready.returncode == 0 and ready.stdout.startswith("ready: "), ready
        live = daemon.bgpd("health", "--live")
        assert live.returncode == 0 and live.stdout.startswith("live: "), live


def test_show_peers_and_routes_json_carry_the_labs_values(lab: Lab) -> None:
    ensure_running(lab)
    now = time.time()
    peers = peers_json(lab.a)
    assert set(peers) == set(lab.a_sessions)
    bird_peer = peers[session_name("Node", lab.hub_ip)]
    mesh_peer = peers[session_name("Mesh", lab.b_ip)]
    assert (bird_peer["peer_ip"], bird_peer["peer_as"]) == (lab.hub_ip, BIRD_AS)
    assert (mesh_peer["peer_ip"], mesh_peer["peer_as"]) == (lab.b_ip, OUR_AS)
    for peer in (bird_peer, mesh_peer):
        assert peer["state"] == "Established", peer
        assert lab.started <= peer["since"] <= now, peer
        assert peer["hold_time"] > 0 and 0 < peer["keepalive_time"] <= peer["hold_time"] / 3
        assert "AS4" in peer["capabilities"] and "refresh" in peer["capabilities"], peer
    assert bird_peer["prefixes_received"] == len(BIRD_ROUTES)
    assert mesh_peer["prefixes_received"] == 1  # node-b's block
    # What we say we advertised is what the peers hold from us.
    assert bird_peer["prefixes_advertised"] == len(lab.bird.received()), lab.bird.received()
    b_from_a = [r for r in routes_json(lab.b) if r["peer"] == session_name("Mesh", lab.a_ip)]
    assert mesh_peer["prefixes_advertised"] == len(b_from_a), b_from_a

    routes = {(r["prefix"], r["peer"]): r for r in routes_json(lab.a)}
    via_b = routes[(BLOCK_B, session_name("Mesh", lab.b_ip))]
    assert (via_b["next_hop"], via_b["as_path"], via_b["best"]) == (lab.b_ip, [], True)
    for prefix in BIRD_ROUTES:
        via_bird = routes[(prefix, session_name("Node", lab.hub_ip))]
        assert (via_bird["next_hop"], via_bird["as_path"], via_bird["best"]) == (
            lab.hub_ip,
            [BIRD_AS],
            True,
        )
    assert routes[(BLOCK_A, "local")]["best"] is True
    only = routes_json(lab.a, BLOCK_B)
    assert [(r["prefix"], r["next_hop"]) for r in only] == [(BLOCK_B, lab.b_ip)]

    table = lab.a.bgpd("show", "peers")
    assert table.returncode == 0 and table.stdout.split()[:3] == ["NAME", "PEER", "AS"], table
    assert any(
        line.split()[:4]
        == [session_name("Node", lab.hub_ip), lab.hub_ip, str(BIRD_AS)] + ["Established"]
        for line in table.stdout.splitlines()
    ), table.stdout


def test_metrics_scrape_has_live_values_and_health_endpoints(lab: Lab) -> None:
    ensure_running(lab)
    samples = scrape(lab.a.ns)
    bird_peer = {"peer": session_name("Node", lab.hub_ip), "peer_ip": lab.hub_ip}
    mesh_peer = {"peer": session_name("Mesh", lab.b_ip), "peer_ip": lab.b_ip}
    for labels in (bird_peer, mesh_peer):
        assert sample(samples, "bgpd_bgp_session_established", **labels) == 1
        assert sample(samples, "bgpd_bgp_session_state", state="Established", **labels) == 1
        assert sample(samples, "bgpd_bgp_session_state", state="Idle", **labels) == 0
        assert sample(samples, "bgpd_bgp_session_uptime_seconds", **labels) > 0
        assert sample(samples, "bgpd_bgp_messages_received_total", **labels) > 0
        assert sample(samples, "bgpd_bgp_updates_sent_total", **labels) > 0
        assert sample(samples, "bgpd_bgp_prefixes", direction="advertised", **labels) > 0
    received = sample(samples, "bgpd_bgp_prefixes", direction="received", **bird_peer)
    assert received == len(BIRD_ROUTES)
    assert sample(samples, "bgpd_bgp_peer_as", **bird_peer) == BIRD_AS
    assert sample(samples, "bgpd_datastore_in_sync") == 1
    assert sample(samples, "bgpd_kernel_routes") == len(lab.a.routes())
    assert sample(samples, "bgpd_info", node="node-a", router_id=lab.a_ip) == 1
    established = sample(
        samples,
        "bgpd_bgp_fsm_transitions_total",
        peer=bird_peer["peer"],
        state="Established",
    )
    assert established >= 1
    assert http_get(lab.a.ns, f"http://{METRICS}/readyz")[0] == 200
    code, body = http_get(lab.a.ns, f"http://{METRICS}/livez")
    assert (code, body.strip()) == (200, "daemon is up and running")
    assert http_get(lab.a.ns, f"http://{METRICS}/nothing")[0] == 404


def test_sighup_applies_a_policy_change_without_resetting_sessions(lab: Lab) -> None:
    ensure_running(lab)
    wait_for(
        lambda: f"({COMMUNITY_BEFORE.replace(':', ',')})" in bird_route(lab, BLOCK_A),
        ROUTE_TIMEOUT,
        lambda: bird_route(lab, BLOCK_A),
    )
    before = {name: peer["since"] for name, peer in peers_json(lab.a).items()}
    b_before = peers_json(lab.b)[session_name("Mesh", lab.a_ip)]["since"]
    # BIRD's "since" column can move by a second between two reads; its TCP connection is the
    # exact witness: a reset session is a new connection.
    connections = bgp_connections(lab.hub)
    assert len(connections) == 1, connections
    text = lab.a.datastore.read_text()
    assert text.count(COMMUNITY_BEFORE) == 1
    rewrite_in_place(lab.a.datastore, text.replace(COMMUNITY_BEFORE, COMMUNITY_AFTER))
    assert lab.a.proc is not None
    os.kill(lab.a.proc.pid, signal.SIGHUP)
    after = f"({COMMUNITY_AFTER.replace(':', ',')})"
    wait_for(
        lambda: after in bird_route(lab, BLOCK_A), ROUTE_TIMEOUT, lambda: bird_route(lab, BLOCK_A)
    )

    def b_sees_it() -> bool:
        found = routes_json(lab.b, BLOCK_A)
        return bool(found) and found[0]["communities"] == [COMMUNITY_AFTER]

    wait_for(b_sees_it, ROUTE_TIMEOUT, lambda: json.dumps(routes_json(lab.b, BLOCK_A)))
    lab.a.datastore_text = lab.a.datastore.read_text()  # a restart keeps the new policy
    assert lab.a.logged("reload requested")
    assert {name: peer["since"] for name, peer in peers_json(lab.a).items()} == before
    assert peers_json(lab.b)[session_name("Mesh", lab.a_ip)]["since"] == b_before
    assert lab.bird.established() and bgp_connections(lab.hub) == connections
    assert not any(lab.a.session_down_logged(ip) for ip in lab.a_sessions.values())


def bgp_connections(ns: Namespace) -> set[tuple[str, str]]:
    """Established TCP connections to or from port 179 in ``ns``: (local, peer) endpoints."""
    out = ns.run("ss", "-Htn", "state", "established", "( sport = :179 or dport = :179 )").stdout
    return {(words[-2], words[-1]) for words in map(str.split, out.splitlines()) if words}


def rewrite_in_place(path: Path, text: str) -> None:
    """Write ``text`` over ``path`` keeping its inode, size and mtime (the poll's identity)."""
    st = path.stat()
    assert len(text.encode()) == st.st_size
    with open(path, "r+") as handle:
        handle.write(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_sigterm_then_restart_keeps_every_kernel_route(lab: Lab) -> None:
    ensure_running(lab)
    before = lab.a.routes()
    assert {BLOCK_A, BLOCK_B, *BIRD_ROUTES} <= set(before)
    b_before = lab.b.routes()
    monitors = [
        RouteMonitor(lab.a.ns, lab.a.workdir / "monitor-a.log"),
        RouteMonitor(lab.b.ns, lab.b.workdir / "monitor-b.log"),
    ]
    for monitor in monitors:
        monitor.start()
    lab.cleanups.extend(monitor.stop for monitor in monitors)
    for daemon, monitor in zip((lab.a, lab.b), monitors, strict=True):
        # A probe route, added and deleted until the monitor reports it, proves the monitor is
        # subscribed before anything else can change (it starts asynchronously).
        def subscribed(ns: Namespace = daemon.ns, m: RouteMonitor = monitor) -> bool:
            ns.ip("route", "add", "blackhole", PROBE, "proto", "static")
            ns.ip("route", "del", "blackhole", PROBE, "proto", "static")
            return bool(m.deletions(PROBE))

        wait_for(subscribed, 20, lab.describe, interval=0.5)

    def kept() -> bool:
        now_a, now_b = lab.a.routes(), lab.b.routes()
        missing = set(before) - set(now_a) | set(b_before) - set(now_b)
        assert not missing, f"routes disappeared: {sorted(missing)}\n{lab.describe()}"
        return True

    try:
        lab.a.stop(signal.SIGTERM)
        assert lab.a.events()[-1].get("event") == "stopping", lab.a.describe()
        for _ in range(8):  # the gap between stop and start, sampled
            kept()
            time.sleep(0.25)
        lab.a.start()
        wait_for(lambda: kept() and _answers(lab.a.bgpd("health", "--ready")), 20, lab.a.describe)
        wait_established(lab)
        wait_for(
            lambda: kept() and not status_json(lab.a)["graceful_restart_recovering"],
            ROUTE_TIMEOUT,
            lab.describe,
        )
        wait_for(lambda: kept() and converged(lab), ROUTE_TIMEOUT, lab.describe)
    finally:
        for monitor in monitors:
            monitor.stop()
    assert lab.a.routes() == before
    for prefix in before:
        assert monitors[0].deletions(prefix) == [], monitors[0].path.read_text()
    for prefix in b_before:
        assert monitors[1].deletions(prefix) == [], monitors[1].path.read_text()


def test_stop_withdraw_sends_cease_and_removes_our_routes(lab: Lab) -> None:
    ensure_running(lab)
    assert lab.a.routes()
    stopped = lab.a.bgpd("stop", "--withdraw", "--message", SHUTDOWN_MESSAGE)
    assert stopped.returncode == 0, stopped
    proc = lab.a.proc
    assert proc is not None
    proc.wait(30)
    assert proc.returncode == 0, lab.a.describe()

    # BIRD's protocol log keeps the NOTIFICATION it got (its "Last error" moves on to the
    # refused reconnects).
    bird_log = lab.bird.dir / "bird-proto.log"

    def bird_saw_shutdown() -> bool:
        received = f"{lab.bird.protocol}: Received: Administrative shutdown"
        return received in bird_log.read_text(errors="replace") and not lab.bird.established()

    wait_for(bird_saw_shutdown, 20, lab.bird.describe)

    def b_saw_cease() -> bool:
        return any(
            event.get("event") == "session down"
            and event.get("peer") == lab.a_ip
            and event.get("notification") == "cease/administrative-shutdown"
            and event.get("shutdown_message") == SHUTDOWN_MESSAGE  # RFC 9003
            for event in lab.b.events_since_start()
        )

    wait_for(b_saw_cease, 20, lab.b.describe)
    assert lab.a.routes() == {}
    wait_for(lambda: BLOCK_A not in lab.b.routes(), ROUTE_TIMEOUT, lab.b.describe)
    wait_for(lambda: BLOCK_A not in lab.bird.received(), ROUTE_TIMEOUT, lab.bird.describe)


# ---- bad configuration -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Namespace, Path]]:
    if not have_root():
        pytest.skip("needs root and iproute2")
    ns = Namespace.create(PREFIX)
    try:
        yield ns, tmp_path_factory.mktemp("bad-config")
    finally:
        ns.delete()


def run_bgpd(
    ns: Namespace, workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``bgpd run`` with a valid baseline overridden by ``args`` (the later flag wins)."""
    datastore = workdir / "good.yaml"
    datastore.write_text(calico_datastore(OurNode("node-x", "10.213.78.1/24"), ()))
    argv = [
        sys.executable,
        "-m",
        "bgpd",
        "run",
        "--node",
        "node-x",
        "--datastore",
        f"file:{datastore}",
        "--control-socket",
        str(workdir / "bird.ctl"),
        "--metrics-listen",
        "none",
        "--log-format",
        "json",
        *args,
    ]
    return subprocess.run(
        ["ip", "netns", "exec", ns.name, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr without the JSON log lines."""
    out = []
    for line in result.stderr.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            if isinstance(json.loads(line), dict):
                continue
        out.append(line)
    return out


_LISTEN = """
import socket, sys, time
family, address = sys.argv[1], sys.argv[2]
if family == "unix":
    s = socket.socket(socket.AF_UNIX)
    s.bind(address)
else:
    host, port = address.rsplit(":", 1)
    s = socket.socket(socket.AF_INET)
    s.bind((host, int(port)))
s.listen()
print("listening", flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def listener(ns: Namespace, family: str, address: str) -> Iterator[None]:
    """Another process listening on ``address`` in ``ns``: ``tcp`` HOST:PORT or a ``unix`` path."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, sys.executable, "-c", _LISTEN, family, address],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        yield
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_bad_configuration_exits_with_one_line_naming_the_field(
    scratch: tuple[Namespace, Path],
) -> None:
    ns, workdir = scratch
    not_yaml = workdir / "not-yaml.yaml"
    not_yaml.write_text("kind: [BGPPeer\n")
    cases: list[tuple[tuple[str, ...], dict[str, str], str]] = [
        (("--metrics-listen", "nonsense"), {}, "invalid --metrics-listen 'nonsense': "),
        ((), {"CALICO_ROUTER_ID": "bogus"}, "invalid CALICO_ROUTER_ID 'bogus': "),
        (
            ("--datastore", "file:/nonexistent/datastore.yaml"),
            {},
            "invalid --datastore 'file:/nonexistent/datastore.yaml': no such file",
        ),
        (
            ("--datastore", f"file:{not_yaml}"),
            {},
            f"invalid --datastore 'file:{not_yaml}': unreadable: ",
        ),
        (("--log-level", "loud"), {}, "invalid --log-level 'loud': "),
    ]
    for args, env, expected in cases:
        result = run_bgpd(ns, workdir, *args, env=env)
        assert result.returncode == 2, (args, env, result.stderr)
        lines = error_lines(result)
        assert len(lines) == 1 and lines[0].startswith(f"bgpd: {expected}"), (args, lines)
    with listener(ns, "tcp", METRICS):
        result = run_bgpd(ns, workdir, "--metrics-listen", METRICS)
    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"bgpd: invalid --metrics-listen '{METRICS}': "), lines
    assert "address already in use" in lines[0].lower(), lines
    in_use = workdir / "in-use.ctl"
    with listener(ns, "unix", str(in_use)):
        result = run_bgpd(ns, workdir, "--control-socket", str(in_use))
    assert result.returncode == 2, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"bgpd: invalid --control-socket '{in_use}': ")


def test_invalid_datastore_record_is_named_and_skipped(scratch: tuple[Namespace, Path]) -> None:
    """A document that fails validation is logged with its field and value and skipped; the
    daemon runs on the rest (bgpd/datastore/file.py rule 2)."""
    ns, workdir = scratch
    datastore = workdir / "one-bad-peer.yaml"
    datastore.write_text(
        calico_datastore(
            OurNode("node-x", "10.213.78.1/24"),
            (),
            extra=(
                {
                    "apiVersion": "projectcalico.org/v3",
                    "kind": "BGPPeer",
                    "metadata": {"name": "broken"},
                    "spec": {"node": "node-x", "peerIP": "10.213.78.9", "asNumber": "bogus"},
                },
            ),
        )
    )
    daemon = BgpdNode(ns, OurNode("node-x", "10.213.78.1/24"), (), workdir / "record")
    daemon.datastore_text = datastore.read_text()
    try:
        daemon.start()

        def rejected() -> list[dict[str, Any]]:
            return [e for e in daemon.events() if e.get("event") == "datastore.file.rejected"]

        wait_for(lambda: bool(rejected()), 20, daemon.describe)
        event = rejected()[0]
        assert "(BGPPeer broken).spec.asNumber" in event["where"], event
        assert "'bogus'" in event["reason"], event
        wait_for(lambda: _answers(daemon.bgpd("health", "--ready")), 20, daemon.describe)
        assert daemon.running
        assert peers_json(daemon) == {}
    finally:
        daemon.stop(signal.SIGKILL)


def test_sigterm_stops_a_daemon_still_waiting_for_its_datastore(
    scratch: tuple[Namespace, Path],
) -> None:
    """An etcd that never answers (nothing listens on the namespace's 127.0.0.1:1): the daemon
    waits for its first snapshot and must still stop on SIGTERM."""
    ns, workdir = scratch
    log = workdir / "waiting.log"
    proc = ns.popen(
        sys.executable,
        "-m",
        "bgpd",
        "run",
        "--node",
        "node-x",
        "--datastore",
        "etcd://127.0.0.1:1",
        "--control-socket",
        str(workdir / "waiting.ctl"),
        "--metrics-listen",
        "none",
        log=str(log),
    )
    try:
        wait_for(
            lambda: "control socket listening" in log.read_text(errors="replace"),
            20,
            lambda: log.read_text(errors="replace"),
        )
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"bgpd ignored SIGTERM:\n{log.read_text(errors='replace')[-2000:]}")
        assert proc.returncode == 0, log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
