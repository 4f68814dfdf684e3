"""Services, EndpointSlices and BGP password Secrets through the Kubernetes API test double, on
either datastore: what reaches the snapshots and the node's plan, across watches dropped,
history compacted, 401 and 403; and the real kubectl applying, replacing and watching them."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from calico_kdd import endpoint_slice, secret, service
from etcd_server import TlsFiles
from kube_api_server import KubeApiServer
from test_kubernetes_datastore import (
    KUBECTL,
    NODES,
    V1,
    WAIT_LIMIT,
    Follower,
    k8s_node,
    kubectl,
    needs_kubectl,
    started,
    write_kubeconfig,
)

from bgpd.calico.node import NodePlanner
from bgpd.calico.services import service_routes
from bgpd.config import DaemonConfig, FileSource, KubernetesSource
from bgpd.datastore.kube_settings import KubeSettings
from bgpd.datastore.source import DatastoreSource
from bgpd.metrics import Metrics
from peers.model import Snapshot

SERVICES = "/api/v1/services"
SLICES = "/apis/discovery.k8s.io/v1/endpointslices"
SECRETS = "/api/v1/secrets"
CLUSTER_WATCHES = 2  # Services and EndpointSlices, before any Secret is named


def bgp_config() -> Any:
    spec = {
        "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}],
        "serviceExternalIPs": [{"cidr": "198.51.100.0/24"}],
    }
    return {"kind": "BGPConfiguration", "metadata": {"name": "default"}, "spec": spec}


def password_peer(name: str, ip: str, secret_name: str, key: str) -> Any:
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {
            "peerIP": ip,
            "asNumber": 65001,
            "password": {"secretKeyRef": {"name": secret_name, "key": key}},
        },
    }


def settings_of(server: KubeApiServer, **overrides: Any) -> KubeSettings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": False,
        "reconnect_initial": 0.05,
        "reconnect_max": 0.2,
    }
    values.update(overrides)
    return KubeSettings(**values)


@asynccontextmanager
async def following_kdd(
    server: KubeApiServer, node: str = "node-a", **overrides: Any
) -> AsyncIterator[Follower]:
    settings = settings_of(server, **overrides)
    config = DaemonConfig(node=node, datastore=KubernetesSource(settings), kubernetes=settings)
    follower = Follower(DatastoreSource(config, Metrics()))
    try:
        yield follower
    finally:
        await follower.stop()


def routes(snapshot: Snapshot, node: str) -> set[str]:
    return {str(n) for n in service_routes(node, snapshot, 4)}


async def test_a_local_service_follows_its_endpoint_between_nodes() -> None:
    server = await started()
    try:
        server.put(NODES, k8s_node("node-a", "192.0.2.1/24"))
        server.put(NODES, k8s_node("node-b", "192.0.2.2/24"))
        server.put(V1 + "/bgpconfigurations", bgp_config())
        server.put(SERVICES, service())
        server.put(SLICES, endpoint_slice("node-a"))
        async with following_kdd(server) as follower:
            expected = {"10.96.0.10/32", "198.51.100.7/32"}
            await follower.wait_for(lambda: routes(follower.last, "node-a") == expected, "A")
            assert routes(follower.last, "node-b") == set()

            server.put(SLICES, endpoint_slice("node-b"))
            await follower.wait_for(lambda: routes(follower.last, "node-b") == expected, "B")
            assert routes(follower.last, "node-a") == set()

            server.put(SLICES, endpoint_slice("node-b", ready=False))
            await follower.wait_for(lambda: not routes(follower.last, "node-b"), "not ready")

            server.put(SLICES, endpoint_slice("node-b"))
            await follower.wait_for(lambda: routes(follower.last, "node-b") == expected, "ready")
            server.delete(SERVICES, "shop/web")
            await follower.wait_for(lambda: not follower.last.services, "the deletion")
            assert routes(follower.last, "node-b") == set()
    finally:
        await server.stop()


async def test_services_are_watched_once_a_service_range_is_configured() -> None:
    """confd starts its route generator when the BGPConfiguration first names a service range
    (``client.go``), so a cluster without one is not asked for its Services."""
    server = await started()
    try:
        server.put(NODES, k8s_node("node-a", "192.0.2.1/24"))
        server.put(SERVICES, service())
        server.put(SLICES, endpoint_slice("node-a"))
        async with following_kdd(server) as follower:
            await follower.wait_for(lambda: server.watch_count() == 9, "the Calico watches")
            assert not any(t.startswith(SERVICES) for _, t in server.requests)
            server.put(V1 + "/bgpconfigurations", bgp_config())
            await follower.wait_for(lambda: bool(routes(follower.last, "node-a")), "the routes")
            await follower.wait_for(
                lambda: server.watch_count() == 9 + CLUSTER_WATCHES, "the Service watches"
            )
    finally:
        await server.stop()


async def test_dropped_watches_and_compacted_history_withdraw_nothing() -> None:
    server = await started()
    try:
        server.put(NODES, k8s_node("node-a", "192.0.2.1/24"))
        server.put(V1 + "/bgpconfigurations", bgp_config())
        server.put(SERVICES, service())
        server.put(SLICES, endpoint_slice("node-a"))
        async with following_kdd(server) as follower:
            await follower.wait_for(lambda: routes(follower.last, "node-a") != set(), "routes")
            watches = 9 + CLUSTER_WATCHES  # Nodes, 8 Calico resources; Services, EndpointSlices
            await follower.wait_for(lambda: server.watch_count() == watches, "every watch")
            server.drop_watches()
            server.compact()
            server.put(SLICES, endpoint_slice("node-a", ready=False))  # lost with the history
            seen = len(follower.snapshots)
            await follower.wait_for(lambda: server.watch_count() == watches, "the re-watch")
            # every snapshot in between still carried the service (nothing withdrawn early),
            # and the relist converged on the change the watches missed
            await follower.wait_for(lambda: not routes(follower.last, "node-a"), "the relist")
            between = follower.snapshots[seen:-1]
            assert all(s.services for s in between)
    finally:
        await server.stop()


async def test_on_the_file_datastore_services_are_read_when_kubernetes_is_configured(
    tmp_path: Path,
) -> None:
    server = await started()
    try:
        datastore = tmp_path / "calico.yaml"
        datastore.write_text(
            yaml.safe_dump_all(
                [
                    {
                        "apiVersion": "projectcalico.org/v3",
                        "kind": "Node",
                        "metadata": {"name": "node-a"},
                        "spec": {"bgp": {"ipv4Address": "192.0.2.1/24"}},
                    },
                    {
                        "apiVersion": "projectcalico.org/v3",
                        "kind": "BGPConfiguration",
                        "metadata": {"name": "default"},
                        "spec": bgp_config()["spec"],
                    },
                ]
            )
        )
        server.put(SERVICES, service())
        server.put(SLICES, endpoint_slice("node-a"))
        config = DaemonConfig(
            node="node-a", datastore=FileSource(datastore), kubernetes=settings_of(server)
        )
        source = DatastoreSource(config, Metrics())
        assert source.open() is None  # the first snapshot waits for the cluster objects
        follower = Follower(source)
        try:
            await follower.wait_for(lambda: server.watch_count() == CLUSTER_WATCHES, "watches")
            server.put(SLICES, endpoint_slice("node-a", ready=False))
            await follower.wait_for(lambda: "shop/web-abcde" in follower.last.endpoint_slices, "")
            server.put(SLICES, endpoint_slice("node-a"))
            await follower.wait_for(
                lambda: routes(follower.last, "node-a") == {"10.96.0.10/32", "198.51.100.7/32"},
                "the per-service routes on the file datastore",
            )
        finally:
            await follower.stop()
    finally:
        await server.stop()


async def wait_secret(follower: Follower, name: str, key: str, value: str) -> None:
    def readable() -> bool:
        table = follower.last.secrets
        return table is not None and table.lookup(name, key) == value

    await follower.wait_for(readable, f"Secret {name} key {key} = {value}")


def plan_of(snapshot: Snapshot) -> Any:
    config = DaemonConfig(node="node-a", datastore=FileSource(Path("/dev/null")))
    return NodePlanner(config).plan(snapshot)


def password_of(plan: Any, name: str) -> str | None:
    (session,) = [s for n, s in plan.sessions.items() if name in n]
    return session.config.md5_password  # type: ignore[no-any-return]


async def test_passwords_from_secrets_rotation_missing_key_and_refusal() -> None:
    server = await started(tokens=frozenset({"good"}), forbidden={"secrets/locked"})
    try:
        server.put(NODES, k8s_node("node-a", "192.0.2.1/24"))
        server.put(V1 + "/bgpconfigurations", bgp_config())
        server.put(V1 + "/bgppeers", password_peer("tor-1", "192.0.2.11", "bgp", "tor-1"))
        server.put(V1 + "/bgppeers", password_peer("tor-2", "192.0.2.12", "bgp", "missing"))
        server.put(V1 + "/bgppeers", password_peer("tor-3", "192.0.2.13", "locked", "k"))
        server.put(V1 + "/bgppeers", password_peer("tor-4", "192.0.2.14", "absent", "k"))
        server.put(SECRETS, secret("bgp", {"tor-1": "first"}))
        server.put(SECRETS, secret("locked", {"k": "hidden"}))
        with structlog.testing.capture_logs() as logs:
            async with following_kdd(server, token="good") as follower:
                await wait_secret(follower, "bgp", "tor-1", "first")
                plan = plan_of(follower.last)
                assert password_of(plan, "192_0_2_11") == "first"
                assert set(plan.problems) == {
                    "BGPPeer tor-2: password Secret kube-system/bgp has no key 'missing'",
                    "BGPPeer tor-3: password Secret kube-system/locked not readable: 403 Forbidden",
                    "BGPPeer tor-4: password Secret kube-system/absent not found",
                }
                # each of those peers' own status says it (``bgpd show peers``: INFO)
                assert {n: s.problem for n, s in plan.sessions.items() if s.problem} == {
                    "Global_192_0_2_12": "password Secret kube-system/bgp has no key 'missing'",
                    "Global_192_0_2_13": (
                        "password Secret kube-system/locked not readable: 403 Forbidden"
                    ),
                    "Global_192_0_2_14": "password Secret kube-system/absent not found",
                }
                untouched = {n: s for n, s in plan.sessions.items() if "192_0_2_11" not in n}

                server.put(SECRETS, secret("bgp", {"tor-1": "second"}))
                await wait_secret(follower, "bgp", "tor-1", "second")
                rotated = plan_of(follower.last)
                assert password_of(rotated, "192_0_2_11") == "second"
                assert {n: s for n, s in rotated.sessions.items() if "192_0_2_11" not in n} == (
                    untouched
                )
                server.put(SECRETS, secret("absent", {"k": "now"}))
                await wait_secret(follower, "absent", "k", "now")  # created later

                # a BGPPeer naming a new Secret: only the Secrets are listed again
                def service_lists() -> int:
                    return sum(1 for _, t in server.requests if t.startswith(SERVICES + "?limit"))

                before = service_lists()
                server.put(SECRETS, secret("fresh", {"k": "new"}))
                server.put(V1 + "/bgppeers", password_peer("tor-5", "192.0.2.15", "fresh", "k"))
                await wait_secret(follower, "fresh", "k", "new")
                assert service_lists() == before
        # one log line for the refused Secret, naming it (its peer's problem names the peer)
        refused = [e for e in logs if e["event"] == "datastore.kubernetes.refused"]
        assert [(e["reason"], e["query"]["fieldSelector"]) for e in refused] == [
            ("403 Forbidden", "metadata.name=locked")
        ]
        # each Secret is read by name, in calico-node's namespace (confd's secret_watcher.go)
        asked = {t for _, t in server.requests if "/secrets" in t}
        assert all(t.startswith("/api/v1/namespaces/kube-system/secrets?") for t in asked)
        assert any("fieldSelector=metadata.name%3Dbgp" in t for t in asked)
        assert "Bearer good" in server.authorizations
    finally:
        await server.stop()


async def test_a_wrong_token_is_refused_and_nothing_is_read() -> None:
    server = await started(tokens=frozenset({"good"}))
    try:
        server.put(NODES, k8s_node("node-a", "192.0.2.1/24"))
        async with following_kdd(server, token="wrong") as follower:
            async with asyncio.timeout(WAIT_LIMIT):
                while sum(1 for a in server.authorizations if a == "Bearer wrong") < 3:
                    await asyncio.sleep(0.05)
            assert follower.snapshots == []
    finally:
        await server.stop()


@needs_kubectl
async def test_kubectl_applies_and_watches_services_slices_and_secrets(tmp_path: Path) -> None:
    """The real kubectl against the double's namespaced resources, its 401 and its 403 (over
    TLS: kubectl sends its bearer token only there)."""
    files = TlsFiles.generate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.server_cert, files.server_key)
    server = await started(
        tokens=frozenset({"test-token"}), forbidden={"secrets/locked"}, tls=context
    )
    try:
        kubeconfig = write_kubeconfig(tmp_path, server, files.ca)
        manifest = tmp_path / "objects.yaml"
        manifest.write_text(
            yaml.safe_dump_all([service(), endpoint_slice("node-a"), secret("bgp", {"a": "x"})])
        )
        out = await kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifest))
        assert "service/web created" in out
        assert "endpointslice.discovery.k8s.io/web-abcde created" in out
        assert "secret/bgp created" in out
        listed = json.loads(await kubectl(kubeconfig, "get", "services", "-A", "-o", "json"))
        assert [i["metadata"]["name"] for i in listed["items"]] == ["web"]
        got = json.loads(
            await kubectl(kubeconfig, "-n", "kube-system", "get", "secret", "bgp", "-o", "json")
        )
        assert got["data"] == {"a": "eA=="}

        assert KUBECTL is not None
        watcher = await asyncio.create_subprocess_exec(
            KUBECTL,
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            "shop",
            "get",
            "endpointslices",
            "-w",
            "-o",
            "jsonpath={.endpoints[0].nodeName}{'\\n'}",
            stdout=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        try:
            assert watcher.stdout is not None
            async with asyncio.timeout(WAIT_LIMIT):
                assert (await watcher.stdout.readline()).decode().strip() == "node-a"
                moved = tmp_path / "moved.yaml"
                moved.write_text(yaml.safe_dump(endpoint_slice("node-b")))
                await kubectl(kubeconfig, "replace", "--validate=false", "-f", str(moved))
                assert (await watcher.stdout.readline()).decode().strip() == "node-b"
        finally:
            watcher.terminate()
            await watcher.wait()

        denied = await kubectl(
            kubeconfig, "-n", "kube-system", "get", "secret", "locked", fails=True
        )
        assert "Forbidden" in denied or "forbidden" in denied
        bad = tmp_path / "bad-kubeconfig"
        bad.write_text(kubeconfig.read_text().replace("test-token", "stolen"))
        refused = await kubectl(bad, "get", "services", "-A", fails=True)
        assert "Unauthorized" in refused
    finally:
        await server.stop()


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def test_over_tls_with_the_clusters_ca(tmp_path: Path) -> None:
    """The client verifies the server against the kubeconfig's CA (inline data, as
    ``certificate-authority-data`` gives it) and sends its token only there."""
    files = TlsFiles.generate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.server_cert, files.server_key)
    server = await started(tokens=frozenset({"good"}), tls=context)
    try:
        server.put(NODES, k8s_node("node-a", "192.0.2.1/24"))
        server.put(V1 + "/bgpconfigurations", bgp_config())
        server.put(SERVICES, service())
        settings = dict(tls=True, ca_data=files.ca.read_bytes(), token="good")
        async with following_kdd(server, **settings) as follower:
            await follower.wait_for(lambda: "shop/web" in follower.last.services, "a Service")
        assert set(server.authorizations) == {"Bearer good"}
    finally:
        await server.stop()
