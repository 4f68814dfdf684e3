"""deploy/ against the code it deploys: the calico-node manifest fragment, the systemd unit and
the Dockerfile must name containers, variables, paths and commands that bgpd and calico-node
actually use (calico-bgp.md §2.0, §4)."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.cli import build_parser, run_config
from bgpd.config import DEFAULT_CONTROL_SOCKET, NODENAME_FILE, EtcdSource, KubernetesSource
from bgpd.control.server import ipv6_socket_path
from bgpd.datastore.kdd import V1_GROUP, V1_RESOURCES, V3_GROUP, V3_RESOURCES
from bgpd.datastore.kubernetes import secret_collections, service_collections

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Every variable calico-node passes that bgpd reads (bgpd/config.py rule 1).
CALICO_ENV = {"NODENAME", "DATASTORE_TYPE", "ETCD_ENDPOINTS"}
ETCD_TLS_ENV = {"ETCD_CA_CERT_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE"}


@pytest.fixture(scope="module")
def daemonset() -> dict[str, Any]:
    documents = list(yaml.safe_load_all((DEPLOY / "calico-node.yaml").read_text()))
    assert len(documents) == 1
    document: dict[str, Any] = documents[0]
    return document


def pod(daemonset: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = daemonset["spec"]["template"]["spec"]
    return spec


def container(daemonset: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in pod(daemonset)["containers"] if c["name"] == name]
    assert len(found) == 1, f"one container named {name}"
    return found[0]


def env(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in c.get("env", [])}


def mounts(c: dict[str, Any]) -> dict[str, str]:
    """mountPath -> volume name."""
    return {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}


def test_manifest_is_the_calico_node_daemonset(daemonset: dict[str, Any]) -> None:
    assert (daemonset["apiVersion"], daemonset["kind"]) == ("apps/v1", "DaemonSet")
    assert daemonset["metadata"] == {"name": "calico-node", "namespace": "kube-system"}
    assert pod(daemonset)["hostNetwork"] is True  # BGP on the node's addresses
    assert {c["name"] for c in pod(daemonset)["containers"]} == {"calico-node", "bgpd"}


def test_calico_node_starts_neither_bird_nor_confd_but_still_writes_node_addresses(
    daemonset: dict[str, Any],
) -> None:
    backend = env(container(daemonset, "calico-node"))["CALICO_NETWORKING_BACKEND"]
    # rc.local disables bird, bird6 and confd for "none" and "vxlan" (§2.0); "none" also skips
    # the Node's BGP address and AS number, which bgpd needs.
    assert backend["value"] == "vxlan"
    assert backend.get("valueFrom", None) is None  # the patch removes the ConfigMap reference


def test_bgpd_gets_calico_nodes_environment_and_accepts_it(
    daemonset: dict[str, Any], tmp_path: Path
) -> None:
    bgpd_env = env(container(daemonset, "bgpd"))
    assert CALICO_ENV | ETCD_TLS_ENV <= set(bgpd_env)
    assert bgpd_env["DATASTORE_TYPE"]["value"] == "etcdv3"
    assert bgpd_env["NODENAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    for name in ("ETCD_ENDPOINTS", *sorted(ETCD_TLS_ENV)):
        ref = bgpd_env[name]["valueFrom"]["configMapKeyRef"]
        assert ref["name"] == "calico-config", name
    # The same environment, with values the references could give, is a valid bgpd config.
    environ = {name: str(entry.get("value", "")) for name, entry in bgpd_env.items()}
    environ |= {"NODENAME": "node1", "ETCD_ENDPOINTS": "https://10.0.0.10:2379"}
    for name in ETCD_TLS_ENV:
        (tmp_path / name).write_text("PEM")  # the files under the /calico-secrets mount
        environ[name] = str(tmp_path / name)
    args = build_parser().parse_args(container(daemonset, "bgpd")["command"][1:])
    config = run_config(args, environ, None, "ignored")
    assert config.node == "node1" and isinstance(config.datastore, EtcdSource)
    assert config.control_socket == DEFAULT_CONTROL_SOCKET


def test_the_socket_and_nodename_volumes_are_shared(daemonset: dict[str, Any]) -> None:
    volumes = {v["name"]: v for v in pod(daemonset)["volumes"]}
    calico_node, bgpd = container(daemonset, "calico-node"), container(daemonset, "bgpd")
    socket_dir = str(Path(DEFAULT_CONTROL_SOCKET).parent)
    assert Path(ipv6_socket_path(DEFAULT_CONTROL_SOCKET)).parent == Path(socket_dir)
    nodename_dir = str(Path(NODENAME_FILE).parent)
    for path in (socket_dir, nodename_dir):
        name = mounts(bgpd)[path]
        assert mounts(calico_node)[path] == name, path
        assert volumes[name]["hostPath"]["path"] == path
    for c in (calico_node, bgpd):
        for name in mounts(c).values():
            assert name in volumes, f"{c['name']} mounts an undeclared volume {name}"
    etcd_dir = mounts(bgpd)["/calico-secrets"]
    assert volumes[etcd_dir]["secret"]["secretName"] == "calico-etcd-secrets"


def test_probes(daemonset: dict[str, Any]) -> None:
    calico_node, bgpd = container(daemonset, "calico-node"), container(daemonset, "bgpd")
    ready = calico_node["readinessProbe"]["exec"]["command"]
    live = calico_node["livenessProbe"]["exec"]["command"]
    assert ready[0] == "/bin/calico-node" and "-bird-ready" in ready and "-felix-ready" in ready
    # -bird-live also checks runit's bird and confd services, which this backend disables (§4.2).
    assert "-felix-live" in live and "-bird-live" not in live
    parser = build_parser()
    for probe, flag in (("livenessProbe", "live"), ("readinessProbe", "ready")):
        command = bgpd[probe]["exec"]["command"]
        assert command[:2] == ["bgpd", "health"], command
        args = parser.parse_args(command[1:])
        assert getattr(args, flag) is True and args.control_socket == DEFAULT_CONTROL_SOCKET
    assert "NET_ADMIN" in bgpd["securityContext"]["capabilities"]["add"]
    assert bgpd["command"][:2] == ["bgpd", "run"]


# ---- the systemd unit ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "bgpd.service").read_text())
    return parser


def test_unit_lifecycle(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    # SIGTERM to bgpd alone: its graceful stop keeps forwarding; nothing else is killed first.
    assert service["KillMode"] in ("mixed", "process")
    assert service.get("KillSignal", "SIGTERM") == "SIGTERM"
    assert shlex.split(service["ExecReload"]) == ["/bin/kill", "-HUP", "$MAINPID"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_runs_a_command_bgpd_accepts(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    defaults = _environment_lines(DEPLOY / "bgpd.service")
    command = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], service["ExecStart"])
    command = re.sub(r"\$(\w+)", lambda m: defaults[m.group(1)], command)
    argv = shlex.split(command)
    assert argv[0].startswith("/") and argv[0].endswith("/bgpd"), argv
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert args.datastore.startswith("file:/")
    # The socket lives in the unit's RuntimeDirectory (/run/calico, i.e. /var/run/calico).
    assert Path(args.control_socket).parent == Path("/run") / service["RuntimeDirectory"]
    assert Path(args.control_socket).name == Path(DEFAULT_CONTROL_SOCKET).name
    assert "CAP_NET_ADMIN" in service["CapabilityBoundingSet"].split()
    assert "AF_NETLINK" in service["RestrictAddressFamilies"].split()


def _environment_lines(path: Path) -> dict[str, str]:
    """Every ``Environment=K=V`` line (configparser keeps only the last of repeated keys)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line[len("Environment=") :].partition("=")
            found[key] = value
    return found


# ---- the Dockerfile ------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_installs_every_package_and_runs_bgpd() -> None:
    instructions = _instructions(DEPLOY / "Dockerfile")
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert stages and all(s.split()[0] == "python:3.11-slim" for s in stages)
    copied = {
        rest.split()[0] for word, rest in instructions if word == "COPY" and "--from" not in rest
    }
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = re.search(r"include = \[([^\]]*)\]", pyproject)
    assert packages is not None
    for pattern in re.findall(r'"(\w+)\*"', packages.group(1)):
        assert pattern in copied, f"package {pattern} is not copied into the image"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    final = instructions[[w for w, _ in instructions].index("FROM", 1) :]
    entrypoint = [rest for word, rest in final if word == "ENTRYPOINT"]
    cmd = [rest for word, rest in final if word == "CMD"]
    assert entrypoint == ['["bgpd"]'] and cmd == ['["run"]']
    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert health and health[0].endswith('CMD ["bgpd", "health", "--live"]')
    build_parser().parse_args(["health", "--live"])


# ---- RBAC and the KDD patch ----------------------------------------------------------------------


def _served(path: str) -> tuple[str, str]:
    """(API group, plural) of a collection path: /api/v1/nodes, /apis/GROUP/VERSION/PLURAL."""
    parts = path.strip("/").split("/")
    return ("", parts[-1]) if parts[0] == "api" else (parts[1], parts[-1])


def _rules(document: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for rule in document["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.setdefault((group, resource), set()).update(rule["verbs"])
    return found


@pytest.fixture(scope="module")
def rbac() -> dict[str, dict[str, Any]]:
    documents = list(yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()))
    return {d["kind"]: d for d in documents}


def test_the_cluster_role_grants_exactly_what_bgpd_lists_and_watches(
    rbac: dict[str, dict[str, Any]],
) -> None:
    read: set[tuple[str, str]] = {("", "nodes")}
    for group, resources in ((V1_GROUP, V1_RESOURCES), (V3_GROUP, V3_RESOURCES)):
        read |= {(group, r.plural) for r in resources}
    read |= {_served(c.path) for c in service_collections()}
    rules = _rules(rbac["ClusterRole"])
    assert set(rules) == read
    assert all(verbs == {"list", "watch"} for verbs in rules.values())  # no get, no writes


def test_secrets_are_granted_by_name_in_calico_nodes_namespace(
    rbac: dict[str, dict[str, Any]],
) -> None:
    role = rbac["Role"]
    assert role["metadata"]["namespace"] == "kube-system"
    (rule,) = role["rules"]
    assert (rule["apiGroups"], rule["resources"]) == ([""], ["secrets"])
    assert set(rule["verbs"]) == {"list", "watch"} and rule["resourceNames"]
    (secrets,) = secret_collections("kube-system", ["bgp-passwords"])
    assert secrets.path == "/api/v1/namespaces/kube-system/secrets"
    assert dict(secrets.query) == {"fieldSelector": "metadata.name=bgp-passwords"}
    for binding, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        document = rbac[binding]
        assert document["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": rbac[role_kind]["metadata"]["name"],
        }
        subject = {"kind": "ServiceAccount", "name": "calico-node", "namespace": "kube-system"}
        assert document["subjects"] == [subject]


def test_the_kdd_patch_runs_bgpd_on_the_kubernetes_datastore(tmp_path: Path) -> None:
    (document,) = yaml.safe_load_all((DEPLOY / "calico-node-kdd.yaml").read_text())
    bgpd_env = env(container(document, "bgpd"))
    assert bgpd_env["DATASTORE_TYPE"]["value"] == "kubernetes"
    assert not {n for n in bgpd_env if n.startswith("ETCD_")}
    namespace = bgpd_env["NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert namespace == "metadata.namespace"
    assert "/calico-secrets" not in mounts(container(document, "bgpd"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    environ = {name: str(entry.get("value", "")) for name, entry in bgpd_env.items()}
    environ |= {"NODENAME": "node1", "NAMESPACE": "calico-system", "KUBECONFIG": str(kubeconfig)}
    args = build_parser().parse_args(container(document, "bgpd")["command"][1:])
    config = run_config(args, environ, None, "ignored")
    assert isinstance(config.datastore, KubernetesSource)
    assert config.kubernetes == config.datastore.settings
    assert config.namespace == "calico-system"
    # Everything else is the etcd patch's (backend, probes, shared volumes).
    (etcd,) = yaml.safe_load_all((DEPLOY / "calico-node.yaml").read_text())
    assert container(document, "calico-node") == container(etcd, "calico-node")
    for key in ("livenessProbe", "readinessProbe", "securityContext", "command"):
        assert container(document, "bgpd")[key] == container(etcd, "bgpd")[key]
