"""``bgpd run``'s settings: a bad one fails at start with one line naming it (bgpd/config.py
rules 2, 4 and 5; bgpd/cli.py rule 2; issue 20 points 11 and 12)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from bgpd.cli import build_parser, check_metrics_listen, run_config
from bgpd.config import ConfigError, DaemonConfig, EtcdSource

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_YAML = ROOT / "bgpd" / "datastore" / "default.yaml"


def config(
    argv: list[str], environ: Mapping[str, str] | None = None, hostname: str = "host1"
) -> DaemonConfig:
    args = build_parser().parse_args(["run", *argv])
    return run_config(args, environ or {}, None, hostname)


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        (["--node", "a/b"], {}, "--node"),
        (["--node", "Node1"], {}, "--node"),
        (["--node", "node-"], {}, "--node"),
        (["--node", "n" * 254], {}, "--node"),
        ([], {"NODENAME": "a/b"}, "NODENAME"),
        ([], {"NODENAME": "node_1"}, "NODENAME"),
    ],
)
def test_a_node_name_that_is_not_a_kubernetes_name_is_refused(
    argv: list[str], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        config([*argv, "--datastore", "etcd://127.0.0.1:2379"], environ)
    assert raised.value.name == named
    assert "RFC 1123" in str(raised.value)


def test_node_names_as_calico_takes_them() -> None:
    assert config(["--node", "node-1.example.com"]).node == "node-1.example.com"
    assert config([], {"NODENAME": " rr1 "}).node == "rr1"
    assert config([], {}, hostname="Worker-3").node == "worker-3"  # lowercased, as calico-node


@pytest.mark.parametrize("router_id", ["0.0.0.0", " 0.0.0.0 "])
def test_a_zero_router_id_is_refused(router_id: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config(["--node", "n1"], {"CALICO_ROUTER_ID": router_id})
    assert raised.value.name == "CALICO_ROUTER_ID"
    assert "RFC 6286" in str(raised.value)


def test_router_ids_that_are_accepted() -> None:
    for router_id in ("", "hash", "10.0.0.1", "255.255.255.255"):
        assert config(["--node", "n1"], {"CALICO_ROUTER_ID": router_id}).router_id == router_id


@pytest.mark.parametrize("endpoints", [None, "", "  "])
def test_etcdv3_without_endpoints_is_refused_as_calico_refuses_it(endpoints: str | None) -> None:
    environ = {"DATASTORE_TYPE": "etcdv3", "NODENAME": "n1"}
    if endpoints is not None:
        environ["ETCD_ENDPOINTS"] = endpoints
    with pytest.raises(ConfigError, match="no etcd endpoints specified") as raised:
        config([], environ)
    assert raised.value.name == "ETCD_ENDPOINTS"


def test_datastore_flag_gives_the_endpoints_itself() -> None:
    environ = {"DATASTORE_TYPE": "etcdv3", "NODENAME": "n1"}
    got = config(["--datastore", "etcd://10.0.0.10:2379"], environ).datastore
    assert isinstance(got, EtcdSource)
    assert [e.target for e in got.settings.endpoints] == ["10.0.0.10:2379"]
    got = config([], {**environ, "ETCD_ENDPOINTS": "http://10.0.0.11:2379"}).datastore
    assert isinstance(got, EtcdSource)
    assert [e.target for e in got.settings.endpoints] == ["10.0.0.11:2379"]


@pytest.fixture
def port_in_use() -> Iterator[int]:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_metrics_listen_check_names_the_flag(port_in_use: int) -> None:
    with pytest.raises(ConfigError, match="address already in use") as raised:
        check_metrics_listen(("127.0.0.1", port_in_use))
    assert raised.value.name == "--metrics-listen"
    with pytest.raises(ConfigError, match="cannot assign requested address"):
        check_metrics_listen(("192.0.2.1", port_in_use))  # TEST-NET-1: not ours
    check_metrics_listen(None)


def run_bgpd(*argv: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgpd", "run", *argv, "--no-kernel"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_cli_bad_node_name_is_one_line(tmp_path: Path) -> None:
    result = run_bgpd(
        "--node",
        "a/b",
        "--datastore",
        "etcd://127.0.0.1:1",
        "--control-socket",
        str(tmp_path / "bgpd.ctl"),
        "--metrics-listen",
        "none",
        tmp_path=tmp_path,
    )
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        "bgpd: invalid --node 'a/b': a node name must be a lowercase RFC 1123 subdomain "
        "(a-z, 0-9, '-' and '.', at most 253 characters)"
    ]


@pytest.mark.parametrize(("host", "reason"), [("127.0.0.1", "in use"), ("192.0.2.1", "assign")])
def test_cli_metrics_bind_errors_are_one_line(
    tmp_path: Path, port_in_use: int, host: str, reason: str
) -> None:
    result = run_bgpd(
        "--node",
        "n1",
        "--datastore",
        f"file:{DEFAULT_YAML}",
        "--control-socket",
        str(tmp_path / "bgpd.ctl"),
        "--metrics-listen",
        f"{host}:{port_in_use}",
        tmp_path=tmp_path,
    )
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"bgpd: invalid --metrics-listen '{host}:{port_in_use}': ")
    assert reason in lines[0]


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        (
            {"CALICO_ROUTER_ID": "0.0.0.0"},
            "bgpd: invalid CALICO_ROUTER_ID '0.0.0.0': "
            "a BGP Identifier of zero is invalid (RFC 6286 §2.1)",
        ),
        (
            {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": ""},
            "bgpd: invalid ETCD_ENDPOINTS '': no etcd endpoints specified",
        ),
    ],
)
def test_cli_calico_environment_errors_are_one_line(
    tmp_path: Path, environ: dict[str, str], line: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bgpd", "run", "--node", "n1", "--no-kernel"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "utf-8", **environ},
    )
    assert result.returncode != 0
    assert result.stderr.splitlines() == [line]


def test_kubernetes_access_beside_etcd_is_optional(tmp_path: Path) -> None:
    """bgpd.config rule 6: on etcd, API settings that do not read leave bgpd without API access
    (confd's createClients), saying why; with DATASTORE_TYPE=kubernetes they fail at start."""
    from bgpd.config import build_config

    missing = str(tmp_path / "no-kubeconfig")
    environ = {
        "DATASTORE_TYPE": "etcdv3",
        "ETCD_ENDPOINTS": "http://127.0.0.1:2379",
        "KUBECONFIG": missing,
        "NAMESPACE": "calico-system",
    }

    def build(env: dict[str, str]) -> DaemonConfig:
        return build_config(
            node="node1",
            datastore=None,
            control_socket=None,
            metrics_listen=None,
            log_level=None,
            log_format=None,
            environ=env,
            nodename_file=None,
            hostname="h",
        )

    config = build(environ)
    assert config.kubernetes is None and missing in config.kubernetes_unavailable
    assert config.namespace == "calico-system"
    with pytest.raises(ConfigError) as caught:
        build({**environ, "DATASTORE_TYPE": "kubernetes"})
    assert caught.value.name == "KUBECONFIG"
    assert build({**environ, "KUBECONFIG": ""}).kubernetes is None  # nothing configured
