"""BGP messages as frozen values, with the codecs of OPEN, KEEPALIVE, NOTIFICATION and
ROUTE-REFRESH. UPDATE's codec lives in ``update.py``; ``codec.py`` dispatches on the type.

Rules:
1. ``decode_*`` take the message body (after the 19-octet header) and raise only ``MessageError``
   with the RFC 4271 §6 code, subcode and data.
2. ``encode_*`` return the whole message, header included.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TypeVar

from bgpd.wire.capabilities import Capability, decode_capabilities, encode_capability
from bgpd.wire.constants import (
    BGP_VERSION,
    HEADER_LEN,
    MARKER,
    CeaseSubcode,
    ErrorCode,
    MessageType,
    OpenSubcode,
    RouteRefreshErrorSubcode,
    error_name,
)
from bgpd.wire.errors import AttributeIssue, MessageError
from bgpd.wire.types import Family, PathAttributes, Prefix

_C = TypeVar("_C")

CAPABILITIES_PARAM = 2  # RFC 5492 §4
EXTENDED_PARAMS_MARK = 255  # RFC 9072 §2


def frame(msg_type: int, body: bytes) -> bytes:
    """Prefix ``body`` with the RFC 4271 §4.1 header."""
    return MARKER + struct.pack("!HB", HEADER_LEN + len(body), msg_type) + body


@dataclass(frozen=True, slots=True)
class Open:
    """RFC 4271 §4.2. ``my_as`` is the 2-octet field; the real AS may be in ``FourOctetAs``."""

    my_as: int
    hold_time: int
    bgp_id: int
    capabilities: tuple[Capability, ...] = ()
    version: int = BGP_VERSION

    def capability(self, kind: type[_C]) -> _C | None:
        for cap in self.capabilities:
            if isinstance(cap, kind):
                return cap
        return None


@dataclass(frozen=True, slots=True)
class Keepalive:
    """RFC 4271 §4.4."""


@dataclass(frozen=True, slots=True)
class Notification:
    """RFC 4271 §4.5; shutdown communication on Cease 2 and 4 (RFC 9003 §2)."""

    code: int
    subcode: int
    data: bytes = b""

    @property
    def token(self) -> str:
        return error_name(self.code, self.subcode)

    @property
    def shutdown_message(self) -> str | None:
        """The RFC 9003 shutdown communication, if the data carries a well-formed one."""
        if self.code != ErrorCode.CEASE or self.subcode not in (
            CeaseSubcode.ADMINISTRATIVE_SHUTDOWN,
            CeaseSubcode.ADMINISTRATIVE_RESET,
        ):
            return None
        if not self.data or self.data[0] + 1 > len(self.data):
            return None
        return self.data[1 : 1 + self.data[0]].decode("utf-8", errors="replace")

    @classmethod
    def shutdown(cls, subcode: int, message: str = "") -> Notification:
        """A Cease with an RFC 9003 shutdown communication (at most 255 octets of UTF-8)."""
        raw = message.encode("utf-8")[:255]
        while raw:
            try:
                raw.decode("utf-8")
                break
            except UnicodeDecodeError:
                raw = raw[:-1]
        return cls(ErrorCode.CEASE, subcode, bytes((len(raw),)) + raw if message else b"")


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    """RFC 2918 §3; subtype per RFC 7313 §3.2 (0 normal, 1 BoRR, 2 EoRR)."""

    family: Family
    subtype: int = 0


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """Withdrawn prefixes of one family in an UPDATE."""

    family: Family
    prefixes: list[Prefix]
    path_ids: list[int] | None = None


@dataclass(frozen=True, slots=True)
class Announcement:
    """Reachable prefixes of one family sharing one attribute set (with the family's next hop)."""

    family: Family
    attributes: PathAttributes
    prefixes: list[Prefix]
    path_ids: list[int] | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """RFC 4271 §4.3. ``issues`` lists RFC 7606 handling that was applied while decoding; when
    ``treat_as_withdraw`` is set the announced prefixes were moved to ``withdrawn``."""

    withdrawn: tuple[Withdrawal, ...] = ()
    announced: tuple[Announcement, ...] = ()
    attributes: PathAttributes | None = None
    end_of_rib: Family | None = None
    issues: tuple[AttributeIssue, ...] = field(default=(), compare=False)
    treat_as_withdraw: bool = False


Message = Open | Keepalive | Notification | RouteRefresh | Update


def encode_open(message: Open) -> bytes:
    params = b"".join(encode_capability(c) for c in message.capabilities)
    if len(params) + 2 <= 255:
        opt = (
            bytes((len(params) + 2, CAPABILITIES_PARAM, len(params))) + params if params else b"\0"
        )
    else:
        # RFC 9072 §2: extended optional parameters length, each parameter with a 2-octet length.
        body = bytes((CAPABILITIES_PARAM,)) + struct.pack("!H", len(params)) + params
        opt = bytes((EXTENDED_PARAMS_MARK, EXTENDED_PARAMS_MARK)) + struct.pack("!H", len(body))
        opt += body
    head = struct.pack(
        "!BHHI", message.version, message.my_as & 0xFFFF, message.hold_time, message.bgp_id
    )
    return frame(MessageType.OPEN, head + opt)


def _open_error(subcode: int, why: str, data: bytes = b"") -> MessageError:
    return MessageError(ErrorCode.OPEN_MESSAGE, subcode, data, why)


def decode_open(body: bytes) -> Open:
    if len(body) < 10:
        raise MessageError(ErrorCode.MESSAGE_HEADER, 2, struct.pack("!H", len(body) + 19))
    version, my_as, hold, bgp_id, opt_len = struct.unpack_from("!BHHIB", body)
    if version != BGP_VERSION:
        # RFC 4271 §6.2: data is the largest locally supported version below the bid.
        raise _open_error(
            OpenSubcode.UNSUPPORTED_VERSION_NUMBER,
            f"version {version}",
            struct.pack("!H", BGP_VERSION),
        )
    if hold in (1, 2):
        raise _open_error(OpenSubcode.UNACCEPTABLE_HOLD_TIME, f"hold time {hold}")
    if bgp_id == 0:
        # RFC 6286 §2.2: a BGP Identifier is a non-zero 4-octet number.
        raise _open_error(OpenSubcode.BAD_BGP_IDENTIFIER, "BGP identifier 0")
    i, end, wide = 10, 10 + opt_len, False
    if opt_len == EXTENDED_PARAMS_MARK and len(body) > 10 and body[10] == EXTENDED_PARAMS_MARK:
        if len(body) < 13:
            raise _open_error(0, "extended optional parameters length overruns")
        i, end, wide = 13, 13 + struct.unpack_from("!H", body, 11)[0], True
    if end != len(body):
        raise _open_error(0, f"optional parameters end at {end}, message body at {len(body)}")
    caps: list[Capability] = []
    while i < end:
        head = 3 if wide else 2
        if i + head > end:
            raise _open_error(0, "optional parameter header overruns")
        ptype = body[i]
        plen = struct.unpack_from("!H", body, i + 1)[0] if wide else body[i + 1]
        value = body[i + head : i + head + plen]
        if i + head + plen > end:
            raise _open_error(0, "optional parameter overruns")
        if ptype != CAPABILITIES_PARAM:
            raise _open_error(
                OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER, f"optional parameter type {ptype}"
            )
        caps.extend(decode_capabilities(value))
        i += head + plen
    return Open(my_as, hold, bgp_id, tuple(caps), version)


KEEPALIVE_MESSAGE = frame(MessageType.KEEPALIVE, b"")


def encode_notification(message: Notification) -> bytes:
    return frame(MessageType.NOTIFICATION, bytes((message.code, message.subcode)) + message.data)


def decode_notification(body: bytes) -> Notification:
    if len(body) < 2:
        raise MessageError(ErrorCode.MESSAGE_HEADER, 2, struct.pack("!H", len(body) + 19))
    return Notification(body[0], body[1], bytes(body[2:]))


def encode_route_refresh(message: RouteRefresh) -> bytes:
    body = struct.pack("!HBB", message.family.afi, message.subtype, message.family.safi)
    return frame(MessageType.ROUTE_REFRESH, body)


def decode_route_refresh(body: bytes) -> RouteRefresh:
    if len(body) != 4:
        # RFC 7313 §5: Invalid Message Length, with the complete message as data.
        raise MessageError(
            ErrorCode.ROUTE_REFRESH,
            RouteRefreshErrorSubcode.INVALID_MESSAGE_LENGTH,
            frame(MessageType.ROUTE_REFRESH, bytes(body)),
            f"ROUTE-REFRESH body of {len(body)} octets",
        )
    afi, subtype, safi = struct.unpack("!HBB", body)
    return RouteRefresh(Family(afi, safi), subtype)
