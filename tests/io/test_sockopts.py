"""TTL socket options as the kernel reports them (getsockopt), IPv4 and IPv6, no root needed.

GTSM (RFC 5082 §3): send with TTL / hop limit 255 and accept only TTL >= 256 - hops (one hop:
255; two hops: 254, BIRD's ``ttl security on; multihop 2``). eBGP multihop: the configured
outgoing TTL, and no minimum.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from bgpd.net.sockopts import (
    IP_MINTTL,
    IPV6_MINHOPCOUNT,
    apply_session_options,
    outgoing_socket,
)
from bgpd.session import SessionConfig

PEERS = {4: ipaddress.ip_address("192.0.2.2"), 6: ipaddress.ip_address("2001:db8::2")}


def _config(version: int, **kw: Any) -> SessionConfig:
    return SessionConfig(
        local_as=65001,
        peer_as=65002,
        router_id=ipaddress.IPv4Address("10.0.0.1"),
        peer_address=PEERS[version],
        **kw,
    )


def _ttl(sock: socket.socket) -> tuple[int, int]:
    """(outgoing TTL or hop limit, minimum accepted TTL or hop count) of the socket's family."""
    if sock.family == socket.AF_INET6:
        return (
            sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS),
            sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT),
        )
    return (
        sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL),
        sock.getsockopt(socket.IPPROTO_IP, IP_MINTTL),
    )


@pytest.fixture
def accepted_like() -> Iterator[dict[int, socket.socket]]:
    """Plain sockets standing in for accepted connections (the options do not need a peer)."""
    socks = {4: socket.socket(socket.AF_INET), 6: socket.socket(socket.AF_INET6)}
    try:
        yield socks
    finally:
        for sock in socks.values():
            sock.close()


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize(("hops", "min_ttl"), [(1, 255), (2, 254)])
def test_gtsm_on_active_sockets(version: int, hops: int, min_ttl: int) -> None:
    with outgoing_socket(_config(version, ttl_security=hops)) as sock:
        assert _ttl(sock) == (255, min_ttl)


@pytest.mark.parametrize("version", [4, 6])
def test_gtsm_on_accepted_sockets(version: int, accepted_like: dict[int, socket.socket]) -> None:
    sock = accepted_like[version]
    before = _ttl(sock)
    apply_session_options(sock, _config(version, ttl_security=2))
    assert before != (255, 254)  # the kernel defaults differ, so the assertion below can fail
    assert _ttl(sock) == (255, 254)


def test_gtsm_on_a_dual_stack_socket_covers_v4_mapped_peers() -> None:
    """A v4 peer reached over a dual-stack v6 socket is checked by the IPv4 options."""
    with socket.socket(socket.AF_INET6) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        apply_session_options(sock, _config(4, ttl_security=1))
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
        assert sock.getsockopt(socket.IPPROTO_IP, IP_MINTTL) == 255


@pytest.mark.parametrize("version", [4, 6])
def test_multihop_ttl_without_minimum(version: int) -> None:
    with outgoing_socket(_config(version, multihop_ttl=5)) as sock:
        assert _ttl(sock) == (5, 0)
    with outgoing_socket(_config(version)) as sock:
        assert _ttl(sock)[0] != 5  # without multihop the system default is left alone
