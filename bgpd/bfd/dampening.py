"""Hold-down for a flapping BFD session: its Up is not believed until the flapping stops.

RFC 5882 §3.2 asks BFD clients for a hold-down or dampening of session flaps, so that a
flapping link cannot churn the routing protocol. This is the RFC 2439 scheme applied to a
session's Down events, as BGP route-flap dampening applies it to a route's withdrawals.

Rules:
1. Each Down adds ``penalty`` to a figure of merit that decays exponentially with
   ``half_life`` seconds. Pure: ``now`` comes in as a value.
2. When the figure passes ``suppress`` the session is suppressed: a BFD Up is not reported to
   its clients (the BGP session stays down) until the figure decays under ``reuse``, or for at
   most ``max_suppress`` seconds after the last Down.
3. The figure never exceeds the value at which it would take ``max_suppress`` to decay to
   ``reuse`` (RFC 2439 §4.2's ceiling), so a long flap storm cannot hold a session for longer.
4. A first Down never suppresses (``penalty`` < ``suppress``): one failure is a failure, not a
   flap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DampeningSettings:
    penalty: float = 1000.0
    suppress: float = 2500.0  # the third Down within about a half-life suppresses
    reuse: float = 800.0
    half_life: float = 15.0
    max_suppress: float = 120.0

    def __post_init__(self) -> None:
        if not 0 < self.reuse < self.suppress or self.penalty >= self.suppress:
            raise ValueError("dampening needs 0 < reuse < suppress and penalty < suppress")
        if self.half_life <= 0 or self.max_suppress <= 0:
            raise ValueError("dampening times must be positive")
        if self.ceiling <= self.suppress:
            raise ValueError("max_suppress is too short for the figure ever to pass suppress")

    @property
    def ceiling(self) -> float:
        """Rule 3."""
        return self.reuse * 2 ** (self.max_suppress / self.half_life)


class FlapDampening:
    """The figure of merit of one session (rules 1-4)."""

    __slots__ = ("settings", "_figure", "_at", "suppressed", "last_down")

    def __init__(self, settings: DampeningSettings = DampeningSettings()) -> None:
        self.settings = settings
        self._figure = 0.0
        self._at = 0.0
        self.suppressed = False
        self.last_down: float | None = None

    def figure(self, now: float) -> float:
        elapsed = max(0.0, now - self._at)
        return self._figure * math.pow(0.5, elapsed / self.settings.half_life)

    def down(self, now: float) -> None:
        """A Down event at ``now`` (rule 1)."""
        settings = self.settings
        self._figure = min(self.figure(now) + settings.penalty, settings.ceiling)
        self._at = now
        self.last_down = now
        if self._figure > settings.suppress:
            self.suppressed = True

    def usable(self, now: float) -> bool:
        """Whether an Up at ``now`` may be reported (rule 2); ends a suppression that is over."""
        if self.suppressed and (
            self.figure(now) <= self.settings.reuse * (1 + 1e-9)  # reuse_at's time included
            or (self.last_down is not None and now - self.last_down >= self.settings.max_suppress)
        ):
            self.suppressed = False
        return not self.suppressed

    def reuse_at(self, now: float) -> float | None:
        """When a suppressed session becomes usable, for the caller's timer; None if it is."""
        if not self.suppressed:
            return None
        figure = self.figure(now)
        settings = self.settings
        decay = settings.half_life * math.log2(figure / settings.reuse) if figure > 0 else 0.0
        limit = (self.last_down or now) + settings.max_suppress
        return min(now + max(0.0, decay), limit)
