"""The Grafana dashboard in ``deploy/grafana/`` reads only metrics bgpd exports: every metric
name in every PromQL expression (panel targets and template queries) is in the exposition of a
``Metrics`` whose every series has been touched once."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bgpd.metrics import Metrics
from bgpd.status import BfdStatus, DaemonStatus, FixedStatus, PeerStatus

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "bgpd-dashboard.json"
METRIC_NAME = re.compile(r"\bbgpd_[a-zA-Z0-9_]+")


def exported_names() -> set[str]:
    status = DaemonStatus("0.1.0", "10.0.0.1", "node-a", 0.0, 0.0, unroutable_pools=("p",))
    bfd = BfdStatus("10.0.0.2", "10.0.0.1", "eth0", "Up", 0.0, 100.0, 300.0, 100.0, 100.0, 3)
    peer = PeerStatus("Mesh_10_0_0_2", "10.0.0.2", 64512, 64512, "Established", 0.0, bfd=bfd)
    metrics = Metrics(FixedStatus(status, [peer]), clock=lambda: 1.0)
    metrics.bfd_drops = lambda: {"bad-ttl": 1}
    metrics.fsm_transition("Mesh_10_0_0_2", "Established", "established")
    metrics.netlink_error("add")
    metrics.kernel_route_change("add")
    metrics.datastore_event("put")
    metrics.datastore_rejected("BGPPeer", "invalid")
    metrics.set_rib_size("loc-rib", "ipv4", 1)
    exposition = metrics.exposition().decode()
    return {s.name for f in text_string_to_metric_families(exposition) for s in f.samples}


def expressions(value: Any) -> Iterator[str]:
    """Every PromQL string of the dashboard: targets' ``expr`` and template ``query`` texts."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("expr", "definition") and isinstance(item, str):
                yield item
            elif key == "query" and isinstance(item, dict) and "query" in item:
                yield item["query"]
            else:
                yield from expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item)


def test_every_expression_names_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    found = list(expressions(dashboard))
    assert len(found) > 20
    for expr in found:
        names = METRIC_NAME.findall(expr)
        assert names, f"no bgpd metric in {expr!r}"
        missing = [name for name in names if name not in exported]
        assert not missing, f"{expr!r} reads {missing}, which bgpd does not export"


def test_the_dashboard_covers_the_issue_topics() -> None:
    text = DASHBOARD.read_text()
    for metric in (
        "bgpd_bgp_session_state",  # sessions by state
        "bgpd_bgp_prefixes",  # prefixes per peer
        "bgpd_bgp_updates_received_total",  # UPDATE rates
        "bgpd_bgp_fsm_transitions_total",  # FSM transitions by reason
        "bgpd_kernel_netlink_errors_total",  # kernel route errors
        "bgpd_datastore_in_sync",  # datastore sync
        "bgpd_bfd_session_state",  # BFD
        "bgpd_bfd_session_transitions_total",
    ):
        assert metric in text
    panel_ids = [p["id"] for p in json.loads(text)["panels"]]
    assert len(panel_ids) == len(set(panel_ids))
