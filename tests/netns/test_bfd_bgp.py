"""BGP with BFD end to end (RFC 5882): the whole daemon against FRR's bfdd + bgpd and BIRD 2's
``protocol bfd``, and against itself, in namespaces.

Rules:
1. Our side is ``bgpd run`` with a Calico Enterprise ``BFDConfiguration`` (100 ms x 3 on every
   interface) and a BGPPeer with ``failureDetectionMode: BFDIfDirectlyConnected`` (the mesh for
   bgpd to bgpd); the peer runs BFD at 100 ms x 3 and the BGP hold time is 90 s, so a route that
   goes within the waits below went because of BFD.
2. Both directions: the peer frozen (SIGSTOP) -> its route leaves our kernel; bgpd frozen -> the
   peer drops our route. Then both thaw and the sessions come back.
3. No timing is asserted beyond "well before the hold time" (waits of 20 s against a 90 s
   hold time); the detection figures are measured in ``bench/bfd_failover.py``.
4. No false positives: a minute of every core busy does not flap a 100 ms x 3 session.
5. Multihop (RFC 5883): two bgpd nodes in two subnets behind a router namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bgpd_driver import (
    BgpdNode,
    ExternalPeer,
    OurNode,
    RouteMonitor,
    calico_datastore,
    calico_resource,
)
from netns import Namespace, Pair, veth
from peer_drivers import Bird2, Frr, PeerDaemon, PeerSpec, wait_for

pytestmark = pytest.mark.netns

OUR_AS, PEER_AS = 64512, 65000
OUR_BLOCK = "10.244.1.0/26"
PEER_ROUTE = "10.50.1.0/24"
HOLD = 90
WITHIN = 20.0  # seconds: well before the 90 s hold time (rule 3)
BFD_CONFIG = calico_resource(
    "BFDConfiguration",
    "default",
    {
        "nodeSelector": "all()",
        "interfaces": [
            {
                "matchPattern": "*",
                "minimumRecvInterval": "100ms",
                "minimumSendInterval": "100ms",
                "idleSendInterval": "1s",
                "multiplier": 3,
            }
        ],
    },
)


def our_node(pair: Pair, workdir: Path) -> BgpdNode:
    node = OurNode("node-a", str(pair.link.a_addr), OUR_AS, blocks=(OUR_BLOCK,))
    peer = ExternalPeer(
        str(pair.peer_address), PEER_AS, None, failure_detection_mode="BFDIfDirectlyConnected"
    )
    text = calico_datastore(node, (peer,), extra=(BFD_CONFIG,))
    return BgpdNode(pair.us, node, (peer,), workdir / "bgpd", datastore_text=text)


def peers_json(node: BgpdNode) -> list[dict[str, Any]]:
    out = node.bgpd("show", "peers", "--json").stdout
    try:
        value = json.loads(out or "[]")
    except json.JSONDecodeError:
        return []
    return value if isinstance(value, list) else []


def bfd_of(node: BgpdNode) -> dict[str, Any]:
    found = [p.get("bfd") for p in peers_json(node) if p.get("bfd")]
    return found[0] if found else {}


def freeze(node: BgpdNode, sig: signal.Signals = signal.SIGSTOP) -> None:
    assert node.proc is not None
    os.killpg(node.proc.pid, sig)


def timed(condition: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> float:
    start = time.monotonic()
    wait_for(condition, timeout, describe, interval=0.02)
    return time.monotonic() - start


@pytest.mark.parametrize("kind", [Frr, Bird2], ids=["frr", "bird2"])
def test_bfd_down_ends_bgp_both_ways(kind: type[PeerDaemon], pair: Pair, tmp_path: Path) -> None:
    if not kind.available():
        pytest.skip(f"{kind.kind} is not installed")
    spec = PeerSpec(
        local_as=PEER_AS,
        peer_as=OUR_AS,
        router_id=str(pair.peer_address),
        address=str(pair.peer_address),
        neighbor=str(pair.our_address),
        hold_time=HOLD,
        keepalive=30,
        routes=(PEER_ROUTE,),
        bfd_interval=100,
    )
    peer = kind(pair.peer, spec, tmp_path)
    node = our_node(pair, tmp_path)

    def describe() -> str:
        return f"ours: {node.describe()}\nbfd: {bfd_of(node)}\npeer: {peer.describe()}"

    def converged() -> bool:
        return PEER_ROUTE in node.routes() and OUR_BLOCK in peer.received()

    peer.start()
    node.start()
    try:
        wait_for(converged, 60, describe)
        bfd = bfd_of(node)
        assert bfd["state"] == "Up" and bfd["detect_mult"] == 3, bfd
        wait_for(lambda: bfd_of(node).get("detection_time_ms") == 300, 20, describe)

        downs = bfd["downs"]  # FRR's bfdd may flap once while its bgpd registers
        peer.freeze()  # rule 2: the peer dies without closing anything
        gone = timed(lambda: PEER_ROUTE not in node.routes(), WITHIN, describe)
        assert bfd_of(node)["downs"] == downs + 1
        assert node.logged("bfd down: bgp session ended")
        peer.thaw()
        wait_for(converged, 60, describe)

        freeze(node)  # rule 2: now we die
        try:
            dropped = timed(lambda: OUR_BLOCK not in peer.received(), WITHIN, describe)
        finally:
            freeze(node, signal.SIGCONT)
        wait_for(converged, 60, describe)
        print(f"{kind.kind}: our kernel lost its route {gone * 1000:.0f} ms after the freeze; ")
        print(f"{kind.kind} dropped ours {dropped * 1000:.0f} ms after bgpd froze")
        if isinstance(peer, Bird2):
            ours = node.ns.run(Bird2.client, "-s", str(node.control_socket), "show bfd sessions")
            theirs = peer.cli("show", "bfd", "sessions")
            header = [line for line in theirs.splitlines() if "IP address" in line]
            assert header and header[0].strip() in ours.stdout, (theirs, ours.stdout)
    finally:
        node.stop()
        peer.thaw()
        peer.stop()


def test_bgpd_to_bgpd_frozen_node_cut_link_and_deconfiguration(pair: Pair, tmp_path: Path) -> None:
    a_node = OurNode("node-a", str(pair.link.a_addr), OUR_AS, blocks=(OUR_BLOCK,))
    b_node = OurNode("node-b", str(pair.link.b_addr), OUR_AS, blocks=("10.244.2.0/26",))
    nodes = []
    for me, other, ns, name in ((a_node, b_node, pair.us, "a"), (b_node, a_node, pair.peer, "b")):
        text = calico_datastore(me, (), others=(other,), extra=(BFD_CONFIG,))
        nodes.append(BgpdNode(ns, me, (), tmp_path / name, datastore_text=text))
    a, b = nodes

    def describe() -> str:
        return f"a: {a.describe()}\nb: {b.describe()}"

    def converged() -> bool:
        return "10.244.2.0/26" in a.routes() and OUR_BLOCK in b.routes()

    for node in nodes:
        node.start()
    try:
        wait_for(converged, 60, describe)
        assert bfd_of(a)["state"] == "Up" and bfd_of(b)["state"] == "Up"
        freeze(b)
        timed(lambda: "10.244.2.0/26" not in a.routes(), WITHIN, describe)
        freeze(b, signal.SIGCONT)
        wait_for(converged, 60, describe)

        pair.peer.ip("link", "set", pair.link.b_if, "down")  # the far end of the cable goes
        timed(lambda: "10.244.2.0/26" not in a.routes(), WITHIN, describe)
        assert a.running and b.running
        pair.peer.ip("link", "set", pair.link.b_if, "up")
        wait_for(converged, 60, describe)
        assert bfd_of(a)["downs"] >= 2, bfd_of(a)

        # node-a's BFD deconfigured: AdminDown to node-b (RFC 5880 §6.8.16), which is no failure
        # there (RFC 5882 §3.2): no BGP session ends, no route leaves either kernel
        monitor = RouteMonitor(pair.peer, tmp_path / "monitor.log")
        monitor.start()
        downs_logged = sum(1 for e in b.events_since_start() if e.get("event") == "session down")
        a.datastore.write_text(calico_datastore(a_node, (), others=(b_node,)))
        wait_for(lambda: not bfd_of(a), 20, describe)
        wait_for(lambda: bfd_of(b).get("state") == "Down", 20, describe)
        time.sleep(2.0)
        monitor.stop()
        assert converged() and monitor.deletions(OUR_BLOCK) == [], describe()
        assert downs_logged == sum(
            1 for e in b.events_since_start() if e.get("event") == "session down"
        )
    finally:
        for node in nodes:
            if node.proc is not None:
                freeze(node, signal.SIGCONT)
            node.stop()


def cpu_hogs() -> list[subprocess.Popen[bytes]]:
    """One busy loop per core, at the daemon's priority."""
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]


def test_cpu_load_does_not_flap_a_100_ms_x_3_session(pair: Pair, tmp_path: Path) -> None:
    """60 s (``BGPD_BFD_LOAD_SECONDS``) of every core busy beside two bgpd nodes whose mesh
    session runs BFD at 100 ms x 3: no BFD Down, no route withdrawn (``bench/bfd_load.py``
    measures the lowest interval that holds)."""
    seconds = float(os.environ.get("BGPD_BFD_LOAD_SECONDS", "60"))
    a_node = OurNode("node-a", str(pair.link.a_addr), OUR_AS, blocks=(OUR_BLOCK,))
    b_node = OurNode("node-b", str(pair.link.b_addr), OUR_AS, blocks=("10.244.2.0/26",))
    a = BgpdNode(
        pair.us,
        a_node,
        (),
        tmp_path / "a",
        datastore_text=calico_datastore(a_node, (), others=(b_node,), extra=(BFD_CONFIG,)),
    )
    b = BgpdNode(
        pair.peer,
        b_node,
        (),
        tmp_path / "b",
        datastore_text=calico_datastore(b_node, (), others=(a_node,), extra=(BFD_CONFIG,)),
    )
    monitor = RouteMonitor(pair.us, tmp_path / "monitor.log")

    def describe() -> str:
        return f"a: {a.describe()}\nb: {b.describe()}"

    a.start()
    b.start()
    hogs: list[subprocess.Popen[bytes]] = []
    try:
        wait_for(lambda: "10.244.2.0/26" in a.routes() and OUR_BLOCK in b.routes(), 60, describe)
        wait_for(lambda: bfd_of(a).get("detection_time_ms") == 300, 20, describe)
        before = (bfd_of(a)["downs"], bfd_of(b)["downs"])
        monitor.start()
        time.sleep(0.5)
        hogs = cpu_hogs()
        time.sleep(seconds)
        for hog in hogs:
            hog.kill()
            hog.wait()
        hogs = []
        time.sleep(1.0)
        assert (bfd_of(a)["downs"], bfd_of(b)["downs"]) == before, describe()
        assert monitor.deletions("10.244.2.0/26") == [], describe()
        assert bfd_of(a)["state"] == bfd_of(b)["state"] == "Up"
    finally:
        for hog in hogs:
            hog.kill()
        monitor.stop()
        a.stop()
        b.stop()


def rib_prefixes(node: BgpdNode) -> set[str]:
    try:
        routes = json.loads(node.bgpd("show", "routes", "--json").stdout or "[]")
    except json.JSONDecodeError:
        return set()
    return {r["prefix"] for r in routes if r.get("peer") != "local"}


def test_multihop_bfd_between_bgpd_nodes_behind_a_router(pair: Pair, tmp_path: Path) -> None:
    """RFC 5883: node-a and node-b in two subnets joined by a router namespace; their mesh
    session is multihop and so is its BFD (UDP 4784). The next hop is not directly connected,
    so the learned route stays in the RIB (README: no recursive resolution) and the test reads
    the RIB: node-b frozen, its block leaves node-a's RIB well before the hold time."""
    router = pair.peer
    far = Namespace.create("hD-")
    pair.extra.append(far)
    link = veth(far, router, "10.218.2.0/30")
    router.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    pair.us.ip("route", "add", "10.218.2.0/30", "via", str(pair.peer_address))
    far.ip("route", "add", str(pair.link.a_addr.network), "via", str(link.b_addr.ip))
    a_node = OurNode("node-a", str(pair.link.a_addr), OUR_AS, blocks=(OUR_BLOCK,))
    b_node = OurNode("node-b", str(link.a_addr), OUR_AS, blocks=("10.244.2.0/26",))
    a = BgpdNode(
        pair.us,
        a_node,
        (),
        tmp_path / "a",
        datastore_text=calico_datastore(a_node, (), others=(b_node,), extra=(BFD_CONFIG,)),
    )
    b = BgpdNode(
        far,
        b_node,
        (),
        tmp_path / "b",
        datastore_text=calico_datastore(b_node, (), others=(a_node,), extra=(BFD_CONFIG,)),
    )

    def describe() -> str:
        return f"a: {a.describe()}\nbfd: {bfd_of(a)}\nb: {b.describe()}"

    a.start()
    b.start()
    try:
        wait_for(lambda: "10.244.2.0/26" in rib_prefixes(a), 60, describe)
        bfd = bfd_of(a)
        assert bfd["state"] == "Up" and bfd["multihop"], bfd
        freeze(b)
        timed(lambda: "10.244.2.0/26" not in rib_prefixes(a), WITHIN, describe)
        freeze(b, signal.SIGCONT)
        wait_for(lambda: "10.244.2.0/26" in rib_prefixes(a), 60, describe)
    finally:
        for node in (a, b):
            if node.proc is not None:
                freeze(node, signal.SIGCONT)
            node.stop()
