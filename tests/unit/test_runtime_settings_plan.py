"""Settings that reach the plan (issue 17 point 3): ``CALICO_ADVERTISE_CLUSTER_IPS``
(bgpd/config.py rule 6), ``bindMode`` and ``logSeverityScreen`` (peers/resolve.py rules 4-5),
and which log level wins (bgpd/config.py rule 7)."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from bgpd.calico.node import NodePlanner
from bgpd.cli import build_parser, run_config
from bgpd.config import ConfigError, DaemonConfig, FileSource
from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.file import FileDatastore
from bgpd.wire.types import IPV4_UNICAST, prefix_from_str
from peers.model import BGPConfiguration, Snapshot


def _config(environ: dict[str, str], *argv: str) -> DaemonConfig:
    args = build_parser().parse_args(["run", "--node", "node1", *argv])
    return run_config(args, environ, None, "host")


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    snap = FileDatastore(DEFAULT_DATASTORE).reload()
    assert snap is not None
    return snap


def _with_global(snapshot: Snapshot, **changes: object) -> Snapshot:
    base = snapshot.global_config or BGPConfiguration(name="default")
    configs = {**snapshot.configs, "default": dataclasses.replace(base, **changes)}
    return dataclasses.replace(snapshot, configs=configs)


def test_advertise_cluster_ips_is_one_cidr_or_a_named_error() -> None:
    config = _config({"CALICO_ADVERTISE_CLUSTER_IPS": " 10.96.0.0/12 "})
    assert config.advertise_cluster_ips == (ipaddress.ip_network("10.96.0.0/12"),)
    assert _config({}).advertise_cluster_ips is None
    with pytest.raises(ConfigError) as raised:
        _config({"CALICO_ADVERTISE_CLUSTER_IPS": "10.96.0.0/12,10.97.0.0/16"})
    assert raised.value.name == "CALICO_ADVERTISE_CLUSTER_IPS"


def test_advertise_cluster_ips_replaces_service_cluster_ips(snapshot: Snapshot) -> None:
    with_ranges = _with_global(
        snapshot, service_cluster_ips=(ipaddress.ip_network("10.100.0.0/16"),)
    )
    base = DaemonConfig(node="node1", datastore=FileSource(DEFAULT_DATASTORE))
    plain = NodePlanner(base).plan(with_ranges).local_routes[IPV4_UNICAST]
    override = (
        NodePlanner(
            dataclasses.replace(base, advertise_cluster_ips=(ipaddress.ip_network("10.96.0.0/12"),))
        )
        .plan(with_ranges)
        .local_routes[IPV4_UNICAST]
    )
    assert prefix_from_str("10.100.0.0/16") in plain
    assert prefix_from_str("10.96.0.0/12") not in plain
    assert prefix_from_str("10.96.0.0/12") in override
    assert prefix_from_str("10.100.0.0/16") not in override


def test_bind_mode_and_log_severity_reach_the_plan(snapshot: Snapshot) -> None:
    planner = NodePlanner(DaemonConfig(node="node1", datastore=FileSource(DEFAULT_DATASTORE)))
    plan = planner.plan(_with_global(snapshot, bind_mode="NodeIP", log_severity_screen="Warning"))
    node = snapshot.nodes["node1"]
    assert plan.listen_addresses == (str(node.ip(4)), "::")  # no IPv6 address: every one
    assert plan.log_severity == "warning"
    plain = planner.plan(_with_global(snapshot, bind_mode="None", log_severity_screen=""))
    assert plain.listen_addresses == () and plain.log_severity == ""


def test_the_log_level_flag_is_fixed_and_the_environment_is_not() -> None:
    assert _config({}, "--log-level", "warning").log_level_fixed
    from_env = _config({"BGP_LOGSEVERITYSCREEN": "debug"})
    assert from_env.log_level == "debug" and not from_env.log_level_fixed
