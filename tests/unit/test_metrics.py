"""Metrics: the exposition a scrape sees, and the HTTP answers beside it (bgpd.metrics rules)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from bgpd.health import HealthResult
from bgpd.metrics import Metrics, http_answer
from bgpd.status import BfdStatus, DaemonStatus, FixedStatus, PeerStatus

START = 1_000_000.0
NOW = START + 90.0
STATUS = DaemonStatus(
    "0.1.0", "10.0.0.1", "node-a", START, START, datastore_in_sync=True, kernel_routes=3
)
UP = PeerStatus(
    "Mesh_10_0_0_2",
    "10.0.0.2",
    64512,
    64512,
    "Established",
    START + 30.0,
    prefixes_received=4,
    prefixes_accepted=3,
    prefixes_advertised=2,
    messages_in=10,
    updates_in=2,
)
DOWN = PeerStatus("Mesh_10_0_0_3", "10.0.0.3", 64512, 64512, "Active", START)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(status: DaemonStatus = STATUS) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples(Metrics(FixedStatus(status, [UP, DOWN]), clock=lambda: NOW))


def test_sessions_are_read_from_the_provider_at_scrape_time() -> None:
    got = scrape()
    up = (("peer", "Mesh_10_0_0_2"), ("peer_ip", "10.0.0.2"))
    down = (("peer", "Mesh_10_0_0_3"), ("peer_ip", "10.0.0.3"))
    assert got[("bgpd_bgp_session_established", up)] == 1
    assert got[("bgpd_bgp_session_established", down)] == 0
    assert got[("bgpd_bgp_session_state", (*down, ("state", "Active")))] == 1
    assert got[("bgpd_bgp_session_state", (*down, ("state", "Established")))] == 0
    assert got[("bgpd_bgp_session_uptime_seconds", up)] == 60.0
    assert got[("bgpd_bgp_session_uptime_seconds", down)] == 0.0
    assert got[("bgpd_bgp_prefixes", (("direction", "accepted"), *up))] == 3
    assert got[("bgpd_bgp_messages_received_total", up)] == 10
    assert got[("bgpd_kernel_routes", ())] == 3
    assert got[("bgpd_datastore_in_sync", ())] == 1


def test_unroutable_pools_are_a_gauge_each() -> None:
    got = scrape(replace(STATUS, unroutable_pools=("ipip-pool",)))
    assert got[("bgpd_encap_unsupported_pool", (("pool", "ipip-pool"),))] == 1
    assert not any(name == "bgpd_encap_unsupported_pool" for name, _ in scrape())


def test_update_groups_and_their_members_per_family() -> None:
    """Speaker rule 7: a reflector's clients in update groups, counted per family."""
    groups = (("ipv4-unicast", 998), ("ipv4-unicast", 2), ("ipv6-unicast", 1000))
    got = scrape(replace(STATUS, update_groups=groups))
    assert got[("bgpd_update_groups", (("family", "ipv4-unicast"),))] == 2
    assert got[("bgpd_update_group_members", (("family", "ipv4-unicast"),))] == 1000
    assert got[("bgpd_update_groups", (("family", "ipv6-unicast"),))] == 1


def test_event_counters_accumulate() -> None:
    metrics = Metrics(FixedStatus(STATUS))
    metrics.fsm_transition("Mesh_10_0_0_2", "Idle", "hold-timer-expired")
    metrics.fsm_transition("Mesh_10_0_0_2", "Idle", "hold-timer-expired")
    metrics.netlink_error("route", 3)
    metrics.datastore_rejected("Node", "invalid")
    got = samples(metrics)
    transition = (("peer", "Mesh_10_0_0_2"), ("reason", "hold-timer-expired"), ("state", "Idle"))
    assert got[("bgpd_bgp_fsm_transitions_total", transition)] == 2
    assert got[("bgpd_kernel_netlink_errors_total", (("operation", "route"),))] == 3
    rejected = (("reason", "invalid"), ("resource", "Node"))
    assert got[("bgpd_datastore_rejected_records_total", rejected)] == 1


def health(kind: str) -> HealthResult:
    return HealthResult(kind == "live", f"{kind} answer")


def test_http_serves_metrics_and_health() -> None:
    metrics = Metrics(FixedStatus(STATUS))
    response = http_answer("GET", "/metrics", metrics, health)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"bgpd_info{" in response
    assert http_answer("GET", "/livez", metrics, health).startswith(b"HTTP/1.1 200 OK")
    ready = http_answer("GET", "/readyz?verbose", metrics, health)
    assert ready.startswith(b"HTTP/1.1 503 Service Unavailable") and ready.endswith(
        b"ready answer\n"
    )
    assert http_answer("GET", "/nope", metrics, health).startswith(b"HTTP/1.1 404")
    assert http_answer("POST", "/metrics", metrics, health).startswith(b"HTTP/1.1 405")
    head = http_answer("HEAD", "/metrics", metrics, health)
    assert head.endswith(b"\r\n\r\n") and b"bgpd_info" not in head


def test_a_scrape_on_the_daemons_loop_counts_its_tasks() -> None:
    async def scrape_with_tasks() -> float:
        sleepers = [asyncio.create_task(asyncio.sleep(10)) for _ in range(3)]
        try:
            return scrape()[("bgpd_asyncio_tasks", ())]
        finally:
            for task in sleepers:
                task.cancel()
            await asyncio.gather(*sleepers, return_exceptions=True)

    assert asyncio.run(scrape_with_tasks()) == 4  # the three sleepers and the scraping task


def test_a_scrape_off_any_loop_has_no_task_gauge() -> None:
    assert not any(name == "bgpd_asyncio_tasks" for name, _ in scrape())


def test_bfd_sessions_and_drops() -> None:
    bfd = BfdStatus(
        "10.0.0.2", "10.0.0.1", "eth0", "Up", START, 100.0, 300.0, 100.0, 100.0, 3, ups=2, downs=1
    )
    metrics = Metrics(FixedStatus(STATUS, [replace(UP, bfd=bfd), DOWN]), clock=lambda: NOW)
    metrics.bfd_drops = lambda: {"bad-ttl": 4}
    got = samples(metrics)
    up = (("peer", "Mesh_10_0_0_2"), ("peer_ip", "10.0.0.2"))
    assert got[("bgpd_bfd_session_state", (*up, ("state", "Up")))] == 1
    assert got[("bgpd_bfd_session_state", (*up, ("state", "Down")))] == 0
    assert got[("bgpd_bfd_session_transitions_total", (("direction", "down"), *up))] == 1
    assert got[("bgpd_bfd_detection_time_seconds", up)] == 0.3
    assert got[("bgpd_bfd_holds_bgp", up)] == 0
    assert got[("bgpd_bfd_packets_dropped_total", (("reason", "bad-ttl"),))] == 4
    assert not any(
        name.startswith("bgpd_bfd") and ("peer", "Mesh_10_0_0_3") in labels for name, labels in got
    )
