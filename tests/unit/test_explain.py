"""``bgpd explain`` goldens: the labs' datastores planned for one node, sessions brought up and
routes received as values through the router, then every prefix of interest explained (JSON
document and text). ``BGPD_REGOLDEN=1`` rewrites the files after a deliberate change."""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from bgpd.calico.node import NodePlanner
from bgpd.config import DaemonConfig, FileSource
from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.file import FileDatastore
from bgpd.explain import explanation_json, explanation_text
from bgpd.rib.adj_rib_in import PATH_ID_PROBE_LIMIT, AdjRibIn
from bgpd.router import Router
from bgpd.session.config import PeerKey
from bgpd.session.events import Established, UpdateReceived
from bgpd.wire.constants import SegmentType
from bgpd.wire.messages import Announcement, Update
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, AsPathSegment, PathAttributes, prefix_from_str

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "explain"
REGOLDEN = os.environ.get("BGPD_REGOLDEN") == "1"


@dataclass(frozen=True)
class Peer:
    address: str
    asn: int
    routes: tuple[tuple[str, PathAttributes], ...]


def _ip(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def _path(*asns: int) -> tuple[AsPathSegment, ...]:
    return (AsPathSegment(SegmentType.AS_SEQUENCE, asns),) if asns else ()


@dataclass(frozen=True)
class Case:
    name: str
    datastore: Path
    node: str
    local_as: int
    peers: tuple[Peer, ...]
    prefixes: tuple[str, ...]


RR_CLUSTER = _ip("224.0.0.1")
CASES = (
    Case(
        "mesh3-node1",
        DEFAULT_DATASTORE,
        "node1",
        64512,
        (
            Peer(
                "10.0.0.2",
                64512,
                (
                    (
                        "10.244.2.0/26",
                        PathAttributes(next_hop=_ip("10.0.0.2"), local_pref=2147482623),
                    ),
                ),
            ),
            Peer(
                "10.0.0.3",
                64512,
                (("10.244.2.0/26", PathAttributes(next_hop=_ip("10.0.0.3"), local_pref=100)),),
            ),
        ),
        ("10.244.1.0/26", "10.244.2.0/26", "10.244.3.0/26", "192.0.2.0/24", "10.244.2.7"),
    ),
    Case(
        "rr-node1",
        ROOT / "containerlab" / "rr" / "datastore.yaml",
        "node1",
        64512,
        tuple(
            Peer(
                rr,
                64512,
                (
                    (
                        "10.244.2.0/26",
                        PathAttributes(
                            next_hop=_ip("10.0.0.12"),
                            local_pref=2147482623,
                            originator_id=_ip("10.0.0.12"),
                            cluster_list=(RR_CLUSTER,),
                        ),
                    ),
                    ("192.0.2.0/24", PathAttributes(next_hop=_ip("10.0.0.12"), local_pref=100)),
                ),
            )
            for rr in ("10.0.0.1", "10.0.0.2")
        ),
        ("10.244.1.0/26", "10.244.2.0/26", "192.0.2.0/24"),
    ),
    Case(
        "tor-node1",
        ROOT / "containerlab" / "tor" / "datastore.yaml",
        "node1",
        64601,
        (
            Peer(
                "10.1.1.1",
                65001,
                (
                    ("0.0.0.0/0", PathAttributes(as_path=_path(65001), next_hop=_ip("10.1.1.1"))),
                    (
                        "10.244.3.0/26",
                        PathAttributes(
                            as_path=_path(65001, 65002, 64603), next_hop=_ip("10.1.1.1")
                        ),
                    ),
                    (
                        "10.244.1.0/26",
                        PathAttributes(as_path=_path(65001, 64601), next_hop=_ip("10.1.1.1")),
                    ),
                ),
            ),
        ),
        ("0.0.0.0/0", "10.244.1.0/26", "10.244.3.0/26"),
    ),
    Case(
        "tor-filters-node1",
        GOLDEN / "tor-filters.yaml",
        "node1",
        64601,
        (
            Peer(
                "10.1.1.1",
                65001,
                (
                    ("0.0.0.0/0", PathAttributes(as_path=_path(65001), next_hop=_ip("10.1.1.1"))),
                    (
                        "10.99.1.0/24",
                        PathAttributes(as_path=_path(65001, 65099), next_hop=_ip("10.1.1.1")),
                    ),
                ),
            ),
        ),
        ("0.0.0.0/0", "10.99.1.0/24", "10.244.1.0/26"),
    ),
)


def explained_router(case: Case) -> Router:
    """The case's node with every peer Established and its routes received."""
    snapshot = FileDatastore(case.datastore).reload()
    assert snapshot is not None
    planner = NodePlanner(DaemonConfig(node=case.node, datastore=FileSource(case.datastore)))
    router = Router()
    router.apply_plan(planner.plan(snapshot), 0.0)
    router.drain()
    for peer in case.peers:
        key = PeerKey(ipaddress.IPv4Address(peer.address))
        negotiated = Negotiated(
            peer_as=peer.asn,
            local_as=case.local_as,
            peer_id=int(ipaddress.IPv4Address(peer.address)),
            external=peer.asn != case.local_as,
        )
        assert router.session_event(key, Established(negotiated), 1.0) is not None
        for prefix, attrs in peer.routes:
            update = Update(
                announced=(Announcement(IPV4_UNICAST, attrs, [prefix_from_str(prefix)]),)
            )
            router.session_event(key, UpdateReceived(update), 2.0)
        router.drain()
    for peer in case.peers:
        router.take(PeerKey(ipaddress.IPv4Address(peer.address)))
    router.kernel_batch(1 << 20)
    return router


def _check(path: Path, text: str) -> None:
    if REGOLDEN:
        path.write_text(text)
    assert path.read_text() == text, f"{path} differs (BGPD_REGOLDEN=1 to rewrite)"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_explain_goldens(case: Case) -> None:
    router = explained_router(case)
    documents = {prefix: explanation_json(router.explain(prefix)) for prefix in case.prefixes}
    _check(GOLDEN / f"{case.name}.json", json.dumps(documents, indent=2, sort_keys=True) + "\n")
    text = "\n\n".join(explanation_text(doc) for doc in documents.values()) + "\n"
    _check(GOLDEN / f"{case.name}.txt", text)


def test_add_path_routes_of_a_prefix_are_found_by_probing_or_scanning() -> None:
    adj = AdjRibIn(add_path=True)
    wanted, other = prefix_from_str("10.1.0.0/24"), prefix_from_str("10.2.0.0/24")
    attrs = PathAttributes(next_hop=_ip("10.0.0.9"))
    adj.announce(adj.keys_of([wanted, wanted, other], [1, 7, 1]), attrs)
    assert adj.keys_for(wanted) == [(wanted, 1), (wanted, 7)]
    adj.mark_stale()
    adj.announce(adj.keys_of([wanted], [7]), attrs)
    assert sorted(adj.keys_for(wanted)) == [(wanted, 1), (wanted, 7)]  # stale ones too
    many = list(range(100, 100 + PATH_ID_PROBE_LIMIT + 1))
    adj.announce(adj.keys_of([other] * len(many), many), attrs)
    assert sorted(adj.keys_for(wanted)) == [(wanted, 1), (wanted, 7)]  # past the limit: a scan
    plain = AdjRibIn()
    plain.announce(plain.keys_of([wanted], None), attrs)
    assert plain.keys_for(wanted) == [wanted] and plain.keys_for(other) == []
