"""BFD's client rules for a BGP session (RFC 5882), pure: what a BFD state change does to BGP.

Rules:
1. ``BfdSpec`` is what a BGP session asks of BFD: the timers, the local address the BFD session
   runs from and whether it is multihop (RFC 5883). It is planned from the datastore
   (``bgpd.calico.bfd``) and carried by the session's plan.
2. The edge reports levels, not edges (``BfdReport``): the session's state and how many times it
   went Up and Down, so a Down followed by an Up before the routing task ran is still a Down.
3. A Down of a session that was Up (more Downs than the gate has seen), other than the peer's
   AdminDown, ends the BGP session at once (RFC 5882 §4.2: the forwarding path is gone; no
   graceful-restart retention, the peer's routes leave the kernel).
4. The peer's AdminDown is not a failure (RFC 5882 §3.2): BGP runs as if BFD were not there.
5. With ``hold`` (the default), BGP does not run while BFD is configured and not Up
   (RFC 5882 §4.1 lets a client wait for BFD before it starts); and an Up is believed only
   when the session is not suppressed by ``FlapDampening`` (RFC 5882 §3.2).
6. A Down is a flap for dampening only when it ended an Established BGP session: that is the
   route churn dampening exists to stop. A Down before BGP came up withdrew nothing (FRR's bfdd
   restarts a session once when its bgpd re-registers it with the local address, a few
   milliseconds after the first Up: that must not count towards suppression).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bgpd.bfd.dampening import DampeningSettings, FlapDampening
from bgpd.bfd.fsm import Timers
from bgpd.bfd.packet import SessionState

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class BfdSpec:
    """Rule 1."""

    timers: Timers
    local: IPAddress
    multihop: bool = False
    interface: str = ""  # the interface towards the peer, for display


@dataclass(frozen=True, slots=True)
class BfdReport:
    """Rule 2: one BFD session's level, as the edge saw it last."""

    state: SessionState
    ups: int = 0
    downs: int = 0
    remote_admin_down: bool = False


class BfdGate:
    """Rules 3-5 for one BGP session."""

    __slots__ = ("hold", "report", "dampening", "_downs_seen")

    def __init__(self, hold: bool = True, dampening: DampeningSettings | None = None) -> None:
        self.hold = hold
        self.report = BfdReport(SessionState.DOWN)
        self.dampening = FlapDampening(dampening or DampeningSettings())
        self._downs_seen = 0

    def take(self, report: BfdReport, now: float, established: bool = True) -> bool:
        """A new level; True when the BGP session must end now (rule 3). ``established``:
        the BGP session is Established (rule 6)."""
        failed = report.downs > self._downs_seen and not report.remote_admin_down
        if failed and established:
            self.dampening.down(now)  # one flap however many Downs the level hides
        self._downs_seen = report.downs
        self.report = report
        return failed

    def allows(self, now: float) -> bool:
        """Whether BGP may run now (rules 4, 5)."""
        if not self.hold or self.report.remote_admin_down:
            return True
        return self.report.state == SessionState.UP and self.dampening.usable(now)

    def next_deadline(self) -> float | None:
        """When a suppressed, Up session becomes usable (rule 5), for the router's timer."""
        last_down = self.dampening.last_down
        if self.report.state != SessionState.UP or last_down is None:
            return None
        return self.dampening.reuse_at(last_down)  # the figure decays from the last Down
