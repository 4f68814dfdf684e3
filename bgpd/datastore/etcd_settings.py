"""How to reach etcd, from Calico's variables or bgpd's URL, and which keys bgpd reads.

Role: the pure half of the etcd adapter (``etcd`` is the IO half): settings are parsed and
validated at start, before any connection, so a bad value fails naming the variable.

Rules:
1. Calico's variables and defaults (``libcalico-go/lib/apiconfig/apiconfig.go``): ``ETCD_ENDPOINTS``
   (comma-separated, ``http(s)://host:port`` or ``host:port``), ``ETCD_CA_CERT_FILE``,
   ``ETCD_CERT_FILE`` with ``ETCD_KEY_FILE``, ``ETCD_USERNAME`` with ``ETCD_PASSWORD``; an empty
   variable is unset; TLS per endpoint (``https``, or a certificate file without a scheme).
   ``ETCD_ENDPOINTS`` empty or unset is refused as Calico refuses it ("no etcd endpoints
   specified", ``libcalico-go/lib/backend/etcdv3/etcdv3.go``), never a silent 127.0.0.1:2379.
2. ``ETCD_DISCOVERY_SRV`` is refused (DNS discovery is not supported).
3. The watched keys are confd's BGP set (calico-bgp.md §1.2-§1.4) plus the IPAM config and
   allocation blocks (borrowed IPs); an entry ending in ``/`` is a prefix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bgpd.errors import ConfigError

RESOURCES_PREFIX = "/calico/resources/v3/projectcalico.org/"
IPAM_PREFIX = "/calico/ipam/v2/"

_ENDPOINTS_VAR = "ETCD_ENDPOINTS"
_CA_VAR = "ETCD_CA_CERT_FILE"
_CERT_VAR = "ETCD_CERT_FILE"
_KEY_VAR = "ETCD_KEY_FILE"
_USERNAME_VAR = "ETCD_USERNAME"
_PASSWORD_VAR = "ETCD_PASSWORD"
_DISCOVERY_VAR = "ETCD_DISCOVERY_SRV"
_URL_NAME = "datastore URL"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One etcd client URL."""

    host: str
    port: int
    tls: bool

    @property
    def target(self) -> str:
        """The gRPC target, ``host:port`` (IPv6 literals bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EtcdSettings:
    """How to reach etcd: endpoints, TLS files, credentials and the reconnect policy."""

    endpoints: tuple[Endpoint, ...]
    ca_cert_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    request_timeout: float = 30.0
    reconnect_initial: float = 0.2
    reconnect_max: float = 10.0
    keepalive_time: float = 15.0
    keepalive_timeout: float = 10.0
    list_page_size: int = 2000

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> EtcdSettings:
        """Read Calico's ``ETCD_*`` variables; an empty variable counts as unset."""

        def value(name: str) -> str | None:
            return environ.get(name, "").strip() or None

        if value(_DISCOVERY_VAR) is not None:
            raise ConfigError(_DISCOVERY_VAR, environ[_DISCOVERY_VAR], "not supported")
        tls_files = {
            name: _existing_file(name, value(name)) for name in (_CA_VAR, _CERT_VAR, _KEY_VAR)
        }
        _require_pair(tls_files, _CERT_VAR, _KEY_VAR)
        credentials = {name: value(name) for name in (_USERNAME_VAR, _PASSWORD_VAR)}
        _require_pair(credentials, _USERNAME_VAR, _PASSWORD_VAR)
        raw_endpoints = value(_ENDPOINTS_VAR)
        if raw_endpoints is None:
            raise ConfigError(
                _ENDPOINTS_VAR, environ.get(_ENDPOINTS_VAR, ""), "no etcd endpoints specified"
            )
        default_tls = any(tls_files.values())
        endpoints = tuple(
            _parse_endpoint(_ENDPOINTS_VAR, raw_endpoints, item, default_tls)
            for item in _split_list(_ENDPOINTS_VAR, raw_endpoints, raw_endpoints)
        )
        return cls(
            endpoints=endpoints,
            ca_cert_file=tls_files[_CA_VAR],
            cert_file=tls_files[_CERT_VAR],
            key_file=tls_files[_KEY_VAR],
            username=credentials[_USERNAME_VAR],
            password=credentials[_PASSWORD_VAR],
        )

    @classmethod
    def from_url(cls, url: str) -> EtcdSettings:
        """Parse the CLI form ``etcd://host:port[,host:port]`` (``etcds://`` for TLS)."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("etcd", "etcds"):
            raise ConfigError(_URL_NAME, url, "expected etcd://host:port[,host:port]")
        tls = scheme == "etcds"
        items = _split_list(_URL_NAME, url, rest)
        return cls(endpoints=tuple(_parse_host_port(_URL_NAME, url, item, tls) for item in items))


def _existing_file(name: str, path: str | None) -> str | None:
    if path is not None and not os.path.isfile(path):
        raise ConfigError(name, path, "no such file")
    return path


def _require_pair(values: Mapping[str, str | None], first: str, second: str) -> None:
    if (values[first] is None) != (values[second] is None):
        missing, present = (second, first) if values[second] is None else (first, second)
        raise ConfigError(present, values[present], f"{missing} must be set too")


def _split_list(name: str, raw: str, listed: str) -> list[str]:
    """The comma-separated items of ``listed`` (a part of ``raw``, the value of ``name``)."""
    items = [item.strip() for item in listed.split(",")]
    if not all(items):
        raise ConfigError(name, raw, "empty endpoint in the list")
    return items


def _parse_endpoint(name: str, raw: str, item: str, default_tls: bool) -> Endpoint:
    if "://" not in item:
        return _parse_host_port(name, raw, item, default_tls)
    parts = urlsplit(item)
    if parts.scheme not in ("http", "https") or parts.path not in ("", "/"):
        raise ConfigError(name, raw, f"{item!r} is not http(s)://host:port")
    return _parse_host_port(name, raw, parts.netloc, parts.scheme == "https")


def _parse_host_port(name: str, raw: str, item: str, tls: bool) -> Endpoint:
    host, sep, port_text = item.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(name, raw, f"{item!r} is not host:port")
    return Endpoint(host=host, port=int(port_text), tls=tls)


def calico_watch_keys(node_name: str) -> tuple[str, ...]:
    """The keys bgpd lists and watches for ``node_name`` (calico-bgp.md §1.2-§1.4)."""
    if not node_name or "/" in node_name:
        raise ValueError(f"node name {node_name!r} is empty or contains '/'")
    return (
        RESOURCES_PREFIX + "nodes/",
        RESOURCES_PREFIX + "ippools/",
        RESOURCES_PREFIX + "bgppeers/",
        RESOURCES_PREFIX + "bgpconfigurations/",
        RESOURCES_PREFIX + "bgpfilters/",
        RESOURCES_PREFIX + "bfdconfigurations/",  # Calico Enterprise (issue 19)
        f"{IPAM_PREFIX}host/{node_name}/",
        IPAM_PREFIX + "config",
        IPAM_PREFIX + "assignment/",
    )
