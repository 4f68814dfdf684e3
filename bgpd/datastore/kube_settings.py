"""How to reach the Kubernetes API server (``DATASTORE_TYPE=kubernetes``), from calico-node's
variables.

Role: the pure half of the Kubernetes adapter (``kubernetes`` is the IO half): settings are read
and validated at start, so a bad or missing setting fails naming it (one ``ConfigError``).

Rules:
1. ``KUBECONFIG`` set: the kubeconfig's ``current-context`` (or ``K8S_CURRENT_CONTEXT``) picks the
   cluster (``server``, ``certificate-authority`` or ``-data``, ``insecure-skip-tls-verify``) and
   the user (``token``, ``tokenFile``, ``client-certificate``/``client-key`` or their ``-data``);
   relative paths are relative to the kubeconfig's directory (as client-go resolves them).
2. Otherwise in-cluster: ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` and the service
   account's ``token`` and ``ca.crt`` under ``/var/run/secrets/kubernetes.io/serviceaccount``.
3. ``CALICO_API_GROUP`` (``projectcalico.org/v3`` or ``crd.projectcalico.org/v1``) skips the group
   discovery; ``USE_POD_CIDR`` is Calico's boolean (``libcalico-go/lib/apiconfig``).
4. Secrets (token, key data) are kept out of ``repr``. A token read from a file (the service
   account's, a kubeconfig ``tokenFile``) is read again for every request, as the kubelet
   rotates bound service-account tokens.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bgpd.errors import ConfigError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
API_GROUPS = ("projectcalico.org/v3", "crd.projectcalico.org/v1")


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """The API server's address and the client's credentials."""

    host: str
    port: int
    tls: bool = True
    ca_data: bytes | None = None
    insecure: bool = False
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None  # read again for every request (kubelet rotates it)
    cert_data: bytes | None = None
    key_data: bytes | None = field(default=None, repr=False)
    api_group: str = ""  # "" = discover (kdd.py, discovery.go)
    use_pod_cidr: bool = False
    request_timeout: float = 30.0
    watch_timeout: int = 300  # timeoutSeconds of one watch request
    list_page_size: int = 500
    reconnect_initial: float = 0.2
    reconnect_max: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> KubeSettings:
        """Rules 1-3."""
        group = environ.get("CALICO_API_GROUP", "").strip()
        if group and group not in API_GROUPS:
            raise ConfigError("CALICO_API_GROUP", group, f"must be one of {', '.join(API_GROUPS)}")
        pod_cidr = environ.get("USE_POD_CIDR", "").strip().lower()
        if pod_cidr not in ("", "true", "false", "1", "0"):
            raise ConfigError("USE_POD_CIDR", pod_cidr, "must be true or false")
        kubeconfig = environ.get("KUBECONFIG", "").strip()
        if kubeconfig:
            settings = _from_kubeconfig(kubeconfig, environ.get("K8S_CURRENT_CONTEXT", "").strip())
        else:
            settings = _in_cluster(environ)
        return cls(
            **settings, api_group=group.partition("/")[0], use_pod_cidr=pod_cidr in ("true", "1")
        )


def _read(name: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(name, str(path), exc.strerror or "unreadable") from None


def _server(name: str, url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, url, "must be https://HOST[:PORT]")
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise ConfigError(name, url, "bad port") from None
    return {"host": parts.hostname, "port": port, "tls": tls}


def _in_cluster(environ: Mapping[str, str]) -> dict[str, Any]:
    host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    port = environ.get("KUBERNETES_SERVICE_PORT", "").strip()
    if not host or not port:
        raise ConfigError(
            "KUBECONFIG", "", "unset, and not in a cluster (KUBERNETES_SERVICE_HOST/PORT unset)"
        )
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("KUBERNETES_SERVICE_PORT", port, "must be 1-65535")
    token_file = SERVICE_ACCOUNT_DIR / "token"
    token = _read("service account token", token_file).decode().strip()
    return {
        "token_file": str(token_file),
        "host": host.strip("[]"),
        "port": int(port),
        "tls": True,
        "ca_data": _read("service account CA", SERVICE_ACCOUNT_DIR / "ca.crt"),
        "token": token,
    }


def _named(items: object, name: str, section: str, path: str) -> Mapping[str, Any]:
    for item in items if isinstance(items, list) else ():
        if isinstance(item, Mapping) and item.get("name") == name:
            body = item.get(section[:-1])
            if isinstance(body, Mapping):
                return body
    raise ConfigError("KUBECONFIG", path, f"no {section[:-1]} named {name!r}")


def _from_kubeconfig(path: str, context_name: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(_read("KUBECONFIG", Path(path)))
    except yaml.YAMLError as exc:
        raise ConfigError("KUBECONFIG", path, f"not YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(document, Mapping):
        raise ConfigError("KUBECONFIG", path, "not a kubeconfig")
    base = Path(path).parent
    context_name = context_name or str(document.get("current-context") or "")
    if not context_name:
        raise ConfigError("KUBECONFIG", path, "no current-context")
    context = _named(document.get("contexts"), context_name, "contexts", path)
    cluster = _named(document.get("clusters"), str(context.get("cluster")), "clusters", path)
    user_name = context.get("user")
    user = _named(document.get("users"), str(user_name), "users", path) if user_name else {}

    def material(body: Mapping[str, Any], key: str) -> bytes | None:
        data = body.get(f"{key}-data")
        if data:
            try:
                return base64.b64decode(str(data), validate=True)
            except binascii.Error:
                raise ConfigError("KUBECONFIG", path, f"{key}-data is not base64") from None
        file_name = body.get(key)
        return _read("KUBECONFIG", base / os.path.expanduser(str(file_name))) if file_name else None

    server = cluster.get("server")
    if not server:
        raise ConfigError("KUBECONFIG", path, f"cluster {context.get('cluster')!r} has no server")
    token = user.get("token")
    token_file = user.get("tokenFile")
    token_path = str(base / str(token_file)) if token_file and not token else None
    if token_path is not None:
        token = _read("KUBECONFIG", Path(token_path)).decode().strip()
    cert, key = material(user, "client-certificate"), material(user, "client-key")
    if (cert is None) != (key is None):
        raise ConfigError("KUBECONFIG", path, "client-certificate and client-key go together")
    return {
        **_server("KUBECONFIG", str(server)),
        "ca_data": material(cluster, "certificate-authority"),
        "insecure": bool(cluster.get("insecure-skip-tls-verify")),
        "token": str(token) if token else None,
        "token_file": token_path,
        "cert_data": cert,
        "key_data": key,
    }
