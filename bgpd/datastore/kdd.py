"""Calico's Kubernetes API datastore (KDD) objects as the etcd pairs the cache reads (pure).

Role: the pure half of ``DATASTORE_TYPE=kubernetes``. A KDD object (the JSON dict the API
server returns) becomes the etcd key and value Calico's etcd backend would hold for the same
resource, so ``cache.Cache`` decodes both datastores with one schema and yields one
``Snapshot``. Facts from projectcalico/calico at 87c15906f20c4ca1fda55af92295e7678b0cc0b2
(2026-08-22), ``libcalico-go/lib/backend/k8s/``:

* ``client.go``, ``resources/*.go``: BGPConfiguration, BGPPeer, BGPFilter, IPPool, BlockAffinity,
  IPAMBlock and IPAMConfig live as cluster-scoped custom resources of
  ``crd.projectcalico.org/v1`` (plurals below); their ``spec`` is the v3 spec and their name the
  v3 name. With the native ``projectcalico.org/v3`` CRDs the same plurals serve v3 objects,
  except the IPAM configuration (``ipamconfigurations``, kind ``IPAMConfiguration``).
* ``discovery.go``: ``projectcalico.org/v3`` is read only when the API server serves that group
  and not ``crd.projectcalico.org``; ``CALICO_API_GROUP`` overrides the discovery.
* ``resources/ipam_affinity_v1.go``: a BlockAffinity's identity is ``spec.node`` and
  ``spec.cidr`` (the object name is derived and may be hashed); ``spec.deleted`` is the string
  ``"true"``/``"false"`` in v1, a boolean in v3; ``spec.type`` defaults to ``host``.
* ``resources/ipam_block.go``: an IPAMBlock's identity is ``spec.cidr``; the spec holds the etcd
  block JSON fields (``affinity``, ``allocations``, ``attributes``, ``deleted``).
* ``resources/node.go`` ``K8sNodeToCalico``: a core/v1 Node becomes a Calico Node named like it;
  labels are the ``projectcalico.org/labels`` annotation's JSON overridden by the Node's own
  labels; ``projectcalico.org/IPv4Address`` (CIDR), ``IPv6Address`` (CIDR), ``ASNumber``,
  ``RouteReflectorClusterID`` (IPv4), ``IPv4IPIPTunnelAddr``, ``IPv4VXLANTunnelAddr``,
  ``VXLANTunnelMACAddr``, ``IPv6VXLANTunnelAddr``, ``VXLANTunnelMACAddrV6``,
  ``IPv4WireguardInterfaceAddr``, ``IPv6WireguardInterfaceAddr`` fill the spec. An annotation
  that does not validate is ignored (the Node stays, without that field). With
  ``USE_POD_CIDR`` the IPIP tunnel address is ``spec.podCIDR``'s network address + 1 (IPv4).

Rules:
1. ``calico_pair`` and ``node_pair`` are pure and total: a usable object gives ``KddPair``; an
   object whose identity cannot be read raises ``RecordError`` naming the field; an object this
   node does not read (another node's affinity, a non-host affinity) gives ``None``.
2. The value is decoded later by ``schema`` (rule 5 there: wrong fields name themselves), so
   a bad spec is rejected by the cache exactly as the same value in etcd would be.
3. A Node's invalid annotations are listed in ``KddPair.ignored`` for the caller to log.
4. Services, EndpointSlices and Secrets (not Calico resources: read for service advertisement
   and BGP passwords) are keyed ``/bgpd/kubernetes/<plural>/<namespace>/<name>`` by
   ``cluster_pair`` and held decoded by ``ClusterObjects`` (``peers.model`` values), totally:
   an object whose shape does not read is dropped, as if deleted, and its reason returned.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from bgpd.datastore.schema import (
    API_VERSION,
    IPAM_BLOCK_PREFIX,
    IPAM_CONFIG_KEY,
    IPAM_HOST_PREFIX,
    RESOURCE_PREFIX,
    RecordError,
    cidr_to_key_text,
    parse_as_number,
    parse_network,
)
from peers.model import EndpointSlice, KubeEndpoint, KubeService, SecretTable

V1_GROUP = "crd.projectcalico.org"
V3_GROUP = "projectcalico.org"
ANNOTATION_PREFIX = "projectcalico.org/"
LABELS_ANNOTATION = ANNOTATION_PREFIX + "labels"


@dataclass(frozen=True, slots=True)
class CalicoResource:
    """One Calico resource type as the API serves it: ``plural`` in the URL, ``etcd_plural``
    in the etcd key it maps to (empty for the IPAM records, keyed by their spec)."""

    plural: str
    kind: str
    etcd_plural: str = ""


V1_RESOURCES = (
    CalicoResource("bgpconfigurations", "BGPConfiguration", "bgpconfigurations"),
    CalicoResource("bgppeers", "BGPPeer", "bgppeers"),
    CalicoResource("bgpfilters", "BGPFilter", "bgpfilters"),
    CalicoResource("bfdconfigurations", "BFDConfiguration", "bfdconfigurations"),
    CalicoResource("ippools", "IPPool", "ippools"),
    CalicoResource("blockaffinities", "BlockAffinity"),
    CalicoResource("ipamblocks", "IPAMBlock"),
    CalicoResource("ipamconfigs", "IPAMConfig"),
)
V3_RESOURCES = (
    *V1_RESOURCES[:-1],
    CalicoResource("ipamconfigurations", "IPAMConfiguration"),
)


@dataclass(frozen=True, slots=True)
class KddPair:
    """The etcd pair of one KDD object, and the Node annotations it had to ignore."""

    key: str
    value: bytes
    ignored: tuple[tuple[str, str], ...] = ()


def object_name(obj: object) -> str:
    """``metadata.name`` of an API object, or ``""``."""
    if not isinstance(obj, Mapping):
        return ""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else ""


def _dumps(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _mapping(obj: object, where: str) -> Mapping[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise RecordError(where, f"expected an object, got {type(obj).__name__}")
    return obj


def _name(obj: object, where: str) -> str:
    name = object_name(obj)
    if not name or "/" in name:
        raise RecordError(f"{where}.metadata.name", f"bad or missing name {name!r}")
    return name


BGPD_ANNOTATION_PREFIX = "bgpd.projectcalico.org/"


def calico_pair(resource: CalicoResource, obj: object, node: str) -> KddPair | None:
    """One Calico custom resource (rule 1)."""
    where = resource.plural
    top = _mapping(obj, where)
    name = _name(top, where)
    where = f"{resource.plural}/{name}"
    spec = _mapping(top.get("spec"), f"{where}.spec")
    if resource.etcd_plural:
        meta = _mapping(top.get("metadata"), f"{where}.metadata")
        metadata: dict[str, Any] = {"name": name, "labels": meta.get("labels") or {}}
        ours = {
            key: text
            for key, text in (meta.get("annotations") or {}).items()
            if isinstance(key, str) and key.startswith(BGPD_ANNOTATION_PREFIX)
        }
        if ours:  # bgpd's own settings (``peers.model.MaxPrefixes``)
            metadata["annotations"] = ours
        value = {
            "apiVersion": API_VERSION,
            "kind": resource.kind,
            "metadata": metadata,
            "spec": spec,
        }
        return KddPair(f"{RESOURCE_PREFIX}{resource.etcd_plural}/{name}", _dumps(value))
    if resource.kind == "BlockAffinity":
        return _affinity_pair(spec, where, node)
    if resource.kind == "IPAMBlock":
        cidr = parse_network(spec.get("cidr"), f"{where}.spec.cidr")
        key = f"{IPAM_BLOCK_PREFIX}ipv{cidr.version}/block/{cidr_to_key_text(cidr)}"
        return KddPair(key, _dumps(spec))
    value = {
        "strict_affinity": spec.get("strictAffinity", False),
        "auto_allocate_blocks": spec.get("autoAllocateBlocks", True),
        "maxBlocksPerHost": spec.get("maxBlocksPerHost", 0),
    }
    return KddPair(IPAM_CONFIG_KEY, _dumps(value))


def _affinity_pair(spec: Mapping[str, Any], where: str, node: str) -> KddPair | None:
    owner = spec.get("node")
    if not isinstance(owner, str) or not owner or "/" in owner:
        raise RecordError(f"{where}.spec.node", f"bad or missing node {owner!r}")
    if owner != node or spec.get("type", "host") not in ("", "host"):
        return None
    cidr = parse_network(spec.get("cidr"), f"{where}.spec.cidr")
    deleted = spec.get("deleted", False)
    if isinstance(deleted, str):
        if deleted.lower() not in ("", "true", "false", "1", "0"):
            raise RecordError(f"{where}.spec.deleted", f"bad boolean {deleted!r}")
        deleted = deleted.lower() in ("true", "1")
    value = {"state": spec.get("state", ""), "deleted": deleted}
    key = f"{IPAM_HOST_PREFIX}{node}/ipv{cidr.version}/block/{cidr_to_key_text(cidr)}"
    return KddPair(key, _dumps(value))


# -- core/v1 Node --------------------------------------------------------------------------------

_MAC = re.compile(r"[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}")


def _cidr_of(version: int) -> Any:
    def check(text: str) -> str:
        iface = ipaddress.ip_interface(text)
        if iface.version != version:
            raise ValueError(f"not an IPv{version} address")
        return text

    return check


def _address_of(version: int) -> Any:
    def check(text: str) -> str:
        address = ipaddress.ip_interface(text).ip
        if address.version != version:
            raise ValueError(f"not an IPv{version} address")
        return str(address)

    return check


def _mac(text: str) -> str:
    if not _MAC.fullmatch(text):
        raise ValueError("not a MAC address")
    return text


def _as_number(text: str) -> Any:
    asn = parse_as_number(text, "ASNumber")
    if asn == 0:
        raise ValueError("AS 0 is reserved")
    return asn


# (annotation suffix, validator, section of the v3 spec or "" for the spec itself, field)
NODE_ANNOTATIONS = (
    ("IPv4Address", _cidr_of(4), "bgp", "ipv4Address"),
    ("IPv6Address", _cidr_of(6), "bgp", "ipv6Address"),
    ("RouteReflectorClusterID", _address_of(4), "bgp", "routeReflectorClusterID"),
    ("ASNumber", _as_number, "bgp", "asNumber"),
    ("IPv4IPIPTunnelAddr", _address_of(4), "bgp", "ipv4IPIPTunnelAddr"),
    ("IPv4WireguardInterfaceAddr", _address_of(4), "wireguard", "interfaceIPv4Address"),
    ("IPv6WireguardInterfaceAddr", _address_of(6), "wireguard", "interfaceIPv6Address"),
    ("IPv4VXLANTunnelAddr", _address_of(4), "", "ipv4VXLANTunnelAddr"),
    ("VXLANTunnelMACAddr", _mac, "", "vxlanTunnelMACAddr"),
    ("IPv6VXLANTunnelAddr", _address_of(6), "", "ipv6VXLANTunnelAddr"),
    ("VXLANTunnelMACAddrV6", _mac, "", "vxlanTunnelMACAddrV6"),
)


def _node_labels(meta: Mapping[str, Any], annotations: Mapping[str, Any], where: str) -> Any:
    labels: dict[str, Any] = {}
    stored = annotations.get(LABELS_ANNOTATION)
    if isinstance(stored, str):
        try:
            parsed = json.loads(stored)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            labels.update(parsed)
    labels.update(_mapping(meta.get("labels"), f"{where}.metadata.labels"))
    return labels


def pod_cidr_tunnel_address(pod_cidr: str) -> str | None:
    """``USE_POD_CIDR``: the IPIP tunnel address, the pod CIDR's network address + 1 (IPv4)."""
    try:
        network = ipaddress.ip_network(pod_cidr.strip(), strict=False)
    except ValueError:
        return None
    if network.version != 4:
        return None
    return str(network.network_address + 1)


def node_pair(obj: object, use_pod_cidr: bool = False) -> KddPair:
    """One core/v1 Node as the Calico Node ``K8sNodeToCalico`` makes of it (rules 1, 3)."""
    top = _mapping(obj, "nodes")
    name = _name(top, "nodes")
    where = f"nodes/{name}"
    meta = _mapping(top.get("metadata"), f"{where}.metadata")
    annotations = _mapping(meta.get("annotations"), f"{where}.metadata.annotations")
    spec: dict[str, Any] = {}
    ignored: list[tuple[str, str]] = []
    pod_cidr = _mapping(top.get("spec"), f"{where}.spec").get("podCIDR")
    for suffix, check, section, field_name in NODE_ANNOTATIONS:
        annotation = ANNOTATION_PREFIX + suffix
        text = annotations.get(annotation)
        if use_pod_cidr and field_name == "ipv4IPIPTunnelAddr":
            text = pod_cidr_tunnel_address(pod_cidr) if isinstance(pod_cidr, str) else None
        if not text:
            continue
        try:
            if not isinstance(text, str):
                raise ValueError(f"not a string: {text!r}")
            value = check(text.strip())
        except (ValueError, RecordError) as exc:
            ignored.append((annotation, str(exc)))
            continue
        target = spec.setdefault(section, {}) if section else spec
        target[field_name] = value
    value = {
        "apiVersion": API_VERSION,
        "kind": "Node",
        "metadata": {"name": name, "labels": _node_labels(meta, annotations, where)},
        "spec": spec,
    }
    return KddPair(f"{RESOURCE_PREFIX}nodes/{name}", _dumps(value), tuple(ignored))


# -- Services, EndpointSlices and Secrets (service advertisement, BGP passwords) ----------------
#
# Facts from projectcalico/calico 87c15906, ``confd/pkg/backends/calico/routes.go`` (Services of
# every namespace and EndpointSlices, linked by the ``kubernetes.io/service-name`` label) and
# ``secret_watcher.go`` (each Secret a BGP password names is watched by name, with the field
# selector ``metadata.name=<name>``, in calico-node's namespace: ``NAMESPACE``, else
# ``kube-system``).

SERVICES = CalicoResource("services", "Service")
ENDPOINTSLICES = CalicoResource("endpointslices", "EndpointSlice")
SECRETS = CalicoResource("secrets", "Secret")
CLUSTER_RESOURCES = (SERVICES, ENDPOINTSLICES, SECRETS)
CLUSTER_PREFIX = "/bgpd/kubernetes/"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def object_id(obj: object) -> str:
    """``namespace/name`` of a namespaced object, ``name`` of a cluster-scoped one."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    name = object_name(obj)
    return f"{namespace}/{name}" if isinstance(namespace, str) and namespace else name


def cluster_pair(resource: CalicoResource, obj: object) -> KddPair:
    """A Service, EndpointSlice or Secret keyed ``/bgpd/kubernetes/<plural>/<ns>/<name>``; the
    value is the object's JSON, read by ``cluster_object`` (rule 1)."""
    top = _mapping(obj, resource.plural)
    _name(top, resource.plural)
    meta = _mapping(top.get("metadata"), f"{resource.plural}.metadata")
    namespace = meta.get("namespace")
    if not isinstance(namespace, str) or not namespace or "/" in namespace:
        where = f"{resource.plural}/{object_name(top)}.metadata.namespace"
        raise RecordError(where, f"bad or missing namespace {namespace!r}")
    fields = ("spec", "status", "addressType", "endpoints", "data")
    kept: dict[str, Any] = {k: top[k] for k in fields if k in top}
    kept["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return KddPair(f"{CLUSTER_PREFIX}{resource.plural}/{object_id(top)}", _dumps(kept))


def _addresses(values: object) -> tuple[Any, ...]:
    """The parseable addresses of a list of strings (the API server validated them)."""
    found = []
    for text in values if isinstance(values, list) else ():
        try:
            found.append(ipaddress.ip_address(str(text).strip()))
        except ValueError:
            continue
    return tuple(found)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def service_of(obj: Mapping[str, Any]) -> KubeService:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = (obj.get("status") or {}).get("loadBalancer") or {}
    ingress = [i.get("ip") for i in status.get("ingress") or () if isinstance(i, Mapping)]
    lb_ip = _addresses([spec.get("loadBalancerIP")]) if spec.get("loadBalancerIP") else ()
    families = spec.get("ipFamilies")
    cluster_ips = _addresses(spec.get("clusterIPs") or [spec.get("clusterIP")])
    if not isinstance(families, list):  # a Service written before dual-stack: its IP's family
        families = [f"IPv{ip.version}" for ip in cluster_ips[:1]]
    return KubeService(
        namespace=_text(meta.get("namespace")),
        name=_text(meta.get("name")),
        type=_text(spec.get("type")) or "ClusterIP",
        cluster_ip=_text(spec.get("clusterIP")),
        cluster_ips=cluster_ips,
        external_ips=_addresses(spec.get("externalIPs")),
        load_balancer_ip=lb_ip[0] if lb_ip else None,
        ingress_ips=_addresses(ingress),
        external_traffic_policy=_text(spec.get("externalTrafficPolicy")),
        ip_families=tuple(_text(f) for f in families),
    )


def endpoint_slice_of(obj: Mapping[str, Any]) -> EndpointSlice:
    meta = obj.get("metadata") or {}
    endpoints = []
    for endpoint in obj.get("endpoints") or ():
        if not isinstance(endpoint, Mapping):
            continue
        ready = (endpoint.get("conditions") or {}).get("ready")
        node = endpoint.get("nodeName")
        endpoints.append(
            KubeEndpoint(
                node_name=node if isinstance(node, str) else None,
                ready=ready if isinstance(ready, bool) else None,
            )
        )
    labels = meta.get("labels") or {}
    return EndpointSlice(
        namespace=_text(meta.get("namespace")),
        name=_text(meta.get("name")),
        service=_text(labels.get(SERVICE_NAME_LABEL)) if isinstance(labels, Mapping) else "",
        address_type=_text(obj.get("addressType")) or "IPv4",
        endpoints=tuple(endpoints),
    )


def secret_data_of(obj: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's ``data`` decoded (base64, then UTF-8 as Go's ``string(data)``)."""
    data = obj.get("data") or {}
    decoded: dict[str, str] = {}
    for key, value in data.items() if isinstance(data, Mapping) else ():
        try:
            decoded[str(key)] = base64.b64decode(str(value), validate=True).decode(
                "utf-8", "replace"
            )
        except (binascii.Error, ValueError):
            continue
    return decoded


class ClusterObjects:
    """The Services, EndpointSlices and Secrets listed and watched, by etcd-shaped key, and the
    Secrets the API refused (pure: the watcher feeds it)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._services: dict[str, KubeService] = {}
        self._slices: dict[str, EndpointSlice] = {}
        self._secrets: dict[str, dict[str, str]] = {}
        self._refused: dict[str, str] = {}

    def load(
        self, pairs: Iterable[tuple[str, bytes]], resources: Iterable[CalicoResource]
    ) -> list[str]:
        """A complete listing of ``resources`` replaces what was known of them (refusals stay
        until the name is read); the objects that did not read, with why."""
        plurals = {resource.plural for resource in resources}
        for plural, table in (
            (SERVICES.plural, self._services),
            (ENDPOINTSLICES.plural, self._slices),
            (SECRETS.plural, self._secrets),
        ):
            if plural in plurals:
                table.clear()
        return [error for key, value in pairs if (error := self.put(key, value)) is not None]

    def put(self, key: str, value: bytes) -> str | None:
        """Store one object; an object whose shape does not read is dropped (as deleted) and
        the reason returned for the caller to log (rule 1: total)."""
        plural, _, rest = key.removeprefix(CLUSTER_PREFIX).partition("/")
        try:
            obj = json.loads(value)
            if plural == SERVICES.plural:
                self._services[rest] = service_of(obj)
            elif plural == ENDPOINTSLICES.plural:
                self._slices[rest] = endpoint_slice_of(obj)
            elif plural == SECRETS.plural:
                name = rest.partition("/")[2]
                self._secrets[name] = secret_data_of(obj)
                self._refused.pop(name, None)
        except (AttributeError, TypeError, ValueError) as exc:
            self.delete(key)
            return f"{plural} {rest}: {exc}"
        return None

    def delete(self, key: str) -> None:
        plural, _, rest = key.removeprefix(CLUSTER_PREFIX).partition("/")
        self._services.pop(rest, None)
        self._slices.pop(rest, None)
        if plural == SECRETS.plural:
            self._secrets.pop(rest.partition("/")[2], None)

    def access(self, secret: str, refusal: str | None) -> None:
        """The API refused (``refusal``) or allowed (None) reading Secret ``secret``."""
        if refusal is None:
            self._refused.pop(secret, None)
        else:
            self._refused[secret] = refusal
            self._secrets.pop(secret, None)

    def services(self) -> dict[str, KubeService]:
        return dict(self._services)

    def endpoint_slices(self) -> dict[str, EndpointSlice]:
        return dict(self._slices)

    def secrets(self) -> SecretTable:
        return SecretTable(
            self.namespace,
            MappingProxyType({k: MappingProxyType(v) for k, v in self._secrets.items()}),
            MappingProxyType(dict(self._refused)),
        )
