"""Calico's own confd test inputs (``tests/io/data/calico``, projectcalico/calico 87c15906)
through the Kubernetes API test double, applied as the CRDs and Node annotations a KDD cluster
stores them as (``calico_kdd``):

* every ``input.yaml`` gives the same snapshot (Nodes, BGPPeers, IPPools, BGPConfigurations,
  BGPFilters) through the API as through the file datastore;
* the ``kddOnly`` service cases (``mesh/static-routes*``, with their ``kubectl-input.yaml``
  applied by the real kubectl and their ``step2`` inputs) give kube-master exactly the static
  routes confd rendered (``static_routes.json``; as a set: confd renders its keys sorted as
  text, bgpd keeps the ranges first).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from calico_kdd import kdd_object
from kube_api_server import KubeApiServer
from test_kubernetes_datastore import kubectl, needs_kubectl, started, write_kubeconfig
from test_kubernetes_services import following_kdd

from bgpd.calico.advertise import build_export_policy
from bgpd.datastore.file import FileDatastore, parse_documents
from peers.model import Snapshot

DATA = Path(__file__).resolve().parent / "data" / "calico"
MOCK = DATA / "mock_data" / "calicoctl"
INPUTS = sorted(str(p.relative_to(MOCK)) for p in MOCK.rglob("input.yaml"))
STATIC = json.loads((DATA / "static_routes.json").read_text())
NODE = "kube-master"  # confd/tests/helpers_test.go


def documents(path: Path) -> list[dict[str, Any]]:
    """The YAML read as calicoctl reads it (``yes`` stays a string: the file datastore's loader)."""
    return [d for _, d in parse_documents(path.read_text(), str(path)) if isinstance(d, dict) and d]


def apply(server: KubeApiServer, path: Path) -> None:
    for doc in documents(path):
        server.put(*kdd_object(doc))


def calico_view(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "nodes": dict(snapshot.nodes),
        "peers": dict(snapshot.peers),
        "pools": dict(snapshot.pools),
        "configs": dict(snapshot.configs),
        "filters": dict(snapshot.filters),
    }


@pytest.mark.parametrize("case", INPUTS)
async def test_a_calico_input_reads_the_same_through_the_api(case: str) -> None:
    path = MOCK / case
    expected = FileDatastore(path).reload()
    assert expected is not None, case
    server = await started()
    try:
        apply(server, path)
        async with following_kdd(server) as follower:
            await follower.wait_for(lambda: bool(follower.snapshots), "the listing")
            assert calico_view(follower.last) == calico_view(expected)
    finally:
        await server.stop()


@needs_kubectl
@pytest.mark.parametrize("case", sorted(STATIC["cases"]))
async def test_calicos_service_cases_give_confds_static_routes(case: str, tmp_path: Path) -> None:
    base = case.removesuffix("/step2")
    server = await started()
    try:
        apply(server, MOCK / base / "input.yaml")
        kubeconfig = write_kubeconfig(tmp_path, server)
        services = MOCK / base / "kubectl-input.yaml"
        await kubectl(kubeconfig, "apply", "--validate=false", "-f", str(services))
        expected_services = sum(1 for d in documents(services) if d["kind"] == "Service")
        async with following_kdd(server, node=NODE) as follower:
            await follower.wait_for(
                lambda: len(follower.last.services) == expected_services, "the Services"
            )
            if case != base:  # the step's input, applied to the running cluster as confd's is
                step = MOCK / case / "input.yaml"
                apply(server, step)
                expected = FileDatastore(step).reload()
                assert expected is not None
                await follower.wait_for(
                    lambda: follower.last.global_config == expected.global_config, "the step"
                )
            got = {
                str(version): sorted(
                    str(n) for n in build_export_policy(NODE, follower.last, version).static_routes
                )
                for version in (4, 6)
            }
        assert got == {v: sorted(routes) for v, routes in STATIC["cases"][case].items()}
    finally:
        await server.stop()
