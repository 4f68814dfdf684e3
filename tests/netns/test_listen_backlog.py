"""A reconnect storm: a route reflector's thousand clients all connecting within a second find
room in the accept queue (listener rule 5) and all reach Established, and the namespace's
``ListenOverflows`` counter does not grow."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from bgpd_driver import BgpdNode, OurNode
from netns import Namespace, inside, veth
from peer_drivers import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bgp_load import SimPeer, wait_all  # noqa: E402
from rr_scale import ASN, SUBNET, add_addresses, datastore, sim_address  # noqa: E402

pytestmark = pytest.mark.netns

CLIENTS = 1000


def listen_overflows(ns: Namespace) -> int:
    """TcpExt ListenOverflows of ``ns`` (/proc/net/netstat: a names line, then a values line)."""
    lines = ns.run("cat", "/proc/net/netstat").stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=True))["ListenOverflows"])
    raise AssertionError("no TcpExt line in /proc/net/netstat")


async def _storm(target: str) -> list[SimPeer]:
    peers = [SimPeer(sim_address(i), target, ASN, []) for i in range(CLIENTS)]
    try:
        await asyncio.gather(*(p.start() for p in peers))
        await wait_all(peers, lambda p: p.established.is_set(), 120)
    finally:
        await asyncio.gather(*(p.close() for p in peers))
    return peers


def test_a_thousand_clients_connecting_at_once_are_all_established(
    namespaces: tuple[Namespace, Namespace], tmp_path: Path
) -> None:
    server, clients = namespaces
    link = veth(server, clients, SUBNET)
    address = str(link.a_addr.ip)
    add_addresses(clients, link.b_if, CLIENTS, tmp_path)
    node = BgpdNode(
        server,
        OurNode("rr", f"{address}/16"),
        (),
        tmp_path / "bgpd",
        datastore_text=datastore("reflector", CLIENTS, address),
    )
    node.start()
    try:
        somaxconn = int(server.run("cat", "/proc/sys/net/core/somaxconn").stdout)
        wait_for(lambda: node.logged("listening"), 20, node.describe)
        listening = [e for e in node.events_since_start() if e.get("event") == "listening"]
        assert listening and listening[-1]["backlog"] == somaxconn, node.describe()
        status = node.bgpd("status")
        assert f"listen backlog:    {somaxconn}" in status.stdout, status.stdout
        before = listen_overflows(server)
        with inside(clients):
            peers = asyncio.run(_storm(address))
        assert all(p.established.is_set() for p in peers)
        assert listen_overflows(server) == before
    finally:
        node.stop()
