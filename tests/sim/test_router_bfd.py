"""The router's BFD rule (bgpd/router.py rule 8, bgpd/bfd/client.py) with in-memory inputs: a
BFD Down ends the BGP session and its routes leave the kernel at once, the session is held while
BFD is not Up, a flapping BFD session is dampened, and a plan change keeps the gates."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from test_router import (
    NODE2,
    _negotiated,
    _node2_block_update,
    _of,
    _planner,
    snapshot,
)

from bgpd.bfd.client import BfdReport, BfdSpec
from bgpd.bfd.fsm import Timers
from bgpd.bfd.packet import SessionState
from bgpd.router import BfdWanted, DesiredSessions, Output, Router, RoutingPlan
from bgpd.session.events import Down, DownReason, Established, UpdateReceived
from peers.model import Snapshot

UP1 = BfdReport(SessionState.UP, ups=1)
DOWN1 = BfdReport(SessionState.DOWN, ups=1, downs=1)
__all__ = ["snapshot"]  # the shared fixture
SPEC = BfdSpec(Timers(100_000, 100_000, 3), ipaddress.IPv4Address("10.0.0.1"))


def _plan(snapshot: Snapshot, spec: BfdSpec | None = SPEC) -> RoutingPlan:
    plan = _planner().plan(snapshot)
    sessions = {
        name: replace(s, bfd=spec) if s.config.key == NODE2 else s
        for name, s in plan.sessions.items()
    }
    return replace(plan, sessions=sessions)


def _desired(outputs: list[Output]) -> DesiredSessions:
    found = _of(DesiredSessions, outputs)
    assert found, outputs
    last = found[-1]
    assert isinstance(last, DesiredSessions)
    return last


def _learned(router: Router, snapshot: Snapshot) -> None:
    router.apply_plan(_plan(snapshot), 0.0)
    router.drain()
    router.bfd_report(NODE2.address, UP1, 0.5)
    router.drain()
    router.session_event(NODE2, Established(_negotiated()), 1.0)
    router.session_event(NODE2, UpdateReceived(_node2_block_update()), 2.0)
    router.drain()
    router.kernel_batch(1000)


def test_a_session_that_asks_for_bfd_is_held_until_bfd_is_up(snapshot: Snapshot) -> None:
    router = Router()
    router.apply_plan(_plan(snapshot), 0.0)
    outputs = router.drain()
    assert NODE2 not in _desired(outputs).configs
    (wanted,) = _of(BfdWanted, outputs)
    assert isinstance(wanted, BfdWanted) and wanted.peers == {NODE2.address: SPEC}
    router.bfd_report(NODE2.address, UP1, 1.0)
    assert NODE2 in _desired(router.drain()).configs


def test_without_hold_the_session_runs_while_bfd_is_down(snapshot: Snapshot) -> None:
    router = Router(bfd_hold=False)
    router.apply_plan(_plan(snapshot), 0.0)
    assert NODE2 in _desired(router.drain()).configs


def test_bfd_down_ends_the_session_and_its_routes_leave_the_kernel_at_once(
    snapshot: Snapshot,
) -> None:
    router = Router()
    _learned(router, snapshot)
    router.bfd_report(NODE2.address, DOWN1, 3.0)
    desired = _desired(router.drain())
    assert NODE2 not in desired.configs and desired.bfd_down == {NODE2}
    batch = router.kernel_batch(1000)
    assert len(batch.removals) == 1 and not batch.upserts  # no graceful-restart retention
    # a late UPDATE of the ended session changes nothing; its Down is harmless
    router.session_event(NODE2, UpdateReceived(_node2_block_update()), 3.1)
    router.session_event(NODE2, Down(DownReason.ADMINISTRATIVE_STOP, was_established=True), 3.2)
    router.drain()
    assert not router.kernel_batch(1000).upserts


def test_without_hold_bfd_down_resets_the_session(snapshot: Snapshot) -> None:
    router = Router(bfd_hold=False)
    _learned(router, snapshot)
    router.bfd_report(NODE2.address, DOWN1, 3.0)
    desired = _desired(router.drain())
    assert NODE2 in desired.configs and desired.bfd_down == {NODE2}
    assert len(router.kernel_batch(1000).removals) == 1


def test_a_down_and_up_between_two_reports_is_still_a_down(snapshot: Snapshot) -> None:
    router = Router()
    _learned(router, snapshot)
    router.bfd_report(NODE2.address, BfdReport(SessionState.UP, ups=2, downs=1), 3.0)
    assert _desired(router.drain()).bfd_down == {NODE2}
    assert len(router.kernel_batch(1000).removals) == 1


def test_the_peers_admin_down_is_not_a_failure(snapshot: Snapshot) -> None:
    router = Router()
    _learned(router, snapshot)
    admin = BfdReport(SessionState.DOWN, ups=1, downs=1, remote_admin_down=True)
    router.bfd_report(NODE2.address, admin, 3.0)
    assert not _of(DesiredSessions, router.drain())
    assert not router.kernel_batch(1000).removals


def test_a_flapping_bfd_session_is_dampened_then_released(snapshot: Snapshot) -> None:
    router = Router()
    router.apply_plan(_plan(snapshot), 0.0)
    router.drain()
    now = 1.0
    for flap in range(1, 4):  # each flap ends an Established session (bgpd.bfd.client rule 6)
        router.bfd_report(NODE2.address, BfdReport(SessionState.UP, flap, flap - 1), now)
        router.session_event(NODE2, Established(_negotiated()), now + 0.5)
        router.bfd_report(NODE2.address, BfdReport(SessionState.DOWN, flap, flap), now + 1)
        now += 2
    router.drain()
    router.bfd_report(NODE2.address, BfdReport(SessionState.UP, 4, 3), now)
    outputs = router.drain()
    assert not _of(DesiredSessions, outputs) or NODE2 not in _desired(outputs).configs
    deadline = router.next_deadline()
    assert deadline is not None and now < deadline <= now + 120
    router.timer(deadline)
    assert NODE2 in _desired(router.drain()).configs


def test_downs_before_bgp_came_up_are_not_flaps(snapshot: Snapshot) -> None:
    router = Router()
    router.apply_plan(_plan(snapshot), 0.0)
    router.drain()
    for flap in range(1, 6):
        router.bfd_report(NODE2.address, BfdReport(SessionState.UP, flap, flap - 1), flap)
        router.bfd_report(NODE2.address, BfdReport(SessionState.DOWN, flap, flap), flap + 0.01)
    router.bfd_report(NODE2.address, BfdReport(SessionState.UP, 6, 5), 7.0)
    assert NODE2 in _desired(router.drain()).configs


def test_a_plan_change_keeps_the_gate_and_removing_bfd_releases_the_session(
    snapshot: Snapshot,
) -> None:
    router = Router()
    _learned(router, snapshot)
    router.apply_plan(_plan(snapshot), 5.0)
    outputs = router.drain()
    assert NODE2 in _desired(outputs).configs  # still Up: nothing reset
    router.bfd_report(NODE2.address, DOWN1, 6.0)
    router.drain()
    router.apply_plan(_plan(snapshot, spec=None), 7.0)
    outputs = router.drain()
    assert NODE2 in _desired(outputs).configs
    (wanted,) = _of(BfdWanted, outputs)
    assert isinstance(wanted, BfdWanted) and wanted.peers == {}


def test_new_bfd_timers_reset_nothing(snapshot: Snapshot) -> None:
    router = Router()
    _learned(router, snapshot)
    faster = replace(SPEC, timers=Timers(50_000, 50_000, 3))
    router.apply_plan(_plan(snapshot, spec=faster), 5.0)
    outputs = router.drain()
    desired = _desired(outputs)
    assert NODE2 in desired.configs and not desired.bfd_down
    (wanted,) = _of(BfdWanted, outputs)
    assert isinstance(wanted, BfdWanted) and wanted.peers == {NODE2.address: faster}
    assert not router.kernel_batch(1000).removals
