"""Status words as BIRD prints them (bgpd.status)."""

from __future__ import annotations

import ipaddress

from bgpd.rib.route import LOCAL_SOURCE, Path, RouteSource
from bgpd.session.events import State
from bgpd.status import capability_names, route_status
from bgpd.wire.capabilities import GracefulRestart
from bgpd.wire.constants import SegmentType
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, AsPathSegment, PathAttributes, prefix_from_str


def test_capability_names_follow_birds_neighbor_caps_line() -> None:
    plain = Negotiated(asn4=False)
    assert capability_names(plain) == ()
    full = Negotiated(
        route_refresh=True,
        enhanced_route_refresh=True,
        peer_graceful_restart=GracefulRestart(0, 120, ((IPV4_UNICAST, 0x80),)),
        add_path_rx=frozenset({IPV4_UNICAST}),
        add_path_tx=frozenset({IPV4_UNICAST}),
        extended_message=True,
    )
    assert capability_names(full) == (
        "refresh",
        "enhanced-refresh",
        "restart-able",
        "AS4",
        "add-path",
        "ext-messages",
    )
    receive_only = Negotiated(
        peer_graceful_restart=GracefulRestart(), add_path_rx=frozenset({IPV4_UNICAST})
    )
    assert capability_names(receive_only) == ("restart-aware", "AS4", "add-path-rx")


def test_route_status_shows_the_candidate() -> None:
    source = RouteSource("Mesh_10_0_0_2", ipaddress.IPv4Address("10.0.0.2"), peer_as=64512)
    attrs = PathAttributes(
        as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, (65001, 65002)),),
        next_hop=bytes([10, 0, 0, 2]),
        local_pref=100,
        communities=((65000 << 16) | 7,),
    )
    prefix = prefix_from_str("10.244.2.0/26")
    learned = route_status(IPV4_UNICAST, prefix, Path(source, attrs), True, {})
    assert (learned.prefix, learned.next_hop, learned.as_path) == (
        "10.244.2.0/26",
        "10.0.0.2",
        (65001, 65002),
    )
    assert (learned.peer, learned.peer_ip, learned.communities) == (
        "Mesh_10_0_0_2",
        "10.0.0.2",
        ("65000:7",),
    )
    local = route_status(IPV4_UNICAST, prefix, Path(LOCAL_SOURCE, PathAttributes()), False, {})
    assert (local.peer, local.peer_ip, local.next_hop, local.best) == ("local", "", "", False)


def test_state_names_as_bird_prints_them() -> None:
    assert [state.bird_name for state in State] == [
        "Idle",
        "Connect",
        "Active",
        "OpenSent",
        "OpenConfirm",
        "Established",
    ]


def test_show_peers_info_names_a_peers_datastore_problem_first() -> None:
    """``bgpd show peers``: INFO is the session's problem (an unreadable password), else why
    it is not Established."""
    from bgpd.control.commands import peers_table

    base = {"name": "Global_192_0_2_13", "peer_ip": "192.0.2.13", "peer_as": 65001, "since": 0.0}
    counts = {"prefixes_received": 0, "prefixes_advertised": 0}
    problem = "password Secret kube-system/locked not readable: 403 Forbidden"
    rows = [
        {**base, **counts, "state": "Active", "last_error": "connect-failed", "problem": problem},
        {**base, **counts, "name": "Mesh_10_0_0_2", "state": "Active", "last_error": "refused"},
        {**base, **counts, "name": "Mesh_10_0_0_3", "state": "Established", "last_error": "x"},
    ]
    lines = peers_table(rows, now=10.0).splitlines()
    assert lines[1].rstrip().endswith(problem)
    assert lines[2].rstrip().endswith("refused")
    assert lines[3].rstrip().endswith(" -")  # Established: no INFO; no BFD
