"""Timer values: jitter (RFC 4271 §10) and idle-hold backoff (§8.1.1 DampPeerOscillations).

Rules:
1. Pure: no clock, no random. Jitter comes in as a callable returning a factor in
   [0.75, 1.0] (RFC 4271 §10); the IO edge passes a random one, tests pass a constant.
2. ``IdleHoldBackoff`` doubles the wait after each failure up to a ceiling and starts afresh once
   a session has been quiet for the forget time (BIRD ``error wait time``/``error forget time``).
"""

from __future__ import annotations

from collections.abc import Callable

Jitter = Callable[[], float]

JITTER_LOW = 0.75  # RFC 4271 §10
JITTER_HIGH = 1.0


def no_jitter() -> float:
    return 1.0


def jittered(seconds: float, jitter: Jitter) -> float:
    """``seconds`` scaled by a factor in [0.75, 1.0] (RFC 4271 §10), clamped to that range."""
    factor = min(max(jitter(), JITTER_LOW), JITTER_HIGH)
    return seconds * factor


def keepalive_interval(hold_time: int, configured: int | None) -> float:
    """A third of the hold time (RFC 4271 §10), or the configured value if it is smaller."""
    if hold_time == 0:
        return 0.0
    third = hold_time / 3
    return third if configured is None else float(min(configured, third))


class IdleHoldBackoff:
    """Exponential backoff between automatic restarts of a flapping session."""

    def __init__(self, minimum: float, maximum: float, forget: float) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.forget = forget
        self._last_failure: float | None = None
        self._last_delay = 0.0

    @property
    def current(self) -> float:
        return self._last_delay

    def next_delay(self, now: float) -> float:
        """Record a failure at ``now``; return how long to stay in Idle."""
        quiet = self._last_failure is None or now - self._last_failure > self.forget
        delay = self.minimum if quiet else min(self._last_delay * 2 or self.minimum, self.maximum)
        self._last_failure = now
        self._last_delay = delay
        return delay

    def reset(self) -> None:
        self._last_failure = None
        self._last_delay = 0.0
