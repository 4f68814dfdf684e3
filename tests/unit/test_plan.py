"""``bgpd plan`` goldens: every node of every lab datastore planned offline (the desired state,
JSON and text), and the difference of a set of changes against the tor lab's node1 with the
routes its ToR would send. ``BGPD_REGOLDEN=1`` rewrites the files after a deliberate change."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import pytest
import yaml

from bgpd.config import DaemonConfig, FileSource
from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.file import FileDatastore, parse_documents
from bgpd.plan import (
    KnownRoute,
    apply_change,
    desired_state,
    desired_state_text,
    known_route,
    node_state,
    planned_change,
    planned_change_text,
)
from bgpd.wire.constants import SegmentType
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    PathAttributes,
    prefix_from_str,
)
from peers.model import Snapshot

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "plan"
REGOLDEN = os.environ.get("BGPD_REGOLDEN") == "1"
LABS = {
    "mesh3": DEFAULT_DATASTORE,  # also bench/labs/mesh3-etcd (the same resources in etcd)
    "rr": ROOT / "containerlab" / "rr" / "datastore.yaml",
    "tor": ROOT / "containerlab" / "tor" / "datastore.yaml",
    "cross-subnet": ROOT / "containerlab" / "cross-subnet" / "datastore.yaml",
    "interop": ROOT / "containerlab" / "interop" / "datastore.yaml",
    # Not a lab: every per-session option (password, TTL security, next-hop mode, reachableBy...)
    "explicit-peers": ROOT / "tests" / "golden" / "desired" / "explicit-peers" / "datastore.yaml",
}
CHANGES = ("bgpfilter-added", "bgppeer-removed", "ippool-ipip", "ippool-vxlan")


def _snapshot(path: Path) -> Snapshot:
    snapshot = FileDatastore(path).reload()
    assert snapshot is not None
    return snapshot


def _config(node: str, path: Path) -> DaemonConfig:
    return DaemonConfig(node=node, datastore=FileSource(path))


def _check(path: Path, text: str) -> None:
    if REGOLDEN:
        path.write_text(text)
    assert path.read_text() == text, f"{path} differs (BGPD_REGOLDEN=1 to rewrite)"


@pytest.mark.parametrize("lab", sorted(LABS))
def test_desired_state_goldens(lab: str) -> None:
    snapshot = _snapshot(LABS[lab])
    documents = {
        node: desired_state(node_state(_config(node, LABS[lab]), snapshot))
        for node in sorted(snapshot.nodes)
    }
    _check(GOLDEN / f"{lab}.json", json.dumps(documents, indent=2, sort_keys=True) + "\n")
    text = "\n\n".join(desired_state_text(doc) for doc in documents.values()) + "\n"
    _check(GOLDEN / f"{lab}.txt", text)


def _tor_routes() -> list[KnownRoute]:
    """What rack1's ToR sends node1: a default route and rack2's blocks."""
    hop = ipaddress.IPv4Address("10.1.1.1").packed
    routes = [("0.0.0.0/0", (65001,)), ("10.244.3.0/26", (65001, 65002, 64603))]
    routes.append(("10.244.4.0/26", (65001, 65002, 64604)))
    return [
        KnownRoute(
            IPV4_UNICAST,
            prefix_from_str(prefix),
            "Node_10_1_1_1",
            PathAttributes(as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, path),), next_hop=hop),
        )
        for prefix, path in routes
    ]


@pytest.mark.parametrize("change", CHANGES)
def test_planned_change_goldens(change: str) -> None:
    path = LABS["tor"]
    snapshot = _snapshot(path)
    change_file = GOLDEN / f"{change}.yaml"
    after = apply_change(snapshot, parse_documents(change_file.read_text(), str(change_file)))
    config = _config("node1", path)
    learned = _tor_routes()
    document = planned_change(
        node_state(config, snapshot, learned), node_state(config, after, learned)
    )
    _check(GOLDEN / f"{change}.json", json.dumps(document, indent=2, sort_keys=True) + "\n")
    _check(GOLDEN / f"{change}.txt", planned_change_text(document) + "\n")


def test_a_change_file_is_validated_naming_the_document() -> None:
    bad = yaml.safe_dump(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": "x"},
            "spec": {"asNumber": "many"},
        }
    )
    with pytest.raises(ValueError, match="document 0"):
        apply_change(_snapshot(LABS["tor"]), parse_documents(bad, "change.yaml"))


def test_a_daemon_route_reads_back_as_the_attributes_it_shows() -> None:
    route = known_route(
        {
            "prefix": "fd00:10::/64",
            "peer": "Mesh_fd00__2",
            "next_hop": "fd00::2 fe80::2",
            "as_path": [65001, 65002],
            "origin": "incomplete",
            "local_pref": 100,
            "med": 5,
            "communities": ["64512:100"],
            "large_communities": ["64512:1:2"],
        }
    )
    assert route.family == IPV6_UNICAST and route.session == "Mesh_fd00__2"
    attrs = route.attrs
    assert len(attrs.next_hop) == 32 and attrs.origin == 2
    assert attrs.as_path == (AsPathSegment(SegmentType.AS_SEQUENCE, (65001, 65002)),)
    assert (attrs.local_pref, attrs.med) == (100, 5)
    assert attrs.communities == ((64512 << 16) | 100,)
    assert attrs.large_communities == ((64512, 1, 2),)
