"""``DATASTORE_TYPE=kubernetes``: the kubeconfig and in-cluster settings, and a bad or missing one
failing at start in one line naming it (bgpd/datastore/kube_settings.py rules 1-3)."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bgpd.cli import build_parser, run_config
from bgpd.config import ConfigError, KubernetesSource
from bgpd.datastore import kube_settings
from bgpd.datastore.kube_settings import KubeSettings

ROOT = Path(__file__).resolve().parents[2]


def kubeconfig(tmp_path: Path, cluster: dict[str, object], user: dict[str, object]) -> str:
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ctx",
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_kubeconfig_with_inline_data(tmp_path: Path) -> None:
    ca = base64.b64encode(b"CA PEM").decode()
    path = kubeconfig(
        tmp_path,
        {"server": "https://10.96.0.1:6443", "certificate-authority-data": ca},
        {"token": "s3cret"},
    )
    settings = KubeSettings.from_env({"KUBECONFIG": path})
    assert (settings.host, settings.port, settings.tls) == ("10.96.0.1", 6443, True)
    assert settings.ca_data == b"CA PEM"
    assert settings.token == "s3cret"
    assert "s3cret" not in repr(settings)


def test_kubeconfig_files_relative_to_it_and_insecure(tmp_path: Path) -> None:
    (tmp_path / "client.crt").write_bytes(b"CERT")
    (tmp_path / "client.key").write_bytes(b"KEY")
    path = kubeconfig(
        tmp_path,
        {"server": "https://api.example:443", "insecure-skip-tls-verify": True},
        {"client-certificate": "client.crt", "client-key": "client.key"},
    )
    settings = KubeSettings.from_env(
        {"KUBECONFIG": path, "CALICO_API_GROUP": "projectcalico.org/v3"}
    )
    assert settings.insecure and settings.cert_data == b"CERT" and settings.key_data == b"KEY"
    assert settings.api_group == "projectcalico.org"


def test_in_cluster_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("tok\n")
    (tmp_path / "ca.crt").write_bytes(b"CA")
    monkeypatch.setattr(kube_settings, "SERVICE_ACCOUNT_DIR", tmp_path)
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    settings = KubeSettings.from_env({**environ, "USE_POD_CIDR": "true"})
    assert (settings.host, settings.port, settings.token, settings.ca_data) == (
        "10.96.0.1",
        443,
        "tok",
        b"CA",
    )
    assert settings.use_pod_cidr


@pytest.mark.parametrize(
    ("cluster", "user", "named", "reason"),
    [
        ({}, {}, "KUBECONFIG", "has no server"),
        ({"server": "ftp://x"}, {}, "KUBECONFIG", "https://"),
        (
            {"server": "https://x", "certificate-authority": "missing.pem"},
            {},
            "KUBECONFIG",
            "No such file",
        ),
        ({"server": "https://x"}, {"client-certificate-data": "Zm9v"}, "KUBECONFIG", "together"),
    ],
)
def test_bad_kubeconfig_names_the_setting(
    tmp_path: Path, cluster: dict[str, object], user: dict[str, object], named: str, reason: str
) -> None:
    path = kubeconfig(tmp_path, cluster, user)
    with pytest.raises(ConfigError, match=reason) as raised:
        KubeSettings.from_env({"KUBECONFIG": path})
    assert raised.value.name == named


def test_datastore_type_kubernetes_reaches_the_daemon_config(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, {"server": "http://127.0.0.1:8080"}, {})
    args = build_parser().parse_args(["run", "--node", "n1"])
    daemon = run_config(args, {"DATASTORE_TYPE": "kubernetes", "KUBECONFIG": path}, None, "h")
    assert isinstance(daemon.datastore, KubernetesSource)
    assert not daemon.datastore.settings.tls


def test_cli_without_any_kubernetes_config_is_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bgpd", "run", "--node", "n1", "--no-kernel"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "utf-8", "DATASTORE_TYPE": "kubernetes"},
    )
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "KUBECONFIG" in lines[0], lines
