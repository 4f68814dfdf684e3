"""Typed Calico resources as bgpd reads them, and the ``Snapshot`` value holding them all.

Rules:
1. Every record is a frozen, slotted dataclass with ``ipaddress`` types; the decoder
   (``bgpd.datastore.schema``) is the only place that turns JSON/YAML into these values.
2. Field names follow the Calico v3 API (calico-bgp.md §1.2, §1.3) in snake case; defaults are
   the API defaults, and "unset" is ``None`` where Calico distinguishes unset from a value.
3. Label maps are compared but excluded from hashing (a dict is not hashable).
4. A ``Snapshot`` is immutable: the cache builds a new one per change set.
5. One name, one meaning: a pool's ``ipipMode``/``vxlanMode`` is ``encap.model.EncapMode``; the
   BGPFilter resource types are ``Filter*`` (the routing engine's own match and operation types
   live in ``bgpd.rib.policy``, and ``bgpd.calico.filters`` is the one translation).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar

from encap.model import EncapMode

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
LargeCommunity = tuple[int, int, int]
# A standard community is packed as (AS << 16) | value, as RFC 1997 §3 puts it on the wire.
Community = int | LargeCommunity

DEFAULT_AS_NUMBER = 64512  # calico-bgp.md §1.6.1, [CL globalDefaults]
DEFAULT_LISTEN_PORT = 179  # RFC 4271 §8.2.1 (BIRD default)
DEFAULT_NORMAL_ROUTE_PRIORITY = 1024  # §1.2.2 ipv4NormalRoutePriority
EXCLUDE_FROM_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"  # §2.13

_EMPTY: Mapping[str, str] = MappingProxyType({})


class AffinityState(StrEnum):
    """Block affinity state (calico-bgp.md §1.3.2); an empty value is implicitly confirmed."""

    CONFIRMED = "confirmed"
    PENDING = "pending"
    PENDING_DELETION = "pendingDeletion"


class PeerNextHopMode(StrEnum):
    """BGPPeer ``nextHopMode`` (calico-bgp.md §1.2.3, §2.8 item 12)."""

    AUTO = "Auto"
    SELF = "Self"
    KEEP = "Keep"


class ProgramClusterRoutes(StrEnum):
    """BGPConfiguration ``programClusterRoutes`` (calico-bgp.md §2.11, master semantics)."""

    ENABLED = "Enabled"
    DISABLED = "Disabled"
    ENABLED_IPIP_ONLY = "EnabledIPIPOnly"
    ENABLED_NO_ENCAP_ONLY = "EnabledNoEncapOnly"


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """A reference to a key in a Kubernetes Secret (BGP MD5 passwords, §1.2.3)."""

    name: str
    key: str


MAX_PREFIXES_ANNOTATION = "bgpd.projectcalico.org/max-prefixes"
MAX_PREFIXES_WARNING_PERCENT = 75  # FRR's maximum-prefix threshold default
MAX_PREFIXES_RESTART_TIME = 60.0


@dataclass(frozen=True, slots=True)
class MaxPrefixes:
    """bgpd's guardrail on one peer (not in Calico's API, off unless set): warn once the peer's
    Adj-RIB-In of a family holds more than ``warning_percent`` of ``limit`` routes; past
    ``limit`` close the session with Cease/Maximum Number of Prefixes Reached (RFC 4486 §4) and
    stay idle ``restart_time`` seconds before connecting again. Set per BGPPeer through the
    annotation ``bgpd.projectcalico.org/max-prefixes: "LIMIT[,warning=PERCENT][,restart=DURATION]"``
    or, in the YAML file datastore, ``spec.maxPrefixes: {limit, warningPercent, restartTime}``."""

    limit: int
    warning_percent: int = MAX_PREFIXES_WARNING_PERCENT
    restart_time: float = MAX_PREFIXES_RESTART_TIME

    @property
    def warning(self) -> int:
        """The route count past which the warning is given."""
        return self.limit * self.warning_percent // 100


@dataclass(frozen=True, slots=True)
class Node:
    """``kind: Node`` (calico-bgp.md §1.2.1)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    as_number: int | None = None
    ipv4_address: ipaddress.IPv4Interface | None = None
    ipv6_address: ipaddress.IPv6Interface | None = None
    ipv4_ipip_tunnel_addr: ipaddress.IPv4Address | None = None
    rr_cluster_id: str = ""
    ipv4_vxlan_tunnel_addr: ipaddress.IPv4Address | None = None
    vxlan_tunnel_mac: str = ""
    ipv6_vxlan_tunnel_addr: ipaddress.IPv6Address | None = None
    vxlan_tunnel_mac_v6: str = ""
    wireguard_ipv4_address: ipaddress.IPv4Address | None = None
    wireguard_ipv6_address: ipaddress.IPv6Address | None = None

    def address(self, version: int) -> IPInterface | None:
        """The node's BGP address (with its subnet) for IP ``version`` 4 or 6."""
        return self.ipv4_address if version == 4 else self.ipv6_address

    def ip(self, version: int) -> IPAddress | None:
        addr = self.address(version)
        return None if addr is None else addr.ip

    @property
    def is_route_reflector(self) -> bool:
        """A non-empty cluster ID makes the node a route reflector (§2.8.2)."""
        return self.rr_cluster_id != ""


@dataclass(frozen=True, slots=True)
class IPPool:
    """``kind: IPPool`` (calico-bgp.md §1.2.4)."""

    name: str
    cidr: IPNetwork
    ipip_mode: EncapMode = EncapMode.NEVER
    vxlan_mode: EncapMode = EncapMode.NEVER
    nat_outgoing: bool = False
    disabled: bool = False
    disable_bgp_export: bool = False
    block_size: int = 26
    node_selector: str = "all()"
    allowed_uses: tuple[str, ...] = ("Workload", "Tunnel")
    assignment_mode: str = "Automatic"

    @property
    def version(self) -> int:
        return self.cidr.version

    @property
    def uses_ipip(self) -> bool:
        return self.ipip_mode is not EncapMode.NEVER

    @property
    def uses_vxlan(self) -> bool:
        return self.vxlan_mode is not EncapMode.NEVER


@dataclass(frozen=True, slots=True)
class BGPPeer:
    """``kind: BGPPeer`` (calico-bgp.md §1.2.3). Durations are in seconds."""

    name: str
    node: str = ""
    node_selector: str = ""
    peer_ip: str = ""  # as written: "A.B.C.D", "A.B.C.D:port" or "[v6]:port"
    peer_selector: str = ""
    as_number: int | None = None
    local_as_number: int | None = None
    keep_original_next_hop: bool = False
    next_hop_mode: PeerNextHopMode | None = None
    password: SecretKeyRef | None = None
    source_address: str = "UseNodeIP"  # "UseNodeIP" | "None"
    max_restart_time: float | None = None
    keepalive_time: float | None = None
    num_allowed_local_as_numbers: int | None = None
    ttl_security: int | None = None
    reachable_by: str = ""
    filters: tuple[str, ...] = ()
    local_workload_selector: str = ""
    reverse_peering: str = "Auto"  # "Auto" | "Manual"
    max_prefixes: MaxPrefixes | None = None  # bgpd's guardrail (``MaxPrefixes``)
    failure_detection_mode: str = "None"  # Calico Enterprise: "None" | "BFDIfDirectlyConnected"

    @property
    def is_global(self) -> bool:
        """Neither ``node`` nor ``nodeSelector``: applies to every node (§1.6.3 pass A)."""
        return not self.node and not self.node_selector


@dataclass(frozen=True, slots=True)
class NamedCommunity:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class PrefixAdvertisement:
    cidr: IPNetwork
    communities: tuple[str, ...]  # values ("aa:nn", "aa:nn:mm") or names of NamedCommunity


@dataclass(frozen=True, slots=True)
class BGPConfiguration:
    """``kind: BGPConfiguration``: ``default`` (global) or ``node.<name>`` (§1.2.2)."""

    name: str
    log_severity_screen: str = ""
    node_to_node_mesh_enabled: bool | None = None
    as_number: int | None = None
    service_cluster_ips: tuple[IPNetwork, ...] = ()
    service_external_ips: tuple[IPNetwork, ...] = ()
    service_load_balancer_ips: tuple[IPNetwork, ...] = ()
    service_load_balancer_aggregation: str = "Enabled"
    communities: tuple[NamedCommunity, ...] = ()
    prefix_advertisements: tuple[PrefixAdvertisement, ...] = ()
    listen_port: int | None = None
    node_mesh_password: SecretKeyRef | None = None
    node_mesh_max_restart_time: float | None = None
    bind_mode: str = "None"  # "None" | "NodeIP"
    ignored_interfaces: tuple[str, ...] = ()
    local_workload_peering_ipv4: ipaddress.IPv4Address | None = None
    local_workload_peering_ipv6: ipaddress.IPv6Address | None = None
    program_cluster_routes: ProgramClusterRoutes | None = None
    ipv4_normal_route_priority: int | None = None
    ipv6_normal_route_priority: int | None = None


class FilterAction(StrEnum):
    ACCEPT = "Accept"
    REJECT = "Reject"


class FilterMatchOperator(StrEnum):
    """BGPFilter rule ``matchOperator`` (§1.2.5)."""

    EQUAL = "Equal"
    NOT_EQUAL = "NotEqual"
    IN = "In"
    NOT_IN = "NotIn"


@dataclass(frozen=True, slots=True)
class FilterAddCommunity:
    """BGPFilter operation ``addCommunity`` (§1.2.5)."""

    value: Community


@dataclass(frozen=True, slots=True)
class FilterPrependASPath:
    """BGPFilter operation ``prependASPath``: the result reads as ``prefix`` then the path."""

    prefix: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FilterSetPriority:
    """BGPFilter operation ``setPriority``: the route metric (§2.10)."""

    value: int


FilterOperation = FilterAddCommunity | FilterPrependASPath | FilterSetPriority


@dataclass(frozen=True, slots=True)
class BGPFilterRule:
    """One BGPFilter rule (calico-bgp.md §1.2.5, translation §2.9)."""

    action: FilterAction
    cidr: IPNetwork | None = None
    match_operator: FilterMatchOperator | None = None
    prefix_length_min: int | None = None
    prefix_length_max: int | None = None
    source: str = ""  # "" | "RemotePeers"
    interface: str = ""  # glob
    peer_type: str = ""  # "" | "eBGP" | "iBGP"
    community: Community | None = None  # ``communities.values`` holds at most one
    as_path_prefix: tuple[int, ...] = ()
    priority: int | None = None
    operations: tuple[FilterOperation, ...] = ()


@dataclass(frozen=True, slots=True)
class BFDInterface:
    """One entry of a BFDConfiguration's ``interfaces`` (Calico Enterprise's BFDInterface),
    intervals in seconds; the defaults are Calico Enterprise's."""

    match_pattern: str
    minimum_recv_interval: float = 0.010
    minimum_send_interval: float = 0.100
    idle_send_interval: float = 60.0
    multiplier: int = 5


@dataclass(frozen=True, slots=True)
class BFDConfiguration:
    """``kind: BFDConfiguration`` (Calico Enterprise, projectcalico.org/v3): BFD for the
    interfaces of the nodes ``node_selector`` selects."""

    name: str
    node_selector: str = ""
    interfaces: tuple[BFDInterface, ...] = ()


@dataclass(frozen=True, slots=True)
class BGPFilter:
    """``kind: BGPFilter``: ordered rules per direction and family."""

    name: str
    export_v4: tuple[BGPFilterRule, ...] = ()
    import_v4: tuple[BGPFilterRule, ...] = ()
    export_v6: tuple[BGPFilterRule, ...] = ()
    import_v6: tuple[BGPFilterRule, ...] = ()

    def rules(self, direction: str, version: int) -> tuple[BGPFilterRule, ...]:
        """``direction`` is "import" or "export"."""
        if direction == "import":
            return self.import_v4 if version == 4 else self.import_v6
        return self.export_v4 if version == 4 else self.export_v6


@dataclass(frozen=True, slots=True)
class BlockAffinity:
    """``/calico/ipam/v2/host/<node>/ipvN/block/<cidr>`` or ``kind: BlockAffinity`` (§1.3.2)."""

    node: str
    cidr: IPNetwork
    state: AffinityState = AffinityState.CONFIRMED
    implicit: bool = False  # the value carried no state ("implicitly confirmed")
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Allocation:
    """One allocated address of a block and the node its workload lives on (§1.3.1)."""

    address: IPAddress
    node: str
    kind: str = ""  # secondary.type: "", "ipipTunnelAddress", "vxlanTunnelAddress", ...


@dataclass(frozen=True, slots=True)
class AllocationBlock:
    """``/calico/ipam/v2/assignment/ipvN/block/<cidr>`` (§1.3.1), reduced to what routing needs:
    the owner and the allocations whose node differs from it (borrowed addresses)."""

    cidr: IPNetwork
    owner: str | None  # text after "host:" in ``affinity``; None without a host affinity
    borrowed: tuple[Allocation, ...] = ()
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class IPAMConfig:
    """``/calico/ipam/v2/config`` (§1.3.1)."""

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0


# -- Kubernetes objects bgpd reads beside Calico's resources (services, secrets) ------------------


@dataclass(frozen=True, slots=True)
class KubeService:
    """A core/v1 Service as service advertisement reads it (calico-bgp.md §2.13)."""

    namespace: str
    name: str
    type: str = "ClusterIP"
    cluster_ip: str = ""  # ``spec.clusterIP``: "" or "None" is a headless Service
    cluster_ips: tuple[IPAddress, ...] = ()
    external_ips: tuple[IPAddress, ...] = ()
    load_balancer_ip: IPAddress | None = None  # ``spec.loadBalancerIP`` (deprecated)
    ingress_ips: tuple[IPAddress, ...] = ()  # ``status.loadBalancer.ingress[].ip``
    external_traffic_policy: str = ""  # "Cluster" (the API default), "Local"
    ip_families: tuple[str, ...] = ()  # "IPv4", "IPv6"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class KubeEndpoint:
    """One endpoint of an EndpointSlice: ``ready`` None means ready (the API's rule)."""

    node_name: str | None = None
    ready: bool | None = None


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    """A discovery.k8s.io/v1 EndpointSlice: ``service`` is its ``kubernetes.io/service-name``
    label (empty when it has none)."""

    namespace: str
    name: str
    service: str = ""
    address_type: str = "IPv4"
    endpoints: tuple[KubeEndpoint, ...] = ()

    @property
    def service_key(self) -> str:
        return f"{self.namespace}/{self.service}"


@dataclass(frozen=True, slots=True)
class SecretTable:
    """The Secrets BGP passwords name, read through the API in calico-node's namespace.

    ``values`` holds each readable Secret's data (decoded text) by name; ``refused`` the names
    the API refused to show, with the reason (401/403); a name in neither does not exist."""

    namespace: str
    values: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    refused: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def lookup(self, name: str, key: str) -> str | None:
        return (self.values.get(name) or {}).get(key)

    def reason(self, name: str, key: str) -> str:
        """Why ``lookup`` gives nothing for ``name``/``key`` (for the peer's status line)."""
        where = f"{self.namespace}/{name}"
        if name in self.refused:
            return f"Secret {where} not readable: {self.refused[name]}"
        if name not in self.values:
            return f"Secret {where} not found"
        if key not in self.values[name]:
            return f"Secret {where} has no key {key!r}"
        return f"Secret {where} key {key!r} is readable"


AffinityKey = tuple[str, IPNetwork]
K = TypeVar("K")
V = TypeVar("V")


def _empty_mapping() -> Mapping[Any, Any]:
    return MappingProxyType({})


def _frozen(mapping: Mapping[K, V] | None) -> Mapping[K, V]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the BGP side reads from the datastore, at one revision."""

    nodes: Mapping[str, Node] = field(default_factory=_empty_mapping, hash=False)
    pools: Mapping[str, IPPool] = field(default_factory=_empty_mapping, hash=False)
    peers: Mapping[str, BGPPeer] = field(default_factory=_empty_mapping, hash=False)
    configs: Mapping[str, BGPConfiguration] = field(default_factory=_empty_mapping, hash=False)
    filters: Mapping[str, BGPFilter] = field(default_factory=_empty_mapping, hash=False)
    bfd_configs: Mapping[str, BFDConfiguration] = field(default_factory=_empty_mapping, hash=False)
    affinities: Mapping[AffinityKey, BlockAffinity] = field(
        default_factory=_empty_mapping, hash=False
    )
    blocks: Mapping[IPNetwork, AllocationBlock] = field(default_factory=_empty_mapping, hash=False)
    ipam_config: IPAMConfig | None = None
    revision: int = 0
    # From the Kubernetes API whenever it is configured (either datastore); empty otherwise.
    services: Mapping[str, KubeService] = field(default_factory=_empty_mapping, hash=False)
    endpoint_slices: Mapping[str, EndpointSlice] = field(default_factory=_empty_mapping, hash=False)
    secrets: SecretTable | None = None  # None: BGP passwords come from the environment

    @classmethod
    def build(
        cls,
        *,
        nodes: Mapping[str, Node] | None = None,
        pools: Mapping[str, IPPool] | None = None,
        peers: Mapping[str, BGPPeer] | None = None,
        configs: Mapping[str, BGPConfiguration] | None = None,
        filters: Mapping[str, BGPFilter] | None = None,
        bfd_configs: Mapping[str, BFDConfiguration] | None = None,
        affinities: Mapping[AffinityKey, BlockAffinity] | None = None,
        blocks: Mapping[IPNetwork, AllocationBlock] | None = None,
        ipam_config: IPAMConfig | None = None,
        revision: int = 0,
    ) -> Snapshot:
        """A snapshot over private read-only copies of the given mappings."""
        return cls(
            nodes=_frozen(nodes),
            pools=_frozen(pools),
            peers=_frozen(peers),
            configs=_frozen(configs),
            filters=_frozen(filters),
            bfd_configs=_frozen(bfd_configs),
            affinities=_frozen(affinities),
            blocks=_frozen(blocks),
            ipam_config=ipam_config,
            revision=revision,
        )

    @property
    def global_config(self) -> BGPConfiguration | None:
        return self.configs.get("default")

    def node_config(self, node_name: str) -> BGPConfiguration | None:
        return self.configs.get(f"node.{node_name}")

    def global_as(self) -> int:
        """The cluster AS: ``default`` BGPConfiguration ``asNumber``, else 64512 (§1.6.1)."""
        cfg = self.global_config
        if cfg is not None and cfg.as_number is not None:
            return cfg.as_number
        return DEFAULT_AS_NUMBER

    def node_as(self, node_name: str) -> int:
        """A node's AS: its own ``spec.bgp.asNumber``, else the global AS (§2.7)."""
        node = self.nodes.get(node_name)
        if node is not None and node.as_number is not None:
            return node.as_number
        return self.global_as()

    def listen_port_of(self, node_name: str) -> int | None:
        """``node.<n>`` listenPort, else the global one, else None (BIRD's 179) (§2.2)."""
        for cfg in (self.node_config(node_name), self.global_config):
            if cfg is not None and cfg.listen_port:
                return cfg.listen_port
        return None

    def mesh_enabled(self) -> bool:
        cfg = self.global_config
        if cfg is None or cfg.node_to_node_mesh_enabled is None:
            return True
        return cfg.node_to_node_mesh_enabled

    def normal_route_priority(self, version: int) -> int:
        cfg = self.global_config
        if cfg is not None:
            value = (
                cfg.ipv4_normal_route_priority if version == 4 else cfg.ipv6_normal_route_priority
            )
            if value is not None:
                return value
        return DEFAULT_NORMAL_ROUTE_PRIORITY


def whole_seconds(seconds: float) -> int:
    """Go's ``int(math.Round(d.Seconds()))``: halves round away from zero ([CL])."""
    return int(math.floor(seconds + 0.5)) if seconds >= 0 else -int(math.floor(-seconds + 0.5))
