"""peers.explicit rule 4: a ``peerIP`` BGPPeer without ``asNumber``."""

from __future__ import annotations

import ipaddress

from peers.explicit import resolve_peerings
from peers.model import BGPConfiguration, BGPPeer, Node, Snapshot


def snapshot(*peers: BGPPeer) -> Snapshot:
    nodes = {
        name: Node(name, ipv4_address=ipaddress.IPv4Interface(f"10.0.0.{i}/24"))
        for i, name in ((1, "a"), (2, "b"))
    }
    return Snapshot.build(
        nodes=nodes,
        peers={p.name: p for p in peers},
        configs={"default": BGPConfiguration("default", as_number=64512)},
    )


def test_calico_node_ip_takes_the_nodes_as() -> None:
    result = resolve_peerings("a", snapshot(BGPPeer("p", peer_ip="10.0.0.2")), lambda s, k: None)
    assert result.problems == []
    (record,) = result.global_records.values()
    assert record.as_num == 64512 and record.calico_node


def test_other_ip_is_reported_not_peered_with_as_0() -> None:
    result = resolve_peerings("a", snapshot(BGPPeer("p", peer_ip="192.0.2.9")), lambda s, k: None)
    assert result.global_records == {} and result.node_records == {}
    assert result.problems == [
        "BGPPeer p: no asNumber and 192.0.2.9 is no Calico node of the global AS"
    ]
