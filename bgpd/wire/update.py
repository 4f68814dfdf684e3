"""UPDATE codec (RFC 4271 §4.3) with multiprotocol NLRI (RFC 4760), ADD-PATH (RFC 7911),
End-of-RIB (RFC 4724 §2) and RFC 7606 error handling.

Rules:
1. Lengths that cannot be reconciled with the message are a session reset with UPDATE/Malformed
   Attribute List (RFC 4271 §6.3, RFC 7606 §4); so is a repeated MP_REACH_NLRI or
   MP_UNREACH_NLRI (RFC 7606 §3 (g)). A malformed one is a session reset too (RFC 7606 §7.11,
   §7.12): Attribute Flags Error for its flags, else Optional Attribute Error (RFC 4760 §7).
   Every NOTIFICATION about one attribute carries that whole attribute, flags, type, length and
   value as received (RFC 4271 §6.3); Malformed Attribute List and Invalid Network Field carry
   no data.
2. Other repeated attributes: all but the first are discarded (RFC 7606 §3 (g)).
3. An attribute that overruns the attribute list makes the rest unparseable: treat-as-withdraw
   (RFC 7606 §4) for every NLRI we could locate.
4. With NLRI present, missing ORIGIN or AS_PATH, or NEXT_HOP for IPv4 NLRI, is treat-as-withdraw
   (RFC 7606 §3 (d)). A missing LOCAL_PREF is tolerated (read as the default by the RIB), as
   BIRD and GoBGP do.
5. An UPDATE that announces nothing (no NLRI field, no NLRI in MP_REACH_NLRI) has its path
   attributes ignored: their errors change nothing and are not reported (RFC 7606 §5.2).
6. The encoder puts MP_REACH_NLRI / MP_UNREACH_NLRI first (RFC 7606 §5.1) and packs as many
   prefixes per message as the negotiated size allows.
"""

from __future__ import annotations

import struct
from typing import Final

from bgpd.wire.attributes import (
    EXTENDED_LENGTH,
    OPTIONAL,
    OPTIONAL_TRANSITIVE,
    AttributeCache,
    DecodeContext,
    encode_attribute,
    encode_attributes,
)
from bgpd.wire.constants import (
    HEADER_LEN,
    Afi,
    AttrType,
    ErrorCode,
    MessageType,
    Safi,
    UpdateSubcode,
)
from bgpd.wire.errors import AttributeIssue, ErrorAction, MessageError, UsageError
from bgpd.wire.messages import Announcement, Update, Withdrawal, frame
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.nlri import decode_prefixes, decode_prefixes_add_path, pack_prefixes
from bgpd.wire.types import IPV4_UNICAST, Family, PathAttributes, Prefix

_KNOWN_AFI: Final = (Afi.IPV4, Afi.IPV6)
_KNOWN_SAFI: Final = (Safi.UNICAST, Safi.MULTICAST)
_MALFORMED_LIST: Final = UpdateSubcode.MALFORMED_ATTRIBUTE_LIST
EOR_IPV4: Final = frame(MessageType.UPDATE, b"\0\0\0\0")
# Cache-key prefix: the context flags and the peer AS (0 unless external; attributes.py rule 6).
_context_key: Final = struct.Struct("!BI").pack


def _reset(subcode: int, why: str, data: bytes = b"") -> MessageError:
    return MessageError(ErrorCode.UPDATE_MESSAGE, subcode, data, why)


def _mp_error(why: str, attribute: bytes) -> MessageError:
    """RFC 4760 §7 Optional Attribute Error; data is the attribute (RFC 4271 §6.3)."""
    return _reset(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, why, attribute)


def _nlri(
    data: bytes, start: int, end: int, family: Family, add_path: bool
) -> tuple[list[Prefix], list[int] | None]:
    if add_path:
        return decode_prefixes_add_path(data, start, end, family.max_prefix_len)
    return decode_prefixes(data, start, end, family.max_prefix_len), None


def _mp_family(value: bytes, code: int, attribute: bytes) -> Family | None:
    if len(value) < 3:
        raise _mp_error(f"MP attribute {code} too short", attribute)
    afi, safi = struct.unpack_from("!HB", value)
    if afi not in _KNOWN_AFI or safi not in _KNOWN_SAFI:
        return None
    return Family(afi, safi)


def _mp_nlri(
    value: bytes, start: int, family: Family, negotiated: Negotiated, attribute: bytes
) -> tuple[list[Prefix], list[int] | None]:
    try:
        return _nlri(value, start, len(value), family, family in negotiated.add_path_rx)
    except MessageError as exc:
        raise _mp_error(exc.reason, attribute) from None


def _next_hop_ok(family: Family, nh: bytes, negotiated: Negotiated) -> bool:
    if family.afi == Afi.IPV6:
        return len(nh) in (16, 32)
    # RFC 8950 §3: IPv4 NLRI may carry an IPv6 next hop when negotiated.
    return len(nh) == 4 or (family in negotiated.extended_next_hop and len(nh) in (16, 32))


def decode_update(body: bytes, negotiated: Negotiated, cache: AttributeCache) -> Update:
    """Decode an UPDATE body (``bytes``, after the header)."""
    size = len(body)
    if size < 4:
        raise _reset(_MALFORMED_LIST, "UPDATE shorter than its length fields")
    wlen = (body[0] << 8) | body[1]
    if 2 + wlen + 2 > size:
        raise _reset(_MALFORMED_LIST, f"withdrawn routes length {wlen} overruns the message")
    alen = (body[2 + wlen] << 8) | body[3 + wlen]
    astart = 4 + wlen
    aend = astart + alen
    if aend > size:
        raise _reset(_MALFORMED_LIST, f"total path attribute length {alen} overruns the message")
    v4_add_path = IPV4_UNICAST in negotiated.add_path_rx
    withdrawn_v4, withdrawn_v4_ids = _nlri(body, 2, 2 + wlen, IPV4_UNICAST, v4_add_path)
    nlri_v4, nlri_v4_ids = _nlri(body, aend, size, IPV4_UNICAST, v4_add_path)

    issues: list[AttributeIssue] = []
    spans: list[tuple[int, int, bytes]] = []
    key_parts: list[bytes] = []
    seen: set[int] = set()
    mp_reach: tuple[Family, bytes, list[Prefix], list[int] | None] | None = None
    mp_unreach: tuple[Family, list[Prefix], list[int] | None] | None = None
    framing_broken = False
    i = astart
    while i < aend:
        if i + 3 > aend:
            framing_broken = True
            break
        flags, code = body[i], body[i + 1]
        if flags & EXTENDED_LENGTH:
            if i + 4 > aend:
                framing_broken = True
                break
            vlen = (body[i + 2] << 8) | body[i + 3]
            vstart = i + 4
        else:
            vlen = body[i + 2]
            vstart = i + 3
        vend = vstart + vlen
        if vend > aend:
            framing_broken = True
            break
        if code in seen:
            if code in (AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI):
                raise _reset(_MALFORMED_LIST, f"attribute {code} repeated")
            issues.append(
                AttributeIssue(code, ErrorAction.ATTRIBUTE_DISCARD, _MALFORMED_LIST, "repeated")
            )
            i = vend
            continue
        seen.add(code)
        value = body[vstart:vend]
        if code == AttrType.MP_REACH_NLRI:
            raw = body[i:vend]
            if flags & OPTIONAL_TRANSITIVE != OPTIONAL:
                raise _reset(UpdateSubcode.ATTRIBUTE_FLAGS_ERROR, "MP_REACH_NLRI flags", raw)
            family = _mp_family(value, code, raw)
            if family is not None:
                if len(value) < 5 or 5 + value[3] > len(value):
                    raise _mp_error("MP_REACH_NLRI overruns", raw)
                nh = value[4 : 4 + value[3]]
                if not _next_hop_ok(family, nh, negotiated):
                    raise _mp_error(f"MP_REACH_NLRI next hop length {len(nh)} for {family}", raw)
                # Skip the reserved octet (RFC 4760 §3).
                prefixes, ids = _mp_nlri(value, 5 + len(nh), family, negotiated, raw)
                mp_reach = (family, nh, prefixes, ids)
            else:
                issues.append(
                    AttributeIssue(code, ErrorAction.ATTRIBUTE_DISCARD, 9, "unknown AFI/SAFI")
                )
        elif code == AttrType.MP_UNREACH_NLRI:
            raw = body[i:vend]
            if flags & OPTIONAL_TRANSITIVE != OPTIONAL:
                raise _reset(UpdateSubcode.ATTRIBUTE_FLAGS_ERROR, "MP_UNREACH_NLRI flags", raw)
            family = _mp_family(value, code, raw)
            if family is not None:
                prefixes, ids = _mp_nlri(value, 3, family, negotiated, raw)
                mp_unreach = (family, prefixes, ids)
            else:
                issues.append(
                    AttributeIssue(code, ErrorAction.ATTRIBUTE_DISCARD, 9, "unknown AFI/SAFI")
                )
        else:
            spans.append((flags, code, value))
            key_parts.append(body[i:vend])
        i = vend

    external = negotiated.external
    peer_as = negotiated.peer_as if external and negotiated.enforce_first_as else 0
    ctx = DecodeContext(negotiated.asn4, external, peer_as)
    if framing_broken:
        issues.append(
            AttributeIssue(0, ErrorAction.TREAT_AS_WITHDRAW, _MALFORMED_LIST, "attribute overruns")
        )
    key = _context_key(ctx.asn4 | external << 1, peer_as) + b"".join(key_parts)
    decoded = cache.decode(key, lambda: spans, ctx)
    attrs = decoded.attributes
    present = decoded.present

    has_nlri = bool(nlri_v4) or (mp_reach is not None and bool(mp_reach[2]))
    if has_nlri:
        if decoded.reset is not None:
            code = decoded.reset.attr_code
            raw = next(part for part in key_parts if part[1] == code)  # RFC 4271 §6.3 data
            raise _reset(decoded.reset.subcode, decoded.reset.reason, raw)
        issues.extend(decoded.issues)
        missing = [
            name
            for code, name in ((AttrType.ORIGIN, "ORIGIN"), (AttrType.AS_PATH, "AS_PATH"))
            if code not in present
        ]
        if nlri_v4 and AttrType.NEXT_HOP not in present:
            missing.append("NEXT_HOP")
        for name in missing:
            issues.append(
                AttributeIssue(
                    0,
                    ErrorAction.TREAT_AS_WITHDRAW,
                    UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE,
                    f"missing {name}",
                )
            )
    treat_as_withdraw = any(x.action == ErrorAction.TREAT_AS_WITHDRAW for x in issues)

    withdrawn: list[Withdrawal] = []
    announced: list[Announcement] = []
    if withdrawn_v4:
        withdrawn.append(Withdrawal(IPV4_UNICAST, withdrawn_v4, withdrawn_v4_ids))
    if mp_unreach is not None and mp_unreach[1]:
        withdrawn.append(Withdrawal(*mp_unreach))
    if nlri_v4:
        if treat_as_withdraw:
            withdrawn.append(Withdrawal(IPV4_UNICAST, nlri_v4, nlri_v4_ids))
        else:
            announced.append(Announcement(IPV4_UNICAST, attrs, nlri_v4, nlri_v4_ids))
    if mp_reach is not None and mp_reach[2]:
        family, nh, prefixes, ids = mp_reach
        if treat_as_withdraw:
            withdrawn.append(Withdrawal(family, prefixes, ids))
        else:
            announced.append(
                Announcement(family, cache.with_next_hop(attrs, bytes(nh)), prefixes, ids)
            )

    end_of_rib: Family | None = None
    if size == 4:
        end_of_rib = IPV4_UNICAST  # RFC 4724 §2: an UPDATE with nothing in it
    elif (
        mp_unreach is not None
        and not mp_unreach[1]
        and not withdrawn_v4
        and not nlri_v4
        and not spans
        and mp_reach is None
    ):
        end_of_rib = mp_unreach[0]  # RFC 4724 §2: only an empty MP_UNREACH_NLRI
    return Update(
        withdrawn=tuple(withdrawn),
        announced=tuple(announced),
        attributes=attrs if spans else None,
        end_of_rib=end_of_rib,
        issues=tuple(issues),
        treat_as_withdraw=treat_as_withdraw,
    )


def _uses_mp_reach(family: Family, attrs: PathAttributes) -> bool:
    return family != IPV4_UNICAST or len(attrs.next_hop) != 4


def _mp_reach_header(family: Family, next_hop: bytes) -> bytes:
    return struct.pack("!HBB", family.afi, family.safi, len(next_hop)) + next_hop + b"\0"


def _header_len(value_len: int) -> int:
    return 4 if value_len > 255 else 3


def encode_updates(
    family: Family,
    attrs: PathAttributes,
    prefixes: list[Prefix],
    negotiated: Negotiated,
    path_ids: list[int] | None = None,
) -> list[bytes]:
    """Whole UPDATE messages announcing ``prefixes`` with ``attrs``, packed to the size limit."""
    if family in negotiated.add_path_tx and path_ids is None:
        path_ids = [1] * len(prefixes)
    elif family not in negotiated.add_path_tx:
        path_ids = None
    room = negotiated.max_message_len - HEADER_LEN - 4
    out: list[bytes] = []
    i, n = 0, len(prefixes)
    if not _uses_mp_reach(family, attrs):
        encoded = encode_attributes(attrs, negotiated.asn4, next_hop=True)
        head = b"\0\0" + struct.pack("!H", len(encoded)) + encoded
        budget = room - len(encoded)
        while i < n:
            packed, j = pack_prefixes(prefixes, path_ids, i, budget)
            if j == i:
                raise UsageError("attributes leave no room for a prefix")
            out.append(frame(MessageType.UPDATE, head + packed))
            i = j
        return out
    encoded = encode_attributes(attrs, negotiated.asn4, next_hop=False)
    mp_head = _mp_reach_header(family, attrs.next_hop)
    budget = room - len(encoded) - 4 - len(mp_head)
    while i < n:
        packed, j = pack_prefixes(prefixes, path_ids, i, budget)
        if j == i:
            raise UsageError("attributes leave no room for a prefix")
        mp = encode_attribute(OPTIONAL, AttrType.MP_REACH_NLRI, mp_head + packed)
        attr_bytes = mp + encoded
        out.append(
            frame(MessageType.UPDATE, b"\0\0" + struct.pack("!H", len(attr_bytes)) + attr_bytes)
        )
        i = j
    return out


def encode_withdrawals(
    family: Family,
    prefixes: list[Prefix],
    negotiated: Negotiated,
    path_ids: list[int] | None = None,
) -> list[bytes]:
    """Whole UPDATE messages withdrawing ``prefixes``, packed to the size limit."""
    if family in negotiated.add_path_tx and path_ids is None:
        path_ids = [1] * len(prefixes)
    elif family not in negotiated.add_path_tx:
        path_ids = None
    room = negotiated.max_message_len - HEADER_LEN - 4
    out: list[bytes] = []
    i, n = 0, len(prefixes)
    if family == IPV4_UNICAST:
        while i < n:
            packed, i = pack_prefixes(prefixes, path_ids, i, room)
            out.append(frame(MessageType.UPDATE, struct.pack("!H", len(packed)) + packed + b"\0\0"))
        return out
    afi_safi = struct.pack("!HB", family.afi, family.safi)
    while i < n:
        packed, i = pack_prefixes(prefixes, path_ids, i, room - 4 - 3)
        mp = encode_attribute(OPTIONAL, AttrType.MP_UNREACH_NLRI, afi_safi + packed)
        out.append(frame(MessageType.UPDATE, b"\0\0" + struct.pack("!H", len(mp)) + mp))
    return out


def encode_end_of_rib(family: Family) -> bytes:
    """RFC 4724 §2: an empty UPDATE for IPv4 unicast, an empty MP_UNREACH_NLRI otherwise."""
    if family == IPV4_UNICAST:
        return EOR_IPV4
    mp = encode_attribute(OPTIONAL, AttrType.MP_UNREACH_NLRI, struct.pack("!HB", *family))
    return frame(MessageType.UPDATE, b"\0\0" + struct.pack("!H", len(mp)) + mp)


def _ids(ids: list[int] | None, family: Family, negotiated: Negotiated, n: int) -> list[int] | None:
    if family not in negotiated.add_path_tx:
        return None
    return ids if ids is not None else [1] * n


def encode_update(update: Update, negotiated: Negotiated) -> bytes:
    """One UPDATE message carrying everything in ``update`` (at most one MP_REACH_NLRI and one
    MP_UNREACH_NLRI: RFC 7606 §3 (g)). Raises ``UsageError`` if it cannot be one message."""
    if update.end_of_rib is not None:
        return encode_end_of_rib(update.end_of_rib)
    withdrawn_field = b""
    mp_unreach = b""
    for w in update.withdrawn:
        packed, _ = pack_prefixes(
            w.prefixes, _ids(w.path_ids, w.family, negotiated, len(w.prefixes)), 0, 1 << 30
        )
        if w.family == IPV4_UNICAST:
            withdrawn_field += packed
        elif mp_unreach:
            raise UsageError("one MP_UNREACH_NLRI per UPDATE")
        else:
            value = struct.pack("!HB", w.family.afi, w.family.safi) + packed
            mp_unreach = encode_attribute(OPTIONAL, AttrType.MP_UNREACH_NLRI, value)
    base = update.attributes
    nlri = b""
    mp_reach = b""
    for a in update.announced:
        packed, _ = pack_prefixes(
            a.prefixes, _ids(a.path_ids, a.family, negotiated, len(a.prefixes)), 0, 1 << 30
        )
        if not _uses_mp_reach(a.family, a.attributes):
            nlri += packed
            base = base or a.attributes
        elif mp_reach:
            raise UsageError("one MP_REACH_NLRI per UPDATE")
        else:
            value = _mp_reach_header(a.family, a.attributes.next_hop) + packed
            mp_reach = encode_attribute(OPTIONAL, AttrType.MP_REACH_NLRI, value)
            base = base or a.attributes
    encoded = b""
    if base is not None:
        encoded = encode_attributes(base, negotiated.asn4, next_hop=len(base.next_hop) == 4)
    attr_bytes = mp_reach + mp_unreach + encoded
    body = (
        struct.pack("!H", len(withdrawn_field))
        + withdrawn_field
        + struct.pack("!H", len(attr_bytes))
        + attr_bytes
        + nlri
    )
    if len(body) + HEADER_LEN > negotiated.max_message_len:
        raise UsageError(f"UPDATE of {len(body) + HEADER_LEN} octets exceeds the negotiated size")
    return frame(MessageType.UPDATE, body)
