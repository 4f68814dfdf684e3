"""``etcd_pair`` writes what Calico's etcd backend stores, so reading it back gives the same
record as the YAML document (used by ``bgpd datastore load``)."""

from __future__ import annotations

import pytest
import yaml

from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.file import parse_documents
from bgpd.datastore.schema import RecordError, decode_document, decode_etcd, etcd_pair


@pytest.mark.parametrize(
    ("where", "document"), parse_documents(DEFAULT_DATASTORE.read_text(), "default.yaml")
)
def test_round_trip_through_etcd_layout(where: str, document: object) -> None:
    key, value = etcd_pair(document, where)
    assert key.startswith("/calico/")
    decoded = decode_etcd(key, value)
    assert decoded == decode_document(document, where)


def test_affinity_key_and_value_follow_calico() -> None:
    doc = yaml.safe_load(
        "apiVersion: projectcalico.org/v3\nkind: BlockAffinity\nmetadata: {name: x}\n"
        "spec: {node: node10, cidr: 10.244.1.0/26, state: pendingDeletion}\n"
    )
    key, value = etcd_pair(doc, "doc")
    assert key == "/calico/ipam/v2/host/node10/ipv4/block/10.244.1.0-26"
    assert value == b'{"state": "pendingDeletion", "deleted": false}'


def test_invalid_document_is_refused_with_its_reason() -> None:
    doc = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "p"},
        "spec": {"cidr": "x"},
    }
    with pytest.raises(RecordError):
        etcd_pair(doc, "doc")
