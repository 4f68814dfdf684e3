"""Message-level entry points: decode a framed body by type, encode any message.

Rules:
1. ``decode_message`` raises only ``MessageError``; anything else escaping is a codec bug (the
   robustness tests feed it random and mutated bytes to keep it so).
2. ROUTE-REFRESH length errors use RFC 7313 §5 only when enhanced route refresh is negotiated;
   otherwise the RFC 4271 header rule applies.
"""

from __future__ import annotations

import struct

from bgpd.wire.attributes import AttributeCache
from bgpd.wire.constants import ErrorCode, HeaderSubcode, MessageType
from bgpd.wire.errors import MessageError, UsageError
from bgpd.wire.messages import (
    KEEPALIVE_MESSAGE,
    Keepalive,
    Message,
    Notification,
    Open,
    RouteRefresh,
    Update,
    decode_notification,
    decode_open,
    decode_route_refresh,
    encode_notification,
    encode_open,
    encode_route_refresh,
)
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.update import decode_update, encode_update


def decode_message(
    msg_type: int, body: bytes, negotiated: Negotiated, cache: AttributeCache
) -> Message:
    if msg_type == MessageType.UPDATE:
        return decode_update(body, negotiated, cache)
    if msg_type == MessageType.KEEPALIVE:
        return Keepalive()
    if msg_type == MessageType.OPEN:
        return decode_open(body)
    if msg_type == MessageType.NOTIFICATION:
        return decode_notification(body)
    if msg_type == MessageType.ROUTE_REFRESH:
        if len(body) != 4 and not negotiated.enhanced_route_refresh:
            raise MessageError(
                ErrorCode.MESSAGE_HEADER,
                HeaderSubcode.BAD_MESSAGE_LENGTH,
                struct.pack("!H", len(body) + 19),
            )
        return decode_route_refresh(body)
    raise MessageError(ErrorCode.MESSAGE_HEADER, HeaderSubcode.BAD_MESSAGE_TYPE, bytes((msg_type,)))


def encode_message(message: Message, negotiated: Negotiated | None = None) -> bytes:
    if isinstance(message, Update):
        return encode_update(message, negotiated or Negotiated())
    if isinstance(message, Keepalive):
        return KEEPALIVE_MESSAGE
    if isinstance(message, Open):
        return encode_open(message)
    if isinstance(message, Notification):
        return encode_notification(message)
    if isinstance(message, RouteRefresh):
        return encode_route_refresh(message)
    raise UsageError(f"not a BGP message: {message!r}")
