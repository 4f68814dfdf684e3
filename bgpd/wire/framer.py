"""Splits a TCP byte stream into BGP messages and checks each header (RFC 4271 §4.1, §6.1).

Rules:
1. Marker not all ones: Message Header Error / Connection Not Synchronized.
2. Length below 19, above the negotiated maximum, or wrong for the type: Bad Message Length,
   with the length field as data. OPEN and KEEPALIVE never exceed 4096 (RFC 8654 §4).
3. Unknown type: Bad Message Type, with the type octet as data.
4. After an error the framer is poisoned: the session is closing and no further input counts.
"""

from __future__ import annotations

from typing import Final

from bgpd.wire.constants import (
    HEADER_LEN,
    MARKER,
    MAX_MESSAGE_LEN,
    ErrorCode,
    HeaderSubcode,
    MessageType,
)
from bgpd.wire.errors import MessageError

# RFC 4271 §4.2-§4.5, RFC 2918 §3: the smallest valid length of each type.
MIN_LENGTH: Final[dict[int, int]] = {
    MessageType.OPEN: 29,
    MessageType.UPDATE: 23,
    MessageType.NOTIFICATION: 21,
    MessageType.KEEPALIVE: 19,
    MessageType.ROUTE_REFRESH: 23,
}
_SMALL_ONLY: Final = (MessageType.OPEN, MessageType.KEEPALIVE)


class Framer:
    """Feed bytes in, get ``(type, body)`` pairs out. ``max_length`` follows the negotiation."""

    def __init__(self, max_length: int = MAX_MESSAGE_LEN) -> None:
        self.max_length = max_length
        self._buffer = bytearray()
        self._error: MessageError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Append ``data``; return every complete message. Raises ``MessageError``."""
        if self._error is not None:
            raise self._error
        buf = self._buffer
        buf += data
        out: list[tuple[int, bytes]] = []
        offset = 0
        size = len(buf)
        try:
            while size - offset >= HEADER_LEN:
                if buf[offset : offset + 16] != MARKER:
                    raise MessageError(
                        ErrorCode.MESSAGE_HEADER,
                        HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED,
                        b"",
                        "marker is not all ones",
                    )
                length = (buf[offset + 16] << 8) | buf[offset + 17]
                msg_type = buf[offset + 18]
                minimum = MIN_LENGTH.get(msg_type)
                if minimum is None:
                    raise MessageError(
                        ErrorCode.MESSAGE_HEADER,
                        HeaderSubcode.BAD_MESSAGE_TYPE,
                        bytes((msg_type,)),
                        f"message type {msg_type}",
                    )
                limit = MAX_MESSAGE_LEN if msg_type in _SMALL_ONLY else self.max_length
                exact = msg_type == MessageType.KEEPALIVE
                if length < minimum or length > limit or (exact and length != minimum):
                    raise MessageError(
                        ErrorCode.MESSAGE_HEADER,
                        HeaderSubcode.BAD_MESSAGE_LENGTH,
                        bytes(buf[offset + 16 : offset + 18]),
                        f"length {length} for message type {msg_type}",
                    )
                if size - offset < length:
                    break
                out.append((msg_type, bytes(buf[offset + HEADER_LEN : offset + length])))
                offset += length
        except MessageError as exc:
            self._error = exc
            raise
        finally:
            if offset:
                del buf[:offset]
        return out
