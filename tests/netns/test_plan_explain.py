"""``bgpd explain`` and ``bgpd plan --change`` against a real daemon and a real peer (issue 21).

One bgpd node (AS 64512, block 10.244.1.0/26) peers eBGP with GoBGP (AS 65001), which sends two
routes outside the pool and one inside it. ``explain`` must name the route's source, the
decision, the advertisement to GoBGP and the kernel route the kernel really holds. Then for
each change (a BGPFilter added to the BGPPeer, the BGPPeer removed, the IPPool's mode changed)
``bgpd plan --change`` predicts the difference while the daemon runs (learned routes from its
control socket); the change is applied to the datastore file, the daemon reloads, and what the
daemon really does (GoBGP's Adj-RIB-In, the kernel's ``proto bird`` routes, the session) must be
what was predicted. The datastore goes back to the start between changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from bgpd_driver import BgpdNode, ExternalPeer, OurNode, calico_datastore, calico_resource
from netns import Pair, have_root, make_pair
from peer_drivers import GoBgp, PeerSpec, wait_for

pytestmark = pytest.mark.netns

PREFIX = "hX-"
SUBNET = "10.213.121.0/30"
OUR_AS, GOBGP_AS = 64512, 65001
BLOCK = "10.244.1.0/26"
GOBGP_ROUTES = ("10.50.1.0/24", "10.50.2.0/24", "10.244.9.0/26")
TIMEOUT = 40.0
PEER_NAME = "peer-0"  # the BGPPeer calico_datastore writes


@dataclass
class Lab:
    pair: Pair
    node: BgpdNode
    gobgp: GoBgp
    baseline: str

    @property
    def session(self) -> str:
        return "Node_" + str(self.pair.peer_address).replace(".", "_")

    def describe(self) -> str:
        return f"{self.node.describe()}\n{self.gobgp.describe()}"

    def bgpd(self, *args: str) -> Any:
        done = self.node.bgpd(*args, "--json", check=True)
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not have_root():
        pytest.skip("needs root and iproute2")
    if not GoBgp.available():
        pytest.skip("GoBGP is not installed")
    workdir = tmp_path_factory.mktemp("plan-explain")
    pair = make_pair(PREFIX, SUBNET)
    node = gobgp = None
    try:
        us, peer = str(pair.our_address), str(pair.peer_address)
        ours = OurNode("node-a", f"{us}/30", OUR_AS, blocks=(BLOCK,))
        peers = (ExternalPeer(peer, GOBGP_AS),)
        baseline = calico_datastore(ours, peers)
        node = BgpdNode(pair.us, ours, peers, workdir / "bgpd", datastore_text=baseline)
        spec = PeerSpec(GOBGP_AS, OUR_AS, peer, peer, us, routes=GOBGP_ROUTES)
        gobgp = GoBgp(pair.peer, spec, workdir)
        gobgp.start()
        node.start()
        current = Lab(pair, node, gobgp, baseline)
        wait_for(lambda: _at_baseline(current), TIMEOUT, current.describe)
        yield current
    finally:
        if node is not None:
            node.stop()
        if gobgp is not None:
            gobgp.stop()
        pair.delete()


def _at_baseline(lab: Lab) -> bool:
    routes = lab.node.routes()
    return (
        lab.gobgp.established()
        and BLOCK in lab.gobgp.received()
        and all(prefix in routes for prefix in GOBGP_ROUTES)
    )


def test_explain_matches_the_kernel_and_the_peer(lab: Lab) -> None:
    learned = lab.bgpd("explain", "10.50.1.0/24")
    (best,) = learned["candidates"]
    assert best["source"] == lab.session and best["kind"] == "ebgp" and best["best"]
    assert best["attributes"]["as_path"][0]["asns"] == [GOBGP_AS]
    (received,) = learned["received"]
    assert received["peer"] == lab.session and received["in_loc_rib"]
    kernel = learned["kernel"]
    assert kernel["nexthops"][0]["gateway"] == str(lab.pair.peer_address)
    assert f"via {lab.pair.peer_address}" in lab.node.routes()["10.50.1.0/24"]
    (back,) = learned["advertised"]
    assert back["refused"].startswith("sender:") and not back["advertised"]

    own = lab.bgpd("explain", BLOCK)
    assert own["origin"].startswith(f"IPAM block {BLOCK}")
    (to_gobgp,) = own["advertised"]
    assert to_gobgp["advertised"] and "own block" in to_gobgp["export"]["decided_by"]
    assert to_gobgp["sent"]["as_path"][0]["asns"] == [OUR_AS]
    assert BLOCK in lab.gobgp.received()
    assert own["kernel"]["kind"] == "blackhole" and "blackhole" in lab.node.routes()[BLOCK]

    text = lab.node.bgpd("explain", "192.0.2.0/24", check=True).stdout
    assert "none: no route in the Loc-RIB" in text


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _applied(baseline: str, change: list[dict[str, Any]]) -> str:
    """The baseline datastore with the change applied, as the daemon will read it."""
    documents = _documents(baseline)
    for doc in change:
        key = (doc["kind"], doc["metadata"]["name"])
        documents = [d for d in documents if (d["kind"], d["metadata"]["name"]) != key]
        annotations = doc["metadata"].get("annotations") or {}
        if annotations.get("bgpd.projectcalico.org/change") != "delete":
            documents.append(doc)
    return yaml.safe_dump_all(documents, sort_keys=False)


def _bgp_peer(lab: Lab, **extra: Any) -> dict[str, Any]:
    (peer,) = [d for d in _documents(lab.baseline) if d["kind"] == "BGPPeer"]
    peer["spec"].update(extra)
    return peer


def _pool(lab: Lab, **extra: Any) -> dict[str, Any]:
    (pool,) = [d for d in _documents(lab.baseline) if d["kind"] == "IPPool"]
    pool["spec"].update(extra)
    return pool


CHANGES = {
    "bgpfilter-added": lambda lab: [
        calico_resource(
            "BGPFilter",
            "no-block-no-10-50-1",
            {
                "exportV4": [{"action": "Reject", "matchOperator": "Equal", "cidr": BLOCK}],
                "importV4": [
                    {"action": "Reject", "matchOperator": "Equal", "cidr": "10.50.1.0/24"}
                ],
            },
        ),
        _bgp_peer(lab, filters=["no-block-no-10-50-1"]),
    ],
    "bgppeer-removed": lambda lab: [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {
                "name": PEER_NAME,
                "annotations": {"bgpd.projectcalico.org/change": "delete"},
            },
        }
    ],
    "ippool-mode-changed": lambda lab: [_pool(lab, ipipMode="Always")],
}


def _kernel_prefixes(lines: list[str]) -> set[str]:
    prefixes = set()
    for line in lines:
        words = line.split()
        prefixes.add(words[1] if words[0] == "blackhole" else words[0])
    return prefixes


def _reload(lab: Lab, text: str) -> None:
    lab.node.datastore.write_text(text)
    lab.node.bgpd("reload", check=True)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_plan_change_predicts_what_the_daemon_does(lab: Lab, name: str, tmp_path: Path) -> None:
    wait_for(lambda: _at_baseline(lab), TIMEOUT, lab.describe)
    change = CHANGES[name](lab)
    change_file = tmp_path / "change.yaml"
    change_file.write_text(yaml.safe_dump_all(change, sort_keys=False))
    predicted = lab.bgpd(
        "plan",
        "--node",
        "node-a",
        "--datastore",
        f"file:{lab.node.datastore}",
        "--change",
        str(change_file),
    )
    assert predicted["learned_routes"] == len(GOBGP_ROUTES), predicted
    sent_before = lab.gobgp.received()
    kernel_before = set(lab.node.routes())
    peer_change = predicted["prefixes"].get(lab.session, {"gained": [], "lost": []})
    expect_sent = (sent_before - set(peer_change["lost"])) | set(peer_change["gained"])
    removed = _kernel_prefixes(predicted["kernel"]["removed"])
    added = _kernel_prefixes(predicted["kernel"]["added"])
    expect_kernel = (kernel_before - removed) | added
    session_removed = lab.session in predicted["sessions"]["removed"]
    assert removed or peer_change["lost"] or session_removed, (
        predicted
    )  # each change does something

    _reload(lab, _applied(lab.baseline, change))
    try:

        def settled() -> bool:
            if set(lab.node.routes()) != expect_kernel:
                return False
            if session_removed:
                return not lab.gobgp.established()
            return lab.gobgp.established() and lab.gobgp.received() == expect_sent

        wait_for(
            settled,
            TIMEOUT,
            lambda: (
                f"predicted {json.dumps(predicted)}\nkernel wanted {sorted(expect_kernel)}"
                f"\nsent wanted {sorted(expect_sent)}\n{lab.describe()}"
            ),
        )
    finally:
        _reload(lab, lab.baseline)
    wait_for(lambda: _at_baseline(lab), TIMEOUT, lab.describe)
