"""Tolerant splitting of recorded BGP streams, for tools (``bgpd decode``), not for sessions.

Rules:
1. A live session stops at the first header error (the framer is strict). A recording keeps
   going: after a bad header we resynchronise on the next marker, so one damaged message does
   not hide the rest.
2. Each item is either a framed message or the ``MessageError`` its header caused.
"""

from __future__ import annotations

from collections.abc import Iterator

from bgpd.wire.constants import HEADER_LEN, MARKER, MAX_EXTENDED_MESSAGE_LEN
from bgpd.wire.errors import MessageError
from bgpd.wire.framer import Framer

StreamItem = tuple[int, bytes] | MessageError


def split_stream(data: bytes, max_length: int = MAX_EXTENDED_MESSAGE_LEN) -> Iterator[StreamItem]:
    """Yield ``(type, body)`` per message, or the header error, resynchronising after errors."""
    offset = 0
    while offset < len(data):
        framer = Framer(max_length)
        header_end = offset + HEADER_LEN
        if header_end > len(data):
            yield MessageError(1, 2, b"", f"{len(data) - offset} trailing octets")
            return
        length = int.from_bytes(data[offset + 16 : offset + 18], "big")
        try:
            items = framer.feed(data[offset : offset + max(length, HEADER_LEN)])
        except MessageError as exc:
            yield exc
            following = data.find(MARKER, offset + 1)
            if following < 0:
                return
            offset = following
            continue
        if not items:
            yield MessageError(1, 2, b"", f"message of {length} octets truncated")
            return
        yield items[0]
        offset += length
