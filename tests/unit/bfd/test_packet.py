"""The BFD Control packet codec and its receive checks (bgpd/bfd/packet.py rules 1-4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.bfd.packet import (
    ControlPacket,
    Diagnostic,
    DropReason,
    PacketDropped,
    SessionState,
    decode,
    encode,
    session_checks,
    ttl_check,
)

U32 = st.integers(min_value=0, max_value=2**32 - 1)

packets = st.builds(
    ControlPacket,
    state=st.sampled_from(SessionState),
    my_discriminator=st.integers(min_value=1, max_value=2**32 - 1),
    your_discriminator=U32,
    detect_mult=st.integers(min_value=1, max_value=255),
    desired_min_tx=U32,
    required_min_rx=U32,
    required_min_echo_rx=U32,
    diagnostic=st.sampled_from(Diagnostic),
    poll=st.booleans(),
    final=st.just(False),
    control_plane_independent=st.booleans(),
    demand=st.booleans(),
)


@given(packets)
def test_every_valid_packet_round_trips(packet: ControlPacket) -> None:
    assert decode(encode(packet)) == packet


def test_the_layout_is_rfc_5880_section_4_1() -> None:
    packet = ControlPacket(
        state=SessionState.UP,
        my_discriminator=0x01020304,
        your_discriminator=0x05060708,
        detect_mult=3,
        desired_min_tx=300_000,
        required_min_rx=200_000,
        diagnostic=Diagnostic.NEIGHBOR_DOWN,
        poll=True,
    )
    data = encode(packet)
    assert len(data) == 24
    assert data[0] == (1 << 5) | 3  # Vers 1, Diag 3
    assert data[1] == (3 << 6) | 0x20  # Sta Up, P
    assert data[2:4] == bytes([3, 24])  # Detect Mult, Length
    assert struct.unpack("!IIIII", data[4:]) == (0x01020304, 0x05060708, 300_000, 200_000, 0)


def _bytes(**changes: int) -> bytes:
    """A valid Down packet with fields overwritten at their §4.1 offsets."""
    data = bytearray(encode(ControlPacket(state=SessionState.DOWN, my_discriminator=7)))
    for name, value in changes.items():
        if name == "byte0":
            data[0] = value
        elif name == "byte1":
            data[1] = value
        elif name == "detect_mult":
            data[2] = value
        elif name == "length":
            data[3] = value
        elif name == "my_discriminator":
            data[4:8] = value.to_bytes(4, "big")
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_bytes(byte0=(2 << 5)), DropReason.BAD_VERSION),  # §6.8.6 version
        (_bytes(length=23), DropReason.BAD_LENGTH),  # §6.8.6 Length < 24
        (_bytes(byte1=(1 << 6) | 0x04, length=25), DropReason.BAD_LENGTH),  # A set: < 26
        (_bytes(length=30), DropReason.LENGTH_BEYOND_PAYLOAD),  # §6.8.6 Length > payload
        (_bytes()[:20], DropReason.LENGTH_BEYOND_PAYLOAD),
        (_bytes(detect_mult=0), DropReason.ZERO_DETECT_MULT),  # §6.8.6
        (_bytes(byte1=(1 << 6) | 0x01), DropReason.MULTIPOINT),  # §6.8.6 M bit
        (_bytes(my_discriminator=0), DropReason.ZERO_MY_DISCRIMINATOR),  # §6.8.6
        (_bytes(byte1=(1 << 6) | 0x30), DropReason.POLL_AND_FINAL),  # §6.5
        (_bytes(byte1=(1 << 6) | 0x04, length=24) + b"\x01\x02", DropReason.BAD_LENGTH),
        (
            bytearray(_bytes(byte1=(1 << 6) | 0x04, length=26)) + b"\x01\x02",
            DropReason.AUTH_NOT_CONFIGURED,
        ),  # §6.8.6: A bit with no authentication in use
    ],
)
def test_each_malformed_packet_is_dropped_with_its_reason(data: bytes, reason: DropReason) -> None:
    with pytest.raises(PacketDropped) as caught:
        decode(bytes(data))
    assert caught.value.reason is reason


def test_a_longer_payload_than_length_is_accepted() -> None:
    """§6.8.6 only refuses a Length beyond the payload."""
    assert decode(_bytes() + b"\0\0\0\0").my_discriminator == 7


@pytest.mark.parametrize(
    ("your", "state", "known", "reason"),
    [
        (5, SessionState.UP, True, None),
        (5, SessionState.UP, False, DropReason.UNKNOWN_DISCRIMINATOR),
        (0, SessionState.DOWN, False, None),
        (0, SessionState.ADMIN_DOWN, False, None),
        (0, SessionState.INIT, False, DropReason.ZERO_YOUR_DISCRIMINATOR),
        (0, SessionState.UP, False, DropReason.ZERO_YOUR_DISCRIMINATOR),
    ],
)
def test_your_discriminator_selects_a_session_or_drops(
    your: int, state: SessionState, known: bool, reason: DropReason | None
) -> None:
    packet = ControlPacket(state=state, my_discriminator=9, your_discriminator=your)
    assert session_checks(packet, known) is reason


def test_single_hop_needs_ttl_255_and_multihop_the_configured_minimum() -> None:
    assert ttl_check(255, multihop=False) is None
    assert ttl_check(254, multihop=False) is DropReason.BAD_TTL  # RFC 5881 §5
    assert ttl_check(250, multihop=True, min_ttl=250) is None  # RFC 5883 §5
    assert ttl_check(249, multihop=True, min_ttl=250) is DropReason.BAD_TTL


@given(st.binary(max_size=64))
def test_random_bytes_decode_or_drop_never_anything_else(data: bytes) -> None:
    try:
        packet = decode(data)
    except PacketDropped:
        return
    assert packet.my_discriminator != 0 and packet.detect_mult != 0
