"""Graceful restart (RFC 4724) in both roles, as bookkeeping with deadlines; the speaker moves the
routes.

Rules:
1. Helper (RFC 4724 §4.2): when a peer that sent the capability goes down without a
   NOTIFICATION, its routes of the families listed in that capability are kept, marked stale,
   for at most its Restart Time. If it is not back by then, they are removed.
2. When it is back, stale routes of a family are removed at once if the new OPEN lacks the
   capability, lacks the family, or has the family's F bit clear; otherwise they wait for that
   family's End-of-RIB (then removed), bounded by our ``stale_time`` (the RFC's optional timer,
   FRR's ``stalepath-time``).
3. Restarting speaker (RFC 4724 §4.1): we advertise the R bit and F bits; route selection
   results (kernel routes, UPDATEs) are deferred until every expected peer has come up and sent
   End-of-RIB for each of its families, or the selection deferral deadline passes.
   An expected peer that has not reached Established by ``establish_by`` (``ESTABLISH_WAIT``
   after the restart) is no longer waited for: a peer that was down before we crashed, or was
   de-configured meanwhile, must not hold every live peer's End-of-RIB out of the kernel for the
   whole deadline. A peer Established by then is still waited for, up to the deadline; one
   that falls before its End-of-RIB counts as not back yet (its fall must not end the deferral
   and sweep the routes it is about to send again).
4. Pure: no IO, no clock; every method takes ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from bgpd.wire.capabilities import GracefulRestart
from bgpd.wire.types import Family

RESTART_BIT = 0x8  # RFC 4724 §3 Restart State
FORWARDING_BIT = 0x80  # RFC 4724 §3 Forwarding State, per family
DEFAULT_STALE_TIME = 360.0
ESTABLISH_WAIT = 15.0
"""Rule 3's bound on waiting for an expected peer to come back at all after our restart.

RFC 4724 §4.1 lets the restarting speaker defer selection until End-of-RIB "from all peers"
and asks for an upper bound, but says nothing of a peer that never reconnects; BIRD, reading
``proto/bgp``, holds its graceful-restart lock per protocol until ``graceful restart wait``
(240 s) ends, whoever is missing; FRR separates the two waits: ``bgp update-delay MAX
[ESTABLISH-WAIT]`` stops counting peers that have not established by ESTABLISH-WAIT, and only
then waits up to MAX (``select-defer-time`` under graceful restart) for the established ones'
End-of-RIB. We do as FRR: a live peer is back within seconds (we connect out at once, and an
RFC 4724 §4.2 helper accepts at once), so 15 s covers a connect retry and a collision several
times over, while a dead peer costs an eighth of the 120 s deadline instead of all of it."""


def local_capability(
    families: Iterable[Family], restart_time: int, restarting: bool, forwarding_preserved: bool
) -> GracefulRestart:
    """Our capability (rule 3): R after a restart, F where the kernel kept our routes."""
    flag = FORWARDING_BIT if forwarding_preserved else 0
    return GracefulRestart(
        restart_flags=RESTART_BIT if restarting else 0,
        restart_time=restart_time,
        families=tuple((family, flag) for family in sorted(families)),
    )


@dataclass(slots=True)
class _Retained:
    families: set[Family]
    deadline: float


@dataclass(slots=True)
class GracefulRestartHelper:
    """Rules 1-2 for every peer."""

    stale_time: float = DEFAULT_STALE_TIME
    _retained: dict[str, _Retained] = field(default_factory=dict)

    def is_retaining(self, peer_id: str) -> bool:
        return peer_id in self._retained

    def retained_families(self, peer_id: str) -> frozenset[Family]:
        held = self._retained.get(peer_id)
        return frozenset(held.families) if held else frozenset()

    def peer_down(
        self,
        peer_id: str,
        capability: GracefulRestart | None,
        families: Iterable[Family],
        graceful: bool,
        now: float,
    ) -> frozenset[Family]:
        """Rule 1: the families whose routes to keep as stale; the caller flushes the rest."""
        if not graceful or capability is None or capability.restart_time == 0:
            self._retained.pop(peer_id, None)
            return frozenset()
        listed = {f for f, _ in capability.families}
        keep = {f for f in families if f in listed}
        previous = self._retained.get(peer_id)
        if previous is not None:
            keep |= previous.families  # still waiting from an earlier restart
        if not keep:
            self._retained.pop(peer_id, None)
            return frozenset()
        self._retained[peer_id] = _Retained(keep, now + capability.restart_time)
        return frozenset(keep)

    def peer_up(
        self, peer_id: str, capability: GracefulRestart | None, now: float
    ) -> frozenset[Family]:
        """Rule 2: families whose stale routes must go now; the rest wait for End-of-RIB."""
        held = self._retained.get(peer_id)
        if held is None:
            return frozenset()
        drop = {
            f for f in held.families if capability is None or not capability.forwarding_preserved(f)
        }
        held.families -= drop
        if held.families:
            held.deadline = now + self.stale_time
        else:
            del self._retained[peer_id]
        return frozenset(drop)

    def end_of_rib(self, peer_id: str, family: Family) -> bool:
        """Rule 2: True when ``family``'s stale routes from ``peer_id`` are to be swept now."""
        held = self._retained.get(peer_id)
        if held is None or family not in held.families:
            return False
        held.families.discard(family)
        if not held.families:
            del self._retained[peer_id]
        return True

    def forget(self, peer_id: str) -> None:
        self._retained.pop(peer_id, None)

    def expired(self, now: float) -> list[tuple[str, frozenset[Family]]]:
        """Peers whose restart or stale timer ran out, with the families to sweep."""
        done = [(p, frozenset(r.families)) for p, r in self._retained.items() if r.deadline <= now]
        for peer_id, _ in done:
            del self._retained[peer_id]
        return done

    def next_deadline(self) -> float | None:
        return min((r.deadline for r in self._retained.values()), default=None)


@dataclass(slots=True)
class SelectionDeferral:
    """Rule 3: are we still waiting after our own restart?"""

    deadline: float
    expected: frozenset[str] = frozenset()
    establish_by: float = math.inf
    _waiting: dict[str, set[Family]] = field(default_factory=dict)
    _seen: set[str] = field(default_factory=set)
    _done: bool = False
    _establish_over: bool = False

    def peer_up(self, peer_id: str, families: Iterable[Family]) -> None:
        if not self._done:
            self._waiting[peer_id] = set(families)
            self._seen.add(peer_id)

    def peer_down(self, peer_id: str) -> None:
        """A peer that falls before its End-of-RIB is waited for again as one not yet back, so
        its fall does not end the deferral and sweep routes it is about to send again (RFC 4724
        §4.1: selection waits for its End-of-RIB; ``establish_by`` still bounds the wait)."""
        if self._waiting.pop(peer_id, None):
            self._seen.discard(peer_id)

    def end_of_rib(self, peer_id: str, family: Family) -> None:
        waiting = self._waiting.get(peer_id)
        if waiting is not None:
            waiting.discard(family)

    def done(self, now: float) -> bool:
        """True once converged or past the deadline; stays True."""
        if not self._done:
            self._establish_over = self._establish_over or now >= self.establish_by
            all_up = self._establish_over or self.expected <= self._seen
            self._done = now >= self.deadline or (all_up and not any(self._waiting.values()))
        return self._done

    def next_deadline(self) -> float | None:
        if self._done:
            return None
        if self._establish_over or self.expected <= self._seen:
            return self.deadline
        return min(self.deadline, self.establish_by)
