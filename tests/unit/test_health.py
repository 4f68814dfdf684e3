"""Readiness and liveness: every branch of Calico's ``checkBIRDReady`` (calico-bgp.md §4.1)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bgpd.health import DEFAULT_THRESHOLD, HealthResult, liveness, readiness
from bgpd.status import DaemonStatus, PeerStatus

START = 1_000_000.0
STATUS = DaemonStatus("0.1.0", "10.0.0.1", "node-a", START, START)
RECOVERING = replace(STATUS, graceful_restart_recovering=True)
WITHIN = START + DEFAULT_THRESHOLD - 1
AFTER = START + DEFAULT_THRESHOLD


def peer(name: str, ip: str, state: str = "Established", passive: bool = False) -> PeerStatus:
    return PeerStatus(name, ip, 64512, 64512, state, START, passive=passive)


UP_A = peer("Mesh_10_0_0_2", "10.0.0.2")
UP_B = peer("Node_10_0_0_3", "10.0.0.3")
DOWN_C = peer("Global_10_0_0_4", "10.0.0.4", "Active")
DOWN_D = peer("Mesh_10_0_0_5", "10.0.0.5", "Idle")


def test_no_peers_is_ready() -> None:
    assert readiness([], STATUS, START, WITHIN) == HealthResult(True, "no BGP peers")


def test_sessions_not_named_like_calicos_are_ignored() -> None:
    # Calico's bgpPeerRegex only matches Global_, Node_ and Mesh_ sessions.
    others = [
        peer("Local_Workload_10_0_0_9", "10.0.0.9", "Active"),
        peer("tor", "10.0.0.8", "Idle"),
    ]
    assert readiness(others, STATUS, START, WITHIN).ok
    assert readiness([*others, UP_A], STATUS, START, WITHIN).ok


def test_within_threshold_every_peer_must_be_established() -> None:
    result = readiness([UP_A, DOWN_C, UP_B, DOWN_D], STATUS, START, WITHIN)
    assert result == HealthResult(False, "BGP not established with 10.0.0.4,10.0.0.5")


def test_within_threshold_graceful_restart_recovery_is_not_ready() -> None:
    result = readiness([UP_A, UP_B], RECOVERING, START, WITHIN)
    assert result == HealthResult(False, "graceful restart in progress")


def test_within_threshold_all_established_is_ready() -> None:
    result = readiness([UP_A, UP_B], STATUS, START, WITHIN)
    assert result == HealthResult(True, "all 2 BGP peers established")


def test_after_threshold_one_established_is_enough() -> None:
    result = readiness([UP_A, DOWN_C, DOWN_D], STATUS, START, AFTER)
    assert result == HealthResult(True, "1 of 3 BGP peers established")


def test_after_threshold_graceful_restart_no_longer_matters() -> None:
    assert readiness([UP_A], RECOVERING, START, AFTER).ok


def test_after_threshold_none_established_is_not_ready() -> None:
    result = readiness([DOWN_C, DOWN_D], STATUS, START, AFTER + 3600)
    assert result == HealthResult(False, "BGP not established with 10.0.0.4,10.0.0.5")


def test_threshold_boundary_follows_calicos_strict_less_than() -> None:
    # time.Since(mtime) < threshold: exactly at the threshold the relaxed rule applies.
    assert readiness([UP_A, DOWN_C], STATUS, START, START + DEFAULT_THRESHOLD).ok
    assert not readiness([UP_A, DOWN_C], STATUS, START, START + DEFAULT_THRESHOLD - 0.001).ok


def test_custom_threshold() -> None:
    assert not readiness([UP_A, DOWN_C], STATUS, START, START + 50, threshold=60).ok
    assert readiness([UP_A, DOWN_C], STATUS, START, START + 60, threshold=60).ok


@pytest.mark.parametrize("state", ["Idle", "Active"])
def test_passive_session_waiting_is_not_established(state: str) -> None:
    waiting = peer("Mesh_10_0_0_6", "10.0.0.6", state, passive=True)
    assert readiness([waiting], STATUS, START, AFTER) == HealthResult(
        False, "BGP not established with 10.0.0.6"
    )


def test_liveness() -> None:
    assert liveness(STATUS) == HealthResult(True, "daemon is up and running")
    assert liveness(None) == HealthResult(False, "daemon not answering")
    assert liveness(STATUS, ("datastore-watcher",)) == HealthResult(
        False, "task stopped: datastore-watcher"
    )
    # A datastore outage (not in sync) does not make the daemon dead.
    assert liveness(replace(STATUS, datastore_in_sync=False)).ok


@pytest.mark.parametrize("now", [WITHIN, AFTER])
def test_a_pool_whose_tunnel_cannot_be_built_makes_the_node_not_ready(now: float) -> None:
    degraded = replace(STATUS, unroutable_pools=("ipip-pool", "other-pool"))
    result = readiness([UP_A, UP_B], degraded, START, now)
    assert result == HealthResult(
        False, "tunnel encapsulation unsupported for pools: ipip-pool, other-pool"
    )
