"""The routing core through the whole daemon, against real routers in namespaces (issue 4
point 6): route reflection between GoBGP and BIRD clients; best-path choice, its switch-over and
ECMP between a GoBGP and a BIRD 2 eBGP peer; graceful restart (RFC 4724) with us as helper of a
crashing BIRD 2 and FRR, and with us as restarting speaker towards FRR and BIRD 2.

Rules:
1. Every case runs ``python3 -m bgpd run`` (``BgpdNode``) in our namespace with a generated
   Calico datastore and observes from outside: our kernel's ``proto bird`` routes, our JSON log,
   ``ip monitor route`` (``RouteMonitor``: was a route ever deleted?) and the peers' own CLIs.
2. All speakers share one bridge in our namespace, so every next hop is directly connected.
3. Test prefixes lie in the datastore's IPPool (Calico exports only pool routes, calico-bgp.md
   §2.12b) and outside our own blocks (``calico_aggr`` rejects more-specifics of them).
4. Kernel routes are read as JSON (``ip -j route``), which also shows multipath next hops.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bgpd_driver import BgpdNode, ExternalPeer, Member, OurNode, RouteMonitor, lan
from netns import Namespace, have_root
from peer_drivers import Bird, Bird2, Frr, GoBgp, PeerDaemon, PeerSpec, wait_for

pytestmark = pytest.mark.netns

PREFIX = "hI-"
SUBNET = "10.213.40.0/24"
OUR_AS = 64512
CLUSTER_ID = "244.0.0.7"
SESSION_TIMEOUT = 30.0  # connect delay + retry on both sides, on a loaded 2-core machine
ROUTE_TIMEOUT = 20.0
# A route that must be swept after the peer's End-of-RIB is swept long before the restart
# time (BIRD's and FRR's default 120 s) would remove it: waits stay below that.
SWEEP_TIMEOUT = 60.0
BIRD2_STATIC = "static1"  # BIRD 2's name for the driver's unnamed static protocol
BEST_PATH_PREFIX = "10.244.70.0/24"
GR_KEPT, GR_DROPPED = "10.244.80.0/24", "10.244.81.0/24"
OUR_BLOCK = "10.244.9.0/26"


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

    def start_bgpd(self, node: OurNode, peers: tuple[ExternalPeer, ...]) -> Bgpd:
        daemon = Bgpd(self.us.ns, node, peers, self.workdir / "bgpd")
        self.cleanups.append(lambda: daemon.stop(signal.SIGKILL))
        daemon.start()
        return daemon

    def monitor(self) -> RouteMonitor:
        """A running ``ip monitor route`` in our namespace, proven subscribed: a probe route
        (proto static, which the daemon never touches) was seen being added."""
        monitor = RouteMonitor(self.us.ns, self.workdir / "routes.monitor")
        self.cleanups.append(monitor.stop)
        monitor.start()
        probe = ("route", "10.213.41.0/24", "dev", "br0", "proto", "static")

        def probe_seen() -> bool:
            if monitor.path.exists() and probe[1] in monitor.path.read_text(errors="replace"):
                return True
            self.us.ns.ip(*probe[:1], "del", *probe[1:], check=False)
            self.us.ns.ip(*probe[:1], "add", *probe[1:])  # again: the first may predate it
            return False

        wait_for(probe_seen, 10, lambda: "ip monitor route saw no probe")
        return monitor


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
def lab1(tmp_path: Path) -> Iterator[Lab]:
    yield from make_lab(1, tmp_path)


@pytest.fixture
def lab2(tmp_path: Path) -> Iterator[Lab]:
    yield from make_lab(2, tmp_path)


def our_node(lab: Lab, **extra: Any) -> OurNode:
    return OurNode(name="node-us", address=f"{lab.us.address}/24", asn=OUR_AS, **extra)


def require(*kinds: type[PeerDaemon]) -> None:
    for kind in kinds:
        if not kind.available():
            pytest.skip(f"{kind.kind} is not installed")


def wait_established(daemon: Bgpd, *peers: PeerDaemon) -> None:
    for peer in peers:
        wait_for(
            lambda p=peer: p.established() and daemon.established_with(p.spec.address),  # type: ignore[misc]
            SESSION_TIMEOUT,
            lambda p=peer: f"{p.describe()}\n{daemon.describe()}",  # type: ignore[misc]
        )


# ---- our kernel (rule 4) ----------------------------------------------------------------------


class Bgpd(BgpdNode):
    """``BgpdNode`` whose kernel view reads ``ip -j route``, so multipath routes (one
    ``nexthop`` line per gateway in the text form) are understood too."""

    def kernel(self) -> dict[str, frozenset[str]]:
        """Our ``proto bird`` routes: prefix -> its gateways (empty for a blackhole)."""
        out = self.ns.ip("-4", "-j", "route", "show", "proto", "bird").stdout
        found: dict[str, frozenset[str]] = {}
        for route in json.loads(out or "[]"):
            dst = route["dst"] if "/" in route["dst"] else f"{route['dst']}/32"
            hops = [route] if "gateway" in route else route.get("nexthops", [])
            found[dst] = frozenset(hop["gateway"] for hop in hops if "gateway" in hop)
        return found

    def routes(self) -> dict[str, str]:
        return {
            prefix: " ".join(f"via {hop}" for hop in sorted(hops)) or "blackhole"
            for prefix, hops in self.kernel().items()
        }


def wait_next_hops(daemon: Bgpd, prefix: str, *hops: str) -> None:
    """Wait until our kernel routes ``prefix`` via exactly ``hops`` (several: multipath; none:
    a blackhole)."""
    wanted = frozenset(hops)
    wait_for(
        lambda: daemon.kernel().get(prefix) == wanted,
        ROUTE_TIMEOUT,
        lambda: f"want {prefix} via {sorted(wanted)}\n{daemon.describe()}",
    )


# ---- reading the peers' own CLIs --------------------------------------------------------------


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


def _bird_attributes(shown: str) -> dict[str, str]:
    """``birdc show route all`` attribute lines (``\\tBGP.x: value``) as a dict."""
    found: dict[str, str] = {}
    for line in shown.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and name.startswith("BGP."):
            found[name] = value.strip()
    return found


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
    wait_next_hops(daemon, gobgp_prefix, lab2.others[0].address)
    wait_next_hops(daemon, bird_prefix, lab2.others[1].address)


# ---- 2. best path between two real eBGP peers -------------------------------------------------


def _gobgp_and_bird2(lab: Lab, gobgp_as: int, bird_as: int) -> tuple[GoBgp, Bird2, Bgpd]:
    """GoBGP (others[0], announcing nothing yet) and BIRD 2 (others[1], announcing
    ``BEST_PATH_PREFIX``) as eBGP peers of our daemon, all sessions Established."""
    gobgp = lab.start_peer(
        GoBgp(lab.others[0].ns, lab.peer_spec(0, gobgp_as, "1.1.1.2", routes=()), lab.workdir)
    )
    bird = lab.start_peer(
        Bird2(
            lab.others[1].ns,
            lab.peer_spec(1, bird_as, "1.1.1.3", routes=(BEST_PATH_PREFIX,)),
            lab.workdir,
        )
    )
    assert isinstance(gobgp, GoBgp) and isinstance(bird, Bird2)
    daemon = lab.start_bgpd(
        our_node(lab),
        (
            ExternalPeer(lab.others[0].address, gobgp_as),
            ExternalPeer(lab.others[1].address, bird_as),
        ),
    )
    wait_established(daemon, gobgp, bird)
    return gobgp, bird, daemon


def gobgp_announce(peer: GoBgp, prefix: str, *, as_path: str = "", origin: str = "igp") -> None:
    """Announce ``prefix`` from GoBGP with its own address as next hop; ``as_path`` is what it
    holds locally (GoBGP prepends its own AS towards eBGP, RFC 4271 §5.1.2)."""
    extra = ("aspath", as_path) if as_path else ()
    result = peer.cli(
        "global",
        "rib",
        "add",
        prefix,
        "-a",
        "ipv4",
        "origin",
        origin,
        *extra,
        "nexthop",
        peer.spec.address,
    )
    assert result.returncode == 0, result.stderr


def test_best_path_prefers_the_shorter_as_path_and_switches_over(lab2: Lab) -> None:
    """RFC 4271 §9.1.2.2 (a): BIRD 2's one-AS path beats GoBGP's prepended one; the kernel
    follows the best path when BIRD 2 withdraws the route, when its session goes down, and back
    each time it returns."""
    require(GoBgp, Bird2)
    prefix = BEST_PATH_PREFIX
    gobgp_hop, bird_hop = lab2.others[0].address, lab2.others[1].address
    gobgp, bird, daemon = _gobgp_and_bird2(lab2, 65001, 65002)
    wait_next_hops(daemon, prefix, bird_hop)  # BIRD 2's path: AS_PATH 65002
    bird.cli("disable", BIRD2_STATIC)  # a withdrawal; the session stays up
    wait_for(lambda: prefix not in daemon.kernel(), ROUTE_TIMEOUT, daemon.describe)
    gobgp_announce(gobgp, prefix, as_path="65001 65001")  # AS_PATH 65001 65001 65001 to us
    wait_next_hops(daemon, prefix, gobgp_hop)  # the only path
    bird.cli("enable", BIRD2_STATIC)
    wait_next_hops(daemon, prefix, bird_hop)  # the shorter path wins, arriving later

    # BIRD 2 withdraws and announces again.
    bird.cli("disable", BIRD2_STATIC)
    wait_next_hops(daemon, prefix, gobgp_hop)
    bird.cli("enable", BIRD2_STATIC)
    wait_next_hops(daemon, prefix, bird_hop)

    # The session going down (BIRD 2 sends a Cease) and coming back.
    bird.disable()
    wait_next_hops(daemon, prefix, gobgp_hop)
    assert daemon.session_down_logged(bird.spec.address)
    bird.enable()
    wait_established(daemon, bird)
    wait_next_hops(daemon, prefix, bird_hop)


def test_equal_paths_from_one_neighbour_as_give_a_multipath_kernel_route(lab2: Lab) -> None:
    """Two eBGP peers of one AS with paths equal down to the IGP-cost step (RFC 4271 §9.1.2.2
    (a)-(d) tie): the kernel route is multipath over both; losing one peer leaves the other,
    and its return restores both."""
    require(GoBgp, Bird2)
    prefix = BEST_PATH_PREFIX
    gobgp_hop, bird_hop = lab2.others[0].address, lab2.others[1].address
    gobgp, bird, daemon = _gobgp_and_bird2(lab2, 65001, 65001)
    wait_next_hops(daemon, prefix, bird_hop)
    gobgp_announce(gobgp, prefix, origin=_bird_origin(bird, prefix))  # AS_PATH 65001 to us
    wait_next_hops(daemon, prefix, gobgp_hop, bird_hop)

    bird.disable()
    wait_next_hops(daemon, prefix, gobgp_hop)
    bird.enable()
    wait_established(daemon, bird)
    wait_next_hops(daemon, prefix, gobgp_hop, bird_hop)


def _bird_origin(bird: Bird, prefix: str) -> str:
    """The ORIGIN BIRD gives its own route, as GoBGP's CLI names it."""
    origin = _bird_attributes(bird_route_all(bird, prefix)).get("BGP.origin", "IGP")
    return {"IGP": "igp", "EGP": "egp"}.get(origin, "incomplete")


# ---- 3. graceful restart (RFC 4724) against BIRD 2 and FRR -----------------------------------

GR_PEERS: dict[str, type[PeerDaemon]] = {"bird2": Bird2, "frr": Frr}


def _gr_peer(
    kind: type[PeerDaemon], lab: Lab, workdir: Path, routes: tuple[str, ...]
) -> PeerDaemon:
    spec = lab.peer_spec(0, 65010, "1.1.1.2", routes=routes, graceful_restart=True)
    return kind(lab.others[0].ns, spec, workdir)


@pytest.mark.parametrize("kind", list(GR_PEERS))
def test_graceful_restart_helper_keeps_a_crashed_peers_routes(lab1: Lab, kind: str) -> None:
    """RFC 4724 §4.2, us as helper: the peer is killed (no NOTIFICATION) and started again.
    Our kernel keeps its routes the whole time; after its End-of-RIB only the route it no
    longer sends is removed (well before its 120 s restart time would have)."""
    peer_kind = GR_PEERS[kind]
    require(peer_kind)
    hop = lab1.others[0].address
    peer = lab1.start_peer(
        _gr_peer(peer_kind, lab1, lab1.workdir / "before", (GR_KEPT, GR_DROPPED))
    )
    daemon = lab1.start_bgpd(our_node(lab1), (ExternalPeer(hop, 65010),))
    wait_established(daemon, peer)
    wait_next_hops(daemon, GR_KEPT, hop)
    wait_next_hops(daemon, GR_DROPPED, hop)
    monitor = lab1.monitor()

    peer.stop(signal.SIGKILL)
    wait_for(lambda: daemon.session_down_logged(hop), SESSION_TIMEOUT, daemon.describe)
    assert daemon.kernel().get(GR_KEPT) == frozenset({hop})
    assert daemon.kernel().get(GR_DROPPED) == frozenset({hop})

    restarted = _gr_peer(peer_kind, lab1, lab1.workdir / "after", (GR_KEPT,))
    lab1.start_peer(restarted)
    wait_established(daemon, restarted)
    wait_for(
        lambda: GR_DROPPED not in daemon.kernel(),
        SWEEP_TIMEOUT,
        daemon.describe,
    )
    assert daemon.kernel().get(GR_KEPT) == frozenset({hop})
    assert monitor.deletions(GR_KEPT) == []
    assert len(monitor.deletions(GR_DROPPED)) == 1


def _stale_at_peer(peer: PeerDaemon, prefix: str) -> bool | None:
    """Whether ``peer`` holds our ``prefix`` as stale (None: it holds no such route from us).
    FRR flags the path; BIRD 2 keeps the route while its protocol shows the neighbour's
    graceful restart as active (its routes are marked stale for the duration)."""
    if isinstance(peer, Frr):
        try:
            found = json.loads(peer.vtysh(f"show bgp ipv4 unicast {prefix} json") or "{}")
        except json.JSONDecodeError:
            return None
        paths = [
            p
            for p in found.get("paths", [])
            if p.get("peer", {}).get("peerId") == peer.spec.neighbor
        ]
        return any(p.get("stale", False) for p in paths) if paths else None
    assert isinstance(peer, Bird)
    if f"[{peer.protocol} " not in bird_route_all(peer, prefix):
        return None
    return "Neighbor graceful restart active" in peer.cli("show", "protocols", "all", peer.protocol)


@pytest.mark.parametrize("kind", list(GR_PEERS))
def test_restarting_speaker_keeps_routes_on_both_sides(lab1: Lab, kind: str) -> None:
    """RFC 4724 §4.1, us restarting: SIGTERM stops the daemon without a NOTIFICATION; the peer
    keeps our route as stale meanwhile and fresh again after our End-of-RIB, and our kernel
    deletes neither our block's blackhole nor the peer's route across the restart."""
    peer_kind = GR_PEERS[kind]
    require(peer_kind)
    hop = lab1.others[0].address
    peer = lab1.start_peer(_gr_peer(peer_kind, lab1, lab1.workdir / "peer", (GR_KEPT,)))
    daemon = lab1.start_bgpd(our_node(lab1, blocks=(OUR_BLOCK,)), (ExternalPeer(hop, 65010),))
    wait_established(daemon, peer)
    wait_next_hops(daemon, GR_KEPT, hop)
    wait_next_hops(daemon, OUR_BLOCK)  # our block's blackhole
    wait_for(lambda: _stale_at_peer(peer, OUR_BLOCK) is False, ROUTE_TIMEOUT, peer.describe)
    monitor = lab1.monitor()

    daemon.stop(signal.SIGTERM)
    assert not daemon.running
    wait_for(lambda: _stale_at_peer(peer, OUR_BLOCK) is True, SESSION_TIMEOUT, peer.describe)
    assert not peer.established()
    assert daemon.kernel().get(GR_KEPT) == frozenset({hop})

    daemon.start()
    wait_established(daemon, peer)
    wait_for(
        lambda: daemon.logged("routing converged after restart"), SESSION_TIMEOUT, daemon.describe
    )
    wait_for(lambda: _stale_at_peer(peer, OUR_BLOCK) is False, ROUTE_TIMEOUT, peer.describe)
    assert daemon.kernel().get(GR_KEPT) == frozenset({hop})
    assert daemon.kernel().get(OUR_BLOCK) == frozenset()
    assert monitor.deletions(GR_KEPT) == []
    assert monitor.deletions(OUR_BLOCK) == []
