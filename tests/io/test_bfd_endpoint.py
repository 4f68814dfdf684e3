"""The BFD edge over loopback (bgpd/net/bfd.py rules 1-4): two endpoints reach Up, and every
bad packet is dropped and counted by reason while the session stays Up."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from bgpd.bfd.fsm import Timers
from bgpd.bfd.packet import ControlPacket, DropReason, SessionState, encode
from bgpd.net.bfd import BfdEndpoint

A = ipaddress.IPv4Address("127.0.0.1")
B = ipaddress.IPv4Address("127.0.0.2")
FAST = Timers(desired_min_tx=50_000, required_min_rx=50_000, detect_mult=3)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _until(condition: object, what: str, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _send(port: int, data: bytes, ttl: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        sock.bind((str(B), 0))
        sock.sendto(data, (str(A), port))


async def test_bad_packets_are_counted_and_the_session_stays_up() -> None:
    port = _free_udp_port()
    a = BfdEndpoint(A, lambda *_: None, port=port)
    b = BfdEndpoint(B, lambda *_: None, port=port)
    await a.start()
    await b.start()
    try:
        session = a.add_peer(B, FAST)
        b.add_peer(A, FAST)
        await _until(lambda: session.state is SessionState.UP, "Up over loopback")
        valid = encode(ControlPacket(SessionState.DOWN, my_discriminator=77))
        _send(port, valid, ttl=64)  # RFC 5881 §5
        _send(port, b"\x40" + valid[1:], ttl=255)  # version 2
        _send(port, valid[:3] + b"\x00" + valid[4:], ttl=255)  # Length 0
        up_unknown = encode(ControlPacket(SessionState.UP, 77, your_discriminator=12345))
        _send(port, up_unknown, ttl=255)
        expected = {
            DropReason.BAD_TTL: 1,
            DropReason.BAD_VERSION: 1,
            DropReason.BAD_LENGTH: 1,
            DropReason.UNKNOWN_DISCRIMINATOR: 1,
        }
        await _until(lambda: dict(a.drops) == expected, f"drops {expected}, got {a.drops}")
        assert session.state is SessionState.UP and session.down_count == 0
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize("peer_first", [True, False])
async def test_a_removed_peer_is_sent_admin_down(peer_first: bool) -> None:
    port = _free_udp_port()
    seen: list[tuple[ipaddress.IPv4Address, SessionState]] = []
    a = BfdEndpoint(A, lambda *_: None, port=port)
    b = BfdEndpoint(B, lambda peer, change: seen.append((peer, change.new)), port=port)
    await a.start()
    await b.start()
    try:
        if peer_first:
            remote = b.add_peer(A, FAST)
            a.add_peer(B, FAST)
        else:
            a.add_peer(B, FAST)
            remote = b.add_peer(A, FAST)
        await _until(lambda: remote.state is SessionState.UP, "Up")
        a.remove_peer(B)  # RFC 5880 §6.8.16
        await _until(lambda: remote.state is SessionState.DOWN, "the peer's session Down")
        assert remote.remote_state is SessionState.ADMIN_DOWN
        assert seen[-1] == (A, SessionState.DOWN)
    finally:
        await a.close()
        await b.close()
