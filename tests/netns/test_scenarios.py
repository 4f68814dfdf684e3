"""The containerlab topologies, realised by the namespace runner, under the scenarios operators
meet: convergence, datastore churn, link and process failures, graceful restart, an etcd outage,
policy changes and interoperation with BIRD 1.6, GoBGP and FRR.

Rules:
1. Each lab file in containerlab/ runs under its own name (``s8<lab>``: namespaces
   ``clab-s8<lab>-<node>``) with its state in a pytest temporary directory; one lab is shared
   by the tests of one class (class-scoped fixture: up and converged before the first test,
   always torn down after the last, also on failure). Tests of a class run in file order and
   each leaves the lab converged for the next, except the last one of ``TestRouteReflectors``
   (it kills a route reflector).
2. Every wait polls with a generous timeout (``lab_wait.wait``); nothing asserts on how long
   anything took. Conditions that must hold *throughout* a window (nothing withdrawn during an
   etcd outage or while a route reflector dies, no ping lost during a restart) are sampled
   over the whole window and every violation is reported.
3. Datastore changes go through the lab's etcd the way Calico writes it: ``bgpd datastore load``
   for resources (run in node rr1, the file written at a container path of rr1, which the
   runner maps into the node's scratch root) and ``etcdctl del`` in the etcd node for
   deletions, with the keys ``bgpd.datastore.schema.etcd_pair`` gives.
4. Every daemon's log is copied out of the lab before it is torn down; the teardown prints
   where (pytest shows it when a test of the class failed).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from netns import have_root

from bgpd.datastore.schema import etcd_pair

CLAB = Path(__file__).resolve().parents[2] / "containerlab"
sys.path.insert(0, str(CLAB))

import lab_netns  # noqa: E402
from lab_kinds import GoBgp  # noqa: E402
from lab_topology import load_lab  # noqa: E402
from lab_wait import Progress, wait  # noqa: E402
from netlab import LabRunner, ping  # noqa: E402

pytestmark = pytest.mark.netns

CONVERGE = 90.0  # seconds allowed for a lab (or a change) to converge
ETCD = "etcd://10.0.0.100:2379"  # the rr lab's etcd
ETCD_OUTAGE = 30.0
RR_DATASTORE = CLAB / "rr" / "datastore.yaml"
TOOLS = {
    "bgpd": (),
    "etcd": ("etcd", "etcdctl"),
    "frr": ("vtysh",),
    "gobgp": ("gobgpd", "gobgp"),
    "bird": ("bird", "birdc"),
}


def _lab(name: str) -> Callable[..., Iterator[LabRunner]]:
    """A class-scoped fixture running containerlab/<name>.clab.yml (rule 1)."""

    @pytest.fixture(scope="class")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRunner]:
        if not have_root():
            pytest.skip("needs root and iproute2")
        lab = load_lab(CLAB / f"{name}.clab.yml", f"s8{name.replace('-', '')}")
        for node in lab.nodes:
            missing = [t for t in TOOLS.get(node.role, ()) if shutil.which(t) is None]
            if missing:
                pytest.skip(f"{name}: {', '.join(missing)} not installed")
        runner = LabRunner(lab, tmp_path_factory.mktemp(name), out=io.StringIO())
        runner.down(quiet=True)  # what an interrupted earlier run left
        try:
            runner.up()
            runner.wait_converged(CONVERGE, quiet=True)
            yield runner
        finally:
            logs = tmp_path_factory.mktemp(f"{name}-logs")
            for log in runner.state_dir.glob("*/*.log"):
                shutil.copyfile(log, logs / f"{log.parent.name}-{log.name}")
            print(f"{name}: daemon logs kept in {logs}")
            runner.down(quiet=True)

    return fixture


mesh3 = _lab("mesh3")
rr = _lab("rr")
tor = _lab("tor")
cross_subnet = _lab("cross-subnet")
interop = _lab("interop")


# ---- helpers ------------------------------------------------------------------------------


def until(label: str, check: Callable[[], str], timeout: float = CONVERGE) -> None:
    """Poll ``check`` (it returns what is still missing, "" when done) until it is done."""

    def probe() -> Progress:
        missing = check()
        return Progress(0 if missing else 1, 1, missing)

    wait(label, probe, timeout, quiet=True)


def learned(runner: LabRunner, node: str) -> dict[str, str]:
    """The node's ``proto bird`` unicast routes: prefix -> next hop(s)."""
    return {r.dst: r.via for r in runner.kernel_routes(node) if r.kind != "blackhole"}


def bgpd_nodes(runner: LabRunner) -> list[str]:
    return [n.name for n in runner.lab.nodes if n.role == "bgpd"]


def converged(runner: LabRunner) -> str:
    sessions, routes = runner.session_progress(), runner.route_progress()
    return "" if sessions.complete and routes.complete else sessions.missing or routes.missing


def pod_ping(runner: LabRunner, source: str, target: str, count: int = 3) -> tuple[bool, str]:
    address = dict(runner.lab.node(target).labels)["netlab.pod-ip"]
    return ping(runner, runner.lab.node(source), address, count)


def peers(runner: LabRunner, node: str) -> dict[str, dict[str, Any]]:
    out = runner.exec(node, ["bgpd", "show", "peers", "--json"], check=True).stdout
    return {p["name"]: p for p in json.loads(out)}


def routes_of(runner: LabRunner, node: str) -> list[dict[str, Any]]:
    out = runner.exec(node, ["bgpd", "show", "routes", "--json"], check=True).stdout
    routes: list[dict[str, Any]] = json.loads(out)
    return routes


def kernel_snapshot(runner: LabRunner, nodes: list[str]) -> dict[str, set[str]]:
    return {node: set(learned(runner, node)) for node in nodes}


def lost_routes(runner: LabRunner, expected: dict[str, set[str]]) -> list[str]:
    lost = []
    for node, prefixes in expected.items():
        gone = prefixes - set(learned(runner, node))
        if gone:
            lost.append(f"{node} lost {sorted(gone)}")
    return lost


def sample_window(seconds: float, check: Callable[[], list[str]]) -> list[str]:
    """Run ``check`` about once a second for ``seconds``; every violation seen (rule 2)."""
    seen: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        seen += [f"t+{seconds - (end - time.monotonic()):.0f}s: {v}" for v in check()]
        time.sleep(1.0)
    return seen


def rr_documents(predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(RR_DATASTORE.read_text()) if d]
    return [d for d in documents if predicate(d)]


def of_node(name: str) -> Callable[[dict[str, Any]], bool]:
    def match(doc: dict[str, Any]) -> bool:
        if doc["kind"] == "Node":
            return bool(doc["metadata"]["name"] == name)
        return bool(doc["kind"] == "BlockAffinity" and doc["spec"]["node"] == name)

    return match


def etcd_load(runner: LabRunner, documents: list[dict[str, Any]]) -> None:
    """Write resources into the rr lab's etcd as Calico does (rule 3)."""
    container_path = "/tmp/scenario-change.yaml"
    runner.runtime("rr1").host_path(container_path).write_text(yaml.safe_dump_all(documents))
    runner.exec("rr1", ["bgpd", "datastore", "load", container_path, "--etcd", ETCD], check=True)


def etcd_delete(runner: LabRunner, documents: list[dict[str, Any]]) -> None:
    for document in documents:
        key, _ = etcd_pair(document, "scenario")
        runner.exec("etcd", ["etcdctl", "del", key], check=True)


def lab_policy(import_rules: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPFilter",
        "metadata": {"name": "lab-policy"},
        "spec": {"importV4": import_rules},
    }


def affinity(node: str, cidr: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BlockAffinity",
        "metadata": {"name": f"{node}-{cidr.replace('.', '-').replace('/', '-')}"},
        "spec": {"node": node, "cidr": cidr, "state": "confirmed"},
    }


def in_all(runner: LabRunner, nodes: list[str], prefix: str, present: bool = True) -> str:
    wrong = [n for n in nodes if (prefix in learned(runner, n)) != present]
    return f"{prefix} {'missing' if present else 'still'} in {wrong}" if wrong else ""


# ---- mesh3 ----------------------------------------------------------------------------------


class TestMesh3:
    def test_converges_and_pods_ping(self, mesh3: LabRunner) -> None:
        for node in bgpd_nodes(mesh3):
            others = {f"10.244.{n}.0/26" for n in (1, 2, 3)} - {f"10.244.{node[-1]}.0/26"}
            assert set(learned(mesh3, node)) == others
        for target in ("pod2", "pod3"):
            ok, summary = pod_ping(mesh3, "pod1", target)
            assert ok, f"pod1 -> {target}: {summary}"


# ---- rr: route reflectors on etcd -----------------------------------------------------------

CLIENTS = ["node1", "node2", "node3", "node4"]
RR1_BLOCK = "10.244.101.0/26"


class TestRouteReflectors:
    def test_converges_through_the_reflectors(self, rr: LabRunner) -> None:
        for client in CLIENTS:
            sessions = peers(rr, client)
            assert sorted(p["peer_ip"] for p in sessions.values()) == ["10.0.0.1", "10.0.0.2"]
        for node in bgpd_nodes(rr):
            assert len(learned(rr, node)) == 5, (node, learned(rr, node))
        # reflected routes keep the originator's next hop (RFC 4456 §10: not changed)
        assert learned(rr, "node3")["10.244.4.0/26"] == "10.0.0.14"
        ok, summary = pod_ping(rr, "pod1", "pod2")
        assert ok, summary

    def test_policy_change_applies_without_session_reset(self, rr: LabRunner) -> None:
        before = {node: peers(rr, node) for node in ("node1", "rr1")}
        original = rr_documents(lambda d: d["kind"] == "BGPFilter")
        reject = {"action": "Reject", "matchOperator": "In", "cidr": "10.244.4.0/26"}
        etcd_load(rr, [lab_policy([reject])])
        until("filter applied", lambda: in_all(rr, ["node1", "node2"], "10.244.4.0/26", False))
        etcd_load(rr, original)
        until("filter lifted", lambda: in_all(rr, ["node1", "node2"], "10.244.4.0/26"))
        for node, sessions in before.items():
            after = peers(rr, node)
            for name, peer in sessions.items():
                assert after[name]["state"] == "Established", (node, name)
                assert after[name]["since"] == peer["since"], f"{node}/{name} was reset"

    def test_node_leaves_and_joins_through_the_datastore(self, rr: LabRunner) -> None:
        node4 = rr_documents(of_node("node4"))
        assert len(node4) == 2
        others = ["rr1", "rr2", "node1", "node2", "node3"]
        etcd_delete(rr, node4)
        until("node4's block withdrawn", lambda: in_all(rr, others, "10.244.4.0/26", False))
        until(
            "reflectors drop node4",
            lambda: ", ".join(r for r in ("rr1", "rr2") if "Node_10_0_0_14" in peers(rr, r)),
        )
        etcd_load(rr, node4)
        until("node4 back everywhere", lambda: in_all(rr, others, "10.244.4.0/26"))
        until("converged after the join", lambda: converged(rr))

    def test_node_uplink_fails_and_recovers(self, rr: LabRunner) -> None:
        node2 = rr.lab.node("node2").namespace
        before = learned(rr, "node2")
        since = {name: p["since"] for name, p in peers(rr, "node2").items()}
        lab_netns.set_link(node2, "eth1", up=False)
        try:
            # the kernel flushes every route through the dead link (BIRD's kernel scan, and
            # bgpd's reconcile, must put them back)
            until("routes via eth1 flushed", lambda: ", ".join(learned(rr, "node2")))
            assert not pod_ping(rr, "pod1", "pod2", count=1)[0]
        finally:
            lab_netns.set_link(node2, "eth1", up=True)
        until("node2's kernel routes restored", lambda: lacking(learned(rr, "node2"), before))
        ok, summary = pod_ping(rr, "pod1", "pod2")
        assert ok, summary
        # a short outage is shorter than the hold time: the sessions survive it
        assert {name: p["since"] for name, p in peers(rr, "node2").items()} == since

    def test_graceful_restart_loses_no_pod_traffic(self, rr: LabRunner) -> None:
        daemon = rr.runtime("node1").daemon("bgpd")
        old_pid = daemon.pid_file.read_text()
        since = peers(rr, "rr1")["Node_10_0_0_11"]["since"]
        pod = rr.lab.node("pod1").namespace
        flood = subprocess.Popen(
            ["ip", "netns", "exec", pod, "ping", "-q", "-i", "0.01", "-c", "2000", "-W", "1"]
            + ["10.244.2.2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            time.sleep(2.0)
            rr.stop_daemons("node1")  # SIGTERM: bgpd keeps its kernel routes, sends nothing
            rr.restart("node1")
            until(
                "node1 re-established",
                lambda: "" if peers(rr, "rr1")["Node_10_0_0_11"]["since"] != since else "old",
            )
            until("converged after the restart", lambda: converged(rr))
            output, _ = flood.communicate(timeout=60)
        finally:
            if flood.poll() is None:
                flood.kill()
                flood.wait()
        assert daemon.pid_file.read_text() != old_pid
        match = re.search(r"(\d+) packets transmitted, (\d+) received", output)
        assert match, output
        sent, received = int(match.group(1)), int(match.group(2))
        assert sent == 2000 and sent - received == 0, output

    def test_etcd_outage_withdraws_nothing_then_resyncs(self, rr: LabRunner) -> None:
        nodes = bgpd_nodes(rr)
        expected = kernel_snapshot(rr, nodes)

        def nothing_lost() -> list[str]:
            down = [
                f"{n}/{s.name} {s.state}"
                for n in nodes
                for s in rr.role(n).sessions()
                if not s.established
            ]
            return lost_routes(rr, expected) + down

        rr.stop_daemons("etcd")
        try:
            violations = sample_window(ETCD_OUTAGE, nothing_lost)
        finally:
            rr.restart("etcd")
        assert not violations, violations
        extra = affinity("node1", "10.244.5.0/26")
        etcd_load(rr, [extra])
        others = [n for n in nodes if n != "node1"]
        until("a change after etcd returns", lambda: in_all(rr, others, "10.244.5.0/26"))
        etcd_delete(rr, [extra])
        until("and its removal", lambda: in_all(rr, others, "10.244.5.0/26", False))

    def test_route_reflector_dies_clients_keep_every_route(self, rr: LabRunner) -> None:
        expected = {c: p - {RR1_BLOCK} for c, p in kernel_snapshot(rr, CLIENTS).items()}
        assert all(len(p) == 4 for p in expected.values()), expected
        rr.stop_daemons("rr1", kill=True)
        violations: list[str] = []

        def rr1_paths_flushed() -> str:
            violations.extend(lost_routes(rr, expected))
            # rr1's own block goes once its stale paths are flushed (RFC 4724 §4.2 restart
            # time, maxRestartTime 10s): from then on everything else comes through rr2
            return in_all(rr, CLIENTS, RR1_BLOCK, False)

        until("rr1's stale paths flushed", rr1_paths_flushed)
        violations += sample_window(3.0, lambda: lost_routes(rr, expected))
        assert not violations, violations
        for client in CLIENTS:
            own = ("local", "kernel1", "direct1")  # originated, learned from the kernel
            via = {r["peer"] for r in routes_of(rr, client) if r["peer"] not in own}
            assert via == {"Node_10_0_0_2"}, (client, via)
        ok, summary = pod_ping(rr, "pod1", "pod2")
        assert ok, summary


# ---- tor: racks behind FRR top-of-rack routers --------------------------------------------

RACK1, RACK2 = ["node1", "node2"], ["node3", "node4"]
RACK1_BLOCKS, RACK2_BLOCKS = ["10.244.1.0/26", "10.244.2.0/26"], ["10.244.3.0/26", "10.244.4.0/26"]


class TestTopOfRack:
    def test_converges_and_pods_ping_across_racks(self, tor: LabRunner) -> None:
        assert learned(tor, "node1")["10.244.3.0/26"] == "10.1.1.1"
        assert learned(tor, "node3")["10.244.1.0/26"] == "10.1.2.1"
        for node in bgpd_nodes(tor):
            assert len(learned(tor, node)) == 3, node
        ok, summary = pod_ping(tor, "pod1", "pod3")
        assert ok, summary

    def test_inter_rack_link_fails_and_recovers(self, tor: LabRunner) -> None:
        tor1 = tor.lab.node("tor1").namespace
        lab_netns.set_link(tor1, "eth2", up=False)
        try:
            for rack, blocks in ((RACK1, RACK2_BLOCKS), (RACK2, RACK1_BLOCKS)):
                for block in blocks:
                    until(f"{block} withdrawn", partial(in_all, tor, rack, block, False))
            # inside a rack nothing changes
            assert "10.244.2.0/26" in learned(tor, "node1")
            assert not pod_ping(tor, "pod1", "pod3", count=1)[0]
        finally:
            lab_netns.set_link(tor1, "eth2", up=True)
        until("converged after the link returns", lambda: converged(tor))
        ok, summary = pod_ping(tor, "pod1", "pod3")
        assert ok, summary


# ---- cross-subnet: VXLAN CrossSubnet through a router ---------------------------------------


class TestCrossSubnet:
    def test_vxlan_across_subnets_direct_within(self, cross_subnet: LabRunner) -> None:
        lab = cross_subnet
        node1 = lab.lab.node("node1").namespace
        across = json.loads(
            lab.exec("node1", ["ip", "-j", "route", "show", "10.244.3.0/26"], check=True).stdout
        )
        assert [(r["gateway"], r["dev"]) for r in across] == [("10.244.3.0", "vxlan.calico")]
        within = json.loads(
            lab.exec("node1", ["ip", "-j", "route", "show", "10.244.2.0/26"], check=True).stdout
        )
        assert [(r["gateway"], r["dev"]) for r in within] == [("192.168.1.12", "eth1")]

        def tx_packets() -> int:
            path = "/sys/class/net/vxlan.calico/statistics/tx_packets"
            return int(lab_netns.exec_in(node1, ["cat", path]).stdout)

        sent = tx_packets()
        ok, summary = pod_ping(lab, "pod1", "pod2")
        assert ok, summary
        assert tx_packets() == sent  # within the subnet: not through the tunnel
        for source, target in (("pod1", "pod3"), ("pod3", "pod2")):
            ok, summary = pod_ping(lab, source, target)
            assert ok, f"{source} -> {target}: {summary}"
        assert tx_packets() > sent


# ---- interop: bgpd, BIRD 1.6 as Calico renders it, GoBGP, FRR -------------------------------

BGPD_BLOCKS = {"10.244.1.0/26": "10.0.0.1", "10.244.2.0/26": "10.0.0.2"}
BIRD_BLOCK = {"10.244.3.0/26": "10.0.0.3"}
ROUTERS = {"10.99.4.0/24": "10.0.0.4", "10.99.5.0/24": "10.0.0.5"}


def lacking(have: dict[str, str], want: dict[str, str]) -> str:
    wrong = {p: have.get(p) for p, via in want.items() if have.get(p) != via}
    return f"wrong or missing: {wrong}" if wrong else ""


def kernel_lacks(runner: LabRunner, node: str, want: dict[str, str]) -> str:
    return lacking(learned(runner, node), want)


class TestInterop:
    def test_bgpd_learns_from_bird_gobgp_and_frr(self, interop: LabRunner) -> None:
        for node, own in (("node1", "10.244.1.0/26"), ("node2", "10.244.2.0/26")):
            want = {**BGPD_BLOCKS, **BIRD_BLOCK, **ROUTERS}
            del want[own]
            until(f"{node} learns", partial(kernel_lacks, interop, node, want))

    def test_bird_learns_from_bgpd_gobgp_and_frr(self, interop: LabRunner) -> None:
        want = {**BGPD_BLOCKS, **ROUTERS}
        until("BIRD 1.6 learns", partial(kernel_lacks, interop, "node3", want))

    def test_gobgp_learns_from_bgpd_and_bird(self, interop: LabRunner) -> None:
        role = interop.role("gobgp")
        assert isinstance(role, GoBgp)

        def rib() -> dict[str, str]:
            code, out = role.gobgp("-j", "global", "rib", "-a", "ipv4")
            table: dict[str, list[dict[str, Any]]] = json.loads(out) if code == 0 else {}
            found = {}
            for prefix, paths in table.items():
                for path in paths:
                    for attr in path.get("attrs", []):
                        if "nexthop" in attr:
                            found[prefix] = str(attr["nexthop"])
            return found

        want = {**BGPD_BLOCKS, **BIRD_BLOCK, "10.99.5.0/24": "10.0.0.5"}
        until("GoBGP learns", lambda: lacking(rib(), want))

    def test_frr_learns_from_bgpd_and_bird(self, interop: LabRunner) -> None:
        def fib() -> dict[str, str]:
            return {r.dst: r.via for r in interop.kernel_routes("frr", protocol="bgp")}

        want = {**BGPD_BLOCKS, **BIRD_BLOCK, "10.99.4.0/24": "10.0.0.4"}
        until("FRR learns", lambda: lacking(fib(), want))
