"""The router with in-memory inputs only: a plan from the embedded datastore, session events as
values, and the outputs the daemon would execute (bgpd/router.py rules 1-6), in microseconds."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from bgpd.calico.node import NodePlanner
from bgpd.config import DaemonConfig, FileSource
from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.file import FileDatastore
from bgpd.kernel.plan import RouteKind, identity_parts
from bgpd.rib.graceful_restart import ESTABLISH_WAIT
from bgpd.router import (
    DesiredSessions,
    KernelWork,
    MessagesWaiting,
    Notice,
    Output,
    Router,
    TunnelsWanted,
)
from bgpd.session.config import PeerKey
from bgpd.session.events import Down, DownReason, Established, UpdateReceived
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.capabilities import GracefulRestart
from bgpd.wire.codec import decode_message
from bgpd.wire.constants import MessageType
from bgpd.wire.framer import Framer
from bgpd.wire.messages import Announcement, Update
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import (
    IPV4_UNICAST,
    PathAttributes,
    prefix_from_str,
    prefix_to_str,
)
from peers.model import Snapshot

NODE2 = PeerKey(ipaddress.IPv4Address("10.0.0.2"))
NODE3 = PeerKey(ipaddress.IPv4Address("10.0.0.3"))
NODE2_BLOCK = "10.244.2.0/26"


def _removed(identity: int) -> str:
    """The destination of a removed route's identity."""
    _table, _version, address, prefixlen, _metric = identity_parts(identity)
    return str(ipaddress.ip_network((address, prefixlen)))


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    snap = FileDatastore(DEFAULT_DATASTORE).reload()
    assert snap is not None
    return snap


def _planner() -> NodePlanner:
    return NodePlanner(DaemonConfig(node="node1", datastore=FileSource(DEFAULT_DATASTORE)))


def _negotiated() -> Negotiated:
    return Negotiated(peer_as=64512, local_as=64512, peer_id=int(NODE2.address))


def _of(kind: type, outputs: list[Output]) -> list[Output]:
    return [o for o in outputs if isinstance(o, kind)]


def _updates(messages: list[bytes]) -> list[Update]:
    found = []
    for msg_type, body in Framer().feed(b"".join(messages)):
        assert msg_type == MessageType.UPDATE
        message = decode_message(msg_type, body, _negotiated(), AttributeCache())
        assert isinstance(message, Update)
        found.append(message)
    return found


def _node2_block_update() -> Update:
    attrs = PathAttributes(as_path=(), next_hop=NODE2.address.packed, local_pref=2147483647 - 1024)
    return Update(announced=(Announcement(IPV4_UNICAST, attrs, [prefix_from_str(NODE2_BLOCK)]),))


def _up(router: Router, snapshot: Snapshot) -> list[Output]:
    router.apply_plan(_planner().plan(snapshot), 0.0)
    router.drain()
    router.session_event(NODE2, Established(_negotiated()), 1.0)
    return router.drain()


def test_a_plan_gives_the_session_set_and_the_tunnel_plan(snapshot: Snapshot) -> None:
    router = Router()
    router.apply_plan(_planner().plan(snapshot), 0.0)
    outputs = router.drain()
    (sessions,) = _of(DesiredSessions, outputs)
    assert isinstance(sessions, DesiredSessions)
    assert set(sessions.configs) == {NODE2, NODE3}
    assert not any(c.graceful_restart_restarting for c in sessions.configs.values())
    assert _of(TunnelsWanted, outputs) and not _of(MessagesWaiting, outputs)
    assert router.status().in_sync and router.status().router_id == "10.0.0.1"


def test_an_established_peer_pulls_our_block_then_end_of_rib(snapshot: Snapshot) -> None:
    router = Router()
    outputs = _up(router, snapshot)
    assert MessagesWaiting(NODE2) in outputs
    updates = _updates(router.take(NODE2))
    announced = [
        prefix_to_str(p, IPV4_UNICAST) for u in updates for a in u.announced for p in a.prefixes
    ]
    assert announced == ["10.244.1.0/26"]
    assert updates[-1].end_of_rib == IPV4_UNICAST
    assert not router.has_messages(NODE2) and router.take(NODE2) == []


def test_a_learned_block_becomes_a_kernel_route_via_the_peer(snapshot: Snapshot) -> None:
    router = Router()
    _up(router, snapshot)
    router.session_event(NODE2, UpdateReceived(_node2_block_update()), 2.0)
    assert KernelWork() in router.drain()
    batch = router.kernel_batch(1000)
    routes = {str(r.dst): r for r in batch.upserts}
    assert routes[NODE2_BLOCK].nexthops[0].gateway == NODE2.address
    assert routes[NODE2_BLOCK].metric == 1024
    assert routes["10.244.1.0/26"].kind is RouteKind.BLACKHOLE  # our own block
    assert not batch.backlog and not router.kernel.pending


def test_a_peer_that_goes_down_without_graceful_restart_takes_its_routes(
    snapshot: Snapshot,
) -> None:
    router = Router()
    _up(router, snapshot)
    router.session_event(NODE2, UpdateReceived(_node2_block_update()), 2.0)
    router.drain()
    router.kernel_batch(1000)
    down = Down(DownReason.HOLD_TIMER_EXPIRED, was_established=True)
    assert router.session_event(NODE2, down, 3.0) == "Mesh_10_0_0_2"
    router.drain()
    batch = router.kernel_batch(1000)
    assert [_removed(r) for r in batch.removals] == [NODE2_BLOCK]


def test_messages_are_pulled_a_budget_at_a_time_end_of_rib_last(snapshot: Snapshot) -> None:
    plan = _planner().plan(snapshot)
    own = PathAttributes(next_hop=ipaddress.IPv4Address("10.0.0.1").packed, local_pref=100)
    extra = {prefix_from_str(f"10.244.{100 + i // 4}.{(i % 4) * 64}/26"): own for i in range(200)}
    routes = {IPV4_UNICAST: {**plan.local_routes[IPV4_UNICAST], **extra}}
    router = Router()
    router.apply_plan(replace(plan, local_routes=routes), 0.0)
    router.drain()
    router.session_event(NODE2, Established(_negotiated()), 1.0)
    assert MessagesWaiting(NODE2) in router.drain()
    first = _updates(router.take(NODE2, budget=50))
    assert sum(len(a.prefixes) for u in first for a in u.announced) == 50
    assert all(u.end_of_rib is None for u in first) and router.has_messages(NODE2)
    rest = _updates(router.take(NODE2, budget=1000))
    assert sum(len(a.prefixes) for u in rest for a in u.announced) == 151  # + our own block
    assert rest[-1].end_of_rib == IPV4_UNICAST
    assert not router.has_messages(NODE2)


def test_a_peer_deconfigured_while_down_in_graceful_restart_takes_its_stale_routes(
    snapshot: Snapshot,
) -> None:
    """A peer whose session was lost (graceful restart negotiated: its routes kept as stale)
    and which is then removed from the datastore loses its routes at once, not when its restart
    timer runs out: nothing will come back to refresh them (a node killed and deleted)."""
    router = Router()
    router.apply_plan(_planner().plan(snapshot), 0.0)
    router.drain()
    capability = GracefulRestart(restart_time=120, families=((IPV4_UNICAST, 0x80),))
    negotiated = replace(_negotiated(), peer_graceful_restart=capability)
    router.session_event(NODE2, Established(negotiated), 1.0)
    router.session_event(NODE2, UpdateReceived(_node2_block_update()), 2.0)
    router.drain()
    router.kernel_batch(1000)
    lost = Down(DownReason.CONNECTION_LOST, was_established=True)
    router.session_event(NODE2, lost, 3.0)
    router.drain()
    assert not router.kernel_batch(1000).removals  # kept as stale (RFC 4724 §4.2)
    without_node2 = replace(
        snapshot, nodes={n: v for n, v in snapshot.nodes.items() if n != "node2"}
    )
    router.apply_plan(_planner().plan(without_node2), 4.0)
    router.drain()
    batch = router.kernel_batch(1000)
    assert [_removed(r) for r in batch.removals] == [NODE2_BLOCK]


def test_an_unrelated_datastore_change_resets_and_refreshes_nothing(snapshot: Snapshot) -> None:
    router = Router()
    planner = _planner()
    router.apply_plan(planner.plan(snapshot), 0.0)
    (first,) = _of(DesiredSessions, router.drain())
    router.session_event(NODE2, Established(_negotiated()), 1.0)
    router.drain()
    router.take(NODE2)
    node3 = snapshot.nodes["node3"]
    changed = replace(
        snapshot, nodes={**snapshot.nodes, "node3": replace(node3, labels={"a": "b"})}
    )
    router.apply_plan(planner.plan(changed), 2.0)
    outputs = router.drain()
    assert _of(DesiredSessions, outputs) == [first]  # equal configs: the supervisor does nothing
    assert not router.has_messages(NODE2)  # same export policy: nothing re-sent


def test_after_our_restart_selection_waits_for_end_of_rib_then_the_kernel_sweeps(
    snapshot: Snapshot,
) -> None:
    router = Router(restarting=True)
    router.apply_plan(_planner().plan(snapshot), 0.0)
    (sessions,) = _of(DesiredSessions, router.drain())
    assert isinstance(sessions, DesiredSessions)
    assert all(c.graceful_restart_restarting for c in sessions.configs.values())
    for peer in (NODE2, NODE3):
        router.session_event(peer, Established(_negotiated()), 1.0)
        router.session_event(peer, UpdateReceived(Update(end_of_rib=IPV4_UNICAST)), 2.0)
    outputs = router.drain()
    assert any(isinstance(o, Notice) and "converged" in o.event for o in outputs)
    assert router.kernel_batch(100000).sweep_stale and not router.status().restarting


def test_after_our_restart_a_peer_that_never_comes_back_holds_the_kernel_only_briefly(
    snapshot: Snapshot,
) -> None:
    """Issue 20 point 8: NODE3 stays down; NODE2's End-of-RIB reaches the kernel once
    ``ESTABLISH_WAIT`` has passed, not at the 120 s deadline (graceful_restart rule 3)."""
    router = Router(restarting=True)
    router.apply_plan(_planner().plan(snapshot), 0.0)
    router.drain()
    router.session_event(NODE2, Established(_negotiated()), 1.0)
    router.session_event(NODE2, UpdateReceived(_node2_block_update()), 2.0)
    router.session_event(NODE2, UpdateReceived(Update(end_of_rib=IPV4_UNICAST)), 2.0)
    router.timer(2.0)
    router.drain()
    assert router.status().restarting
    assert router.kernel.get(IPV4_UNICAST, prefix_from_str(NODE2_BLOCK)) is None
    assert router.next_deadline() == ESTABLISH_WAIT
    router.timer(ESTABLISH_WAIT)
    outputs = router.drain()
    assert any(isinstance(o, Notice) and "converged" in o.event for o in outputs)
    assert router.kernel.get(IPV4_UNICAST, prefix_from_str(NODE2_BLOCK)) is not None
    assert router.kernel_batch(100000).sweep_stale
    assert not router.status().restarting and router.next_deadline() is None


def test_after_our_restart_an_established_peer_is_still_waited_for_past_the_bound(
    snapshot: Snapshot,
) -> None:
    """A peer that came back but has not sent End-of-RIB keeps the deferral until it does."""
    router = Router(restarting=True)
    router.apply_plan(_planner().plan(snapshot), 0.0)
    router.session_event(NODE2, Established(_negotiated()), 1.0)
    router.drain()
    router.timer(ESTABLISH_WAIT)
    router.drain()
    assert router.status().restarting and router.next_deadline() == 120.0
    router.session_event(NODE2, UpdateReceived(Update(end_of_rib=IPV4_UNICAST)), 20.0)
    router.drain()
    assert not router.status().restarting


def test_after_our_restart_a_peer_falling_before_its_end_of_rib_does_not_end_the_deferral(
    snapshot: Snapshot,
) -> None:
    """Issue 20 point 7: NODE2 falls before its End-of-RIB (a restart loop, a collision); the
    deferral goes on until it is back and sends it, so nothing is swept meanwhile."""
    router = Router(restarting=True)
    router.apply_plan(_planner().plan(snapshot), 0.0)
    for peer in (NODE2, NODE3):
        router.session_event(peer, Established(_negotiated()), 1.0)
    router.session_event(NODE3, UpdateReceived(Update(end_of_rib=IPV4_UNICAST)), 1.5)
    router.session_event(NODE2, Down(DownReason.HOLD_TIMER_EXPIRED, was_established=True), 2.0)
    router.drain()
    assert router.status().restarting
    router.session_event(NODE2, Established(_negotiated()), 3.0)
    router.session_event(NODE2, UpdateReceived(Update(end_of_rib=IPV4_UNICAST)), 3.5)
    router.drain()
    assert not router.status().restarting


def test_a_node_without_a_router_id_plans_nothing(snapshot: Snapshot) -> None:
    nodes = dict(snapshot.nodes)
    nodes["node1"] = replace(nodes["node1"], ipv4_address=None)
    router = Router()
    router.apply_plan(_planner().plan(replace(snapshot, nodes=nodes)), 0.0)
    outputs = router.drain()
    assert not _of(DesiredSessions, outputs)
    assert any(isinstance(o, Notice) and o.level == "error" for o in outputs)


def test_a_route_learned_without_local_pref_gets_birds_default_metric(snapshot: Snapshot) -> None:
    """bgpd.calico.priority rule 2: BIRD attaches LOCAL_PREF 100, so Calico installs the route
    with metric 2147483647 - 100."""
    router = Router()
    _up(router, snapshot)
    attrs = PathAttributes(as_path=(), next_hop=NODE2.address.packed)
    update = Update(announced=(Announcement(IPV4_UNICAST, attrs, [prefix_from_str(NODE2_BLOCK)]),))
    router.session_event(NODE2, UpdateReceived(update), 2.0)
    router.drain()
    routes = {str(r.dst): r for r in router.kernel_batch(1000).upserts}
    assert routes[NODE2_BLOCK].metric == 2147483547
    assert routes["10.244.1.0/26"].metric == 0  # our own blackhole, as BIRD installs it
