"""The maximum prefix guardrail from the datastore to the session: the BGPPeer annotation and
the file datastore's field, the warning then the stop with RFC 4486 §4's data, through the
router as the daemon runs it."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.calico.node import NodePlanner
from bgpd.config import DaemonConfig, FileSource
from bgpd.datastore.cache import Cache
from bgpd.datastore.file import parse_text
from bgpd.datastore.schema import RecordError, decode_document
from bgpd.router import Notice, Router, StopSession
from bgpd.session.config import PeerKey
from bgpd.session.events import Established, UpdateReceived
from bgpd.wire.constants import CeaseSubcode
from bgpd.wire.messages import Announcement, Update
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, PathAttributes, prefix_from_str
from peers.model import BGPPeer, MaxPrefixes

PEER = {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer"}


def _peer(annotations: dict[str, str] | None = None, **spec: object) -> BGPPeer:
    meta: dict[str, object] = {"name": "tor"}
    if annotations:
        meta["annotations"] = annotations
    doc = {**PEER, "metadata": meta, "spec": {"peerIP": "10.1.1.1", "asNumber": 65001, **spec}}
    _, record = decode_document(doc, "test")
    assert isinstance(record, BGPPeer)
    return record


def test_off_unless_set() -> None:
    assert _peer().max_prefixes is None


def test_the_annotation_sets_limit_warning_and_restart() -> None:
    key = "bgpd.projectcalico.org/max-prefixes"
    assert _peer({key: "1000"}).max_prefixes == MaxPrefixes(1000, 75, 60.0)
    found = _peer({key: "1000, warning=90, restart=2m"}).max_prefixes
    assert found == MaxPrefixes(1000, 90, 120.0) and found.warning == 900


def test_the_file_field_wins_over_the_annotation() -> None:
    key = "bgpd.projectcalico.org/max-prefixes"
    spec = {"maxPrefixes": {"limit": 5, "warningPercent": 60, "restartTime": "10s"}}
    assert _peer({key: "1000"}, **spec).max_prefixes == MaxPrefixes(5, 60, 10.0)


@pytest.mark.parametrize(
    ("annotation", "spec", "where"),
    [
        ("many", {}, "annotations"),
        ("10,warning=0", {}, "annotations"),
        ("10,colour=red", {}, "annotations"),
        ("", {"maxPrefixes": {"warningPercent": 50}}, "maxPrefixes.limit"),
        ("", {"maxPrefixes": {"limit": 0}}, "maxPrefixes.limit"),
    ],
)
def test_bad_values_name_the_field(annotation: str, spec: dict[str, object], where: str) -> None:
    annotations = {"bgpd.projectcalico.org/max-prefixes": annotation} if annotation else None
    with pytest.raises(RecordError, match=where.replace(".", r"\.")):
        _peer(annotations, **spec)


DATASTORE = """
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false, asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool}
spec: {cidr: 10.244.0.0/16, ipipMode: Never, vxlanMode: Never}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node1}
spec: {bgp: {ipv4Address: 10.1.1.11/24}}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: tor
  annotations: {bgpd.projectcalico.org/max-prefixes: "4,warning=50,restart=30s"}
spec: {peerIP: 10.1.1.1, asNumber: 65001}
"""


def _announce(router: Router, key: PeerKey, *prefixes: str) -> list[object]:
    attrs = PathAttributes(next_hop=ipaddress.IPv4Address("10.1.1.1").packed)
    nlri = [prefix_from_str(p) for p in prefixes]
    update = Update(announced=(Announcement(IPV4_UNICAST, attrs, nlri),))
    router.session_event(key, UpdateReceived(update), 2.0)
    return list(router.drain())


def test_warning_then_stop_with_rfc_4486_data() -> None:
    parsed = parse_text(DATASTORE)
    snapshot = Cache().replace(parsed.records, 1)
    config = DaemonConfig(node="node1", datastore=FileSource("unused"))
    router = Router()
    router.apply_plan(NodePlanner(config).plan(snapshot), 0.0)
    router.drain()
    key = PeerKey(ipaddress.IPv4Address("10.1.1.1"))
    negotiated = Negotiated(peer_as=65001, local_as=64512, peer_id=0x0A010101, external=True)
    router.session_event(key, Established(negotiated), 1.0)
    router.drain()
    quiet = _announce(router, key, "10.50.1.0/24", "10.50.2.0/24")
    assert not [o for o in quiet if isinstance(o, Notice | StopSession)]
    warned = _announce(router, key, "10.50.3.0/24")
    (warning,) = [o for o in warned if isinstance(o, Notice)]
    assert warning.event == "prefix count past warning threshold"
    assert dict(warning.fields)["prefixes"] == 3
    assert not [o for o in warned if isinstance(o, StopSession)]
    assert not [o for o in _announce(router, key, "10.50.3.0/24") if isinstance(o, Notice)]
    outputs = _announce(router, key, "10.50.4.0/24", "10.50.5.0/24")
    (stop,) = [o for o in outputs if isinstance(o, StopSession)]
    assert stop.peer == key
    assert stop.stop.subcode == CeaseSubcode.MAXIMUM_PREFIXES_REACHED
    assert stop.stop.data == bytes.fromhex("00010100000004")
    assert stop.stop.idle_time == 30.0
    assert any(isinstance(o, Notice) and "maximum prefixes" in o.event for o in outputs)
    assert not [o for o in _announce(router, key, "10.50.6.0/24") if isinstance(o, StopSession)]
