"""Golden error cases: one per RFC 4271 §6 error the codec detects, one per RFC 7606 rule.

Each case is raw octets in, and either the exact NOTIFICATION (code, subcode, data) out, or the
RFC 7606 action applied to the UPDATE. OPEN errors that need session context (bad peer AS,
unsupported required capability, our own BGP identifier) belong to the session FSM's tests.
"""

from __future__ import annotations

import struct

import pytest

from bgpd.wire.attributes import AttributeCache
from bgpd.wire.codec import decode_message
from bgpd.wire.constants import MARKER, AttrType
from bgpd.wire.errors import ErrorAction, MessageError
from bgpd.wire.framer import Framer
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, IPV6_UNICAST, prefix_from_str

V4_NLRI = prefix_from_str("10.1.0.0/24")
IBGP = Negotiated(asn4=True, families=frozenset({IPV4_UNICAST, IPV6_UNICAST}))
EBGP = Negotiated(asn4=True, families=frozenset({IPV4_UNICAST, IPV6_UNICAST}), external=True)
# External peers whose AS is known: AS_PATH below starts with 64512, so EBGP_64512 matches.
EBGP_64512 = Negotiated(external=True, peer_as=64512, enforce_first_as=True)
EBGP_65001 = Negotiated(external=True, peer_as=65001, enforce_first_as=True)
TWO_OCTET = Negotiated(asn4=False)


def attr(flags: int, code: int, value: bytes) -> bytes:
    if flags & 0x10:
        return struct.pack("!BBH", flags, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


ORIGIN = attr(0x40, 1, b"\x00")
AS_PATH = attr(0x40, 2, b"\x02\x01" + struct.pack("!I", 64512))
NEXT_HOP = attr(0x40, 3, bytes([10, 0, 0, 1]))
MANDATORY = ORIGIN + AS_PATH + NEXT_HOP


def update_body(attrs: bytes = b"", nlri: bytes = V4_NLRI, withdrawn: bytes = b"") -> bytes:
    return (
        struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs)) + attrs + nlri
    )


def header(length: int, msg_type: int) -> bytes:
    return MARKER + struct.pack("!HB", length, msg_type)


# --- RFC 4271 §6.1: message header errors (the framer) -------------------------------------
HEADER_CASES = [
    ("marker", b"\x00" * 16 + struct.pack("!HB", 19, 4), (1, 1, b"")),
    ("length-below-19", header(18, 4), (1, 2, b"\x00\x12")),
    ("length-above-4096", header(4097, 2), (1, 2, b"\x10\x01")),
    ("open-too-short", header(28, 1) + b"\0" * 9, (1, 2, b"\x00\x1c")),
    ("keepalive-with-body", header(20, 4) + b"\0", (1, 2, b"\x00\x14")),
    ("update-too-short", header(22, 2) + b"\0" * 3, (1, 2, b"\x00\x16")),
    ("notification-too-short", header(20, 3) + b"\0", (1, 2, b"\x00\x14")),
    ("bad-type", header(19, 9), (1, 3, b"\x09")),
    ("open-over-4096-with-extended", header(5000, 1), (1, 2, b"\x13\x88")),
]


@pytest.mark.parametrize(
    ("name", "data", "expected"), HEADER_CASES, ids=[c[0] for c in HEADER_CASES]
)
def test_header_errors(name: str, data: bytes, expected: tuple[int, int, bytes]) -> None:
    framer = Framer(max_length=65535 if "extended" in name else 4096)
    with pytest.raises(MessageError) as err:
        framer.feed(data)
    assert (err.value.code, err.value.subcode, err.value.data) == expected


# --- RFC 4271 §6.2: OPEN message errors (context-free ones) ---------------------------------
def open_body(
    version: int = 4,
    asn: int = 64512,
    hold: int = 90,
    bgp_id: int = 0x0A000001,
    params: bytes = b"",
) -> bytes:
    return struct.pack("!BHHIB", version, asn, hold, bgp_id, len(params)) + params


OPEN_CASES = [
    ("unsupported-version", open_body(version=3), (2, 1, b"\x00\x04")),
    ("hold-time-1", open_body(hold=1), (2, 6, b"")),
    ("hold-time-2", open_body(hold=2), (2, 6, b"")),
    ("bgp-identifier-zero", open_body(bgp_id=0), (2, 3, b"")),
    ("unsupported-optional-parameter", open_body(params=b"\x01\x02\x00\x00"), (2, 4, b"")),
    ("optional-parameters-overrun", open_body(params=b"\x02\x05\x01\x04"), (2, 0, b"")),
    ("capability-overrun", open_body(params=b"\x02\x02\x41\x04"), (2, 0, b"\x41\x04")),
    (
        "four-octet-as-bad-length",
        open_body(params=b"\x02\x04\x41\x02\x00\x01"),
        (2, 0, b"\x41\x02\x00\x01"),
    ),
]


@pytest.mark.parametrize(("name", "body", "expected"), OPEN_CASES, ids=[c[0] for c in OPEN_CASES])
def test_open_errors(name: str, body: bytes, expected: tuple[int, int, bytes]) -> None:
    with pytest.raises(MessageError) as err:
        decode_message(1, body, IBGP, AttributeCache())
    assert (err.value.code, err.value.subcode) == expected[:2]
    if expected[2]:
        assert err.value.data == expected[2]


# --- RFC 4271 §6.3 / RFC 7606: UPDATE errors that reset the session -------------------------
# Data per RFC 4271 §6.3: none for Malformed Attribute List and Invalid Network Field; the whole
# erroneous attribute (flags, type, length, value as received) for errors about one attribute.
MP_REACH_V6 = attr(0x90, 14, b"\x00\x02\x01\x10" + bytes(16) + b"\x00")
MP_REACH_BAD_NH = attr(0x90, 14, b"\x00\x02\x01\x05" + bytes(5) + b"\x00")
MP_REACH_BAD_NLRI = attr(0x90, 14, b"\x00\x02\x01\x10" + bytes(16) + b"\x00\x81")
MP_REACH_SHORT = attr(0x80, 14, b"\x00\x02")
MP_REACH_NH_OVERRUNS = attr(0x80, 14, b"\x00\x02\x01\x20" + bytes(16))
MP_REACH_FLAGS = attr(0xC0, 14, b"\x00\x02\x01\x10" + bytes(16) + b"\x00")
MP_REACH_FLAGS_EXTENDED = attr(0x50, 14, b"\x00\x02\x01\x10" + bytes(16) + b"\x00")
MP_UNREACH_FLAGS = attr(0x40, 15, b"\x00\x02\x01")
MP_UNREACH_SHORT = attr(0x80, 15, b"\x00\x02")
MP_UNREACH_TRUNCATED = attr(0x80, 15, b"\x00\x02\x01\x30\x20\x01")
MP_UNREACH_TOO_LONG = attr(0x80, 15, b"\x00\x02\x01\x81" + bytes(17))
MP_UNREACH_V4_TRUNCATED = attr(0x80, 15, b"\x00\x01\x01\x18\x0a")
UNKNOWN_WELL_KNOWN = attr(0x40, 99, b"x")
UNKNOWN_WELL_KNOWN_EXTENDED = attr(0x50, 99, b"x")

RESET_CASES = [
    ("withdrawn-length-overruns", b"\x00\x10\x00\x00", (3, 1, b"")),
    ("attribute-length-overruns", b"\x00\x00\x00\x40" + MANDATORY, (3, 1, b"")),
    ("update-shorter-than-lengths", b"\x00\x00\x00", (3, 1, b"")),
    (
        "nlri-prefix-too-long",
        update_body(MANDATORY, nlri=b"\x21\x0a\x00\x00\x00\x00"),
        (3, 10, b""),
    ),
    ("nlri-truncated", update_body(MANDATORY, nlri=b"\x18\x0a\x00"), (3, 10, b"")),
    (
        "withdrawn-prefix-too-long",
        update_body(b"", b"", withdrawn=b"\x28\x0a\x00\x00\x00\x00"),
        (3, 10, b""),
    ),
    (
        "unrecognized-well-known",
        update_body(MANDATORY + UNKNOWN_WELL_KNOWN),
        (3, 2, UNKNOWN_WELL_KNOWN),
    ),
    (
        "unrecognized-well-known-extended-length",  # the data keeps the 2-octet length
        update_body(MANDATORY + UNKNOWN_WELL_KNOWN_EXTENDED),
        (3, 2, UNKNOWN_WELL_KNOWN_EXTENDED),
    ),
    (
        "mp-reach-repeated",  # RFC 7606 §3 (g)
        update_body(MANDATORY + MP_REACH_V6 + MP_REACH_V6, nlri=b""),
        (3, 1, b""),
    ),
    (
        "mp-unreach-repeated",
        update_body(attr(0x80, 15, b"\x00\x02\x01") * 2, nlri=b""),
        (3, 1, b""),
    ),
    ("mp-reach-flags", update_body(ORIGIN + AS_PATH + MP_REACH_FLAGS, b""), (3, 4, MP_REACH_FLAGS)),
    (
        "mp-reach-flags-extended-length",
        update_body(ORIGIN + AS_PATH + MP_REACH_FLAGS_EXTENDED, b""),
        (3, 4, MP_REACH_FLAGS_EXTENDED),
    ),
    (
        "mp-reach-too-short",  # RFC 7606 §7.11
        update_body(ORIGIN + AS_PATH + MP_REACH_SHORT, b""),
        (3, 9, MP_REACH_SHORT),
    ),
    (
        "mp-reach-next-hop-overruns",
        update_body(ORIGIN + AS_PATH + MP_REACH_NH_OVERRUNS, b""),
        (3, 9, MP_REACH_NH_OVERRUNS),
    ),
    (
        "mp-reach-next-hop-length",
        update_body(ORIGIN + AS_PATH + MP_REACH_BAD_NH, b""),
        (3, 9, MP_REACH_BAD_NH),
    ),
    (
        "mp-reach-nlri-malformed",  # RFC 4760 §7: Optional Attribute Error
        update_body(ORIGIN + AS_PATH + MP_REACH_BAD_NLRI, b""),
        (3, 9, MP_REACH_BAD_NLRI),
    ),
    ("mp-unreach-flags", update_body(MP_UNREACH_FLAGS, nlri=b""), (3, 4, MP_UNREACH_FLAGS)),
    (
        "mp-unreach-too-short",  # RFC 7606 §7.12: no room for AFI/SAFI
        update_body(MP_UNREACH_SHORT, nlri=b""),
        (3, 9, MP_UNREACH_SHORT),
    ),
    (
        "mp-unreach-nlri-truncated",
        update_body(MP_UNREACH_TRUNCATED, nlri=b""),
        (3, 9, MP_UNREACH_TRUNCATED),
    ),
    (
        "mp-unreach-prefix-too-long",
        update_body(MP_UNREACH_TOO_LONG, nlri=b""),
        (3, 9, MP_UNREACH_TOO_LONG),
    ),
    (
        "mp-unreach-ipv4-nlri-truncated",
        update_body(MP_UNREACH_V4_TRUNCATED, nlri=b""),
        (3, 9, MP_UNREACH_V4_TRUNCATED),
    ),
]


@pytest.mark.parametrize(("name", "body", "expected"), RESET_CASES, ids=[c[0] for c in RESET_CASES])
def test_update_session_reset(name: str, body: bytes, expected: tuple[int, int, bytes]) -> None:
    with pytest.raises(MessageError) as err:
        decode_message(2, body, IBGP, AttributeCache())
    assert (err.value.code, err.value.subcode, err.value.data) == expected


def test_mp_nlri_error_with_add_path_carries_the_attribute() -> None:
    # RFC 7911 §3: a path identifier with no room for the prefix length after it.
    bad = attr(0x80, 15, b"\x00\x02\x01\x00\x00\x00\x01")
    add_path = Negotiated(add_path_rx=frozenset({IPV6_UNICAST}))
    with pytest.raises(MessageError) as err:
        decode_message(2, update_body(bad, nlri=b""), add_path, AttributeCache())
    assert (err.value.code, err.value.subcode, err.value.data) == (3, 9, bad)


# --- RFC 7606: treat-as-withdraw and attribute-discard -------------------------------------
TAW = ErrorAction.TREAT_AS_WITHDRAW
DISCARD = ErrorAction.ATTRIBUTE_DISCARD


def replace_attr(code: int, new: bytes) -> bytes:
    parts = {1: ORIGIN, 2: AS_PATH, 3: NEXT_HOP}
    parts[code] = new
    return b"".join(parts[c] for c in (1, 2, 3) if parts[c])


SOFT_CASES = [
    # (name, attributes, negotiated, expected action, attribute code)
    ("7.1-origin-value", replace_attr(1, attr(0x40, 1, b"\x03")), IBGP, TAW, 1),
    ("7.1-origin-length", replace_attr(1, attr(0x40, 1, b"\x00\x00")), IBGP, TAW, 1),
    (
        "7.2-as-path-segment-type",
        replace_attr(2, attr(0x40, 2, b"\x07\x01\x00\x00\xfc\x00")),
        IBGP,
        TAW,
        2,
    ),
    ("7.2-as-path-zero-length-segment", replace_attr(2, attr(0x40, 2, b"\x02\x00")), IBGP, TAW, 2),
    (
        "7.2-as-path-overrun",
        replace_attr(2, attr(0x40, 2, b"\x02\x02\x00\x00\xfc\x00")),
        IBGP,
        TAW,
        2,
    ),
    ("7.3-next-hop-length", replace_attr(3, attr(0x40, 3, b"\x0a\x00\x00")), IBGP, TAW, 3),
    ("7.3-next-hop-zero", replace_attr(3, attr(0x40, 3, b"\x00\x00\x00\x00")), IBGP, TAW, 3),
    ("7.3-next-hop-multicast", replace_attr(3, attr(0x40, 3, b"\xe0\x00\x00\x05")), IBGP, TAW, 3),
    ("7.4-med-length", MANDATORY + attr(0x80, 4, b"\x00\x01"), IBGP, TAW, 4),
    ("7.5-local-pref-length", MANDATORY + attr(0x40, 5, b"\x00"), IBGP, TAW, 5),
    ("7.5-local-pref-from-ebgp", MANDATORY + attr(0x40, 5, b"\x00\x00\x00\x64"), EBGP, DISCARD, 5),
    ("7.5-local-pref-length-3", MANDATORY + attr(0x40, 5, b"\x00\x00\x64"), IBGP, TAW, 5),
    # RFC 7606 §7.5: from an external peer LOCAL_PREF is discarded whatever it holds.
    (
        "7.5-local-pref-length-3-from-ebgp",
        MANDATORY + attr(0x40, 5, b"\x00\x00\x64"),
        EBGP,
        DISCARD,
        5,
    ),
    ("7.5-local-pref-empty-from-ebgp", MANDATORY + attr(0x40, 5, b""), EBGP, DISCARD, 5),
    ("7.5-local-pref-length-5-from-ebgp", MANDATORY + attr(0x40, 5, b"\x00" * 5), EBGP, DISCARD, 5),
    (
        "7.5-local-pref-flags-from-ebgp",
        MANDATORY + attr(0xC0, 5, b"\x00\x00\x00\x64"),
        EBGP_64512,
        DISCARD,
        5,
    ),
    ("7.6-atomic-aggregate-length", MANDATORY + attr(0x40, 6, b"\x01"), IBGP, DISCARD, 6),
    ("7.7-aggregator-length", MANDATORY + attr(0xC0, 7, b"\x00\x01\x0a"), IBGP, DISCARD, 7),
    ("7.8-communities-length", MANDATORY + attr(0xC0, 8, b"\x00\x01\x00"), IBGP, TAW, 8),
    ("7.8-communities-empty", MANDATORY + attr(0xC0, 8, b""), IBGP, TAW, 8),
    ("7.9-originator-id-length", MANDATORY + attr(0x80, 9, b"\x0a"), IBGP, TAW, 9),
    ("7.10-cluster-list-length", MANDATORY + attr(0x80, 10, b"\x0a\x00"), IBGP, TAW, 10),
    ("7.14-extended-communities-length", MANDATORY + attr(0xC0, 16, b"\x00" * 7), IBGP, TAW, 16),
    ("rfc8092-large-community-length", MANDATORY + attr(0xC0, 32, b"\x00" * 11), IBGP, TAW, 32),
    ("3c-flags-conflict-well-known", replace_attr(1, attr(0xC0, 1, b"\x00")), IBGP, TAW, 1),
    ("3c-flags-conflict-optional", MANDATORY + attr(0x40, 4, b"\x00\x00\x00\x01"), IBGP, TAW, 4),
    ("3d-missing-origin", replace_attr(1, b""), IBGP, TAW, 0),
    ("3d-missing-as-path", replace_attr(2, b""), IBGP, TAW, 0),
    ("3d-missing-next-hop", replace_attr(3, b""), IBGP, TAW, 0),
    (
        "3g-repeated-attribute",
        MANDATORY + attr(0x80, 4, b"\0\0\0\1") + attr(0x80, 4, b"\0\0\0\2"),
        IBGP,
        DISCARD,
        4,
    ),
    ("4-attribute-overruns-list", MANDATORY + b"\x80\x04\x09\x00", IBGP, TAW, 0),
    (
        "6793-as4-path-on-asn4-session",
        MANDATORY + attr(0xC0, 17, b"\x02\x01\x00\x00\xfc\x00"),
        IBGP,
        DISCARD,
        17,
    ),
    (
        "6793-as4-aggregator-length",
        replace_attr(2, attr(0x40, 2, b"\x02\x01\xfc\x00")) + attr(0xC0, 18, b"\x00"),
        TWO_OCTET,
        DISCARD,
        18,
    ),
    (
        "7.2-as-path-underrun",  # one octet left after the last segment: no room for a header
        replace_attr(2, attr(0x40, 2, b"\x02\x01\x00\x00\xfc\x00\x02")),
        IBGP,
        TAW,
        2,
    ),
    (
        "7.2-as-path-overrun-in-second-segment",
        replace_attr(2, attr(0x40, 2, b"\x02\x01\x00\x00\xfc\x00\x01\x02\x00\x00\xfc\x01")),
        IBGP,
        TAW,
        2,
    ),
    (
        "7.2-as-path-two-octet-overrun",  # 4-octet data read on a 2-octet session
        replace_attr(2, attr(0x40, 2, b"\x02\x02\x00\x00\xfc")),
        TWO_OCTET,
        TAW,
        2,
    ),
    (
        "5065-confed-sequence-from-external",
        replace_attr(2, attr(0x40, 2, b"\x03\x01\x00\x00\xfc\x01\x02\x01\x00\x00\xfc\x00")),
        EBGP,
        TAW,
        2,
    ),
    (
        "5065-confed-set-from-external",
        replace_attr(2, attr(0x40, 2, b"\x02\x01\x00\x00\xfc\x00\x04\x01\x00\x00\xfc\x01")),
        EBGP_64512,
        TAW,
        2,
    ),
    ("4271-6.3-leftmost-as-not-the-peer", MANDATORY, EBGP_65001, TAW, 2),
    (
        "4271-6.3-leftmost-segment-is-a-set",
        replace_attr(2, attr(0x40, 2, b"\x01\x01\x00\x00\xfc\x00")),
        EBGP_64512,
        TAW,
        2,
    ),
    (
        "4271-6.3-empty-as-path-from-external",
        replace_attr(2, attr(0x40, 2, b"")),
        EBGP_64512,
        TAW,
        2,
    ),
    (
        "7.11-mp-reach-unknown-afi-safi",  # AFI 25 / SAFI 65 (VPLS): not ours, ignored
        MANDATORY + attr(0x80, 14, b"\x00\x19\x41\x04\x0a\x00\x00\x01\x00"),
        IBGP,
        DISCARD,
        14,
    ),
    (
        "7.12-mp-unreach-unknown-afi-safi",
        MANDATORY + attr(0x80, 15, b"\x00\x19\x41\x00\x01\x02"),
        IBGP,
        DISCARD,
        15,
    ),
]


@pytest.mark.parametrize(
    ("name", "attrs", "negotiated", "action", "code"), SOFT_CASES, ids=[c[0] for c in SOFT_CASES]
)
def test_update_rfc7606_actions(
    name: str, attrs: bytes, negotiated: Negotiated, action: ErrorAction, code: int
) -> None:
    update = decode_message(2, update_body(attrs), negotiated, AttributeCache())
    assert update.issues, "an issue must be reported"
    strongest = max(i.action for i in update.issues)
    assert strongest == action
    assert any(i.attr_code == code and i.action == action for i in update.issues)
    if action == TAW:
        assert update.treat_as_withdraw
        assert not update.announced
        assert [p for w in update.withdrawn for p in w.prefixes] == [V4_NLRI]
    else:
        assert not update.treat_as_withdraw
        assert [p for a in update.announced for p in a.prefixes] == [V4_NLRI]


@pytest.mark.parametrize(
    ("name", "as_path", "negotiated"),
    [
        ("leftmost-as-is-the-peer", AS_PATH, EBGP_64512),
        ("internal-peer-not-checked", AS_PATH, Negotiated(peer_as=65001)),
        ("peer-as-unknown", AS_PATH, EBGP),
        ("first-as-not-enforced", AS_PATH, Negotiated(external=True, peer_as=65001)),
        (
            "confed-from-internal",
            attr(0x40, 2, b"\x03\x01\x00\x00\xfc\x01\x02\x01\x00\x00\xfc\x00"),
            IBGP,
        ),
        (
            "two-octet-session-peer-as-above-65535-is-as-trans",  # RFC 6793 §4.2.2
            attr(0x40, 2, b"\x02\x01\x5b\xa0"),
            Negotiated(asn4=False, external=True, peer_as=4200000001, enforce_first_as=True),
        ),
    ],
)
def test_as_path_checks_accept(name: str, as_path: bytes, negotiated: Negotiated) -> None:
    update = decode_message(2, update_body(replace_attr(2, as_path)), negotiated, AttributeCache())
    assert not update.issues
    assert [p for a in update.announced for p in a.prefixes] == [V4_NLRI]


def test_leftmost_as_check_is_per_peer_with_a_shared_cache() -> None:
    cache = AttributeCache()
    body = update_body(MANDATORY)
    assert decode_message(2, body, EBGP_64512, cache).announced
    other = decode_message(2, body, EBGP_65001, cache)
    assert other.treat_as_withdraw and not other.announced
    assert decode_message(2, body, EBGP_64512, cache).announced


# --- RFC 7606 §5.2: attributes with no NLRI are ignored -------------------------------------
MP_UNREACH_V6 = attr(0x80, 15, b"\x00\x02\x01\x30\x20\x01\x0d\xb8\x00\x01")
NO_NLRI_CASES = [
    ("attributes-only", update_body(replace_attr(1, attr(0x40, 1, b"\x07")), nlri=b""), []),
    (
        "withdrawn-routes-and-broken-attributes",
        update_body(attr(0xC0, 8, b"\x00") + ORIGIN, nlri=b"", withdrawn=V4_NLRI),
        [V4_NLRI],
    ),
    (
        "mp-unreach-and-missing-mandatory",
        update_body(MP_UNREACH_V6 + attr(0x40, 5, b"\x00"), nlri=b""),
        [b"\x30\x20\x01\x0d\xb8\x00\x01"],
    ),
    (
        "unrecognized-well-known-without-nlri",
        update_body(MANDATORY + UNKNOWN_WELL_KNOWN, nlri=b""),
        [],
    ),
    (
        "mp-reach-without-nlri",
        update_body(attr(0x40, 1, b"\x09") + MP_REACH_V6, nlri=b""),
        [],
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "withdrawn"), NO_NLRI_CASES, ids=[c[0] for c in NO_NLRI_CASES]
)
def test_attributes_without_nlri_are_ignored(
    name: str, body: bytes, withdrawn: list[bytes]
) -> None:
    update = decode_message(2, body, IBGP, AttributeCache())
    assert update.issues == () and not update.treat_as_withdraw
    assert update.announced == () and update.end_of_rib is None
    assert [p for w in update.withdrawn for p in w.prefixes] == withdrawn


def test_discarded_local_pref_is_absent_and_route_kept() -> None:
    body = update_body(MANDATORY + attr(0x40, 5, b"\x00\x00\x00\x64"))
    update = decode_message(2, body, EBGP, AttributeCache())
    assert update.announced[0].attributes.local_pref is None


@pytest.mark.parametrize(
    "value", [b"", b"\x00", b"\x00\x00\x64", b"\x00\x00\x00\x64", b"\x00" * 5], ids=len
)
def test_local_pref_from_ebgp_is_discarded_whatever_its_length(value: bytes) -> None:
    # RFC 7606 §7.5, RFC 4271 §5.1.5: the route is kept, without LOCAL_PREF; the same octets
    # from an internal peer are treat-as-withdraw unless 4 long (shared cache: rule 6).
    cache = AttributeCache()
    body = update_body(MANDATORY + attr(0x40, 5, value))
    update = decode_message(2, body, EBGP, cache)
    assert not update.treat_as_withdraw
    assert [(i.attr_code, i.action) for i in update.issues] == [(5, DISCARD)]
    assert [p for a in update.announced for p in a.prefixes] == [V4_NLRI]
    assert update.announced[0].attributes.local_pref is None
    internal = decode_message(2, body, IBGP, cache)
    if len(value) == 4:
        assert internal.announced[0].attributes.local_pref == 100 and not internal.issues
    else:
        assert internal.treat_as_withdraw and not internal.announced


def test_first_of_repeated_attributes_wins() -> None:
    body = update_body(MANDATORY + attr(0x80, 4, b"\0\0\0\1") + attr(0x80, 4, b"\0\0\0\2"))
    update = decode_message(2, body, IBGP, AttributeCache())
    assert update.announced[0].attributes.med == 1


def test_strongest_action_wins_when_several_attributes_are_bad() -> None:
    attrs = MANDATORY + attr(0x40, 6, b"\x01") + attr(0xC0, 8, b"\x00")  # discard + withdraw
    update = decode_message(2, update_body(attrs), IBGP, AttributeCache())
    assert {i.action for i in update.issues} == {DISCARD, TAW}
    assert update.treat_as_withdraw


def test_unknown_optional_transitive_kept_with_partial_bit() -> None:
    update = decode_message(
        2, update_body(MANDATORY + attr(0xC0, 200, b"abc")), IBGP, AttributeCache()
    )
    (unknown,) = update.announced[0].attributes.unknown
    assert (unknown.code, unknown.value, unknown.flags & 0x20) == (200, b"abc", 0x20)


def test_unknown_optional_non_transitive_dropped() -> None:
    update = decode_message(
        2, update_body(MANDATORY + attr(0x80, 201, b"abc")), IBGP, AttributeCache()
    )
    assert update.announced[0].attributes.unknown == ()
    assert not update.issues


def test_withdraw_only_update_needs_no_attributes() -> None:
    update = decode_message(2, update_body(b"", b"", withdrawn=V4_NLRI), IBGP, AttributeCache())
    assert not update.issues and update.withdrawn[0].prefixes == [V4_NLRI]


def test_as4_path_reconstruction_rfc6793() -> None:
    # 2-octet session: AS_PATH 64512 23456 23456, AS4_PATH 4200000001 4200000002.
    as_path = attr(0x40, 2, b"\x02\x03" + struct.pack("!HHH", 64512, 23456, 23456))
    as4 = attr(0xC0, 17, b"\x02\x02" + struct.pack("!II", 4200000001, 4200000002))
    body = update_body(ORIGIN + as_path + NEXT_HOP + as4)
    update = decode_message(2, body, TWO_OCTET, AttributeCache())
    (seg,) = update.announced[0].attributes.as_path
    assert seg.asns == (64512, 4200000001, 4200000002)


def test_as4_path_ignored_when_both_aggregators_and_aggregator_is_not_as_trans() -> None:
    as_path = attr(0x40, 2, b"\x02\x02" + struct.pack("!HH", 64512, 23456))
    aggregator = attr(0xC0, 7, struct.pack("!H", 64999) + bytes([10, 0, 0, 9]))
    as4agg = attr(0xC0, 18, struct.pack("!I", 4200000009) + bytes([10, 0, 0, 9]))
    as4 = attr(0xC0, 17, b"\x02\x01" + struct.pack("!I", 4200000001))
    body = update_body(ORIGIN + as_path + NEXT_HOP + aggregator + as4 + as4agg)
    attrs = decode_message(2, body, TWO_OCTET, AttributeCache()).announced[0].attributes
    assert attrs.as_path[0].asns == (64512, 23456)
    assert attrs.aggregator == (64999, bytes([10, 0, 0, 9]))


def test_as4_path_applies_with_a_two_octet_aggregator_alone() -> None:
    # RFC 6793 §4.2.3 ignores AS4_PATH only when AGGREGATOR and AS4_AGGREGATOR are both present.
    as_path = attr(0x40, 2, b"\x02\x02" + struct.pack("!HH", 64512, 23456))
    aggregator = attr(0xC0, 7, struct.pack("!H", 64999) + bytes([10, 0, 0, 9]))
    as4 = attr(0xC0, 17, b"\x02\x01" + struct.pack("!I", 4200000001))
    body = update_body(ORIGIN + as_path + NEXT_HOP + aggregator + as4)
    attrs = decode_message(2, body, TWO_OCTET, AttributeCache()).announced[0].attributes
    assert attrs.as_path[0].asns == (64512, 4200000001)


def test_as4_aggregator_replaces_as_trans_aggregator() -> None:
    aggregator = attr(0xC0, 7, struct.pack("!H", 23456) + bytes([10, 0, 0, 9]))
    as4agg = attr(0xC0, 18, struct.pack("!I", 4200000009) + bytes([10, 0, 0, 9]))
    body = update_body(
        MANDATORY.replace(AS_PATH, attr(0x40, 2, b"\x02\x01\xfc\x00")) + aggregator + as4agg
    )
    update = decode_message(2, body, TWO_OCTET, AttributeCache())
    assert update.announced[0].attributes.aggregator == (4200000009, bytes([10, 0, 0, 9]))


def test_route_refresh_length_rfc7313() -> None:
    enhanced = Negotiated(enhanced_route_refresh=True)
    with pytest.raises(MessageError) as err:
        decode_message(5, b"\x00\x01\x00\x01\x00", enhanced, AttributeCache())
    assert (err.value.code, err.value.subcode) == (7, 1)
    with pytest.raises(MessageError) as err:
        decode_message(5, b"\x00\x01\x00\x01\x00", Negotiated(), AttributeCache())
    assert (err.value.code, err.value.subcode) == (1, 2)


def test_attribute_types_in_table_cover_rfc7606_section_7() -> None:
    from bgpd.wire.attributes import ATTRIBUTES

    required = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 17, 18, 32}
    assert required <= set(ATTRIBUTES)
    assert AttrType.MP_REACH_NLRI not in ATTRIBUTES  # handled by the UPDATE decoder itself
