"""BGPConfiguration settings that change at run time (issue 17 point 3), on a real bgpd process.

1. ``bindMode``: None listens on every address (``[::]:179``, dual-stack); NodeIP on the node's
   IPv4 and IPv6 addresses only (calico-bgp.md §2.2); a change is followed without a restart and
   leaves an established session up (listener rule 6).
2. ``logSeverityScreen``: ``Debug`` turns on per-message DEBUG lines at once, ``Warning`` turns
   INFO lines off, as BIRD's debug statements follow confd's rendering; ``--log-level`` fixes the
   level against both.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from bgpd_driver import BgpdNode, OurNode, calico_resource
from netns import Namespace, veth
from peer_drivers import Frr, PeerSpec, wait_for

pytestmark = pytest.mark.netns

SUBNET = "10.96.7.0/30"
NODE_V6 = "fd00:96:7::1"
OUR_AS, PEER_AS = 64512, 65010


def datastore(node_v4: str, peer_v4: str, **config: Any) -> str:
    resources = [
        calico_resource(
            "BGPConfiguration",
            "default",
            {"asNumber": OUR_AS, "nodeToNodeMeshEnabled": False, **config},
        ),
        calico_resource(
            "Node",
            "node-a",
            {"bgp": {"ipv4Address": f"{node_v4}/30", "ipv6Address": f"{NODE_V6}/64"}},
        ),
        calico_resource(
            "BGPPeer", "tor", {"node": "node-a", "peerIP": peer_v4, "asNumber": PEER_AS}
        ),
    ]
    return yaml.safe_dump_all(resources, sort_keys=False)


def listening(ns: Namespace) -> set[str]:
    out = ns.run("ss", "-Hltn", "sport", "= :179").stdout
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def rewrite(node: BgpdNode, text: str) -> None:
    """An atomic replace, as an editor or confd would (the file datastore polls its identity)."""
    staged = node.datastore.with_suffix(".new")
    staged.write_text(text)
    staged.rename(node.datastore)


def log_levels_since(node: BgpdNode, event: str, mark: int) -> set[str]:
    return {e.get("level", "") for e in node.events()[mark:] if e.get("event") == event}


@pytest.fixture
def lab(namespaces: tuple[Namespace, Namespace], tmp_path: Path) -> Any:
    ours, theirs = namespaces
    link = veth(ours, theirs, SUBNET)
    ours.ip("-6", "address", "add", f"{NODE_V6}/64", "dev", link.a_if, "nodad")
    us, peer = str(link.a_addr.ip), str(link.b_addr.ip)
    frr = Frr(theirs, PeerSpec(PEER_AS, OUR_AS, peer, peer, us, routes=()), tmp_path / "peer")
    frr.start()
    yield ours, us, peer, frr
    frr.stop()


def test_bind_mode_and_log_severity_follow_the_datastore_at_run_time(
    lab: Any, tmp_path: Path
) -> None:
    ours, us, peer, frr = lab
    node = BgpdNode(
        ours,
        OurNode("node-a", f"{us}/30", OUR_AS),
        (),
        tmp_path / "bgpd",
        datastore_text=datastore(us, peer, logSeverityScreen="Info"),
        log_level=None,
    )
    node.start()
    try:
        wait_for(lambda: node.established_with(peer), 30, node.describe)
        assert listening(ours) == {"*:179"}, listening(ours)

        mark = len(node.events())
        rewrite(node, datastore(us, peer, logSeverityScreen="Debug", bindMode="NodeIP"))
        wanted = {f"{us}:179", f"[{NODE_V6}]:179"}
        wait_for(lambda: listening(ours) == wanted, 20, lambda: str(listening(ours)))
        assert not any(e.get("event") == "session down" for e in node.events()[mark:])
        frr.vtysh("clear bgp *")  # messages flow again: DEBUG lines now
        wait_for(
            lambda: "debug" in log_levels_since(node, "update received", mark), 30, node.describe
        )
        wait_for(lambda: node.established_with(peer), 30, node.describe)

        rewrite(node, datastore(us, peer, logSeverityScreen="Warning"))
        wait_for(lambda: listening(ours) == {"*:179"}, 20, lambda: str(listening(ours)))
        events = node.events()
        mark = max(i for i, e in enumerate(events) if e.get("event") == "log level") + 1
        assert events[mark - 1]["level"] == "info" and events[mark - 1]["source"] == "datastore"
        frr.vtysh("clear bgp *")
        time.sleep(5)  # long enough for a reset's lines; none may appear below WARNING
        levels = {e.get("level") for e in node.events()[mark:]}
        assert levels <= {"warning", "error", "critical"}, levels
        assert node.running
    finally:
        node.stop()


def test_log_level_flag_wins_over_log_severity_screen(lab: Any, tmp_path: Path) -> None:
    ours, us, peer, _ = lab
    node = BgpdNode(
        ours,
        OurNode("node-a", f"{us}/30", OUR_AS),
        (),
        tmp_path / "bgpd",
        datastore_text=datastore(us, peer, logSeverityScreen="Warning"),
        log_level="info",
    )
    node.start()
    try:
        wait_for(lambda: node.established_with(peer), 30, node.describe)
        assert not any(e.get("event") == "log level" for e in node.events())
    finally:
        node.stop()
