"""Calico v3 resources (calicoctl YAML) as the Kubernetes objects a KDD cluster stores them as,
for feeding the API test double: the inverse of ``bgpd.datastore.kdd``.

Facts from projectcalico/calico 87c15906, ``libcalico-go/lib/backend/k8s/``: a Calico Node is
the core/v1 Node of that name, its BGP and tunnel fields as ``projectcalico.org/*`` annotations
(``resources/node.go``, the table ``bgpd.datastore.kdd.NODE_ANNOTATIONS``) and its labels as
the Node's labels; every other resource is a cluster-scoped ``crd.projectcalico.org/v1`` object
of the same kind and name with the v3 spec. Kubernetes objects (Services, EndpointSlices) keep
their own shape, in the namespace ``default`` when they name none (as kubectl applies them).

Also the Kubernetes objects the service and password tests write: a Service with one external
IP, its EndpointSlice with one endpoint, a Secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kube_api_server import CALICO_PLURALS

from bgpd.datastore.kdd import ANNOTATION_PREFIX, NODE_ANNOTATIONS

PLURAL_OF = {kind: plural for plural, kind in CALICO_PLURALS.items() if plural != "ipamconfigs"}
V1 = "/apis/crd.projectcalico.org/v1"
KUBE_COLLECTIONS = {
    "Service": "/api/v1/services",
    "EndpointSlice": "/apis/discovery.k8s.io/v1/endpointslices",
    "Secret": "/api/v1/secrets",
}


def _label(value: object) -> str:
    """A label value as text: a YAML boolean or number as Go's YAML decoder gives it."""
    return value if isinstance(value, str) else json.dumps(value)


def kdd_object(doc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The double's collection and the object a KDD cluster holds for ``doc``."""
    kind, meta = doc["kind"], doc.get("metadata") or {}
    if kind in KUBE_COLLECTIONS:
        obj = dict(doc, metadata={"namespace": "default", **meta})
        return KUBE_COLLECTIONS[kind], obj
    spec = doc.get("spec") or {}
    if kind == "Node":
        annotations = {}
        for suffix, _check, section, field_name in NODE_ANNOTATIONS:
            value = (spec.get(section) or {}) if section else spec
            if value.get(field_name) not in (None, ""):
                annotations[ANNOTATION_PREFIX + suffix] = str(value[field_name])
        labels = {k: _label(v) for k, v in (meta.get("labels") or {}).items()}
        node_meta = {"name": meta["name"], "labels": labels, "annotations": annotations}
        return "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": node_meta}
    crd_meta = {"name": meta["name"], "labels": meta.get("labels") or {}}
    obj = {"apiVersion": "crd.projectcalico.org/v1", "kind": kind, "metadata": crd_meta}
    return f"{V1}/{PLURAL_OF[kind]}", {**obj, "spec": spec}


def service(
    name: str = "web",
    policy: str = "Local",
    cluster_ip: str = "10.96.0.10",
    external_ip: str = "198.51.100.7",
    namespace: str = "shop",
) -> dict[str, Any]:
    """A LoadBalancer Service with one cluster IP and one external IP."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "externalIPs": [external_ip],
            "externalTrafficPolicy": policy,
            "ipFamilies": ["IPv4"],
            "ports": [{"port": 80}],
        },
    }


def endpoint_slice(
    node: str, ready: bool = True, service_name: str = "web", namespace: str = "shop"
) -> dict[str, Any]:
    """The Service's EndpointSlice, one IPv4 endpoint on ``node``."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-abcde",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.244.1.5"], "nodeName": node, "conditions": {"ready": ready}}
        ],
    }


def secret(name: str, data: Mapping[str, str], namespace: str = "kube-system") -> dict[str, Any]:
    """A Secret written with ``stringData``, as a person writes one."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": dict(data),
    }
