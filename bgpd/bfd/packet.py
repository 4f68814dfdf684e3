"""The BFD Control packet (RFC 5880 §4.1): values, encoding and the receive checks of §6.8.6.

Rules:
1. Pure: bytes in, values out. A ``ControlPacket`` is a frozen value with intervals in
   microseconds, as on the wire.
2. ``decode`` applies, in the RFC's order, every §6.8.6 check that needs nothing but the packet
   and the payload length: version, Length against the A bit's minimum and the payload, Detect
   Mult, the M bit, My Discriminator; and §6.5's "never both Poll and Final". A failed check
   raises ``PacketDropped`` with its ``DropReason``: the packet is discarded and counted, never
   answered, and nothing else changes (a session is only ever affected by valid packets).
3. Checks that need the session table (Your Discriminator, authentication in use) are
   ``session_checks``; the IP-layer check (TTL/Hop Limit 255, RFC 5881 §5) is ``ttl_check``.
4. Authentication (the A bit's section, §4.2-4.4) is not supported: a packet carrying it is
   dropped with ``AUTH_NOT_CONFIGURED`` (§6.8.6: "If the A bit is set and no authentication is in
   use (bfd.AuthType is zero), the packet MUST be discarded").
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

VERSION = 1  # RFC 5880 §4.1
PACKET_LEN = 24  # §4.1: the mandatory section
AUTH_MIN_LEN = 26  # §6.8.6: the minimum Length with the A bit set
SINGLE_HOP_PORT = 3784  # RFC 5881 §4
MULTIHOP_PORT = 4784  # RFC 5883 §3
SOURCE_PORTS = range(49152, 65536)  # RFC 5881 §4
SINGLE_HOP_TTL = 255  # RFC 5881 §5
_FORMAT = struct.Struct("!BBBBIIIII")

_POLL, _FINAL, _CPI, _AUTH, _DEMAND, _MULTIPOINT = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01


class SessionState(enum.IntEnum):
    """§4.1 State (Sta) values."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Diagnostic(enum.IntEnum):
    """§4.1 Diagnostic (Diag) codes: the reason for the sender's last state change."""

    NONE = 0
    DETECTION_EXPIRED = 1
    ECHO_FAILED = 2
    NEIGHBOR_DOWN = 3
    FORWARDING_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMIN_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


class DropReason(enum.StrEnum):
    """Why a received packet was discarded (rule 2 and 3), each with its RFC rule."""

    BAD_VERSION = "bad-version"  # §6.8.6: version is not 1
    BAD_LENGTH = "bad-length"  # §6.8.6: Length below the minimum for the A bit
    LENGTH_BEYOND_PAYLOAD = "length-beyond-payload"  # §6.8.6: Length above the payload
    ZERO_DETECT_MULT = "zero-detect-mult"  # §6.8.6: Detect Mult is zero
    MULTIPOINT = "multipoint"  # §6.8.6: the M bit is set
    ZERO_MY_DISCRIMINATOR = "zero-my-discriminator"  # §6.8.6: My Discriminator is zero
    POLL_AND_FINAL = "poll-and-final"  # §6.5: P and F never together
    UNKNOWN_DISCRIMINATOR = "unknown-discriminator"  # §6.8.6: Your Discriminator unknown
    ZERO_YOUR_DISCRIMINATOR = "zero-your-discriminator"  # §6.8.6: zero outside Down/AdminDown
    AUTH_NOT_CONFIGURED = "auth-not-configured"  # §6.8.6: A bit without authentication
    BAD_TTL = "bad-ttl"  # RFC 5881 §5: single hop packets arrive with TTL 255
    UNKNOWN_PEER = "unknown-peer"  # no session is configured for the source address


class PacketDropped(Exception):
    """A received packet failed a check (rule 2)."""

    def __init__(self, reason: DropReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ControlPacket:
    """§4.1's mandatory section; intervals in microseconds."""

    state: SessionState
    my_discriminator: int
    your_discriminator: int = 0
    detect_mult: int = 3
    desired_min_tx: int = 1_000_000
    required_min_rx: int = 1_000_000
    required_min_echo_rx: int = 0  # we run no echo function (§6.4)
    diagnostic: Diagnostic = Diagnostic.NONE
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    demand: bool = False


def encode(packet: ControlPacket) -> bytes:
    """§4.1: Vers|Diag, Sta|P|F|C|A|D|M, Detect Mult, Length, and the five 32-bit fields."""
    flags = (
        (_POLL if packet.poll else 0)
        | (_FINAL if packet.final else 0)
        | (_CPI if packet.control_plane_independent else 0)
        | (_DEMAND if packet.demand else 0)
    )
    return _FORMAT.pack(
        (VERSION << 5) | packet.diagnostic,
        (packet.state << 6) | flags,
        packet.detect_mult,
        PACKET_LEN,
        packet.my_discriminator,
        packet.your_discriminator,
        packet.desired_min_tx,
        packet.required_min_rx,
        packet.required_min_echo_rx,
    )


def decode(data: bytes) -> ControlPacket:
    """Rule 2: the packet, or ``PacketDropped``."""
    if len(data) < PACKET_LEN:
        raise PacketDropped(DropReason.LENGTH_BEYOND_PAYLOAD, f"{len(data)} bytes")
    (vers_diag, sta_flags, detect_mult, length, mine, yours, tx, rx, echo) = _FORMAT.unpack_from(
        data
    )
    if vers_diag >> 5 != VERSION:
        raise PacketDropped(DropReason.BAD_VERSION, f"version {vers_diag >> 5}")
    authenticated = bool(sta_flags & _AUTH)
    if length < (AUTH_MIN_LEN if authenticated else PACKET_LEN):
        raise PacketDropped(DropReason.BAD_LENGTH, f"Length {length}")
    if length > len(data):
        raise PacketDropped(DropReason.LENGTH_BEYOND_PAYLOAD, f"Length {length} > {len(data)}")
    if detect_mult == 0:
        raise PacketDropped(DropReason.ZERO_DETECT_MULT)
    if sta_flags & _MULTIPOINT:
        raise PacketDropped(DropReason.MULTIPOINT)
    if mine == 0:
        raise PacketDropped(DropReason.ZERO_MY_DISCRIMINATOR)
    poll, final = bool(sta_flags & _POLL), bool(sta_flags & _FINAL)
    if poll and final:
        raise PacketDropped(DropReason.POLL_AND_FINAL)
    if authenticated:  # rule 4
        raise PacketDropped(DropReason.AUTH_NOT_CONFIGURED)
    diag = vers_diag & 0x1F
    return ControlPacket(
        state=SessionState(sta_flags >> 6),
        my_discriminator=mine,
        your_discriminator=yours,
        detect_mult=detect_mult,
        desired_min_tx=tx,
        required_min_rx=rx,
        required_min_echo_rx=echo,
        diagnostic=Diagnostic(diag) if diag <= max(Diagnostic) else Diagnostic.NONE,  # reserved
        poll=poll,
        final=final,
        control_plane_independent=bool(sta_flags & _CPI),
        demand=bool(sta_flags & _DEMAND),
    )


def session_checks(packet: ControlPacket, known: bool) -> DropReason | None:
    """Rule 3, §6.8.6: ``known`` says whether a nonzero Your Discriminator names a session."""
    if packet.your_discriminator:
        return None if known else DropReason.UNKNOWN_DISCRIMINATOR
    if packet.state not in (SessionState.DOWN, SessionState.ADMIN_DOWN):
        return DropReason.ZERO_YOUR_DISCRIMINATOR
    return None


def ttl_check(ttl: int, multihop: bool, min_ttl: int = 1) -> DropReason | None:
    """Rule 3: RFC 5881 §5 (single hop: exactly 255); RFC 5883 §5 (multihop: at least the
    configured minimum)."""
    if multihop:
        return None if ttl >= min_ttl else DropReason.BAD_TTL
    return None if ttl == SINGLE_HOP_TTL else DropReason.BAD_TTL
