"""The router's half of kernel synchronisation (bgpd/kernel/desired.py rules 1-3)."""

from __future__ import annotations

import ipaddress

from bgpd.kernel.desired import DesiredKernel
from bgpd.kernel.plan import KernelRoute, NextHop
from bgpd.wire.types import IPV4_UNICAST, prefix_from_str

HOP = NextHop(ipaddress.IPv4Address("10.0.0.2"))


def _route(prefix: str, metric: int = 1024) -> KernelRoute:
    return KernelRoute(ipaddress.ip_network(prefix), nexthops=(HOP,), metric=metric)


def _key(prefix: str) -> bytes:
    return prefix_from_str(prefix)


def test_changes_coalesce_into_the_latest_route_of_each_prefix() -> None:
    kernel = DesiredKernel()
    kernel.set(IPV4_UNICAST, _key("10.1.0.0/24"), _route("10.1.0.0/24", 100))
    kernel.set(IPV4_UNICAST, _key("10.1.0.0/24"), _route("10.1.0.0/24", 1024))
    batch = kernel.take(10)
    assert batch.upserts == (_route("10.1.0.0/24", 1024),) and batch.removals == ()
    assert not kernel.pending and len(kernel) == 1


def test_a_new_identity_deletes_the_old_one_and_none_deletes_the_route() -> None:
    kernel = DesiredKernel()
    kernel.set(IPV4_UNICAST, _key("10.1.0.0/24"), _route("10.1.0.0/24", 100))
    kernel.take(10)
    kernel.set(IPV4_UNICAST, _key("10.1.0.0/24"), _route("10.1.0.0/24", 512))
    batch = kernel.take(10)
    assert batch.removals == (_route("10.1.0.0/24", 100).identity,)
    kernel.set(IPV4_UNICAST, _key("10.1.0.0/24"), None)
    assert kernel.take(10).removals == (_route("10.1.0.0/24", 512).identity,)
    assert len(kernel) == 0


def test_batches_hold_at_most_the_limit_oldest_first_and_say_a_backlog_follows() -> None:
    kernel = DesiredKernel()
    prefixes = [f"10.1.{i}.0/24" for i in range(5)]
    for prefix in prefixes:
        kernel.set(IPV4_UNICAST, _key(prefix), _route(prefix))
    first = kernel.take(3)
    assert [str(r.dst) for r in first.upserts] == prefixes[:3] and first.backlog
    second = kernel.take(3)
    assert [str(r.dst) for r in second.upserts] == prefixes[3:] and not second.backlog


def test_the_sweep_after_a_restart_rides_on_the_batch_that_empties_the_backlog() -> None:
    kernel = DesiredKernel()
    for i in range(4):
        kernel.set(IPV4_UNICAST, _key(f"10.1.{i}.0/24"), _route(f"10.1.{i}.0/24"))
    kernel.converged()
    assert not kernel.take(2).sweep_stale  # a still-wanted stale route may be in the backlog
    assert kernel.take(2).sweep_stale
    assert not kernel.pending


def test_a_sweep_alone_is_work() -> None:
    kernel = DesiredKernel()
    kernel.converged()
    assert kernel.pending
    batch = kernel.take(10)
    assert batch.sweep_stale and len(batch) == 0 and not kernel.pending
