"""The daemon's own configuration: command-line flags over calico-node's environment.

Rules:
1. Flags win over environment; environment wins over defaults (calico-node compatibility:
   ``NODENAME``, ``DATASTORE_TYPE``, ``ETCD_*``, ``KUBECONFIG``, ``CALICO_ROUTER_ID``,
   ``BGP_LOGSEVERITYSCREEN``).
2. A bad value fails at start with one ``ConfigError`` naming the field and the bad value.
3. Pure: the environment, the host name and the nodename file's content are passed in.
4. The node name is a Kubernetes name, a lowercase RFC 1123 subdomain as Calico's Node resource
   requires (it is part of etcd keys: a '/' would read another node's keys); the host name
   fallback is lowercased first, as calico-node does (``names.Hostname``).
5. ``CALICO_ROUTER_ID`` 0.0.0.0 is refused: a BGP Identifier of zero is invalid (RFC 6286 §2.1).
6. ``CALICO_ADVERTISE_CLUSTER_IPS``, when set, is one CIDR that replaces the BGPConfiguration's
   ``serviceClusterIPs`` (confd reads the whole value as one CIDR, calico-bgp.md §2.13).
7. The log level: ``--log-level`` fixes it; otherwise the datastore's ``logSeverityScreen``
   sets it at run time, and ``BGP_LOGSEVERITYSCREEN`` (else info) is the level while the
   datastore sets none.
8. Kubernetes API access is configured with ``DATASTORE_TYPE=kubernetes``, and on any other
   datastore when ``KUBECONFIG`` or ``KUBERNETES_SERVICE_HOST`` is set (as confd builds its
   Kubernetes client in etcd mode too): then Services, EndpointSlices and the BGP password
   Secrets are read through it, the Secrets in ``NAMESPACE`` (default ``kube-system``, confd's
   ``secret_watcher.go``). On a datastore other than Kubernetes, settings that do not read
   (no service-account token, say) leave bgpd without API access, as confd's ``createClients``
   does, and ``kubernetes_unavailable`` says why.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.etcd_settings import EtcdSettings
from bgpd.datastore.kube_settings import KubeSettings
from bgpd.errors import ConfigError as ConfigError  # re-exported: what a bad setting raises

DEFAULT_CONTROL_SOCKET = "/var/run/calico/bird.ctl"
DEFAULT_METRICS_LISTEN = "127.0.0.1:9179"
NODENAME_FILE = "/var/lib/calico/nodename"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "none")
LOG_FORMATS = ("json", "console", "auto")  # auto: console on a terminal, else JSON
# BIRD/Calico severities (calico-bgp.md §2.3) mapped onto ours.
_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical", "panic": "critical"}
# A DNS-1123 subdomain, as Kubernetes and libcalico-go validate resource names (rule 4).
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NODE_NAME_MAX = 253


@dataclass(frozen=True, slots=True)
class FileSource:
    path: Path
    embedded: bool = False


@dataclass(frozen=True, slots=True)
class EtcdSource:
    settings: EtcdSettings


@dataclass(frozen=True, slots=True)
class KubernetesSource:
    settings: KubeSettings


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    node: str
    datastore: FileSource | EtcdSource | KubernetesSource
    control_socket: str = DEFAULT_CONTROL_SOCKET
    metrics_listen: tuple[str, int] | None = ("127.0.0.1", 9179)
    log_level: str = "info"
    log_level_fixed: bool = False  # --log-level given: the datastore's logSeverityScreen yields
    advertise_cluster_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = None
    log_format: str = "auto"
    router_id: str = ""  # CALICO_ROUTER_ID: "", a dotted quad, or "hash"
    kernel_protocol: int = 12  # RTPROT_BIRD, as BIRD installs (calico-bgp.md §3.4)
    program_kernel: bool = True
    program_vxlan: bool = False
    bird_process_names: bool = False  # placeholders calicoctl finds (bgpd.control.presence)
    graceful_restart_time: int = 120
    restart_deadline: float = 120.0  # how long a restart waits for peers' End-of-RIB
    # The Kubernetes API for Services, EndpointSlices and Secrets (rule 6), on either datastore.
    kubernetes: KubeSettings | None = None
    kubernetes_unavailable: str = ""  # why the API settings did not read (rule 6), for the log
    namespace: str = "kube-system"  # calico-node's: where BGP password Secrets are read
    bfd_hold: bool = True  # a session that asks for BFD waits for it (bgpd.bfd.client rule 5)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


def _log_level(name: str, raw: str) -> str:
    level = _LEVEL_ALIASES.get(raw.strip().lower(), raw.strip().lower())
    if level not in LOG_LEVELS:
        raise ConfigError(name, raw, f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _listen(name: str, raw: str) -> tuple[str, int] | None:
    if raw.lower() in ("", "none", "off", "disabled"):
        return None
    host, sep, port_text = raw.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise ConfigError(name, raw, "must be HOST:PORT with an IP address, or none") from None
    if not sep or not 0 < port < 65536:
        raise ConfigError(name, raw, "port must be 1-65535")
    return host, port


def _datastore(
    flag: str | None, environ: Mapping[str, str]
) -> FileSource | EtcdSource | KubernetesSource:
    """``--datastore``, else ``DATASTORE_TYPE``; a bad etcd or Kubernetes setting raises
    ``ConfigError`` from ``etcd_settings`` or ``kube_settings``, naming its variable."""
    if flag:
        if flag.startswith("file:"):
            path = Path(flag[len("file:") :])
            if not path.is_file():
                raise ConfigError("--datastore", flag, "no such file")
            return FileSource(path)
        if flag.startswith(("etcd://", "etcds://")):
            return EtcdSource(EtcdSettings.from_url(flag))
        raise ConfigError("--datastore", flag, "must be file:PATH or etcd://HOST:PORT[,...]")
    kind = environ.get("DATASTORE_TYPE", "").strip()
    if kind == "etcdv3":
        return EtcdSource(EtcdSettings.from_env(environ))
    if kind == "kubernetes":
        return KubernetesSource(KubeSettings.from_env(environ))
    if kind not in ("", "file"):
        raise ConfigError(
            "DATASTORE_TYPE", kind, "supported: etcdv3, kubernetes (or --datastore file:PATH)"
        )
    return FileSource(DEFAULT_DATASTORE, embedded=True)


def node_name(
    flag: str | None, environ: Mapping[str, str], nodename_file: str | None, hostname: str
) -> str:
    """``--node``, else ``NODENAME``, else /var/lib/calico/nodename, else the host name
    (lowercased, as calico-node does); a name that is not a node name names its source (rule 4)."""
    candidates = (
        ("--node", flag),
        ("NODENAME", environ.get("NODENAME")),
        (NODENAME_FILE, nodename_file),
        ("host name", hostname.lower()),
    )
    for source, candidate in candidates:
        if candidate and candidate.strip():
            name = candidate.strip()
            if len(name) > _NODE_NAME_MAX or not _NODE_NAME.fullmatch(name):
                raise ConfigError(
                    source,
                    name,
                    "a node name must be a lowercase RFC 1123 subdomain "
                    "(a-z, 0-9, '-' and '.', at most 253 characters)",
                )
            return name
    raise ConfigError("--node", "", "no node name (set --node or NODENAME)")


def _router_id(environ: Mapping[str, str]) -> str:
    """``CALICO_ROUTER_ID``: "", "hash" or a non-zero dotted quad (rule 5)."""
    router_id = environ.get("CALICO_ROUTER_ID", "").strip()
    if not router_id or router_id == "hash":
        return router_id
    try:
        address = ipaddress.IPv4Address(router_id)
    except ValueError:
        raise ConfigError(
            "CALICO_ROUTER_ID", router_id, "must be an IPv4 address or hash"
        ) from None
    if int(address) == 0:
        raise ConfigError(
            "CALICO_ROUTER_ID", router_id, "a BGP Identifier of zero is invalid (RFC 6286 §2.1)"
        )
    return router_id


def _advertise_cluster_ips(
    environ: Mapping[str, str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """Rule 6."""
    raw = environ.get("CALICO_ADVERTISE_CLUSTER_IPS", "").strip()
    if not raw:
        return None
    try:
        return (ipaddress.ip_network(raw, strict=False),)
    except ValueError:
        raise ConfigError("CALICO_ADVERTISE_CLUSTER_IPS", raw, "must be one CIDR") from None


def _kubernetes(
    source: FileSource | EtcdSource | KubernetesSource, environ: Mapping[str, str]
) -> tuple[KubeSettings | None, str]:
    """Rule 8: the datastore's API server, else the one ``KUBECONFIG`` or the pod's service
    account names, else none; and, when those settings do not read on another datastore, why
    (not fatal there: confd goes on without a Kubernetes client)."""
    if isinstance(source, KubernetesSource):
        return source.settings, ""
    if environ.get("KUBECONFIG", "").strip() or environ.get("KUBERNETES_SERVICE_HOST", "").strip():
        try:
            return KubeSettings.from_env(environ), ""
        except ConfigError as error:
            return None, str(error)
    return None, ""


def build_config(
    *,
    node: str | None,
    datastore: str | None,
    control_socket: str | None,
    metrics_listen: str | None,
    log_level: str | None,
    log_format: str | None,
    environ: Mapping[str, str],
    nodename_file: str | None,
    hostname: str,
    program_kernel: bool = True,
    program_vxlan: bool = False,
    bird_process_names: bool = False,
    bfd_hold: bool = True,
) -> DaemonConfig:
    level_source, level_raw = (
        ("--log-level", log_level)
        if log_level
        else (
            "BGP_LOGSEVERITYSCREEN",
            environ.get("BGP_LOGSEVERITYSCREEN", "info"),
        )
    )
    fmt = (log_format or "auto").lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError("--log-format", log_format, "must be json, console or auto")
    router_id = _router_id(environ)
    socket_path = control_socket or DEFAULT_CONTROL_SOCKET
    if not socket_path.startswith("/") and not socket_path.startswith("."):
        raise ConfigError("--control-socket", socket_path, "must be a path")
    source = _datastore(datastore, environ)
    kubernetes, kubernetes_unavailable = _kubernetes(source, environ)
    return DaemonConfig(
        node=node_name(node, environ, nodename_file, hostname),
        datastore=source,
        kubernetes=kubernetes,
        kubernetes_unavailable=kubernetes_unavailable,
        namespace=environ.get("NAMESPACE", "").strip() or "kube-system",
        control_socket=socket_path,
        metrics_listen=_listen("--metrics-listen", metrics_listen or DEFAULT_METRICS_LISTEN),
        log_level=_log_level(level_source, level_raw),
        log_level_fixed=bool(log_level),
        advertise_cluster_ips=_advertise_cluster_ips(environ),
        log_format=fmt,
        router_id=router_id,
        program_kernel=program_kernel,
        program_vxlan=program_vxlan,
        bird_process_names=bird_process_names,
        bfd_hold=bfd_hold,
        environ=dict(environ),
    )
