"""Benchmark: ``bgpd explain PREFIX`` with a full table in the RIB.

The router is filled in process, as the daemon's routing task fills it: a lab node planned from
its datastore, sessions Established, UPDATEs of N IPv4 prefixes (default 1M, the Internet-like
mix of ``bench/ingest.py``) received, drained, sent and planned into the desired kernel table.
Then ``explain`` is timed on random prefixes: in process as the control socket computes the
answer (the explanation, its JSON document and the encoded reply line), and end to end as the
CLI asks it, through a real control socket served on an event loop.

Cases:
1. ``tor``: node1 of the tor lab, its ToR (eBGP, no ADD-PATH) sends the full table.
2. ``mesh-add-path``: node1 of mesh3, node2 and node3 (iBGP, ADD-PATH receive as Calico's
   sessions negotiate it) both send the full table: two candidates per prefix, and the
   Adj-RIBs-In keyed by (prefix, path id), which ``explain`` scans.

Target (issue 21): under 100 ms per answer with 1M routes in the RIB.
Run: ``python3 bench/explain.py [--prefixes N] [--samples K] [--cases tor,mesh-add-path]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchlib import loadavg, machine, percentile  # noqa: E402
from ingest import make_attribute_sets, make_prefixes, rss_bytes  # noqa: E402

from bgpd.calico.node import NodePlanner  # noqa: E402
from bgpd.config import DaemonConfig, FileSource  # noqa: E402
from bgpd.control.commands import ControlClient  # noqa: E402
from bgpd.control.server import ControlServer  # noqa: E402
from bgpd.datastore import DEFAULT_DATASTORE  # noqa: E402
from bgpd.datastore.file import FileDatastore  # noqa: E402
from bgpd.explain import explanation_json  # noqa: E402
from bgpd.router import Router  # noqa: E402
from bgpd.session.config import PeerKey  # noqa: E402
from bgpd.session.events import Established, UpdateReceived  # noqa: E402
from bgpd.status import DaemonStatus, PeerStatus, RouteStatus  # noqa: E402
from bgpd.wire.messages import Announcement, Update  # noqa: E402
from bgpd.wire.negotiated import Negotiated  # noqa: E402
from bgpd.wire.types import IPV4_UNICAST, PathAttributes, Prefix, prefix_to_str  # noqa: E402

CHUNK = 500  # prefixes per UPDATE


def fill(
    datastore: Path,
    node: str,
    local_as: int,
    peers: list[tuple[str, int]],
    prefixes: list[Prefix],
    add_path: bool,
) -> Router:
    """The node's router with every peer Established and sending ``prefixes``."""
    snapshot = FileDatastore(datastore).reload()
    assert snapshot is not None
    planner = NodePlanner(DaemonConfig(node=node, datastore=FileSource(datastore)))
    router = Router()
    router.apply_plan(planner.plan(snapshot), 0.0)
    router.drain()
    rng = random.Random(21)
    for address, asn in peers:
        key = PeerKey(ipaddress.IPv4Address(address))
        families = frozenset({IPV4_UNICAST})
        negotiated = Negotiated(
            peer_as=asn,
            local_as=local_as,
            peer_id=int(ipaddress.IPv4Address(address)),
            external=asn != local_as,
            add_path_rx=families if add_path else frozenset(),
            add_path_tx=families if add_path else frozenset(),
        )
        assert router.session_event(key, Established(negotiated), 1.0) is not None
        sets = [
            PathAttributes(
                origin=a.origin,
                as_path=a.as_path if asn != local_as else (),
                next_hop=ipaddress.IPv4Address(address).packed,
                med=a.med,
                local_pref=None if asn != local_as else 100,
                communities=a.communities,
            )
            for a in make_attribute_sets(1000, asn, rng)
        ]
        for start in range(0, len(prefixes), CHUNK):
            chunk = prefixes[start : start + CHUNK]
            path_ids = [1] * len(chunk) if add_path else None
            announcement = Announcement(
                IPV4_UNICAST, sets[start // CHUNK % len(sets)], chunk, path_ids
            )
            router.session_event(key, UpdateReceived(Update(announced=(announcement,))), 2.0)
            if start % 65536 == 0:
                router.drain()
        router.drain()
    for address, _ in peers:
        while router.take(PeerKey(ipaddress.IPv4Address(address))):
            pass
    while router.kernel_batch(1 << 16).upserts:
        pass
    return router


def time_explain(router: Router, wanted: list[str]) -> list[float]:
    times = []
    for prefix in wanted:
        start = time.perf_counter()
        reply = json.dumps(explanation_json(router.explain(prefix)), separators=(",", ":"))
        times.append((time.perf_counter() - start) * 1000)
        assert reply
    return times


class _Provider:
    """The daemon's ``StatusProvider`` over the filled router (what the control socket reads)."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def daemon_status(self) -> DaemonStatus:
        return DaemonStatus("bench", "", "node1", 0.0, 0.0, datastore_in_sync=True)

    def peer_statuses(self) -> list[PeerStatus]:
        return []

    def route_statuses(self, prefix: str | None = None) -> list[RouteStatus]:
        return self.router.route_statuses(prefix)

    def explain(self, prefix: str) -> dict[str, Any]:
        return explanation_json(self.router.explain(prefix))


def time_socket(router: Router, wanted: list[str]) -> list[float]:
    """``bgpd explain`` as the CLI asks it: a client of a real control socket, the server on an
    event loop in this process (the daemon's routing loop serves it the same way)."""

    async def serve_and_ask() -> list[float]:
        with tempfile.TemporaryDirectory() as directory:
            path = f"{directory}/bgpd.ctl"
            async with ControlServer(path, _Provider(router), _NoActions()):
                times = await asyncio.to_thread(ask_all, path)
                await asyncio.sleep(0.2)  # the server sees the client's close before its own
                return times

    def ask_all(path: str) -> list[float]:
        times = []
        with ControlClient(path) as client:
            for prefix in wanted:
                start = time.perf_counter()
                document = client.json(f"explain {prefix}")
                times.append((time.perf_counter() - start) * 1000)
                assert document["prefix"] == prefix
        return times

    return asyncio.run(serve_and_ask())


class _NoActions:
    def request_reload(self) -> None:
        pass

    def request_stop(self, withdraw: bool, message: str) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--cases", default="tor,mesh-add-path")
    args = parser.parse_args()
    print(f"# {machine()}; load {loadavg()}")
    prefixes = make_prefixes(args.prefixes, random.Random(1))
    cases = {
        "tor": (
            ROOT / "containerlab/tor/datastore.yaml",
            "node1",
            64601,
            [("10.1.1.1", 65001)],
            False,
        ),
        "mesh-add-path": (
            DEFAULT_DATASTORE,
            "node1",
            64512,
            [("10.0.0.2", 64512), ("10.0.0.3", 64512)],
            True,
        ),
    }
    for name in args.cases.split(","):
        datastore, node, local_as, peers, add_path = cases[name]
        gc.collect()
        start = time.perf_counter()
        router = fill(datastore, node, local_as, peers, prefixes, add_path)
        loaded = time.perf_counter() - start
        assert router.speaker is not None
        routes = len(router.speaker.loc_ribs[IPV4_UNICAST])
        paths = len(prefixes) * len(peers)
        wanted = [
            prefix_to_str(p, IPV4_UNICAST)
            for p in random.Random(7).sample(prefixes, min(args.samples, len(prefixes)))
        ]
        print(
            f"{name}: {routes:,} prefixes, {paths:,} paths from peers (loaded in {loaded:.1f} s,"
            f" RSS {rss_bytes() / 2**20:.0f} MiB), explain of {len(wanted)} random prefixes:"
        )
        for how, times in (
            ("in process", time_explain(router, wanted)),
            ("over the control socket", time_socket(router, wanted)),
        ):
            p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
            print(
                f"  {how}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(times):.2f} ms"
                f" (target < 100 ms) {'OK' if p99 < 100 else 'MISSED'}"
            )
        del router
    return 0


if __name__ == "__main__":
    sys.exit(main())
