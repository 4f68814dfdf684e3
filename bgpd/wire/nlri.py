"""NLRI encoding (RFC 4271 §4.3) with and without ADD-PATH path identifiers (RFC 7911 §3).

This is the hot path: one slice per prefix, no ``ipaddress`` objects.

Rules:
1. A decoded prefix is a canonical ``Prefix`` key (trailing bits cleared: RFC 4271 §4.3 says
   they are irrelevant).
2. A prefix longer than the family allows, or one that overruns the field, makes the field
   syntactically incorrect: ``MessageError`` UPDATE/Invalid Network Field, i.e. session reset
   (RFC 7606 §5.3; RFC 4271 §6.3).
"""

from __future__ import annotations

from typing import Final

from bgpd.wire.constants import ErrorCode, UpdateSubcode
from bgpd.wire.errors import MessageError
from bgpd.wire.types import Prefix, canonical_prefix

# Host bits of the last octet for a prefix length's remainder mod 8 (0 = whole octets).
_HOST_BITS: Final = (0, 0x7F, 0x3F, 0x1F, 0x0F, 0x07, 0x03, 0x01)


def _bad_field(why: str) -> MessageError:
    return MessageError(ErrorCode.UPDATE_MESSAGE, UpdateSubcode.INVALID_NETWORK_FIELD, b"", why)


def decode_prefixes(data: bytes, start: int, end: int, max_len: int) -> list[Prefix]:
    """Prefixes packed in ``data[start:end]``."""
    out: list[Prefix] = []
    append = out.append
    i = start
    while i < end:
        plen = data[i]
        j = i + 1 + ((plen + 7) >> 3)
        if plen > max_len or j > end:
            raise _bad_field(f"prefix length {plen} at offset {i} is invalid or overruns")
        if data[j - 1] & _HOST_BITS[plen & 7]:
            append(canonical_prefix(plen, data[i + 1 : j]))
        else:
            append(data[i:j])
        i = j
    return out


def decode_prefixes_add_path(
    data: bytes, start: int, end: int, max_len: int
) -> tuple[list[Prefix], list[int]]:
    """Prefixes each preceded by a 4-octet path identifier (RFC 7911 §3)."""
    out: list[Prefix] = []
    ids: list[int] = []
    i = start
    while i < end:
        if i + 5 > end:
            raise _bad_field(f"path identifier at offset {i} overruns")
        ids.append(int.from_bytes(data[i : i + 4], "big"))
        plen = data[i + 4]
        j = i + 5 + ((plen + 7) >> 3)
        if plen > max_len or j > end:
            raise _bad_field(f"prefix length {plen} at offset {i + 4} is invalid or overruns")
        if data[j - 1] & _HOST_BITS[plen & 7]:
            out.append(canonical_prefix(plen, data[i + 5 : j]))
        else:
            out.append(data[i + 4 : j])
        i = j
    return out, ids


def encode_prefix(prefix: Prefix, path_id: int | None = None) -> bytes:
    if path_id is None:
        return prefix
    return path_id.to_bytes(4, "big") + prefix


def pack_prefixes(
    prefixes: list[Prefix],
    path_ids: list[int] | None,
    start: int,
    budget: int,
) -> tuple[bytes, int]:
    """Pack prefixes from index ``start`` until ``budget`` octets are used.

    Returns the packed octets and the index of the first prefix that did not fit.
    """
    parts: list[bytes] = []
    used = 0
    i = start
    n = len(prefixes)
    if path_ids is None:
        while i < n:
            p = prefixes[i]
            size = len(p)
            if used + size > budget:
                break
            parts.append(p)
            used += size
            i += 1
    else:
        while i < n:
            p = prefixes[i]
            size = len(p) + 4
            if used + size > budget:
                break
            parts.append(path_ids[i].to_bytes(4, "big"))
            parts.append(p)
            used += size
            i += 1
    return b"".join(parts), i
