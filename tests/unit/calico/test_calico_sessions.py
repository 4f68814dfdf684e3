"""Calico sessions as the FSM and the RIB run them (bgpd.calico.sessions, calico-bgp.md
§2.7-§2.8), from the embedded default datastore."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from bgpd.calico.sessions import peer_settings, session_config
from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.file import FileDatastore
from bgpd.rib.route import NextHopMode
from bgpd.session.timers import keepalive_interval
from bgpd.wire.types import IPV4_UNICAST
from peers.model import PeerNextHopMode, Snapshot
from peers.resolve import Environment, resolve_node


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    snap = FileDatastore(DEFAULT_DATASTORE).reload()
    assert snap is not None
    return snap


def test_mesh_sessions_become_calico_style_session_configs(snapshot: Snapshot) -> None:
    peering = resolve_node("node2", snapshot, Environment())
    configs = {
        name: session_config(spec, peering, restarting=False, graceful_restart_time=120)
        for name, spec in peering.sessions.items()
    }
    assert set(configs) == {"Mesh_10_0_0_1", "Mesh_10_0_0_3"}
    to_1, to_3 = configs["Mesh_10_0_0_1"], configs["Mesh_10_0_0_3"]
    # calico-bgp.md §2.8.1: the smaller IP string is passive towards the larger one.
    assert to_3.passive and not to_1.passive
    assert to_1.router_id == ipaddress.IPv4Address("10.0.0.2")
    assert to_1.source_address == ipaddress.IPv4Address("10.0.0.2")
    assert (to_1.local_as, to_1.peer_as, to_1.add_path, to_1.connect_retry_time) == (
        64512,
        64512,
        3,
        5.0,
    )
    assert to_1.graceful_restart_time == 120 and to_1.graceful_restart_forwarding


def test_restarting_sets_the_restart_bit(snapshot: Snapshot) -> None:
    peering = resolve_node("node1", snapshot, Environment())
    spec = peering.sessions["Mesh_10_0_0_2"]
    assert session_config(
        spec, peering, restarting=True, graceful_restart_time=120
    ).graceful_restart_restarting


def test_peer_settings_carry_next_hop_self(snapshot: Snapshot) -> None:
    peering = resolve_node("node1", snapshot, Environment())
    settings = peer_settings(peering.sessions["Mesh_10_0_0_3"], ipaddress.IPv4Address("10.0.0.1"))
    assert settings.next_hop_self == {IPV4_UNICAST: bytes([10, 0, 0, 1])}
    assert settings.peer_as == 64512 and not settings.rr_client
    assert settings.next_hop_mode is NextHopMode.AUTO


@pytest.mark.parametrize(
    ("calico", "rib"),
    [
        (PeerNextHopMode.AUTO, NextHopMode.AUTO),
        (PeerNextHopMode.SELF, NextHopMode.SELF),
        (PeerNextHopMode.KEEP, NextHopMode.KEEP),
    ],
)
def test_calicos_next_hop_mode_maps_onto_the_ribs(
    snapshot: Snapshot, calico: PeerNextHopMode, rib: NextHopMode
) -> None:
    spec = resolve_node("node1", snapshot, Environment()).sessions["Mesh_10_0_0_3"]
    settings = peer_settings(replace(spec, next_hop_mode=calico), None)
    assert settings.next_hop_mode is rib and settings.next_hop_self == {}


def test_birds_default_timers_and_multihop_ttl(snapshot: Snapshot) -> None:
    """sessions rules 2 and 4: hold 240 s, keepalive a third of it (80 s) unless the BGPPeer's
    keepaliveTime sets it, multihop TTL 64; with ttlSecurity GTSM instead of a multihop TTL."""
    peering = resolve_node("node1", snapshot, Environment())
    spec = peering.sessions["Mesh_10_0_0_2"]
    config = session_config(spec, peering, restarting=False, graceful_restart_time=120)
    assert (config.hold_time, config.keepalive_time, config.multihop_ttl) == (240, None, 64)
    assert keepalive_interval(config.hold_time, config.keepalive_time) == 80
    tuned = session_config(
        replace(spec, keepalive_time=20, ttl_security=2),
        peering,
        restarting=False,
        graceful_restart_time=120,
    )
    assert keepalive_interval(tuned.hold_time, tuned.keepalive_time) == 20
    assert (tuned.ttl_security, tuned.multihop_ttl) == (2, None)
