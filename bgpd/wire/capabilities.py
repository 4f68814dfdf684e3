"""OPEN capabilities (RFC 5492) as typed values, with a table from code to decoder and encoder.

Rules:
1. Each capability is a frozen dataclass with ``encode_value()``; ``CAPABILITY_DECODERS`` maps its
   code to a decoder of the value bytes. A code not in the table is kept as ``UnknownCapability``.
2. A malformed value of a known capability raises ``MessageError`` with OPEN Message Error,
   subcode 0 (unspecific) and the capability TLV as data: RFC 5492 §3 leaves the handling of a
   malformed capability to its own specification, and none of these names a subcode.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from bgpd.wire.constants import AddPathMode, CapabilityCode, ErrorCode
from bgpd.wire.errors import MessageError
from bgpd.wire.types import Family


def _malformed(code: int, value: bytes, why: str) -> MessageError:
    tlv = bytes((code, len(value) & 0xFF)) + value
    return MessageError(ErrorCode.OPEN_MESSAGE, 0, tlv, f"capability {code}: {why}")


@dataclass(frozen=True, slots=True)
class Multiprotocol:
    """RFC 4760 §8."""

    family: Family
    code = CapabilityCode.MULTIPROTOCOL

    def encode_value(self) -> bytes:
        return struct.pack("!HBB", self.family.afi, 0, self.family.safi)

    @classmethod
    def decode_value(cls, value: bytes) -> Multiprotocol:
        if len(value) != 4:
            raise _malformed(cls.code, value, "length must be 4")
        afi, _, safi = struct.unpack("!HBB", value)
        return cls(Family(afi, safi))


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    """RFC 2918 §2."""

    code = CapabilityCode.ROUTE_REFRESH

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, value: bytes) -> RouteRefresh:
        return cls()


@dataclass(frozen=True, slots=True)
class EnhancedRouteRefresh:
    """RFC 7313 §3.1."""

    code = CapabilityCode.ENHANCED_ROUTE_REFRESH

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, value: bytes) -> EnhancedRouteRefresh:
        return cls()


@dataclass(frozen=True, slots=True)
class ExtendedMessage:
    """RFC 8654 §3."""

    code = CapabilityCode.EXTENDED_MESSAGE

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, value: bytes) -> ExtendedMessage:
        return cls()


@dataclass(frozen=True, slots=True)
class ExtendedNextHop:
    """RFC 8950 §3: tuples of (NLRI family, next-hop AFI)."""

    entries: tuple[tuple[Family, int], ...]
    code = CapabilityCode.EXTENDED_NEXT_HOP

    def encode_value(self) -> bytes:
        return b"".join(struct.pack("!HHH", f.afi, f.safi, nh) for f, nh in self.entries)

    @classmethod
    def decode_value(cls, value: bytes) -> ExtendedNextHop:
        if len(value) % 6:
            raise _malformed(cls.code, value, "length must be a multiple of 6")
        entries = tuple(
            (Family(afi, safi), nh) for afi, safi, nh in struct.iter_unpack("!HHH", value)
        )
        return cls(entries)


@dataclass(frozen=True, slots=True)
class GracefulRestart:
    """RFC 4724 §3: restart flags (R = 0x8, N = 0x4), restart time, per-family F bit (0x80)."""

    restart_flags: int = 0
    restart_time: int = 120
    families: tuple[tuple[Family, int], ...] = ()
    code = CapabilityCode.GRACEFUL_RESTART

    @property
    def restarting(self) -> bool:
        return bool(self.restart_flags & 0x8)

    def forwarding_preserved(self, family: Family) -> bool:
        return any(f == family and flags & 0x80 for f, flags in self.families)

    def encode_value(self) -> bytes:
        head = struct.pack("!H", (self.restart_flags & 0xF) << 12 | (self.restart_time & 0xFFF))
        body = b"".join(struct.pack("!HBB", f.afi, f.safi, flags) for f, flags in self.families)
        return head + body

    @classmethod
    def decode_value(cls, value: bytes) -> GracefulRestart:
        if len(value) < 2 or (len(value) - 2) % 4:
            raise _malformed(cls.code, value, "length must be 2 + 4n")
        (word,) = struct.unpack_from("!H", value)
        families = tuple(
            (Family(afi, safi), flags) for afi, safi, flags in struct.iter_unpack("!HBB", value[2:])
        )
        return cls(word >> 12, word & 0xFFF, families)


@dataclass(frozen=True, slots=True)
class FourOctetAs:
    """RFC 6793 §3."""

    asn: int
    code = CapabilityCode.FOUR_OCTET_AS

    def encode_value(self) -> bytes:
        return struct.pack("!I", self.asn)

    @classmethod
    def decode_value(cls, value: bytes) -> FourOctetAs:
        if len(value) != 4:
            raise _malformed(cls.code, value, "length must be 4")
        return cls(struct.unpack("!I", value)[0])


@dataclass(frozen=True, slots=True)
class AddPath:
    """RFC 7911 §4: (family, send/receive) tuples."""

    entries: tuple[tuple[Family, int], ...]
    code = CapabilityCode.ADD_PATH

    def mode(self, family: Family) -> int:
        for f, mode in self.entries:
            if f == family:
                return mode
        return 0

    def encode_value(self) -> bytes:
        return b"".join(struct.pack("!HBB", f.afi, f.safi, m) for f, m in self.entries)

    @classmethod
    def decode_value(cls, value: bytes) -> AddPath:
        if len(value) % 4:
            raise _malformed(cls.code, value, "length must be a multiple of 4")
        entries = tuple(
            (Family(afi, safi), mode) for afi, safi, mode in struct.iter_unpack("!HBB", value)
        )
        if any(mode not in tuple(AddPathMode) for _, mode in entries):
            raise _malformed(cls.code, value, "send/receive must be 1, 2 or 3")
        return cls(entries)


@dataclass(frozen=True, slots=True)
class LongLivedGracefulRestart:
    """RFC 9494 §3: (family, flags, long-lived stale time in seconds, 24 bits)."""

    entries: tuple[tuple[Family, int, int], ...]
    code = CapabilityCode.LONG_LIVED_GRACEFUL_RESTART

    def encode_value(self) -> bytes:
        return b"".join(
            struct.pack("!HBB", f.afi, f.safi, flags) + (stale & 0xFFFFFF).to_bytes(3, "big")
            for f, flags, stale in self.entries
        )

    @classmethod
    def decode_value(cls, value: bytes) -> LongLivedGracefulRestart:
        if len(value) % 7:
            raise _malformed(cls.code, value, "length must be a multiple of 7")
        entries = []
        for i in range(0, len(value), 7):
            afi, safi, flags = struct.unpack_from("!HBB", value, i)
            entries.append((Family(afi, safi), flags, int.from_bytes(value[i + 4 : i + 7], "big")))
        return cls(tuple(entries))


@dataclass(frozen=True, slots=True)
class Fqdn:
    """draft-walton-bgp-hostname-capability: host name and domain name, each length-prefixed."""

    hostname: str
    domain: str = ""
    code = CapabilityCode.FQDN

    def encode_value(self) -> bytes:
        host = self.hostname.encode()[:255]
        dom = self.domain.encode()[:255]
        return bytes((len(host),)) + host + bytes((len(dom),)) + dom

    @classmethod
    def decode_value(cls, value: bytes) -> Fqdn:
        if not value or value[0] + 1 > len(value):
            raise _malformed(cls.code, value, "host name overruns the value")
        hlen = value[0]
        host = value[1 : 1 + hlen]
        rest = value[1 + hlen :]
        if rest and rest[0] + 1 > len(rest):
            raise _malformed(cls.code, value, "domain name overruns the value")
        dom = rest[1 : 1 + rest[0]] if rest else b""
        return cls(host.decode(errors="replace"), dom.decode(errors="replace"))


@dataclass(frozen=True, slots=True)
class UnknownCapability:
    """A capability we do not interpret, kept opaque (RFC 5492 §3)."""

    code: int
    value: bytes

    def encode_value(self) -> bytes:
        return self.value


Capability = (
    Multiprotocol
    | RouteRefresh
    | EnhancedRouteRefresh
    | ExtendedMessage
    | ExtendedNextHop
    | GracefulRestart
    | FourOctetAs
    | AddPath
    | LongLivedGracefulRestart
    | Fqdn
    | UnknownCapability
)

CAPABILITY_DECODERS: dict[int, Callable[[bytes], Capability]] = {
    CapabilityCode.MULTIPROTOCOL: Multiprotocol.decode_value,
    CapabilityCode.ROUTE_REFRESH: RouteRefresh.decode_value,
    CapabilityCode.ENHANCED_ROUTE_REFRESH: EnhancedRouteRefresh.decode_value,
    CapabilityCode.EXTENDED_MESSAGE: ExtendedMessage.decode_value,
    CapabilityCode.EXTENDED_NEXT_HOP: ExtendedNextHop.decode_value,
    CapabilityCode.GRACEFUL_RESTART: GracefulRestart.decode_value,
    CapabilityCode.FOUR_OCTET_AS: FourOctetAs.decode_value,
    CapabilityCode.ADD_PATH: AddPath.decode_value,
    CapabilityCode.LONG_LIVED_GRACEFUL_RESTART: LongLivedGracefulRestart.decode_value,
    CapabilityCode.FQDN: Fqdn.decode_value,
}


def decode_capabilities(value: bytes) -> list[Capability]:
    """Decode the capability TLVs of one Capabilities optional parameter (RFC 5492 §4)."""
    out: list[Capability] = []
    i = 0
    while i < len(value):
        if i + 2 > len(value) or i + 2 + value[i + 1] > len(value):
            raise MessageError(ErrorCode.OPEN_MESSAGE, 0, value, "capability TLV overruns")
        code, length = value[i], value[i + 1]
        body = value[i + 2 : i + 2 + length]
        decoder = CAPABILITY_DECODERS.get(code)
        out.append(decoder(body) if decoder else UnknownCapability(code, body))
        i += 2 + length
    return out


def encode_capability(cap: Capability) -> bytes:
    value = cap.encode_value()
    if len(value) > 255:
        raise ValueError(f"capability {cap.code} value too long")
    return bytes((cap.code, len(value))) + value
