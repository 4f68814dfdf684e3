"""Path attributes (RFC 4271 §4.3, §5) as a table: code -> expected flags, decoder, and the
RFC 7606 action when the attribute is malformed. Plus the encoder and the interning cache.

Rules:
1. ``ATTRIBUTES`` is the single source of truth: adding an attribute is adding a row.
2. A malformed attribute yields an ``AttributeIssue`` with the row's action (RFC 7606 §7);
   the strongest action of an UPDATE wins (RFC 7606 §3 (f)). Session-reset issues are raised by
   ``update.py`` as ``MessageError``.
3. Flags whose Optional/Transitive bits conflict with the row are malformed (RFC 7606 §3 (c)).
4. An unrecognised well-known attribute is a session reset (RFC 4271 §6.3, subcode 2); an
   unrecognised optional transitive one is kept with the Partial bit set, an optional
   non-transitive one is dropped (RFC 4271 §5, §9).
5. On a 2-octet-AS session, AS4_PATH and AS4_AGGREGATOR are merged into AS_PATH and AGGREGATOR
   (RFC 6793 §4.2.3) and written back on encode (§4.2.2); on a 4-octet session they are
   discarded if received (§4.1).
6. ``AttributeCache`` decodes each distinct attribute octet string once and interns equal
   values, so all prefixes with equal attributes share one ``PathAttributes`` object. Its key
   must include every ``DecodeContext`` field a decoder reads (``update.py`` builds it).
7. From an external peer, an AS_PATH with confederation segments (RFC 5065 §5; bgpd belongs
   to no confederation, so every external peer is outside it) or, when the context carries the
   peer's AS (``Negotiated.enforce_first_as``), whose leftmost AS is not the peer's (RFC 4271
   §6.3) is a malformed AS_PATH: treat-as-withdraw (RFC 7606 §7.2).
8. A row with ``external_discard`` (LOCAL_PREF) received from an external peer is discarded
   whatever its flags, length or value, and the route kept (RFC 7606 §7.5: "If the LOCAL_PREF
   attribute is received from an external neighbor, it SHALL be discarded using the approach of
   'attribute discard'"; RFC 4271 §5.1.5: ignored from external peers). Only from an internal
   peer is a LOCAL_PREF whose length is not 4 malformed: treat-as-withdraw.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final, NamedTuple

from bgpd.wire.constants import AS_TRANS, AttrFlag, AttrType, SegmentType, UpdateSubcode
from bgpd.wire.errors import AttributeIssue, ErrorAction
from bgpd.wire.types import AsPath, AsPathSegment, PathAttributes, UnknownAttribute

# The flag bits as plain ints: with an ``AttrFlag`` operand, ``flags & X`` runs IntFlag's
# operator in Python (about 0.7 us, twice per attribute when decoding: 15 % of decoding the
# UPDATEs of bench/tables.py's 1M full-shape table).
OPTIONAL: Final = int(AttrFlag.OPTIONAL)
TRANSITIVE: Final = int(AttrFlag.TRANSITIVE)
PARTIAL: Final = int(AttrFlag.PARTIAL)
EXTENDED_LENGTH: Final = int(AttrFlag.EXTENDED_LENGTH)
WELL_KNOWN: Final = TRANSITIVE
OPTIONAL_TRANSITIVE: Final = OPTIONAL | TRANSITIVE

TAW: Final = ErrorAction.TREAT_AS_WITHDRAW
DISCARD: Final = ErrorAction.ATTRIBUTE_DISCARD
RESET: Final = ErrorAction.SESSION_RESET


class Malformed(Exception):
    """Raised by a decoder row; turned into an ``AttributeIssue`` with the row's action, or with
    ``action`` where the RFC names a different one for this particular fault."""

    def __init__(self, reason: str, action: ErrorAction | None = None) -> None:
        super().__init__(reason)
        self.action = action


class DecodeContext(NamedTuple):
    """What attribute decoding depends on; ``peer_as`` 0 means unknown (no leftmost-AS check)."""

    asn4: bool
    external: bool
    peer_as: int = 0


Fields = dict[str, Any]
Decoder = Callable[[bytes, DecodeContext, Fields], None]


@dataclass(frozen=True, slots=True)
class AttributeRow:
    code: int
    name: str
    flags: int
    decode: Decoder
    action: ErrorAction
    subcode: int
    external_discard: bool = False


def _fixed(value: bytes, size: int, what: str) -> None:
    if len(value) != size:
        raise Malformed(f"{what} length {len(value)}, expected {size}")


def _multiple(value: bytes, size: int, what: str) -> None:
    if not value or len(value) % size:
        raise Malformed(f"{what} length {len(value)} is not a non-zero multiple of {size}")


def _decode_origin(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    _fixed(value, 1, "ORIGIN")
    if value[0] > 2:
        raise Malformed(f"ORIGIN value {value[0]}")  # RFC 7606 §7.1
    out["origin"] = value[0]


def decode_as_path(value: bytes, asn_size: int) -> AsPath:
    """AS_PATH / AS4_PATH segments (RFC 4271 §4.3); malformed per RFC 7606 §7.2."""
    segments: list[AsPathSegment] = []
    fmt = "!%dI" if asn_size == 4 else "!%dH"
    i, end = 0, len(value)
    while i < end:
        if i + 2 > end:
            raise Malformed("AS_PATH segment header overruns")
        seg_type, count = value[i], value[i + 1]
        if seg_type not in (1, 2, 3, 4):
            raise Malformed(f"AS_PATH segment type {seg_type}")
        if count == 0:
            raise Malformed("AS_PATH segment of length 0")
        j = i + 2 + count * asn_size
        if j > end:
            raise Malformed("AS_PATH segment overruns")
        segments.append(AsPathSegment(seg_type, struct.unpack_from(fmt % count, value, i + 2)))
        i = j
    return tuple(segments)


_CONFED_SEGMENTS: Final = (SegmentType.AS_CONFED_SEQUENCE, SegmentType.AS_CONFED_SET)


def _check_external_as_path(path: AsPath, ctx: DecodeContext) -> None:
    """Rule 7: the AS_PATH checks that apply to UPDATEs from an external peer."""
    if any(seg.type in _CONFED_SEGMENTS for seg in path):
        raise Malformed("AS_PATH with confederation segments from an external peer")  # RFC 5065 §5
    if ctx.peer_as:
        # On a 2-octet session a peer AS above 65535 appears as AS_TRANS (RFC 6793 §4.2.2).
        expected = ctx.peer_as if ctx.asn4 or ctx.peer_as <= 0xFFFF else AS_TRANS
        first = path[0] if path else None
        if first is None or first.type != SegmentType.AS_SEQUENCE or first.asns[0] != expected:
            leftmost = first.asns[0] if first is not None else "none"
            raise Malformed(f"leftmost AS {leftmost} is not the peer's AS {expected}")


def _decode_as_path(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    path = decode_as_path(value, 4 if ctx.asn4 else 2)
    if ctx.external:
        _check_external_as_path(path, ctx)
    out["as_path"] = path


def _decode_next_hop(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    _fixed(value, 4, "NEXT_HOP")
    first = value[0]
    if value == b"\0\0\0\0" or 224 <= first <= 239 or value == b"\xff\xff\xff\xff":
        raise Malformed(f"NEXT_HOP {'.'.join(map(str, value))} is not a unicast address")
    out["next_hop"] = bytes(value)


def _decode_med(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    _fixed(value, 4, "MULTI_EXIT_DISC")
    out["med"] = int.from_bytes(value, "big")


def _decode_local_pref(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    # From an external peer the row's ``external_discard`` (rule 8) discards it before this runs.
    _fixed(value, 4, "LOCAL_PREF")
    out["local_pref"] = int.from_bytes(value, "big")


def _decode_atomic_aggregate(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    _fixed(value, 0, "ATOMIC_AGGREGATE")
    out["atomic_aggregate"] = True


def _decode_aggregator(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    size = 8 if ctx.asn4 else 6
    _fixed(value, size, "AGGREGATOR")
    out["aggregator"] = (int.from_bytes(value[: size - 4], "big"), bytes(value[size - 4 :]))


def _decode_communities(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    _multiple(value, 4, "COMMUNITIES")
    out["communities"] = struct.unpack(f"!{len(value) // 4}I", value)


def _decode_originator_id(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    _fixed(value, 4, "ORIGINATOR_ID")
    out["originator_id"] = bytes(value)


def _decode_cluster_list(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    _multiple(value, 4, "CLUSTER_LIST")
    out["cluster_list"] = tuple(bytes(value[i : i + 4]) for i in range(0, len(value), 4))


def _decode_extended_communities(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    _multiple(value, 8, "EXTENDED_COMMUNITIES")
    out["extended_communities"] = tuple(bytes(value[i : i + 8]) for i in range(0, len(value), 8))


def _decode_as4_path(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    if ctx.asn4:
        raise Malformed("AS4_PATH from a 4-octet-AS speaker")  # RFC 6793 §4.1: discard
    path = decode_as_path(value, 4)
    # RFC 6793 §6: confederation segments in AS4_PATH are discarded.
    out["_as4_path"] = tuple(
        s for s in path if s.type in (SegmentType.AS_SEQUENCE, SegmentType.AS_SET)
    )


def _decode_as4_aggregator(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    if ctx.asn4:
        raise Malformed("AS4_AGGREGATOR from a 4-octet-AS speaker")  # RFC 6793 §4.1
    _fixed(value, 8, "AS4_AGGREGATOR")
    out["_as4_aggregator"] = (int.from_bytes(value[:4], "big"), bytes(value[4:]))


def _decode_large_communities(value: bytes, ctx: DecodeContext, out: Fields) -> None:
    _multiple(value, 12, "LARGE_COMMUNITY")  # RFC 8092 §6
    out["large_communities"] = tuple(struct.iter_unpack("!III", value))


_US = UpdateSubcode
ATTRIBUTES: Final[dict[int, AttributeRow]] = {
    row.code: row
    for row in (
        AttributeRow(AttrType.ORIGIN, "origin", WELL_KNOWN, _decode_origin, TAW, 6),
        AttributeRow(AttrType.AS_PATH, "as_path", WELL_KNOWN, _decode_as_path, TAW, 11),
        AttributeRow(AttrType.NEXT_HOP, "next_hop", WELL_KNOWN, _decode_next_hop, TAW, 8),
        AttributeRow(AttrType.MULTI_EXIT_DISC, "med", OPTIONAL, _decode_med, TAW, 5),
        AttributeRow(
            AttrType.LOCAL_PREF,
            "local_pref",
            WELL_KNOWN,
            _decode_local_pref,
            TAW,
            5,
            external_discard=True,  # RFC 7606 §7.5, RFC 4271 §5.1.5
        ),
        AttributeRow(
            AttrType.ATOMIC_AGGREGATE,
            "atomic_aggregate",
            WELL_KNOWN,
            _decode_atomic_aggregate,
            DISCARD,
            5,
        ),
        AttributeRow(
            AttrType.AGGREGATOR, "aggregator", OPTIONAL_TRANSITIVE, _decode_aggregator, DISCARD, 5
        ),
        AttributeRow(
            AttrType.COMMUNITIES, "communities", OPTIONAL_TRANSITIVE, _decode_communities, TAW, 9
        ),
        AttributeRow(
            AttrType.ORIGINATOR_ID, "originator_id", OPTIONAL, _decode_originator_id, TAW, 9
        ),
        AttributeRow(AttrType.CLUSTER_LIST, "cluster_list", OPTIONAL, _decode_cluster_list, TAW, 9),
        AttributeRow(
            AttrType.EXTENDED_COMMUNITIES,
            "extended_communities",
            OPTIONAL_TRANSITIVE,
            _decode_extended_communities,
            TAW,
            9,
        ),
        AttributeRow(
            AttrType.AS4_PATH, "as4_path", OPTIONAL_TRANSITIVE, _decode_as4_path, DISCARD, 9
        ),
        AttributeRow(
            AttrType.AS4_AGGREGATOR,
            "as4_aggregator",
            OPTIONAL_TRANSITIVE,
            _decode_as4_aggregator,
            DISCARD,
            9,
        ),
        AttributeRow(
            AttrType.LARGE_COMMUNITY,
            "large_communities",
            OPTIONAL_TRANSITIVE,
            _decode_large_communities,
            TAW,
            9,
        ),
    )
}

MP_ATTRIBUTES: Final = (AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI)


class DecodedAttributes(NamedTuple):
    """The result of decoding one attribute octet string (cached by ``AttributeCache``)."""

    attributes: PathAttributes
    issues: tuple[AttributeIssue, ...]
    present: frozenset[int]
    reset: AttributeIssue | None


def _as_path_count(path: AsPath) -> int:
    """RFC 6793 §4.2.3 counting: an AS_SET counts 1, confederation segments 0."""
    n = 0
    for seg in path:
        if seg.type == SegmentType.AS_SEQUENCE:
            n += len(seg.asns)
        elif seg.type == SegmentType.AS_SET:
            n += 1
    return n


def merge_as4_path(as_path: AsPath, as4_path: AsPath) -> AsPath:
    """RFC 6793 §4.2.3: keep the leading AS_PATH entries the AS4_PATH does not cover."""
    keep = _as_path_count(as_path) - _as_path_count(as4_path)
    if keep < 0:
        return as_path  # AS4_PATH longer than AS_PATH: ignore it
    head: list[AsPathSegment] = []
    for seg in as_path:
        if keep <= 0 and seg.type in (SegmentType.AS_SEQUENCE, SegmentType.AS_SET):
            break
        if seg.type == SegmentType.AS_SEQUENCE:
            take = seg.asns[:keep]
            keep -= len(take)
            head.append(AsPathSegment(seg.type, take))
            if len(take) < len(seg.asns):
                break
        elif seg.type == SegmentType.AS_SET:
            head.append(seg)
            keep -= 1
        else:
            head.append(seg)
    if head and as4_path and head[-1].type == as4_path[0].type == SegmentType.AS_SEQUENCE:
        joined = AsPathSegment(SegmentType.AS_SEQUENCE, head[-1].asns + as4_path[0].asns)
        return (*head[:-1], joined, *as4_path[1:])
    return tuple(head) + as4_path


def decode_attribute_list(
    spans: list[tuple[int, int, bytes]], ctx: DecodeContext
) -> DecodedAttributes:
    """Decode attributes given as (flags, code, value) triples (MP attributes excluded)."""
    fields: Fields = {}
    issues: list[AttributeIssue] = []
    unknown: list[UnknownAttribute] = []
    present: set[int] = set()
    reset: AttributeIssue | None = None
    for flags, code, value in spans:
        row = ATTRIBUTES.get(code)
        if row is None:
            if not flags & OPTIONAL:
                reset = AttributeIssue(
                    code,
                    RESET,
                    _US.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                    f"unrecognized well-known attribute {code}",
                )
                break
            if flags & TRANSITIVE:
                unknown.append(UnknownAttribute(flags | PARTIAL, code, bytes(value)))
            continue
        if row.external_discard and ctx.external:
            # Rule 8: whatever its flags, length or value (RFC 7606 §7.5).
            issues.append(
                AttributeIssue(code, DISCARD, row.subcode, f"{row.name} from an external peer")
            )
            continue
        present.add(code)
        try:
            if flags & OPTIONAL_TRANSITIVE != row.flags:
                raise Malformed(f"{row.name} flags 0x{flags:02x} conflict with 0x{row.flags:02x}")
            row.decode(value, ctx, fields)
        except Malformed as exc:
            present.discard(code)
            issues.append(AttributeIssue(code, exc.action or row.action, row.subcode, str(exc)))
    as4_path = fields.pop("_as4_path", None)
    as4_aggregator = fields.pop("_as4_aggregator", None)
    aggregator = fields.get("aggregator")
    if not ctx.asn4 and (as4_path is not None or as4_aggregator is not None):
        # RFC 6793 §4.2.3: with both aggregators present, an AGGREGATOR not carrying AS_TRANS
        # means AS4_AGGREGATOR and AS4_PATH are stale.
        if as4_aggregator is not None and aggregator is not None and aggregator[0] != AS_TRANS:
            as4_path = as4_aggregator = None
        if as4_aggregator is not None and aggregator is not None:
            fields["aggregator"] = as4_aggregator
        if as4_path is not None and "as_path" in fields:
            fields["as_path"] = merge_as4_path(fields["as_path"], as4_path)
    if unknown:
        fields["unknown"] = tuple(unknown)
    return DecodedAttributes(PathAttributes(**fields), tuple(issues), frozenset(present), reset)


class AttributeCache:
    """Decoded attribute sets by wire octets, and interned values.

    Rules: the octet cache is bounded (cleared when full); interned values live as long as some
    route holds them (a weak-value table), so equal sets across UPDATEs and peers are one object.
    """

    def __init__(self, max_entries: int = 65536) -> None:
        self.max_entries = max_entries
        self._by_wire: dict[bytes, DecodedAttributes] = {}
        self._values: weakref.WeakValueDictionary[PathAttributes, PathAttributes] = (
            weakref.WeakValueDictionary()
        )
        self.hits = 0
        self.misses = 0

    def intern(self, attrs: PathAttributes) -> PathAttributes:
        found = self._values.get(attrs)
        if found is None:
            self._values[attrs] = attrs
            return attrs
        return found

    def with_next_hop(self, attrs: PathAttributes, next_hop: bytes) -> PathAttributes:
        if attrs.next_hop == next_hop:
            return attrs
        return self.intern(replace(attrs, next_hop=next_hop))

    def decode(
        self, key: bytes, spans: Callable[[], list[tuple[int, int, bytes]]], ctx: DecodeContext
    ) -> DecodedAttributes:
        found = self._by_wire.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        result = decode_attribute_list(spans(), ctx)
        result = result._replace(attributes=self.intern(result.attributes))
        if result.reset is None:
            if len(self._by_wire) >= self.max_entries:
                self._by_wire.clear()
            self._by_wire[key] = result
        return result


def encode_attribute(flags: int, code: int, value: bytes) -> bytes:
    """One attribute TLV; the Extended Length bit is set exactly when needed (RFC 4271 §4.3)."""
    if len(value) > 255:
        return struct.pack("!BBH", (flags | EXTENDED_LENGTH) & 0xFF, code, len(value)) + value
    return struct.pack("!BBB", flags & ~EXTENDED_LENGTH & 0xFF, code, len(value)) + value


def encode_as_path(path: AsPath, asn4: bool) -> bytes:
    """Segments of at most 255 ASNs; 2-octet form substitutes AS_TRANS (RFC 6793 §4.2.2)."""
    out = bytearray()
    for seg in path:
        asns = seg.asns if asn4 else tuple(a if a <= 0xFFFF else AS_TRANS for a in seg.asns)
        for i in range(0, len(asns), 255):
            chunk = asns[i : i + 255]
            out += bytes((seg.type, len(chunk)))
            out += struct.pack(("!%dI" if asn4 else "!%dH") % len(chunk), *chunk)
    return bytes(out)


def encode_attributes(attrs: PathAttributes, asn4: bool, next_hop: bool) -> bytes:
    """All attributes of ``attrs`` in type-code order (RFC 4271 §5), NEXT_HOP when asked."""
    parts: list[bytes] = [encode_attribute(WELL_KNOWN, AttrType.ORIGIN, bytes((attrs.origin,)))]
    parts.append(
        encode_attribute(WELL_KNOWN, AttrType.AS_PATH, encode_as_path(attrs.as_path, asn4))
    )
    if next_hop:
        parts.append(encode_attribute(WELL_KNOWN, AttrType.NEXT_HOP, attrs.next_hop[:4]))
    if attrs.med is not None:
        parts.append(
            encode_attribute(OPTIONAL, AttrType.MULTI_EXIT_DISC, attrs.med.to_bytes(4, "big"))
        )
    if attrs.local_pref is not None:
        parts.append(
            encode_attribute(WELL_KNOWN, AttrType.LOCAL_PREF, attrs.local_pref.to_bytes(4, "big"))
        )
    if attrs.atomic_aggregate:
        parts.append(encode_attribute(WELL_KNOWN, AttrType.ATOMIC_AGGREGATE, b""))
    needs_as4_aggregator = False
    if attrs.aggregator is not None:
        asn, address = attrs.aggregator
        if asn4:
            value = asn.to_bytes(4, "big") + address
        else:
            needs_as4_aggregator = asn > 0xFFFF
            value = (AS_TRANS if needs_as4_aggregator else asn).to_bytes(2, "big") + address
        parts.append(encode_attribute(OPTIONAL_TRANSITIVE, AttrType.AGGREGATOR, value))
    if attrs.communities:
        value = struct.pack(f"!{len(attrs.communities)}I", *attrs.communities)
        parts.append(encode_attribute(OPTIONAL_TRANSITIVE, AttrType.COMMUNITIES, value))
    if attrs.originator_id is not None:
        parts.append(encode_attribute(OPTIONAL, AttrType.ORIGINATOR_ID, attrs.originator_id))
    if attrs.cluster_list:
        parts.append(
            encode_attribute(OPTIONAL, AttrType.CLUSTER_LIST, b"".join(attrs.cluster_list))
        )
    if attrs.extended_communities:
        value = b"".join(attrs.extended_communities)
        parts.append(encode_attribute(OPTIONAL_TRANSITIVE, AttrType.EXTENDED_COMMUNITIES, value))
    if not asn4:
        if any(a > 0xFFFF for seg in attrs.as_path for a in seg.asns):
            as4 = tuple(
                s for s in attrs.as_path if s.type in (SegmentType.AS_SEQUENCE, SegmentType.AS_SET)
            )
            parts.append(
                encode_attribute(OPTIONAL_TRANSITIVE, AttrType.AS4_PATH, encode_as_path(as4, True))
            )
        if needs_as4_aggregator and attrs.aggregator is not None:
            value = attrs.aggregator[0].to_bytes(4, "big") + attrs.aggregator[1]
            parts.append(encode_attribute(OPTIONAL_TRANSITIVE, AttrType.AS4_AGGREGATOR, value))
    if attrs.large_communities:
        value = b"".join(struct.pack("!III", *c) for c in attrs.large_communities)
        parts.append(encode_attribute(OPTIONAL_TRANSITIVE, AttrType.LARGE_COMMUNITY, value))
    for extra in sorted(attrs.unknown, key=lambda u: u.code):
        parts.append(encode_attribute(extra.flags, extra.code, extra.value))
    return b"".join(parts)
