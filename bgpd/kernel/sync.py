"""Kernel synchronisation: the kernel as one more client of the routing table (BIRD's
``sysdep/unix/krt.c``), on asyncio. The router decides what the kernel should hold
(``bgpd.kernel.desired``); this task writes it, and repairs drift.

Rules:
1. Rounds are pulled. Idle, the task asks to be told of work (``request(False)``, answered by
   ``wake``), waits ``BATCH_DELAY`` so that a burst of changes (a peer's session coming back and
   its UPDATEs) is written as one round of levels, then asks for the batch (``request(True)``,
   answered with the router's next ``KernelBatch`` through ``deliver``), writes it with
   ``KernelProgrammer.update``; while a backlog remains it asks for the next batch at once.
2. Levels, not edges: every ``RECONCILE_INTERVAL`` seconds our routes are dumped and drift is
   repaired (``KernelProgrammer.reconcile``) — but not while a table streams in (a batch with a
   backlog behind it, or a round of ``TABLE_ROUND`` routes within ``TABLE_QUIET`` seconds), unless
   that has gone on for four intervals.
3. The kernel drops routes through an interface that goes down and never restores them: an
   interface coming up or gaining an address (``LinkWatch``) brings a reconcile
   ``LINK_SETTLE_DELAY`` later; such reconciles take at most a fifth of the time (pod churn).
4. A batch carrying ``sweep_stale`` (the RIB converged after our restart, RFC 4724 §4.1) deletes
   the routes a previous run installed that nobody asked for since.
5. Kernel errors are counted and logged per route; they never stop the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from bgpd.kernel.desired import KernelBatch
from bgpd.kernel.linkwatch import LinkWatch
from bgpd.kernel.netlink import ApplyResult, KernelProgrammer
from bgpd.metrics import Metrics

RECONCILE_INTERVAL = 30.0
LINK_SETTLE_DELAY = 1.0
BATCH_DELAY = 0.005
BATCH_ROUTES = 65536  # kernel changes per round (rule 1)
TABLE_ROUND = 1024  # a round this large means a table is streaming in (not pod churn)
TABLE_QUIET = 5.0

log = structlog.get_logger("bgpd.kernel")


class KernelSync:
    """Rules 1-5. ``run`` is the task; ``deliver`` and ``links_changed`` are its inputs."""

    def __init__(
        self,
        programmer: KernelProgrammer,
        metrics: Metrics,
        request: Callable[[bool], Awaitable[None]],
    ) -> None:
        self.programmer = programmer
        self.errors = 0
        self._metrics = metrics
        self._request = request
        self._batches: asyncio.Queue[KernelBatch] = asyncio.Queue(maxsize=1)
        self._loop = asyncio.get_running_loop()
        self._link_timer: asyncio.TimerHandle | None = None
        self._link_reconcile = False
        self._wake = asyncio.Event()
        self._work = asyncio.Event()

    def deliver(self, batch: KernelBatch) -> None:
        """The answer to ``request(True)`` (rule 1); one at a time."""
        self._batches.put_nowait(batch)

    def wake(self) -> None:
        """The answer to ``request(False)``: there is work (rule 1)."""
        self._work.set()

    def links_changed(self) -> None:
        """An interface came up or gained an address (rule 3)."""
        if self._link_timer is None:
            self._link_timer = self._loop.call_later(LINK_SETTLE_DELAY, self._links_settled)

    def _links_settled(self) -> None:
        self._link_timer = None
        self._link_reconcile = True
        self._wake.set()

    async def run(self) -> None:
        async with LinkWatch(self.links_changed):
            try:
                await self._rounds()
            finally:
                if self._link_timer is not None:
                    self._link_timer.cancel()

    async def _rounds(self) -> None:
        programmer = self.programmer
        last_reconcile = self._loop.time()
        next_link_reconcile = last_reconcile
        table_until = last_reconcile
        backlog = False
        while True:
            batch = None
            if backlog or await self._work_after_idle(
                RECONCILE_INTERVAL - (self._loop.time() - last_reconcile)
            ):
                await self._request(True)
                batch = await self._batches.get()
            backlog = batch is not None and batch.backlog
            result = ApplyResult()
            if batch is not None:
                if len(batch) >= TABLE_ROUND:
                    table_until = self._loop.time() + TABLE_QUIET
                result = await programmer.update(batch.upserts, batch.removals)
                self._metrics.kernel_route_change("replaced", result.replaced)
                self._metrics.kernel_route_change("deleted", result.deleted)
                if batch.sweep_stale:
                    result = result + await programmer.sweep_stale()
            now = self._loop.time()
            since = now - last_reconcile
            streaming = backlog or now < table_until
            periodic = since >= RECONCILE_INTERVAL and not (
                streaming and since < 4 * RECONCILE_INTERVAL
            )
            linked = self._link_reconcile and now >= next_link_reconcile
            if self._link_reconcile and not linked:
                self._link_reconcile = False
                self.links_changed()  # too soon after the last one: again once settled
            if periodic or linked:
                self._link_reconcile = False
                result = result + await programmer.reconcile()
                last_reconcile = self._loop.time()
                next_link_reconcile = last_reconcile + 4 * (last_reconcile - now)
            self._report(result)

    async def _work_after_idle(self, timeout: float) -> bool:
        """Rule 1's idle wait: True once there is work and ``BATCH_DELAY`` has passed, False
        when a reconcile is due first (rules 2-3)."""
        await self._request(False)
        work = asyncio.ensure_future(self._work.wait())
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait(
                (work, woken), timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            work.cancel()
            woken.cancel()
        self._wake.clear()
        if not self._work.is_set():
            return False
        self._work.clear()
        await asyncio.sleep(BATCH_DELAY)
        return True

    def _report(self, result: ApplyResult) -> None:
        """Rule 5."""
        for error in result.errors:
            self.errors += 1
            self._metrics.netlink_error("route")
            log.warning("kernel route failed", error=str(error))
