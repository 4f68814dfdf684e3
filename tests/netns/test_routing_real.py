"""The routing core through the whole daemon, against real routers in namespaces (issue 4
point 6): route reflection between GoBGP and BIRD clients, best-path choice between two eBGP
peers, and graceful restart in both roles against BIRD 2 and FRR.

Every case runs ``python3 -m bgpd run`` in our namespace with a generated Calico datastore, and
observes from outside: our kernel's ``proto bird`` routes, our JSON log, and the peers' own CLIs.
All speakers share one bridge in our namespace, so every next hop is directly connected. Test
prefixes lie in the datastore's IPPool (Calico exports only pool routes, calico-bgp.md §2.12b)
and outside our own blocks (``calico_aggr`` rejects more-specifics of them).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from bgpd_driver import BgpdNode, ExternalPeer, Member, OurNode, lan
from netns import Namespace, have_root
from peer_drivers import Bird, GoBgp, PeerDaemon, PeerSpec, wait_for

pytestmark = pytest.mark.netns

PREFIX = "hI-"
SUBNET = "10.213.40.0/24"
OUR_AS = 64512
CLUSTER_ID = "244.0.0.7"
SESSION_TIMEOUT = 30.0  # connect delay + retry on both sides, on a loaded 2-core machine
ROUTE_TIMEOUT = 20.0


@dataclass
class Lab:
    """Our namespace (the bridge's hub) and one namespace per real router on the bridge."""

    us: Member
    others: list[Member]
    workdir: Path
    cleanups: list[Callable[[], None]]

    def peer_spec(self, index: int, local_as: int, router_id: str, **extra: Any) -> PeerSpec:
        member = self.others[index]
        return PeerSpec(
            local_as=local_as,
            peer_as=OUR_AS,
            router_id=router_id,
            address=member.address,
            neighbor=self.us.address,
            hold_time=9,
            keepalive=3,
            **extra,
        )

    def start_peer(self, peer: PeerDaemon) -> PeerDaemon:
        self.cleanups.append(peer.stop)
        peer.start()
        return peer

    def start_bgpd(self, node: OurNode, peers: tuple[ExternalPeer, ...]) -> BgpdNode:
        daemon = BgpdNode(self.us.ns, node, peers, self.workdir / "bgpd")
        self.cleanups.append(lambda: daemon.stop(signal.SIGKILL))
        daemon.start()
        return daemon


def make_lab(count: int, tmp_path: Path) -> Iterator[Lab]:
    if not have_root():
        pytest.skip("needs root and iproute2")
    spaces: list[Namespace] = []
    lab: Lab | None = None
    try:
        for _ in range(count + 1):
            spaces.append(Namespace.create(PREFIX))
        members = lan(spaces[0], spaces[1:], SUBNET)
        lab = Lab(members[0], members[1:], tmp_path, [])
        yield lab
    finally:
        for cleanup in reversed(lab.cleanups if lab is not None else []):
            cleanup()
        for ns in spaces:
            ns.delete()


@pytest.fixture
def lab2(tmp_path: Path) -> Iterator[Lab]:
    yield from make_lab(2, tmp_path)


@pytest.fixture
def lab1(tmp_path: Path) -> Iterator[Lab]:
    yield from make_lab(1, tmp_path)


def our_node(lab: Lab, **extra: Any) -> OurNode:
    return OurNode(name="node-us", address=f"{lab.us.address}/24", asn=OUR_AS, **extra)


def require(*kinds: type[PeerDaemon]) -> None:
    for kind in kinds:
        if not kind.available():
            pytest.skip(f"{kind.kind} is not installed")


def wait_established(daemon: BgpdNode, *peers: PeerDaemon) -> None:
    for peer in peers:
        wait_for(
            lambda p=peer: p.established() and daemon.established_with(p.spec.address),  # type: ignore[misc]
            SESSION_TIMEOUT,
            lambda p=peer: f"{p.describe()}\n{daemon.describe()}",  # type: ignore[misc]
        )


# ---- reading the clients' own CLIs ----------------------------------------------------------


def gobgp_rib(peer: GoBgp) -> dict[str, list[dict[str, Any]]]:
    out = peer.cli("global", "rib", "-j").stdout
    try:
        value = json.loads(out or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def gobgp_attribute(path: dict[str, Any], type_code: int) -> Any:
    for attr in path.get("attrs", []):
        if attr.get("type") == type_code:
            return attr
    return None


def bird_route_all(peer: Bird, prefix: str) -> str:
    return peer.cli("show", "route", prefix, "all")


# ---- 1. our route reflector between GoBGP and BIRD clients ------------------------------------


def test_route_reflector_between_gobgp_and_bird_clients(lab2: Lab) -> None:
    """RFC 4456 §8 through the daemon: each iBGP client's route reaches the other with
    ORIGINATOR_ID = the originating client's router id and CLUSTER_LIST = our cluster id."""
    require(GoBgp, Bird)
    gobgp_prefix, bird_prefix = "10.244.50.0/24", "10.244.60.0/24"
    gobgp_id, bird_id = "1.1.1.2", "1.1.1.3"
    gobgp = lab2.start_peer(
        GoBgp(
            lab2.others[0].ns,
            lab2.peer_spec(0, OUR_AS, gobgp_id, routes=(gobgp_prefix,)),
            lab2.workdir,
        )
    )
    bird = lab2.start_peer(
        Bird(
            lab2.others[1].ns,
            lab2.peer_spec(1, OUR_AS, bird_id, routes=(bird_prefix,)),
            lab2.workdir,
        )
    )
    assert isinstance(gobgp, GoBgp) and isinstance(bird, Bird)
    daemon = lab2.start_bgpd(
        our_node(lab2, cluster_id=CLUSTER_ID),
        (
            ExternalPeer(lab2.others[0].address, OUR_AS),
            ExternalPeer(lab2.others[1].address, OUR_AS),
        ),
    )
    wait_established(daemon, gobgp, bird)

    # BIRD's view of GoBGP's route, reflected by us.
    def bird_has_reflected() -> bool:
        return "BGP.originator_id" in bird_route_all(bird, gobgp_prefix)

    wait_for(bird_has_reflected, ROUTE_TIMEOUT, lambda: bird_route_all(bird, gobgp_prefix))
    shown = bird_route_all(bird, gobgp_prefix)
    attributes = _bird_attributes(shown)
    assert attributes["BGP.originator_id"] == gobgp_id, shown
    assert attributes["BGP.cluster_list"] == CLUSTER_ID, shown
    assert attributes["BGP.next_hop"] == lab2.others[0].address, shown  # unchanged over iBGP
    assert attributes["BGP.as_path"] == "", shown  # reflection adds no AS

    # GoBGP's view of BIRD's route.
    def gobgp_path() -> dict[str, Any] | None:
        paths = gobgp_rib(gobgp).get(bird_prefix) or []
        return paths[0] if paths else None

    wait_for(lambda: gobgp_path() is not None, ROUTE_TIMEOUT, gobgp.describe)
    path = gobgp_path()
    assert path is not None
    originator = gobgp_attribute(path, 9)  # ORIGINATOR_ID
    cluster_list = gobgp_attribute(path, 10)  # CLUSTER_LIST
    assert originator is not None and originator.get("value") == bird_id, path
    assert cluster_list is not None and cluster_list.get("value") == [CLUSTER_ID], path
    next_hop = gobgp_attribute(path, 3)
    assert next_hop is not None and next_hop.get("nexthop") == lab2.others[1].address, path

    # And we, the reflector, route both prefixes to their originators.
    wait_for(
        lambda: (
            daemon.next_hop(gobgp_prefix) == lab2.others[0].address
            and daemon.next_hop(bird_prefix) == lab2.others[1].address
        ),
        ROUTE_TIMEOUT,
        daemon.describe,
    )


def _bird_attributes(shown: str) -> dict[str, str]:
    """``birdc show route all`` attribute lines (``\\tBGP.x: value``) as a dict."""
    found: dict[str, str] = {}
    for line in shown.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and name.startswith("BGP."):
            found[name] = value.strip()
    return found


__all__ = ["replace"]
