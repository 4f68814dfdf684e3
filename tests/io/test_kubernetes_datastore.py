"""bgpd's Kubernetes datastore (``DATASTORE_TYPE=kubernetes``) against the test double API server:
the snapshots the daemon sees, through ``DatastoreSource``, across paging, watches, 410 Gone and
an API outage."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_api_server import KubeApiServer, kubeconfig_document

from bgpd.config import DaemonConfig, KubernetesSource
from bgpd.control.commands import ControlError, ask
from bgpd.datastore.kube_settings import KubeSettings
from bgpd.datastore.source import DatastoreSource
from bgpd.metrics import Metrics
from peers.model import Snapshot

WAIT_LIMIT = 30.0
V1 = "/apis/crd.projectcalico.org/v1"
NODES = "/api/v1/nodes"


def k8s_node(name: str, address: str, **annotations: str) -> dict[str, Any]:
    notes = {"projectcalico.org/IPv4Address": address, "projectcalico.org/ASNumber": "64512"}
    notes.update({f"projectcalico.org/{k}": v for k, v in annotations.items()})
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": notes}}


def peer(name: str, ip: str, asn: int = 65001) -> dict[str, Any]:
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {"peerIP": ip, "asNumber": asn},
    }


def affinity(node: str, cidr: str) -> dict[str, Any]:
    return {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BlockAffinity",
        "metadata": {"name": f"{node}-{cidr.replace('.', '-').replace('/', '-')}"},
        "spec": {"node": node, "cidr": cidr, "state": "confirmed", "deleted": "false"},
    }


class Follower:
    """Consumes ``DatastoreSource.snapshots`` in a task and keeps the last snapshot."""

    def __init__(self, source: DatastoreSource) -> None:
        self.source = source
        self.snapshots: list[Snapshot] = []
        self._task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        async for snapshot in self.source.snapshots():
            self.snapshots.append(snapshot)

    @property
    def last(self) -> Snapshot:
        return self.snapshots[-1]

    async def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        async with asyncio.timeout(WAIT_LIMIT):
            while not (self.snapshots and condition()):
                if self._task.done():
                    self._task.result()
                    raise AssertionError(f"source ended before {what}")
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def following(
    server: KubeApiServer, metrics: Metrics | None = None, **overrides: Any
) -> AsyncIterator[Follower]:
    settings = KubeSettings(
        host="127.0.0.1",
        port=server.port,
        tls=False,
        reconnect_initial=0.05,
        reconnect_max=0.2,
        **overrides,
    )
    config = DaemonConfig(node="node1", datastore=KubernetesSource(settings))
    follower = Follower(DatastoreSource(config, metrics or Metrics()))
    try:
        yield follower
    finally:
        await follower.stop()


def rejected_count(metrics: Metrics, resource: str) -> float:
    labels = {"resource": resource, "reason": "invalid"}
    value = metrics.registry.get_sample_value("bgpd_datastore_rejected_records_total", labels)
    return value or 0.0


async def started(**kwargs: Any) -> KubeApiServer:
    server = KubeApiServer(**kwargs)
    await server.start()
    return server


async def test_paged_list_then_watch_add_modify_delete() -> None:
    server = await started()
    try:
        for index in range(7):
            server.put(NODES, k8s_node(f"node{index}", f"10.0.0.{index + 1}/24"))
        server.put(V1 + "/bgppeers", peer("tor", "192.0.2.1"))
        server.put(V1 + "/blockaffinities", affinity("node1", "10.244.1.0/26"))
        server.put(V1 + "/blockaffinities", affinity("node2", "10.244.2.0/26"))
        async with following(server, list_page_size=2) as follower:
            await follower.wait_for(lambda: len(follower.last.nodes) == 7, "the listing")
            snapshot = follower.last
            assert snapshot.peers["tor"].as_number == 65001
            assert [a.node for a in snapshot.affinities.values()] == ["node1"]
            node_lists = [t for m, t in server.requests if t.startswith(NODES + "?limit=2")]
            assert len(node_lists) == 4  # 7 nodes in pages of 2
            assert any("continue=" in t for t in node_lists)

            await follower.wait_for(lambda: server.watch_count() == 9, "the watches")
            server.put(V1 + "/bgppeers", peer("rr", "192.0.2.2"))
            await follower.wait_for(lambda: "rr" in follower.last.peers, "an added peer")
            server.put(V1 + "/bgppeers", peer("rr", "192.0.2.2", asn=65002))
            await follower.wait_for(
                lambda: follower.last.peers["rr"].as_number == 65002, "a modified peer"
            )
            server.delete(NODES, "node6")
            await follower.wait_for(lambda: "node6" not in follower.last.nodes, "a deleted node")
            server.bookmark()
            server.put(NODES, k8s_node("node9", "10.0.0.99/24"))
            await follower.wait_for(
                lambda: "node9" in follower.last.nodes, "a node after a bookmark"
            )
            watch_targets = [t for _, t in server.requests if "watch=true" in t]
            assert all("allowWatchBookmarks=true" in t for t in watch_targets)
    finally:
        await server.stop()


async def test_gone_relists_without_losing_a_change() -> None:
    server = await started()
    try:
        server.put(V1 + "/bgppeers", peer("a", "192.0.2.1"))
        async with following(server) as follower:
            await follower.wait_for(lambda: "a" in follower.last.peers, "the listing")
            await follower.wait_for(lambda: server.watch_count() == 9, "the watches")
            lists_before = sum(1 for _, t in server.requests if t.startswith(V1 + "/bgppeers?l"))
            server.drop_watches()  # the watches re-open at their resume point...
            server.delete(V1 + "/bgppeers", "a")  # ...which a compaction has made too old
            server.put(V1 + "/bgppeers", peer("b", "192.0.2.2"))
            server.compact()
            await follower.wait_for(lambda: set(follower.last.peers) == {"b"}, "the relisted state")
            lists_after = sum(1 for _, t in server.requests if t.startswith(V1 + "/bgppeers?l"))
            assert lists_after > lists_before
    finally:
        await server.stop()


async def test_outage_keeps_the_last_snapshot_then_converges() -> None:
    server = await started()
    try:
        server.put(V1 + "/bgppeers", peer("a", "192.0.2.1"))
        server.put(NODES, k8s_node("node1", "10.0.0.1/24"))
        async with following(server) as follower:
            await follower.wait_for(lambda: "a" in follower.last.peers, "the listing")
            count = len(follower.snapshots)
            await server.stop()
            requests_before = len(server.requests)
            await asyncio.sleep(0.5)  # several backoff rounds against a closed port
            assert len(follower.snapshots) == count  # nothing yielded: nothing withdrawn
            assert "a" in follower.last.peers
            server.delete(V1 + "/bgppeers", "a")
            server.put(V1 + "/bgppeers", peer("c", "192.0.2.3"))
            await server.start()
            await follower.wait_for(lambda: set(follower.last.peers) == {"c"}, "convergence")
            assert len(server.requests) > requests_before
            assert follower.last.nodes["node1"].ipv4_address == ipaddress.IPv4Interface(
                "10.0.0.1/24"
            )
    finally:
        await server.stop()


async def test_bad_objects_are_skipped_and_counted() -> None:
    server = await started()
    metrics = Metrics()
    try:
        server.put(V1 + "/bgppeers", peer("good", "192.0.2.1"))
        server.put(V1 + "/ippools", {"metadata": {"name": "bad"}, "spec": {"cidr": "x"}})
        bad_block = {"metadata": {"name": "b"}, "spec": {"cidr": "nope"}}
        server.put(V1 + "/ipamblocks", bad_block)
        async with following(server, metrics) as follower:
            await follower.wait_for(lambda: "good" in follower.last.peers, "the listing")
            assert not follower.last.pools
            assert rejected_count(metrics, "IPPool") == 1
            assert rejected_count(metrics, "IPAMBlock") == 1
            await follower.wait_for(lambda: server.watch_count() == 9, "the watches")
            server.put(V1 + "/ippools", {"metadata": {"name": "bad"}, "spec": {"cidr": "y"}})
            server.put(V1 + "/bgppeers", peer("later", "192.0.2.9"))
            await follower.wait_for(lambda: "later" in follower.last.peers, "a later change")
            assert rejected_count(metrics, "IPPool") == 2
    finally:
        await server.stop()


async def test_native_v3_group_is_discovered() -> None:
    server = await started(groups=("projectcalico.org/v3",))
    try:
        v3_peer = dict(peer("v3peer", "192.0.2.7"), apiVersion="projectcalico.org/v3")
        server.put("/apis/projectcalico.org/v3/bgppeers", v3_peer)
        async with following(server) as follower:
            await follower.wait_for(lambda: "v3peer" in follower.last.peers, "the v3 listing")
            assert any(t.startswith("/apis/projectcalico.org/v3/") for _, t in server.requests)
            assert not any("crd.projectcalico.org" in t for _, t in server.requests)
    finally:
        await server.stop()


KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (Debian package kubernetes-client)"
)


def write_kubeconfig(tmp_path: Path, server: KubeApiServer, ca: Path | None = None) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig_document(server.url, "test-token", ca)))
    return path


async def kubectl(kubeconfig: Path, *args: str, fails: bool = False) -> str:
    """kubectl's standard output; with ``fails``, its error output, and it must fail."""
    assert KUBECTL is not None
    process = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(kubeconfig),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "HOME": str(kubeconfig.parent)},
    )
    async with asyncio.timeout(WAIT_LIMIT):
        out, err = await process.communicate()
    if fails:
        assert process.returncode != 0, out.decode()
        return err.decode()
    assert process.returncode == 0, err.decode()
    return out.decode()


@needs_kubectl
async def test_kubectl_checks_the_double_and_drives_bgpd(tmp_path: Path) -> None:
    """The real kubectl gets, applies, deletes and watches through the double, and what it
    applies reaches bgpd's snapshots."""
    server = await started()
    try:
        kubeconfig = write_kubeconfig(tmp_path, server)
        manifest = tmp_path / "peer.yaml"
        manifest.write_text(yaml.safe_dump(peer("tor", "192.0.2.1")))
        async with following(server) as follower:
            await follower.wait_for(lambda: server.watch_count() == 9, "the watches")
            out = await kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifest))
            assert "bgppeer.crd.projectcalico.org/tor created" in out
            await follower.wait_for(lambda: "tor" in follower.last.peers, "the applied peer")
            listed = await kubectl(
                kubeconfig, "get", "bgppeers.crd.projectcalico.org", "-o", "json"
            )
            assert [item["metadata"]["name"] for item in json.loads(listed)["items"]] == ["tor"]

            assert KUBECTL is not None
            watcher = await asyncio.create_subprocess_exec(
                KUBECTL,
                "--kubeconfig",
                str(kubeconfig),
                "get",
                "bgppeers.crd.projectcalico.org",
                "-w",
                "-o",
                "name",
                stdout=asyncio.subprocess.PIPE,
                env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            )
            try:
                assert watcher.stdout is not None
                async with asyncio.timeout(WAIT_LIMIT):
                    first = await watcher.stdout.readline()
                    assert first.decode().strip() == "bgppeer.crd.projectcalico.org/tor"
                    server.put(V1 + "/bgppeers", peer("rr", "192.0.2.2"))
                    second = await watcher.stdout.readline()
                    assert second.decode().strip() == "bgppeer.crd.projectcalico.org/rr"
            finally:
                watcher.terminate()
                await watcher.wait()

            await kubectl(kubeconfig, "delete", "bgppeers.crd.projectcalico.org", "tor")
            await follower.wait_for(lambda: set(follower.last.peers) == {"rr"}, "the deletion")
    finally:
        await server.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@needs_kubectl
async def test_bgpd_run_follows_a_peer_applied_with_kubectl(tmp_path: Path) -> None:
    """``bgpd run`` with DATASTORE_TYPE=kubernetes and KUBECONFIG: a BGPPeer applied with kubectl
    becomes a peer of the daemon, and deleting it removes it (no kernel, loopback only; the
    peer's port is a closed one, so no other process is contacted)."""
    server = await started()
    control = str(tmp_path / "bird.ctl")
    server.put(NODES, k8s_node("node1", "127.0.0.1/8"))
    config = {"nodeToNodeMeshEnabled": False, "asNumber": 64512, "listenPort": free_port()}
    server.put(
        V1 + "/bgpconfigurations",
        {"metadata": {"name": "default"}, "spec": config, "kind": "BGPConfiguration"},
    )
    kubeconfig = write_kubeconfig(tmp_path, server)
    daemon = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bgpd",
        "run",
        "--node",
        "node1",
        "--no-kernel",
        "--control-socket",
        control,
        "--metrics-listen",
        "none",
        env={
            "PATH": "/usr/bin:/bin",
            "DATASTORE_TYPE": "kubernetes",
            "KUBECONFIG": str(kubeconfig),
        },
        cwd=Path(__file__).resolve().parents[2],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )

    async def peers() -> list[str] | None:
        """Each peer as text, or None while the control socket does not answer."""
        try:
            listed = await asyncio.to_thread(ask, control, "peers")
        except (OSError, ControlError):
            return None
        return [json.dumps(p) for p in listed]

    async def wait_peers(condition: Callable[[list[str]], bool], what: str) -> None:
        async with asyncio.timeout(WAIT_LIMIT):
            while (listed := await peers()) is None or not condition(listed):
                assert daemon.returncode is None, f"bgpd exited before {what}"
                await asyncio.sleep(0.1)

    try:
        await wait_peers(lambda listed: not listed, "its control socket, with no peer")
        manifest = tmp_path / "peer.yaml"
        manifest.write_text(yaml.safe_dump(peer("tor", f"127.0.0.2:{free_port()}")))
        await kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifest))
        await wait_peers(lambda listed: any("127.0.0.2" in p for p in listed), "the peer")
        await kubectl(kubeconfig, "delete", "bgppeers.crd.projectcalico.org", "tor")
        await wait_peers(lambda listed: not any("127.0.0.2" in p for p in listed), "removal")
    finally:
        daemon.terminate()
        await daemon.wait()
        await server.stop()


async def test_a_rotated_token_file_is_used_by_the_next_request(tmp_path: Path) -> None:
    server = await started()
    token = tmp_path / "token"
    token.write_text("first\n")
    try:
        server.put(V1 + "/bgppeers", peer("a", "192.0.2.1"))
        async with following(server, token_file=str(token)) as follower:
            await follower.wait_for(lambda: server.watch_count() == 9, "the watches")
            assert set(server.authorizations) == {"Bearer first"}
            token.write_text("second\n")
            server.drop_watches()
            await follower.wait_for(
                lambda: "Bearer second" in server.authorizations, "a request with the new token"
            )
    finally:
        await server.stop()


async def test_a_resource_the_server_lacks_is_empty_and_not_watched() -> None:
    server = await started(absent=frozenset({"bgpfilters"}))
    try:
        server.put(V1 + "/bgppeers", peer("a", "192.0.2.1"))
        async with following(server) as follower:
            await follower.wait_for(lambda: "a" in follower.last.peers, "the listing")
            await follower.wait_for(lambda: server.watch_count() == 8, "the other watches")
            server.put(V1 + "/bgppeers", peer("b", "192.0.2.2"))
            await follower.wait_for(lambda: "b" in follower.last.peers, "a watched change")
            assert not any("bgpfilters?" in t and "watch" in t for _, t in server.requests)
    finally:
        await server.stop()


async def test_bgpd_plan_reads_the_kubernetes_api(tmp_path: Path) -> None:
    """``bgpd plan`` with DATASTORE_TYPE=kubernetes: the node's sessions from the API, with a
    BGPPeer's ``bgpd.projectcalico.org/max-prefixes`` annotation read as the guardrail."""
    server = await started()
    try:
        server.put(NODES, k8s_node("node1", "10.0.0.1/24"))
        config = {"nodeToNodeMeshEnabled": False, "asNumber": 64512}
        server.put(
            V1 + "/bgpconfigurations",
            {"metadata": {"name": "default"}, "spec": config, "kind": "BGPConfiguration"},
        )
        tor = peer("tor", "10.0.0.254")
        tor["metadata"]["annotations"] = {"bgpd.projectcalico.org/max-prefixes": "500"}
        server.put(V1 + "/bgppeers", tor)
        server.put(V1 + "/blockaffinities", affinity("node1", "10.244.1.0/26"))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bgpd",
            "plan",
            "--node",
            "node1",
            "--json",
            env={
                "PATH": "/usr/bin:/bin",
                "DATASTORE_TYPE": "kubernetes",
                "KUBECONFIG": str(write_kubeconfig(tmp_path, server)),
            },
            cwd=Path(__file__).resolve().parents[2],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), WAIT_LIMIT)
        assert proc.returncode == 0, err.decode()
        plan = json.loads(out)
        (name,) = plan["sessions"]
        session = plan["sessions"][name]
        assert session["peer_ip"] == "10.0.0.254" and session["peer_as"] == 65001
        assert session["max_prefixes"].startswith("500 per family")
        assert plan["exports"][name].keys() == {"10.244.1.0/26"}
    finally:
        await server.stop()


async def test_a_bfd_configuration_is_listed_and_watched() -> None:
    """Calico Enterprise's BFDConfiguration CRD, where the cluster serves it (issue 19)."""
    server = await started()
    bfd = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BFDConfiguration",
        "metadata": {"name": "default"},
        "spec": {"nodeSelector": "all()", "interfaces": [{"matchPattern": "*"}]},
    }
    try:
        server.put(V1 + "/bfdconfigurations", bfd)
        async with following(server) as follower:
            await follower.wait_for(lambda: "default" in follower.last.bfd_configs, "the listing")
            await follower.wait_for(lambda: server.watch_count() == 9, "the watches")
            changed = {**bfd, "metadata": {"name": "fast"}}
            server.put(V1 + "/bfdconfigurations", changed)
            await follower.wait_for(lambda: "fast" in follower.last.bfd_configs, "a change")
    finally:
        await server.stop()
