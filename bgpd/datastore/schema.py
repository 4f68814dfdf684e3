"""Decode Calico datastore records, from etcd key/value pairs or Calico v3 YAML documents, into
the typed values of ``peers.model``.

Rules:
1. Keys and JSON follow calico-bgp.md §1.2-§1.3: v3 resources under
   ``/calico/resources/v3/projectcalico.org/<plural>/<name>``, block affinities under
   ``/calico/ipam/v2/host/<node>/ipvN/block/<cidr-with-dash>``, allocation blocks under
   ``/calico/ipam/v2/assignment/ipvN/block/<cidr-with-dash>``, and ``/calico/ipam/v2/config``.
2. A key we do not read returns ``None`` from ``parse_key``: not an error. A key we read whose
   name or value is wrong raises ``RecordError(key, reason)``; the caller logs, counts, skips.
3. YAML documents are the same resources as the Calico API writes them (``apiVersion:
   projectcalico.org/v3``, ``kind``, ``metadata``, ``spec``); IPAM records appear as ``kind:
   BlockAffinity`` (``spec.node``, ``spec.cidr``, ``spec.state``), ``kind: IPAMBlock`` (``spec``
   as the etcd block JSON) and ``kind: IPAMConfiguration``.
4. AS numbers accept an integer, a decimal string or asdot ``a.b`` (``numorstring.ASNumber``);
   durations accept Go syntax ("120s", "2m30s", "1.5h") or a number of seconds.
5. Unknown fields are ignored (newer Calico versions add fields); wrong types or values of the
   fields we read are errors naming the field.
6. An empty entry (``{}`` or a null) in a BGPConfiguration list -- ``serviceClusterIPs``,
   ``serviceExternalIPs``, ``serviceLoadBalancerIPs``, ``communities``, ``prefixAdvertisements``
   -- is skipped, not an error: Calico's confd copies each entry's CIDR string and drops the
   ones that do not parse (projectcalico/calico master, ``confd/pkg/backends/calico/client.go``,
   the service-IP updates; ``bgp_processor.go`` for communities and prefix advertisements), so
   one empty entry leaves the rest of the resource in force.
7. A string field (and a label value) takes an integer or boolean scalar as its text, as
   sigs.k8s.io/yaml does when the Go target field is a string (the file datastore leaves
   YAML 1.1-only forms as strings, ``file`` rule 5).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum, StrEnum
from typing import Any, TypeVar

from bgpd.calico.priority import BIRD_INT_MAX
from encap.model import EncapMode
from peers.explicit import split_peer_ip
from peers.model import (
    MAX_PREFIXES_ANNOTATION,
    MAX_PREFIXES_RESTART_TIME,
    MAX_PREFIXES_WARNING_PERCENT,
    AffinityState,
    Allocation,
    AllocationBlock,
    BFDConfiguration,
    BFDInterface,
    BGPConfiguration,
    BGPFilter,
    BGPFilterRule,
    BGPPeer,
    BlockAffinity,
    Community,
    FilterAction,
    FilterAddCommunity,
    FilterMatchOperator,
    FilterOperation,
    FilterPrependASPath,
    FilterSetPriority,
    IPAMConfig,
    IPNetwork,
    IPPool,
    MaxPrefixes,
    NamedCommunity,
    Node,
    PeerNextHopMode,
    PrefixAdvertisement,
    ProgramClusterRoutes,
    SecretKeyRef,
)
from peers.selectors import SelectorError, parse_selector

RESOURCE_PREFIX = "/calico/resources/v3/projectcalico.org/"
IPAM_HOST_PREFIX = "/calico/ipam/v2/host/"
IPAM_BLOCK_PREFIX = "/calico/ipam/v2/assignment/"
IPAM_CONFIG_KEY = "/calico/ipam/v2/config"
API_VERSION = "projectcalico.org/v3"
MAX_AS = 0xFFFFFFFF


class RecordError(ValueError):
    """A datastore record that cannot be used: where it came from and why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class Kind(StrEnum):
    NODE = "Node"
    IPPOOL = "IPPool"
    BGPPEER = "BGPPeer"
    BGPCONFIGURATION = "BGPConfiguration"
    BGPFILTER = "BGPFilter"
    BFDCONFIGURATION = "BFDConfiguration"
    BLOCK_AFFINITY = "BlockAffinity"
    ALLOCATION_BLOCK = "IPAMBlock"
    IPAM_CONFIG = "IPAMConfiguration"


_PLURALS = {
    "nodes": Kind.NODE,
    "ippools": Kind.IPPOOL,
    "bgppeers": Kind.BGPPEER,
    "bgpconfigurations": Kind.BGPCONFIGURATION,
    "bgpfilters": Kind.BGPFILTER,
    "bfdconfigurations": Kind.BFDCONFIGURATION,
}
_V3_KINDS = frozenset(_PLURALS.values())


@dataclass(frozen=True, slots=True)
class RecordKey:
    """Identity of a record: ``name`` is the resource name (affinity: the node); ``cidr`` the
    block of an affinity or allocation block."""

    kind: Kind
    name: str = ""
    cidr: IPNetwork | None = None


Record = (
    Node
    | IPPool
    | BGPPeer
    | BGPConfiguration
    | BGPFilter
    | BFDConfiguration
    | BlockAffinity
    | AllocationBlock
    | IPAMConfig
)


# ---------------------------------------------------------------------------------------------
# Scalars


def parse_as_number(value: object, where: str) -> int:
    """Rule 4: 64512, "64512" or asdot "1.10" (= 1 * 65536 + 10)."""
    if isinstance(value, bool):
        raise RecordError(where, f"AS number must be a number, not {value!r}")
    if isinstance(value, int):
        asn = value
    elif isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
        asn = int(value.strip())
    elif isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value.strip()):
        high, low = (int(part) for part in value.strip().split("."))
        if high > 0xFFFF or low > 0xFFFF:
            raise RecordError(where, f"asdot AS number {value!r} out of range")
        asn = (high << 16) | low
    else:
        raise RecordError(where, f"bad AS number {value!r}")
    if not 0 <= asn <= MAX_AS:
        raise RecordError(where, f"AS number {asn} out of range")
    return asn


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0}
_DURATION_UNITS |= {"m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: object, where: str) -> float:
    """Rule 4: Go ``time.ParseDuration`` syntax, or a plain number of seconds."""
    if isinstance(value, bool):
        raise RecordError(where, f"bad duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text in ("0", ""):
            return 0.0
        pos, seconds = 0, 0.0
        while pos < len(text):
            m = _DURATION_PART.match(text, pos)
            if m is None:
                raise RecordError(where, f"bad duration {value!r}")
            seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
    else:
        raise RecordError(where, f"bad duration {value!r}")
    if seconds < 0:
        raise RecordError(where, f"negative duration {value!r}")
    return seconds


def parse_community(value: object, where: str) -> Community:
    """``aa:nn`` (RFC 1997, 16-bit halves) or ``aa:nn:mm`` (RFC 8092, 32-bit parts)."""
    if not isinstance(value, str):
        raise RecordError(where, f"bad community {value!r}")
    parts = value.split(":")
    if not all(re.fullmatch(r"\d+", p) for p in parts) or len(parts) not in (2, 3):
        raise RecordError(where, f"bad community {value!r}: want aa:nn or aa:nn:mm")
    numbers = [int(p) for p in parts]
    if len(numbers) == 2:
        if max(numbers) > 0xFFFF:
            raise RecordError(where, f"standard community {value!r} out of range")
        return (numbers[0] << 16) | numbers[1]
    if max(numbers) > MAX_AS:
        raise RecordError(where, f"large community {value!r} out of range")
    return (numbers[0], numbers[1], numbers[2])


def parse_network(value: object, where: str) -> IPNetwork:
    if not isinstance(value, str):
        raise RecordError(where, f"bad CIDR {value!r}")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as exc:
        raise RecordError(where, f"bad CIDR {value!r}: {exc}") from None


def cidr_from_key_text(text: str, where: str) -> IPNetwork:
    """``10.244.1.0-26`` / ``fd00:10:244:1::-122`` (one ``/`` replaced by ``-``, §1.1)."""
    address, sep, length = text.rpartition("-")
    if not sep or not length.isdigit():
        raise RecordError(where, f"bad CIDR in key {text!r}")
    return parse_network(f"{address}/{length}", where)


def cidr_to_key_text(cidr: IPNetwork) -> str:
    return str(cidr).replace("/", "-")


# ---------------------------------------------------------------------------------------------
# Structured field access

T = TypeVar("T")
E = TypeVar("E", bound=Enum)


def _text(value: object, where: str) -> str:
    """A string field's value: a string, or an integer or boolean scalar as its text (rule 7)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    raise RecordError(where, f"expected a string, got {value!r}")


class _Fields:
    """Typed reads of one JSON object, errors naming ``<where>.<field>``."""

    def __init__(self, obj: object, where: str) -> None:
        if obj is None:
            obj = {}
        if not isinstance(obj, Mapping):
            raise RecordError(where, f"expected an object, got {type(obj).__name__}")
        self.obj: Mapping[str, Any] = obj
        self.where = where

    def path(self, name: str) -> str:
        return f"{self.where}.{name}"

    def has(self, name: str) -> bool:
        return self.obj.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.obj.get(name)

    def sub(self, name: str) -> _Fields:
        return _Fields(self.obj.get(name), self.path(name))

    def string(self, name: str, default: str = "") -> str:
        value = self.obj.get(name)
        return default if value is None else _text(value, self.path(name))

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.obj.get(name)
        if value is None:
            return default
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise RecordError(self.path(name), f"expected a boolean, got {value!r}")
        return value

    def integer(self, name: str, low: int, high: int) -> int | None:
        value = self.obj.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            else:
                raise RecordError(self.path(name), f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise RecordError(self.path(name), f"{value} outside {low}..{high}")
        return value

    def items(self, name: str) -> list[Any]:
        value = self.obj.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise RecordError(self.path(name), f"expected a list, got {value!r}")
        return value

    def enum(self, name: str, enum_type: type[E], default: E | None) -> E | None:
        value = self.obj.get(name)
        if value is None or value == "":
            return default
        try:
            return enum_type(value)
        except ValueError:
            allowed = ", ".join(str(member.value) for member in enum_type)
            raise RecordError(self.path(name), f"{value!r} is not one of {allowed}") from None

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.string(name, default) or default
        if value not in allowed:
            raise RecordError(self.path(name), f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def as_number(self, name: str) -> int | None:
        value = self.obj.get(name)
        return None if value is None else parse_as_number(value, self.path(name))

    def duration(self, name: str) -> float | None:
        value = self.obj.get(name)
        return None if value is None else parse_duration(value, self.path(name))

    def selector(self, name: str) -> str:
        text = self.string(name)
        if text:
            try:
                parse_selector(text)
            except SelectorError as exc:
                raise RecordError(self.path(name), str(exc)) from None
        return text

    def secret_ref(self, name: str) -> SecretKeyRef | None:
        if not self.has(name):
            return None
        ref = self.sub(name).sub("secretKeyRef")
        if not ref.obj:
            return None
        secret, key = ref.string("name"), ref.string("key")
        if not secret or not key:
            raise RecordError(ref.where, "secretKeyRef needs name and key")
        return SecretKeyRef(secret, key)

    def entries(self, name: str) -> list[_Fields]:
        """The list's non-empty object entries (rule 6)."""
        out = []
        for index, item in enumerate(self.items(name)):
            entry = _Fields(item, f"{self.path(name)}[{index}]")
            if any(value not in (None, "", [], {}) for value in entry.obj.values()):
                out.append(entry)
        return out

    def networks(self, name: str) -> tuple[IPNetwork, ...]:
        return tuple(
            parse_network(entry.raw("cidr"), entry.path("cidr"))
            for entry in self.entries(name)
            if entry.raw("cidr") not in (None, "")
        )


def _address(text: str, where: str, version: int) -> Any:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise RecordError(where, f"bad IPv{version} address {text!r}") from None
    if ip.version != version:
        raise RecordError(where, f"{text!r} is not an IPv{version} address")
    return ip


def _interface(text: str, where: str, version: int) -> Any:
    try:
        iface = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise RecordError(where, f"bad IPv{version} address {text!r}") from None
    if iface.version != version:
        raise RecordError(where, f"{text!r} is not an IPv{version} address")
    return iface


# ---------------------------------------------------------------------------------------------
# v3 resources (calico-bgp.md §1.2)


def _decode_node(name: str, meta: _Fields, spec: _Fields) -> Node:
    bgp = spec.sub("bgp")
    wireguard = spec.sub("wireguard")

    def opt_address(fields: _Fields, field_name: str, version: int) -> Any:
        text = fields.string(field_name)
        return _address(text, fields.path(field_name), version) if text else None

    def opt_interface(field_name: str, version: int) -> Any:
        text = bgp.string(field_name)
        return _interface(text, bgp.path(field_name), version) if text else None

    cluster_id = bgp.string("routeReflectorClusterID")
    if cluster_id:
        _address(cluster_id, bgp.path("routeReflectorClusterID"), 4)
    asn = bgp.as_number("asNumber")
    if asn == 0:
        raise RecordError(bgp.path("asNumber"), "AS 0 is reserved (RFC 7607)")
    return Node(
        name=name,
        labels=_labels(meta),
        as_number=asn,
        ipv4_address=opt_interface("ipv4Address", 4),
        ipv6_address=opt_interface("ipv6Address", 6),
        ipv4_ipip_tunnel_addr=opt_address(bgp, "ipv4IPIPTunnelAddr", 4),
        rr_cluster_id=cluster_id,
        ipv4_vxlan_tunnel_addr=opt_address(spec, "ipv4VXLANTunnelAddr", 4),
        vxlan_tunnel_mac=spec.string("vxlanTunnelMACAddr"),
        ipv6_vxlan_tunnel_addr=opt_address(spec, "ipv6VXLANTunnelAddr", 6),
        vxlan_tunnel_mac_v6=spec.string("vxlanTunnelMACAddrV6"),
        wireguard_ipv4_address=opt_address(wireguard, "interfaceIPv4Address", 4),
        wireguard_ipv6_address=opt_address(wireguard, "interfaceIPv6Address", 6),
    )


def _labels(meta: _Fields) -> dict[str, str]:
    labels = meta.sub("labels").obj
    return {
        _text(key, meta.path("labels")): _text(value, meta.path(f"labels.{key}"))
        for key, value in labels.items()
    }


def _decode_ippool(name: str, meta: _Fields, spec: _Fields) -> IPPool:
    if not spec.has("cidr"):
        raise RecordError(spec.path("cidr"), "required")
    cidr = parse_network(spec.raw("cidr"), spec.path("cidr"))
    default_block = 26 if cidr.version == 4 else 122
    block_size = spec.integer("blockSize", cidr.prefixlen, cidr.max_prefixlen)
    ipip = spec.enum("ipipMode", EncapMode, EncapMode.NEVER)
    vxlan = spec.enum("vxlanMode", EncapMode, EncapMode.NEVER)
    assert ipip is not None and vxlan is not None
    uses = tuple(str(u) for u in spec.items("allowedUses")) or ("Workload", "Tunnel")
    return IPPool(
        name=name,
        cidr=cidr,
        ipip_mode=ipip,
        vxlan_mode=vxlan,
        nat_outgoing=spec.boolean("natOutgoing"),
        disabled=spec.boolean("disabled"),
        disable_bgp_export=spec.boolean("disableBGPExport"),
        block_size=default_block if block_size is None else block_size,
        node_selector=spec.selector("nodeSelector") or "all()",
        allowed_uses=uses,
        assignment_mode=spec.string("assignmentMode", "Automatic") or "Automatic",
    )


def _decode_bgppeer(name: str, meta: _Fields, spec: _Fields) -> BGPPeer:
    node, node_selector = spec.string("node"), spec.selector("nodeSelector")
    peer_ip, peer_selector = spec.string("peerIP"), spec.selector("peerSelector")
    workload_selector = spec.selector("localWorkloadSelector")
    asn = spec.as_number("asNumber") or None
    if node and node_selector:
        raise RecordError(spec.where, "node and nodeSelector are mutually exclusive")
    if peer_ip and peer_selector:
        raise RecordError(spec.where, "peerIP and peerSelector are mutually exclusive")
    if not (peer_ip or peer_selector or workload_selector):
        raise RecordError(spec.where, "one of peerIP, peerSelector, localWorkloadSelector needed")
    if peer_selector and asn is not None:
        raise RecordError(spec.path("asNumber"), "must be empty with peerSelector")
    if peer_ip:
        host, _ = split_peer_ip(peer_ip)
        try:
            peer_version = ipaddress.ip_address(host).version
        except ValueError:
            raise RecordError(spec.path("peerIP"), f"bad peer address {peer_ip!r}") from None
        reachable_by = spec.string("reachableBy")
        if reachable_by:
            _address(reachable_by, spec.path("reachableBy"), peer_version)
    if workload_selector and asn is None:
        raise RecordError(spec.path("asNumber"), "required with localWorkloadSelector")
    local_as = spec.as_number("localASNumber") or None
    return BGPPeer(
        name=name,
        node=node,
        node_selector=node_selector,
        peer_ip=peer_ip,
        peer_selector=peer_selector,
        as_number=asn,
        local_as_number=local_as,
        keep_original_next_hop=spec.boolean("keepOriginalNextHop"),
        next_hop_mode=spec.enum("nextHopMode", PeerNextHopMode, None),
        password=spec.secret_ref("password"),
        source_address=spec.choice("sourceAddress", ("UseNodeIP", "None"), "UseNodeIP"),
        max_restart_time=spec.duration("maxRestartTime"),
        keepalive_time=spec.duration("keepaliveTime"),
        num_allowed_local_as_numbers=spec.integer("numAllowedLocalASNumbers", 0, 255),
        ttl_security=spec.integer("ttlSecurity", 0, 255),
        reachable_by=spec.string("reachableBy"),
        filters=tuple(_strings(spec, "filters")),
        local_workload_selector=workload_selector,
        reverse_peering=spec.choice("reversePeering", ("Auto", "Manual"), "Auto"),
        max_prefixes=_max_prefixes(meta, spec),
        failure_detection_mode=spec.choice(
            "failureDetectionMode", ("None", "BFDIfDirectlyConnected"), "None"
        ),
    )


def _max_prefixes(meta: _Fields, spec: _Fields) -> MaxPrefixes | None:
    """bgpd's guardrail (``peers.model.MaxPrefixes``): ``spec.maxPrefixes`` (the file
    datastore's field) wins over the ``bgpd.projectcalico.org/max-prefixes`` annotation."""
    if spec.has("maxPrefixes"):
        fields = spec.sub("maxPrefixes")
        limit = fields.integer("limit", 1, 2**32 - 1)
        if limit is None:
            raise RecordError(fields.path("limit"), "required")
        warning = fields.integer("warningPercent", 1, 100)
        restart = fields.duration("restartTime")
        return MaxPrefixes(
            limit,
            MAX_PREFIXES_WARNING_PERCENT if warning is None else warning,
            MAX_PREFIXES_RESTART_TIME if restart is None else restart,
        )
    annotations = meta.sub("annotations")
    text = annotations.string(MAX_PREFIXES_ANNOTATION)
    if not text:
        return None
    where = annotations.path(MAX_PREFIXES_ANNOTATION)
    head, *options = (part.strip() for part in text.split(","))
    if not head.isdigit() or not 0 < int(head) < 2**32:
        raise RecordError(where, f"{text!r}: LIMIT[,warning=PERCENT][,restart=DURATION]")
    found = MaxPrefixes(int(head))
    for option in options:
        name, _, value = option.partition("=")
        if name == "warning" and value.isdigit() and 0 < int(value) <= 100:
            found = replace(found, warning_percent=int(value))
        elif name == "restart" and value:
            found = replace(found, restart_time=parse_duration(value, where))
        else:
            raise RecordError(where, f"{option!r}: expected warning=PERCENT or restart=DURATION")
    return found


def _strings(fields: _Fields, name: str) -> list[str]:
    values = fields.items(name)
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise RecordError(f"{fields.path(name)}[{index}]", f"expected a string, got {value!r}")
    return values


def _decode_bgpconfig(name: str, meta: _Fields, spec: _Fields) -> BGPConfiguration:
    if name != "default" and not name.startswith("node."):
        raise RecordError(meta.where, f"name {name!r} is neither 'default' nor 'node.<name>'")
    asn = spec.as_number("asNumber")
    if asn == 0:
        raise RecordError(spec.path("asNumber"), "AS 0 is reserved (RFC 7607)")
    communities = []
    for entry in spec.entries("communities"):
        parse_community(entry.raw("value"), entry.path("value"))
        communities.append(NamedCommunity(entry.string("name"), entry.string("value")))
    named = {c.name for c in communities}
    adverts = []
    for entry in spec.entries("prefixAdvertisements"):
        if entry.raw("cidr") in (None, ""):
            continue
        values = _strings(entry, "communities")
        for position, value in enumerate(values):
            if value not in named:
                parse_community(value, f"{entry.path('communities')}[{position}]")
        cidr = parse_network(entry.raw("cidr"), entry.path("cidr"))
        adverts.append(PrefixAdvertisement(cidr, tuple(values)))
    try:
        program = spec.enum("programClusterRoutes", ProgramClusterRoutes, None)
    except RecordError:
        program = None  # [BP] clusterRoutePolicyFromBGPConfig: unknown value -> the default
    workload_v4 = spec.string("localWorkloadPeeringIPV4")
    workload_v6 = spec.string("localWorkloadPeeringIPV6")
    return BGPConfiguration(
        name=name,
        log_severity_screen=spec.string("logSeverityScreen"),
        node_to_node_mesh_enabled=(
            spec.boolean("nodeToNodeMeshEnabled") if spec.has("nodeToNodeMeshEnabled") else None
        ),
        as_number=asn,
        service_cluster_ips=spec.networks("serviceClusterIPs"),
        service_external_ips=spec.networks("serviceExternalIPs"),
        service_load_balancer_ips=spec.networks("serviceLoadBalancerIPs"),
        service_load_balancer_aggregation=spec.choice(
            "serviceLoadBalancerAggregation", ("Enabled", "Disabled"), "Enabled"
        ),
        communities=tuple(communities),
        prefix_advertisements=tuple(adverts),
        listen_port=spec.integer("listenPort", 0, 65535) or None,
        node_mesh_password=spec.secret_ref("nodeMeshPassword"),
        node_mesh_max_restart_time=spec.duration("nodeMeshMaxRestartTime"),
        bind_mode=spec.choice("bindMode", ("None", "NodeIP"), "None"),
        ignored_interfaces=tuple(_strings(spec, "ignoredInterfaces")),
        local_workload_peering_ipv4=(
            _address(workload_v4, spec.path("localWorkloadPeeringIPV4"), 4) if workload_v4 else None
        ),
        local_workload_peering_ipv6=(
            _address(workload_v6, spec.path("localWorkloadPeeringIPV6"), 6) if workload_v6 else None
        ),
        program_cluster_routes=program,
        ipv4_normal_route_priority=spec.integer("ipv4NormalRoutePriority", 1, 2147483646),
        ipv6_normal_route_priority=spec.integer("ipv6NormalRoutePriority", 1, 2147483646),
    )


def _decode_filter_rule(rule: _Fields, version: int) -> BGPFilterRule:
    action = rule.enum("action", FilterAction, None)
    if action is None:
        raise RecordError(rule.path("action"), "required (Accept or Reject)")
    cidr = parse_network(rule.raw("cidr"), rule.path("cidr")) if rule.has("cidr") else None
    operator = rule.enum("matchOperator", FilterMatchOperator, None)
    if (cidr is None) != (operator is None):
        raise RecordError(rule.where, "matchOperator is required with cidr, and only with it")
    if cidr is not None and cidr.version != version:
        raise RecordError(rule.path("cidr"), f"not an IPv{version} CIDR")
    max_len = 32 if version == 4 else 128
    lengths = rule.sub("prefixLength")
    community = None
    values = rule.sub("communities").items("values")
    if len(values) > 1:
        raise RecordError(rule.path("communities.values"), "at most one value")
    if values:
        community = parse_community(values[0], rule.path("communities.values[0]"))
    as_path = tuple(
        parse_as_number(asn, f"{rule.path('asPathPrefix')}[{i}]")
        for i, asn in enumerate(rule.items("asPathPrefix"))
    )
    operations: list[FilterOperation] = []
    for index, item in enumerate(rule.items("operations")):
        op = _Fields(item, f"{rule.path('operations')}[{index}]")
        present = [k for k in ("addCommunity", "prependASPath", "setPriority") if op.has(k)]
        if len(present) != 1:
            raise RecordError(op.where, "exactly one of addCommunity, prependASPath, setPriority")
        body = op.sub(present[0])
        if present[0] == "addCommunity":
            operations.append(
                FilterAddCommunity(parse_community(body.raw("value"), body.path("value")))
            )
        elif present[0] == "prependASPath":
            prefix = tuple(
                parse_as_number(asn, f"{body.path('prefix')}[{i}]")
                for i, asn in enumerate(body.items("prefix"))
            )
            if not prefix:
                raise RecordError(body.path("prefix"), "must not be empty")
            operations.append(FilterPrependASPath(prefix))
        else:
            value = body.integer("value", 0, BIRD_INT_MAX)
            if value is None:
                raise RecordError(body.path("value"), "required")
            operations.append(FilterSetPriority(value))
    if operations and action is not FilterAction.ACCEPT:
        raise RecordError(rule.path("operations"), "only allowed with action Accept")
    return BGPFilterRule(
        action=action,
        cidr=cidr,
        match_operator=operator,
        prefix_length_min=lengths.integer("min", 0, max_len),
        prefix_length_max=lengths.integer("max", 0, max_len),
        source=rule.choice("source", ("", "RemotePeers"), ""),
        interface=rule.string("interface"),
        peer_type=rule.choice("peerType", ("", "eBGP", "iBGP"), ""),
        community=community,
        as_path_prefix=as_path,
        priority=rule.integer("priority", 0, BIRD_INT_MAX),
        operations=tuple(operations),
    )


def _decode_bgpfilter(name: str, meta: _Fields, spec: _Fields) -> BGPFilter:
    def rules(field_name: str, version: int) -> tuple[BGPFilterRule, ...]:
        return tuple(
            _decode_filter_rule(_Fields(item, f"{spec.path(field_name)}[{i}]"), version)
            for i, item in enumerate(spec.items(field_name))
        )

    return BGPFilter(
        name=name,
        export_v4=rules("exportV4", 4),
        import_v4=rules("importV4", 4),
        export_v6=rules("exportV6", 6),
        import_v6=rules("importV6", 6),
    )


def _decode_bfd_interface(entry: _Fields) -> BFDInterface:
    """Calico Enterprise's BFDInterface: intervals a whole number of milliseconds above 0."""
    defaults = BFDInterface(match_pattern="*")

    def interval(name: str, default: float) -> float:
        seconds = entry.duration(name)
        if seconds is None:
            return default
        if seconds <= 0 or abs(seconds * 1000 - round(seconds * 1000)) > 1e-6:
            raise RecordError(entry.path(name), "must be a whole number of milliseconds above 0")
        return round(seconds * 1000) / 1000

    pattern = entry.string("matchPattern")
    if not pattern:
        raise RecordError(entry.path("matchPattern"), "required")
    multiplier = entry.integer("multiplier", 1, 255)  # RFC 5880 §4.1: Detect Mult, nonzero
    return BFDInterface(
        match_pattern=pattern,
        minimum_recv_interval=interval("minimumRecvInterval", defaults.minimum_recv_interval),
        minimum_send_interval=interval("minimumSendInterval", defaults.minimum_send_interval),
        idle_send_interval=interval("idleSendInterval", defaults.idle_send_interval),
        multiplier=defaults.multiplier if multiplier is None else multiplier,
    )


def _decode_bfdconfig(name: str, meta: _Fields, spec: _Fields) -> BFDConfiguration:
    return BFDConfiguration(
        name=name,
        node_selector=spec.selector("nodeSelector"),
        interfaces=tuple(_decode_bfd_interface(e) for e in spec.entries("interfaces")),
    )


_V3_DECODERS: dict[Kind, Callable[[str, _Fields, _Fields], Record]] = {
    Kind.NODE: _decode_node,
    Kind.IPPOOL: _decode_ippool,
    Kind.BGPPEER: _decode_bgppeer,
    Kind.BGPCONFIGURATION: _decode_bgpconfig,
    Kind.BGPFILTER: _decode_bgpfilter,
    Kind.BFDCONFIGURATION: _decode_bfdconfig,
}


def _decode_v3(kind: Kind, name: str, obj: Mapping[str, Any], where: str) -> Record:
    top = _Fields(obj, where)
    declared = top.string("kind")
    if declared and declared != kind.value:
        raise RecordError(where, f"kind {declared!r} where {kind.value} was expected")
    return _V3_DECODERS[kind](name, top.sub("metadata"), top.sub("spec"))


# ---------------------------------------------------------------------------------------------
# IPAM records (calico-bgp.md §1.3)


def _decode_affinity(node: str, cidr: IPNetwork, fields: _Fields) -> BlockAffinity:
    state_text = fields.string("state")
    state = fields.enum("state", AffinityState, AffinityState.CONFIRMED)
    assert state is not None
    return BlockAffinity(
        node=node,
        cidr=cidr,
        state=state,
        implicit=not state_text,
        deleted=fields.boolean("deleted"),
    )


def _decode_block(cidr: IPNetwork, fields: _Fields) -> AllocationBlock:
    affinity = fields.string("affinity") or fields.string("hostAffinity")
    owner = affinity[len("host:") :] if affinity.startswith("host:") else None
    allocations = fields.items("allocations")
    attributes = fields.items("attributes")
    if len(allocations) > cidr.num_addresses:
        raise RecordError(fields.path("allocations"), "longer than the block")
    secondaries = []
    for index, attr in enumerate(attributes):
        secondaries.append(_Fields(attr, f"{fields.path('attributes')}[{index}]").sub("secondary"))
    borrowed = []
    for ordinal, slot in enumerate(allocations):
        if slot is None:
            continue
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < len(attributes):
            raise RecordError(f"{fields.path('allocations')}[{ordinal}]", f"bad index {slot!r}")
        secondary = secondaries[slot]
        node = secondary.string("node")
        if node and node != owner:
            address = cidr.network_address + ordinal
            borrowed.append(Allocation(address, node, secondary.string("type")))
    return AllocationBlock(
        cidr=cidr, owner=owner, borrowed=tuple(borrowed), deleted=fields.boolean("deleted")
    )


def _decode_ipam_config(fields: _Fields, etcd_style: bool) -> IPAMConfig:
    strict, auto = (
        ("strict_affinity", "auto_allocate_blocks")
        if etcd_style
        else ("strictAffinity", "autoAllocateBlocks")
    )
    return IPAMConfig(
        strict_affinity=fields.boolean(strict),
        auto_allocate_blocks=fields.boolean(auto, True),
        max_blocks_per_host=fields.integer("maxBlocksPerHost", 0, 2**31 - 1) or 0,
    )


# ---------------------------------------------------------------------------------------------
# etcd keys and values


def resource_of_key(key: str) -> str:
    """The resource kind an etcd key names, for counters; ``unknown`` when it names none."""
    try:
        record_key = parse_key(key)
    except RecordError:
        return "unknown"
    return record_key.kind.value if record_key is not None else "unknown"


def parse_key(key: str) -> RecordKey | None:
    """Rule 2: the identity of an etcd key we read, ``None`` for any other key."""
    if key.startswith(RESOURCE_PREFIX):
        parts = key[len(RESOURCE_PREFIX) :].split("/")
        kind = _PLURALS.get(parts[0])
        if kind is None or len(parts) != 2:
            return None
        if not parts[1]:
            raise RecordError(key, "empty resource name")
        return RecordKey(kind, parts[1])
    if key.startswith(IPAM_HOST_PREFIX):
        parts = key[len(IPAM_HOST_PREFIX) :].split("/")
        if len(parts) != 4 or parts[1] not in ("ipv4", "ipv6") or parts[2] != "block":
            return None
        cidr = cidr_from_key_text(parts[3], key)
        if cidr.version != int(parts[1][-1]):
            raise RecordError(key, f"{cidr} is not an {parts[1]} block")
        return RecordKey(Kind.BLOCK_AFFINITY, parts[0], cidr)
    if key.startswith(IPAM_BLOCK_PREFIX):
        parts = key[len(IPAM_BLOCK_PREFIX) :].split("/")
        if len(parts) != 3 or parts[0] not in ("ipv4", "ipv6") or parts[1] != "block":
            return None
        return RecordKey(Kind.ALLOCATION_BLOCK, "", cidr_from_key_text(parts[2], key))
    if key == IPAM_CONFIG_KEY:
        return RecordKey(Kind.IPAM_CONFIG)
    return None


def etcd_key(record_key: RecordKey) -> str:
    """The etcd key of a record identity (inverse of ``parse_key``)."""
    if record_key.kind in _V3_KINDS:
        plural = next(p for p, k in _PLURALS.items() if k is record_key.kind)
        return f"{RESOURCE_PREFIX}{plural}/{record_key.name}"
    if record_key.kind is Kind.IPAM_CONFIG:
        return IPAM_CONFIG_KEY
    assert record_key.cidr is not None
    family = f"ipv{record_key.cidr.version}"
    text = cidr_to_key_text(record_key.cidr)
    if record_key.kind is Kind.BLOCK_AFFINITY:
        return f"{IPAM_HOST_PREFIX}{record_key.name}/{family}/block/{text}"
    return f"{IPAM_BLOCK_PREFIX}{family}/block/{text}"


def _load_json(key: str, value: bytes | str) -> Any:
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise RecordError(key, "value is not UTF-8") from None
    if not value.strip():
        return {}
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise RecordError(key, f"malformed JSON: {exc}") from None


def decode_value(record_key: RecordKey, key: str, value: bytes | str) -> Record:
    """Decode the etcd value of a key ``parse_key`` accepted."""
    obj = _load_json(key, value)
    if record_key.kind in _V3_KINDS:
        if not isinstance(obj, Mapping):
            raise RecordError(key, "value is not a JSON object")
        return _decode_v3(record_key.kind, record_key.name, obj, key)
    fields = _Fields(obj, key)
    if record_key.kind is Kind.BLOCK_AFFINITY:
        assert record_key.cidr is not None
        return _decode_affinity(record_key.name, record_key.cidr, fields)
    if record_key.kind is Kind.ALLOCATION_BLOCK:
        assert record_key.cidr is not None
        if fields.has("cidr"):
            inner = parse_network(fields.raw("cidr"), fields.path("cidr"))
            if inner != record_key.cidr:
                raise RecordError(key, f"value cidr {inner} differs from the key's")
        return _decode_block(record_key.cidr, fields)
    return _decode_ipam_config(fields, etcd_style=True)


def decode_etcd(key: str, value: bytes | str) -> tuple[RecordKey, Record] | None:
    """One etcd pair: ``None`` for a key we do not read; ``RecordError`` for a bad record."""
    record_key = parse_key(key)
    if record_key is None:
        return None
    return record_key, decode_value(record_key, key, value)


# ---------------------------------------------------------------------------------------------
# YAML documents


def decode_document(doc: object, where: str) -> tuple[RecordKey, Record]:
    """One Calico v3 resource document (rule 3); ``where`` names it in errors."""
    top = _Fields(doc, where)
    kind_text = top.string("kind")
    meta = top.sub("metadata")
    name = meta.string("name")
    if name:
        where = f"{where} ({kind_text} {name})"
        top = _Fields(doc, where)
        meta = top.sub("metadata")
    api = top.string("apiVersion")
    if api not in (API_VERSION, "crd.projectcalico.org/v1"):
        raise RecordError(where, f"apiVersion {api!r} is not {API_VERSION}")
    spec = top.sub("spec")
    if kind_text == Kind.BLOCK_AFFINITY.value:
        node = spec.string("node")
        if not node:
            raise RecordError(spec.path("node"), "required")
        cidr = parse_network(spec.raw("cidr"), spec.path("cidr"))
        return RecordKey(Kind.BLOCK_AFFINITY, node, cidr), _decode_affinity(node, cidr, spec)
    if kind_text == Kind.ALLOCATION_BLOCK.value:
        cidr = parse_network(spec.raw("cidr"), spec.path("cidr"))
        return RecordKey(Kind.ALLOCATION_BLOCK, "", cidr), _decode_block(cidr, spec)
    if kind_text in (Kind.IPAM_CONFIG.value, "IPAMConfig"):
        return RecordKey(Kind.IPAM_CONFIG), _decode_ipam_config(spec, etcd_style=False)
    try:
        kind = Kind(kind_text)
    except ValueError:
        raise RecordError(where, f"unsupported kind {kind_text!r}") from None
    if not name:
        raise RecordError(meta.path("name"), "required")
    return RecordKey(kind, name), _decode_v3(kind, name, top.obj, where)


def etcd_pair(doc: object, where: str) -> tuple[str, bytes]:
    """The etcd key and value Calico's etcd backend stores for one YAML document (the inverse
    of ``decode_etcd``; calico-bgp.md §1.1-§1.3): v3 resources as their whole JSON object,
    block affinities as ``{"state": ..., "deleted": false}``. Validates the document first."""
    record_key, record = decode_document(doc, where)
    key = etcd_key(record_key)
    if record_key.kind in _V3_KINDS:
        assert isinstance(doc, Mapping)
        obj = {k: v for k, v in doc.items() if k in ("kind", "apiVersion", "metadata", "spec")}
        obj["apiVersion"] = API_VERSION
        return key, json.dumps(obj, sort_keys=True, default=str).encode()
    if isinstance(record, BlockAffinity):
        value = {"state": str(record.state.value), "deleted": False}
        return key, json.dumps(value).encode()
    raise RecordError(where, f"{record_key.kind} documents cannot be written to etcd")
