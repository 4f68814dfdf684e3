"""The entry point of ``peers``: a snapshot and a node name in, the node's BGP setup out.

Rules:
1. Sessions per family exist only when this node has an address of that family (§2.7:
   "IPv4 disabled on this node"); each family is resolved independently, as bird and bird6.
2. Session set = mesh (§2.8.1) + Global records + Node records (§1.6.3), built by the
   statements of §2.8 (``peers.rules``). A Mesh and a Node session to one IP can coexist, as
   in BIRD (different protocol names).
3. Router ID (§2.1): ``CALICO_ROUTER_ID=hash`` -> first 4 bytes of SHA-256(node name), first
   octet minus 32 when above 223; another non-empty value is used literally; otherwise the
   node's IPv4 address (also for IPv6 sessions: the BGP Identifier is 32 bits, RFC 4271 §4.2).
4. Listen (§2.2): port = ``node.<n>`` listenPort, else global, else 179; with
   ``bindMode: NodeIP`` each family listens on the node's address of that family only.
5. Log level (§2.3): ``node.<n>`` then ``default`` ``logSeverityScreen`` (``log_severity``,
   lowercased, "" when neither sets it: bgpd's own log level at run time), mapped for BIRD's
   debug statements to debug / info / none; default info.
6. Secrets (BGP passwords) come through an injected lookup: the snapshot's ``SecretTable`` when
   the Kubernetes API is configured (the Secrets read through it), else environment variables
   or files the daemon maps ``secretKeyRef`` to. A password that cannot be read is a problem
   naming the peer and why (the Secret is missing, lacks the key, or the API refused it); the
   session is built without it, as confd renders it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from peers.explicit import resolve_peerings
from peers.mesh import mesh_sessions
from peers.model import IPAddress, Snapshot
from peers.rules import LocalNode, build_session
from peers.spec import BGP_PORT, SessionKind, SessionSpec

SecretLookup = Callable[[str, str], str | None]
SECRET_ENV_PREFIX = "BGPD_SECRET_"


def no_secrets(name: str, key: str) -> str | None:
    return None


def secret_env_name(name: str, key: str) -> str:
    """``BGPD_SECRET_<NAME>__<KEY>``: upper case, every non-alphanumeric character as ``_``;
    the double underscore separates the Secret's name from its key."""

    def norm(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9]", "_", text).upper()

    return f"{SECRET_ENV_PREFIX}{norm(name)}__{norm(key)}"


def environ_secret_lookup(environ: Mapping[str, str]) -> SecretLookup:
    """A lookup reading Secret values from ``environ`` (see ``secret_env_name``)."""
    frozen = dict(environ)

    def lookup(name: str, key: str) -> str | None:
        return frozen.get(secret_env_name(name, key))

    return lookup


@dataclass(frozen=True, slots=True)
class Environment:
    """Non-datastore inputs: ``CALICO_ROUTER_ID`` and the Secret lookup."""

    router_id: str = ""
    secrets: SecretLookup = no_secrets

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Environment:
        return cls(
            router_id=environ.get("CALICO_ROUTER_ID", ""),
            secrets=environ_secret_lookup(environ),
        )


def hash_router_id(node_name: str) -> ipaddress.IPv4Address:
    """Rule 3, ``HashToIPv4`` [TU]: keeps the ID out of multicast space (issue #5146)."""
    digest = bytearray(hashlib.sha256(node_name.encode()).digest()[:4])
    if digest[0] > 223:
        digest[0] -= 32
    return ipaddress.IPv4Address(bytes(digest))


def router_id(node_name: str, snapshot: Snapshot, env: Environment) -> ipaddress.IPv4Address | None:
    """Rule 3; None when there is no usable ID (an IPv6-only node without CALICO_ROUTER_ID,
    or a literal that is not an IPv4 address)."""
    if env.router_id == "hash":
        return hash_router_id(node_name)
    if env.router_id:
        try:
            return ipaddress.IPv4Address(env.router_id)
        except ValueError:
            return None
    node = snapshot.nodes.get(node_name)
    if node is None or node.ipv4_address is None:
        return None
    return node.ipv4_address.ip


def log_severity(node_name: str, snapshot: Snapshot) -> str:
    """Rule 5: the node's ``logSeverityScreen``, else the default one, lowercased; "" if unset."""
    for cfg in (snapshot.node_config(node_name), snapshot.global_config):
        if cfg is not None and cfg.log_severity_screen:
            return cfg.log_severity_screen.lower()
    return ""


def log_level(node_name: str, snapshot: Snapshot) -> str:
    """Rule 5: BIRD's debug statements, "debug", "info" or "none"."""
    level = log_severity(node_name, snapshot) or "info"
    return level if level in ("debug", "info") else "none"


@dataclass(frozen=True, slots=True)
class NodePeering:
    """This node's BGP setup: identity, listening, and the desired sessions by name."""

    node_name: str
    router_id: ipaddress.IPv4Address | None
    local_as: int
    listen_port: int
    listen_addresses: tuple[IPAddress, ...]  # empty: all addresses (bindMode None)
    log_level: str
    sessions: Mapping[str, SessionSpec] = field(hash=False)
    log_severity: str = ""
    problems: tuple[str, ...] = ()  # for the caller to log: bad peerIP, missing secret...


def resolve_node(node_name: str, snapshot: Snapshot, env: Environment) -> NodePeering:
    """Everything ``peers`` computes for ``node_name`` (rules 1-6)."""
    node = snapshot.nodes.get(node_name)
    local_as = snapshot.node_as(node_name)
    sessions: dict[str, SessionSpec] = {}
    problems: list[str] = []
    if node is None:
        problems.append(f"node {node_name} is not in the datastore")
    else:
        peerings = resolve_peerings(node_name, snapshot, env.secrets)
        problems.extend(peerings.problems)
        for version in (4, 6):
            own_ip = node.ip(version)
            if own_ip is None:
                continue
            local = LocalNode(own_ip, local_as, node.rr_cluster_id)
            found = mesh_sessions(node_name, local, snapshot, env.secrets)
            for kind, records in (
                (SessionKind.GLOBAL, peerings.global_records),
                (SessionKind.NODE, peerings.node_records),
            ):
                for record in records.values():
                    if record.ip.version != version:
                        continue
                    spec = build_session(kind, record, local)
                    if spec is not None:
                        found.append(spec)
            for spec in found:
                sessions.setdefault(spec.name, spec)
    cfg = snapshot.global_config
    bind_node_ip = cfg is not None and cfg.bind_mode == "NodeIP"
    listen: tuple[IPAddress, ...] = ()
    if bind_node_ip and node is not None:
        listen = tuple(ip for v in (4, 6) if (ip := node.ip(v)) is not None)
    return NodePeering(
        node_name=node_name,
        router_id=router_id(node_name, snapshot, env),
        local_as=local_as,
        listen_port=snapshot.listen_port_of(node_name) or BGP_PORT,
        listen_addresses=listen,
        log_level=log_level(node_name, snapshot),
        log_severity=log_severity(node_name, snapshot),
        sessions=MappingProxyType(dict(sorted(sessions.items()))),
        problems=tuple(dict.fromkeys(problems)),
    )


def desired_sessions(
    node_name: str, snapshot: Snapshot, env: Environment
) -> dict[str, SessionSpec]:
    """The desired sessions of ``node_name``, keyed by Calico's session name, both families."""
    return dict(resolve_node(node_name, snapshot, env).sessions)
