"""One BFD session in asynchronous mode (RFC 5880 §6), sans-IO.

Rules:
1. Every state change comes from ``TRANSITIONS``, (local state, received State) -> (next state,
   diagnostic), the §6.2 diagram as §6.8.6 words it, or from the detection timer (§6.8.4: Init
   or Up -> Down, "Control Detection Time Expired"). Nothing else changes the state, except the
   administrative ``disable``/``enable`` (§6.8.16).
2. Inputs are received packets (already through ``packet.decode`` and the session table's
   checks), ``timer(now)`` and configuration calls; outputs are returned ``Transmit`` and
   ``StateChanged`` values. ``now`` is seconds from the caller's monotonic clock. No clock, no
   IO; jitter comes in as a callable returning a number in [0, 1).
3. Intervals (§6.8.2, §6.8.3): while the session is not Up, the advertised Desired Min TX is
   ``Timers.idle_min_tx`` (Calico Enterprise's ``idleSendInterval``), at least one second. The
   transmit interval is the larger of our Desired Min TX and the peer's
   Required Min RX; nothing is sent periodically while the peer's Required Min RX is zero
   (§6.8.7). Each interval is jittered down by 0-25 %, or to 75-90 % when Detect Mult is 1
   (§6.8.7). When a received packet shortens the interval (the peer lowered its Required Min
   RX, typically in its Poll after going Up) a transmission scheduled further away than the new
   interval is brought forward: the peer's detection time is already the short one (§6.8.4),
   so keeping the slow schedule would let it expire.
4. A change of our Desired Min TX or Required Min RX starts a Poll Sequence (§6.5, §6.8.3):
   packets carry P until one with F arrives. Until then an increased Desired Min TX is not used
   for our own sending, and a reduced Required Min RX is not used for detection (§6.8.3).
   Going Up changes Desired Min TX from the slow rate to the configured one, so it polls too.
5. A received P is answered at once with F (§6.8.6), outside the periodic schedule. A state
   change is sent at once as well (the peer learns it without waiting an interval).
6. Detection time (§6.8.4): the peer's Detect Mult times the larger of our Required Min RX and
   the peer's last Desired Min TX, from the last valid packet. When it passes, the remote
   discriminator is forgotten (§6.8.1 bfd.RemoteDiscr) and an Init or Up session goes Down.
7. ``disable`` (§6.8.16): AdminDown with diagnostic 7, sent for one detection time, then silent;
   packets received while AdminDown are discarded (§6.8.6). ``enable`` returns to Down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bgpd.bfd.packet import ControlPacket, Diagnostic, SessionState

Random = Callable[[], float]
SLOW_TX = 1_000_000  # µs: §6.8.3, the Desired Min TX floor while not Up
USEC = 1e-6

TRANSITIONS: dict[tuple[SessionState, SessionState], tuple[SessionState, Diagnostic]] = {
    # §6.8.6: "If bfd.SessionState is Down": Down -> Init, Init -> Up
    (SessionState.DOWN, SessionState.DOWN): (SessionState.INIT, Diagnostic.NONE),
    (SessionState.DOWN, SessionState.INIT): (SessionState.UP, Diagnostic.NONE),
    # "Else if bfd.SessionState is Init": Init or Up -> Up
    (SessionState.INIT, SessionState.INIT): (SessionState.UP, Diagnostic.NONE),
    (SessionState.INIT, SessionState.UP): (SessionState.UP, Diagnostic.NONE),
    # "Else (bfd.SessionState is Up)": Down -> Down, "Neighbor Signaled Session Down"
    (SessionState.UP, SessionState.DOWN): (SessionState.DOWN, Diagnostic.NEIGHBOR_DOWN),
    # "If received state is AdminDown": unless already Down, Down with diagnostic 3
    (SessionState.INIT, SessionState.ADMIN_DOWN): (SessionState.DOWN, Diagnostic.NEIGHBOR_DOWN),
    (SessionState.UP, SessionState.ADMIN_DOWN): (SessionState.DOWN, Diagnostic.NEIGHBOR_DOWN),
}


@dataclass(frozen=True, slots=True)
class Timers:
    """What we ask of the peer and offer it (§6.8.1), microseconds."""

    desired_min_tx: int = 300_000
    required_min_rx: int = 300_000
    detect_mult: int = 3
    idle_min_tx: int = SLOW_TX  # rule 3: Desired Min TX while not Up, never under SLOW_TX

    def __post_init__(self) -> None:
        if self.detect_mult < 1 or self.detect_mult > 255:
            raise ValueError(f"detect multiplier {self.detect_mult} outside 1-255")
        if self.desired_min_tx <= 0 or self.required_min_rx < 0:
            raise ValueError("intervals must be positive")


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send this packet now."""

    packet: ControlPacket


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The session changed state; ``remote_state`` tells a peer's AdminDown (RFC 5882 §3.2: a
    client must not treat that as a failure) from a failure."""

    old: SessionState
    new: SessionState
    diagnostic: Diagnostic
    remote_state: SessionState


Output = Transmit | StateChanged


class BfdSession:
    """The §6.8.1 state variables of one session and the rules above."""

    def __init__(self, local_discriminator: int, timers: Timers, random: Random) -> None:
        if not 0 < local_discriminator < 1 << 32:
            raise ValueError("a local discriminator is nonzero and 32 bits (§6.8.1)")
        self.local_discriminator = local_discriminator
        self.timers = timers
        self._random = random
        self.state = SessionState.DOWN
        self.remote_state = SessionState.DOWN
        self.remote_discriminator = 0
        self.diagnostic = Diagnostic.NONE
        self.remote_min_rx = 1  # µs, §6.8.1's initial value
        self.remote_min_tx = 0  # µs, the last received Desired Min TX
        self.remote_detect_mult = 0
        self.polling = False
        self.tx_in_use = self.advertised_min_tx  # rule 4: what our sending uses
        self.rx_in_use = timers.required_min_rx  # rule 4: what detection uses
        self.up_count = 0
        self.down_count = 0
        self._next_tx: float | None = None
        self._detect_at: float | None = None
        self._admin_down_until: float | None = None

    # -- what we send ------------------------------------------------------------------------

    @property
    def advertised_min_tx(self) -> int:
        """Rule 3: the configured value while Up, never under a second otherwise."""
        if self.state == SessionState.UP:
            return self.timers.desired_min_tx
        return max(self.timers.desired_min_tx, self.timers.idle_min_tx, SLOW_TX)

    def packet(self, final: bool = False) -> ControlPacket:
        return ControlPacket(
            state=self.state,
            my_discriminator=self.local_discriminator,
            your_discriminator=self.remote_discriminator,
            detect_mult=self.timers.detect_mult,
            desired_min_tx=self.advertised_min_tx,
            required_min_rx=self.timers.required_min_rx,
            diagnostic=self.diagnostic,
            poll=self.polling and not final,
            final=final,
        )

    def transmit_interval(self) -> float:
        """Rule 3, in seconds, before jitter; 0 when periodic sending is off."""
        if self.remote_min_rx == 0:
            return 0.0
        return max(self.tx_in_use, self.remote_min_rx) * USEC

    def detection_time(self) -> float:
        """Rule 6, in seconds; 0 before the peer was heard."""
        return self.remote_detect_mult * max(self.rx_in_use, self.remote_min_tx) * USEC

    def _jittered(self, interval: float) -> float:
        """Rule 3 (§6.8.7)."""
        if self.timers.detect_mult == 1:
            return interval * (0.75 + 0.15 * self._random())
        return interval * (1.0 - 0.25 * self._random())

    # -- inputs ------------------------------------------------------------------------------

    def start(self, now: float) -> list[Output]:
        """Begin sending (we take the Active role, §6.1)."""
        return self._send(now)

    def receive(self, packet: ControlPacket, now: float) -> list[Output]:
        """§6.8.6 from "Set bfd.RemoteDiscr" on: the packet passed every earlier check."""
        if self.state == SessionState.ADMIN_DOWN:
            return []  # rule 7
        self.remote_discriminator = packet.my_discriminator
        self.remote_state = packet.state
        self.remote_min_rx = packet.required_min_rx
        self.remote_min_tx = packet.desired_min_tx
        self.remote_detect_mult = packet.detect_mult
        outputs: list[Output] = []
        if packet.final and self.polling:  # rule 4: the Poll Sequence ends
            self.polling = False
            self._apply_timers()
        self._detect_at = now + self.detection_time()
        row = TRANSITIONS.get((self.state, packet.state))
        if row is not None:
            outputs += self._change(row[0], row[1], now)
        if packet.poll:  # rule 5
            outputs.append(Transmit(self.packet(final=True)))
        interval = self.transmit_interval()
        if self._next_tx is None and interval:
            outputs += self._send(now)
        elif self._next_tx is not None and interval and self._next_tx > now + interval:
            self._next_tx = now + self._jittered(interval)  # rule 3: the peer asked for more
        return outputs

    def timer(self, now: float) -> list[Output]:
        """Run whatever is due at ``now``: detection (rule 6), then periodic sending."""
        outputs: list[Output] = []
        if self._detect_at is not None and now >= self._detect_at:
            self._detect_at = None
            self.remote_discriminator = 0  # §6.8.1
            if self.state in (SessionState.INIT, SessionState.UP):
                outputs += self._change(SessionState.DOWN, Diagnostic.DETECTION_EXPIRED, now)
        if self._admin_down_until is not None and now >= self._admin_down_until:
            self._next_tx = None  # rule 7: silent after one detection time
            return outputs
        if self._next_tx is not None and now >= self._next_tx:
            outputs += self._send(now)
        return outputs

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self._next_tx, self._detect_at) if d is not None]
        if self._admin_down_until is not None and self._next_tx is not None:
            deadlines.append(self._admin_down_until)
        return min(deadlines) if deadlines else None

    def set_timers(self, timers: Timers, now: float) -> list[Output]:
        """Rule 4: new intervals; a Poll Sequence when they change."""
        old = self.timers
        if timers == old:
            return []
        self.timers = timers
        if self.state != SessionState.UP:
            self._apply_timers()
            return self._send(now)
        self.polling = True
        if timers.desired_min_tx < self.tx_in_use:
            self.tx_in_use = timers.desired_min_tx  # faster sending may start now
        if timers.required_min_rx > self.rx_in_use:
            self.rx_in_use = timers.required_min_rx  # slower detection may start now
        return self._send(now)

    def disable(self, now: float) -> list[Output]:
        """Rule 7."""
        if self.state == SessionState.ADMIN_DOWN:
            return []
        outputs = self._change(SessionState.ADMIN_DOWN, Diagnostic.ADMIN_DOWN, now)
        self._detect_at = None
        self._admin_down_until = now + max(self.detection_time(), self.transmit_interval())
        return outputs

    def enable(self, now: float) -> list[Output]:
        """Rule 7: back to Down, sending again."""
        if self.state != SessionState.ADMIN_DOWN:
            return []
        self._admin_down_until = None
        self.remote_discriminator = 0
        return self._change(SessionState.DOWN, Diagnostic.NONE, now)

    # -- internals ---------------------------------------------------------------------------

    def _apply_timers(self) -> None:
        self.tx_in_use = self.advertised_min_tx
        self.rx_in_use = self.timers.required_min_rx

    def _change(self, new: SessionState, diagnostic: Diagnostic, now: float) -> list[Output]:
        old = self.state
        self.state = new
        self.diagnostic = diagnostic
        if new == SessionState.UP:
            self.up_count += 1
            if self.timers.desired_min_tx < max(self.timers.idle_min_tx, SLOW_TX):
                self.polling = True  # rule 4: from the slow rate to the configured one
            if self.timers.desired_min_tx < self.tx_in_use:
                self.tx_in_use = self.timers.desired_min_tx
        elif old == SessionState.UP:
            self.down_count += 1
            self.polling = False
            self._apply_timers()
        changed = StateChanged(old, new, diagnostic, self.remote_state)
        return [changed, *self._send(now)]  # rule 5

    def _send(self, now: float) -> list[Output]:
        interval = self.transmit_interval()
        self._next_tx = now + self._jittered(interval) if interval else None
        if self.remote_min_rx == 0:
            return []  # §6.8.7: the peer asked for no periodic packets
        return [Transmit(self.packet())]
