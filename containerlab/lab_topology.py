"""Read a containerlab topology file into plain values the namespace runner realises.

Rules:
1. Only standard containerlab fields are read (``name``, ``prefix``, ``topology.defaults``,
   ``kinds``, ``groups``, ``nodes``, ``links``); a node's settings are merged as containerlab
   does: defaults, then its kind, then its group, then the node itself (the most specific wins;
   ``env``, ``labels`` and ``sysctls`` merge key by key).
2. What a ``linux`` node runs (its *role*) follows from its image: ``bgpd`` -> bgpd,
   ``frr`` -> FRR, ``gobgp`` -> GoBGP, ``bird`` -> BIRD 1.6 (``bird`` with a 2.x tag -> BIRD 2),
   ``etcd`` -> etcd, anything else -> a plain host (pods, routers, switches). The label
   ``netlab.role`` overrides the guess. Kind ``bridge`` nodes become a Linux bridge.
3. A node's namespace is named as containerlab names its container: ``<prefix>-<lab>-<node>``
   with prefix ``clab`` by default, ``<node>`` for an empty prefix, ``<lab>-<node>`` for
   ``__lab-name``.
4. Bind sources are relative to the topology file's directory (containerlab's rule); a path
   inside the node that no bind covers lives under the node's private scratch root, so several
   nodes can use the same container paths on one host.
5. Pure: no process, namespace or network access; the YAML text comes in.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

ROLES = ("bgpd", "bird", "bird2", "frr", "gobgp", "etcd", "plain", "bridge")
ROLE_LABEL = "netlab.role"
_MERGED_MAPS = ("env", "labels", "sysctls")
_IMAGE_ROLES = (("bgpd", "bgpd"), ("frr", "frr"), ("gobgp", "gobgp"), ("etcd", "etcd"))


class TopologyError(ValueError):
    """The topology file cannot be realised; the message names the node or link."""


@dataclass(frozen=True, slots=True)
class Bind:
    host: Path
    container: PurePosixPath
    readonly: bool


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    namespace: str
    kind: str
    role: str
    image: str
    binds: tuple[Bind, ...]
    env: tuple[tuple[str, str], ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    exec_commands: tuple[str, ...]
    sysctls: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]

    @property
    def argv(self) -> tuple[str, ...]:
        """The command the container would run: entrypoint followed by cmd."""
        return self.entrypoint + self.cmd

    def env_map(self) -> dict[str, str]:
        return dict(self.env)

    def host_path(self, container_path: str, scratch: Path) -> Path:
        """Where ``container_path`` lives on the host (rule 4): the most specific bind covering
        it, else the node's scratch root ``scratch``."""
        path = PurePosixPath(container_path)
        best: Bind | None = None
        for bind in self.binds:
            if path == bind.container or bind.container in path.parents:
                if best is None or len(bind.container.parts) > len(best.container.parts):
                    best = bind
        if best is not None:
            return best.host.joinpath(*path.parts[len(best.container.parts) :])
        return scratch.joinpath(*path.parts[1:])


@dataclass(frozen=True, slots=True)
class Endpoint:
    node: str
    interface: str


@dataclass(frozen=True, slots=True)
class Link:
    a: Endpoint
    b: Endpoint
    ipv4: tuple[str, str]  # per endpoint, "" for none
    mtu: int | None

    def describe(self) -> str:
        return f"{self.a.node}:{self.a.interface} <-> {self.b.node}:{self.b.interface}"


@dataclass(frozen=True, slots=True)
class Lab:
    name: str
    directory: Path
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise TopologyError(f"lab {self.name} has no node {name!r}")

    def links_of(self, name: str) -> tuple[Link, ...]:
        return tuple(link for link in self.links if name in (link.a.node, link.b.node))


def namespace_name(prefix: str | None, lab: str, node: str) -> str:
    """The container (here: namespace) name containerlab would use (rule 3)."""
    if prefix is None:
        return f"clab-{lab}-{node}"
    if prefix == "":
        return node
    if prefix == "__lab-name":
        return f"{lab}-{node}"
    return f"{prefix}-{lab}-{node}"


def role_of(kind: str, image: str, labels: Mapping[str, str]) -> str:
    """What a node runs (rule 2)."""
    if kind == "bridge":
        return "bridge"
    explicit = labels.get(ROLE_LABEL)
    if explicit:
        if explicit not in ROLES:
            raise TopologyError(f"label {ROLE_LABEL}={explicit!r} is not one of {ROLES}")
        return explicit
    repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    repository = repository or image
    base = repository.split("/")[-1].lower()
    for needle, role in _IMAGE_ROLES:
        if needle in base:
            return role
    if "bird" in base:
        return "bird2" if tag.startswith("2") or base.endswith("bird2") else "bird"
    return "plain"


def _split_command(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, list):
        return tuple(str(part) for part in value)
    return tuple(shlex.split(str(value)))


def _string_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TopologyError(f"{where} must be a mapping")
    return {str(k): _scalar(v) for k, v in value.items()}


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _merge(layers: list[Mapping[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in _MERGED_MAPS and isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return merged


def _bind(spec: str, directory: Path, node: str) -> Bind:
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise TopologyError(f"node {node}: bind {spec!r} is not HOST:CONTAINER[:ro]")
    host = Path(parts[0])
    if not host.is_absolute():
        host = directory / host
    return Bind(host.resolve(), PurePosixPath(parts[1]), len(parts) == 3 and "ro" in parts[2])


_ENDPOINT = re.compile(r"^([^:\s]+):(\S+)$")


def _endpoint(text: str, nodes: Mapping[str, object]) -> Endpoint:
    match = _ENDPOINT.match(text)
    if not match:
        raise TopologyError(f"link endpoint {text!r} is not NODE:INTERFACE")
    node, interface = match.groups()
    if node not in nodes:
        raise TopologyError(f"link endpoint {text!r} names an unknown node")
    if len(interface) > 15:
        raise TopologyError(f"link endpoint {text!r}: interface names have at most 15 chars")
    return Endpoint(node, interface)


def parse_lab(text: str, path: Path, name_override: str | None = None) -> Lab:
    """Decode one topology file; ``name_override`` is containerlab's ``--name``."""
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or "topology" not in document:
        raise TopologyError(f"{path}: not a containerlab topology (no 'topology')")
    lab_name = name_override or str(document["name"])
    prefix = document.get("prefix")
    topology = document["topology"] or {}
    defaults = topology.get("defaults") or {}
    kinds = topology.get("kinds") or {}
    groups = topology.get("groups") or {}
    raw_nodes: dict[str, Any] = topology.get("nodes") or {}
    directory = path.resolve().parent
    nodes: list[Node] = []
    for name, own in raw_nodes.items():
        own = own or {}
        kind = str(own.get("kind") or defaults.get("kind") or "linux")
        group = own.get("group") or defaults.get("group")
        layers = [defaults, kinds.get(kind) or {}, (groups.get(group) or {}) if group else {}, own]
        spec = _merge(layers)
        labels = _string_map(spec.get("labels"), f"node {name} labels")
        image = str(spec.get("image") or "")
        nodes.append(
            Node(
                name=str(name),
                namespace=namespace_name(prefix, lab_name, str(name)),
                kind=kind,
                role=role_of(kind, image, labels),
                image=image,
                binds=tuple(_bind(str(b), directory, name) for b in spec.get("binds") or ()),
                env=tuple(_string_map(spec.get("env"), f"node {name} env").items()),
                entrypoint=_split_command(spec.get("entrypoint")),
                cmd=_split_command(spec.get("cmd")),
                exec_commands=tuple(str(c) for c in spec.get("exec") or ()),
                sysctls=tuple(_string_map(spec.get("sysctls"), f"node {name} sysctls").items()),
                labels=tuple(labels.items()),
            )
        )
    links: list[Link] = []
    for raw in topology.get("links") or ():
        endpoints = raw.get("endpoints") or []
        if len(endpoints) != 2:
            raise TopologyError(f"link {raw!r} needs exactly two endpoints")
        a, b = (_endpoint(str(e), raw_nodes) for e in endpoints)
        ipv4 = [str(x) for x in raw.get("ipv4") or ()] + ["", ""]
        mtu = raw.get("mtu")
        links.append(Link(a, b, (ipv4[0], ipv4[1]), int(mtu) if mtu is not None else None))
    _check_interfaces(links)
    return Lab(lab_name, directory, tuple(nodes), tuple(links))


def _check_interfaces(links: list[Link]) -> None:
    seen: set[tuple[str, str]] = set()
    for link in links:
        for end in (link.a, link.b):
            key = (end.node, end.interface)
            if key in seen:
                raise TopologyError(f"interface {end.node}:{end.interface} is used twice")
            seen.add(key)


def load_lab(path: Path, name_override: str | None = None) -> Lab:
    return parse_lab(path.read_text(), path, name_override)
