"""The kernel routes the RIB asks for, and the changes not yet written: the router's half of
kernel synchronisation (``bgpd.kernel.sync`` is the IO half).

Rules:
1. Levels, not edges: ``set`` records the desired route of a prefix (None: none); a prefix
   changed several times before it is written is written once, with its latest route, and a
   change back to what was last handed out is still written (the kernel is the judge).
2. ``take(limit)`` hands out the oldest pending changes, at most ``limit`` of them, as a
   ``KernelBatch``: routes to replace and identities to delete (the old route's identity when
   the prefix's kernel identity changed, e.g. a new metric). No batch holds a whole table, so
   the routing loop never stalls on one.
3. After our own restart, routes a previous run installed stay until the RIB has converged
   (RFC 4724 §4.1, restarting speaker); then the first batch that leaves nothing pending carries
   ``sweep_stale``, so a stale route that is still wanted is never swept while it waits.
4. Pure: no IO, no clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bgpd.kernel.plan import KernelRoute, RouteIdentity
from bgpd.wire.types import Family, Prefix


@dataclass(frozen=True, slots=True)
class KernelBatch:
    """One round of kernel writes (rule 2). ``backlog``: more changes are pending after it."""

    upserts: tuple[KernelRoute, ...] = ()
    removals: tuple[RouteIdentity, ...] = ()
    backlog: bool = False
    sweep_stale: bool = False

    def __len__(self) -> int:
        return len(self.upserts) + len(self.removals)


class DesiredKernel:
    """Desired kernel routes by family and prefix, and the changes pending since the last
    batch (prefix -> the route it replaces)."""

    __slots__ = ("_desired", "_pending", "_sweep_wanted")

    def __init__(self) -> None:
        self._desired: dict[Family, dict[Prefix, KernelRoute]] = {}
        self._pending: dict[Family, dict[Prefix, KernelRoute | None]] = {}
        self._sweep_wanted = False

    def __len__(self) -> int:
        return sum(len(routes) for routes in self._desired.values())

    @property
    def pending(self) -> bool:
        """Whether a batch has work (changes, or a sweep to run)."""
        return bool(self._pending) or self._sweep_wanted

    def get(self, family: Family, prefix: Prefix) -> KernelRoute | None:
        return self._desired.get(family, {}).get(prefix)

    def is_pending(self, family: Family, prefix: Prefix) -> bool:
        """Whether a change of ``prefix`` waits for the next batch."""
        return prefix in self._pending.get(family, {})

    def routes(self) -> Iterator[KernelRoute]:
        """Every desired route, pending or handed out (``KernelProgrammer`` rule 8 reads it)."""
        for routes in self._desired.values():
            yield from routes.values()

    def prefixes(self, family: Family) -> list[Prefix]:
        return list(self._desired.get(family, ()))

    def set(self, family: Family, prefix: Prefix, route: KernelRoute | None) -> None:
        """Rule 1. Once per best-path change of a full table: no container is built per call."""
        desired = self._desired.get(family)
        if desired is None:
            desired = self._desired[family] = {}
        old = desired.get(prefix)
        if route is None:
            if old is None:
                return
            del desired[prefix]
        else:
            desired[prefix] = route
            if old is not None and old == route:
                return
        pending = self._pending.get(family)
        if pending is None:
            pending = self._pending[family] = {}
        if prefix not in pending:
            pending[prefix] = old

    def converged(self) -> None:
        """Rule 3: the RIB has converged after our restart; sweep what it did not ask for."""
        self._sweep_wanted = True

    def take(self, limit: int) -> KernelBatch:
        """Rule 2 (and rule 3's sweep on the batch that empties the backlog)."""
        upserts: list[KernelRoute] = []
        removals: list[RouteIdentity] = []
        taken = 0
        for family, changed in list(self._pending.items()):
            desired = self._desired.get(family, {})
            if len(changed) <= limit - taken:
                items: Iterable[tuple[Prefix, KernelRoute | None]] = changed.items()
                self._pending[family] = {}  # all of it: no deletion per prefix
            else:
                items = list(itertools.islice(changed.items(), limit - taken))
                for prefix, _old in items:
                    del changed[prefix]
            for prefix, old in items:
                new = desired.get(prefix)
                if new is not None:
                    upserts.append(new)
                if old is not None and (new is None or new.identity != old.identity):
                    removals.append(old.identity)
                taken += 1
            if not self._pending[family]:
                del self._pending[family]
            if taken >= limit:
                break
        backlog = bool(self._pending)
        sweep = self._sweep_wanted and not backlog
        if sweep:
            self._sweep_wanted = False
        return KernelBatch(tuple(upserts), tuple(removals), backlog, sweep)
