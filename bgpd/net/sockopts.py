"""Socket options of BGP connections: TCP-MD5 (RFC 2385), GTSM (RFC 5082), multihop TTL and
source binding, for Linux.

Rules:
1. ``struct tcp_md5sig`` is packed by hand (linux/tcp.h): a 128-octet sockaddr_storage, flags,
   prefix length, key length, ifindex and an 80-octet key. A v4 peer on a v6 socket is keyed by
   its v4-mapped address, which is how the kernel sees it.
2. GTSM sends with TTL/hop limit 255 and sets the minimum accepted TTL to 256 - hops.
3. Nothing here logs or decides: callers pass the config values in.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from bgpd.session.config import IPAddress, SessionConfig

TCP_MD5SIG = 14  # linux/tcp.h
TCP_MD5SIG_MAXKEYLEN = 80
IP_MINTTL = 21  # linux/in.h
IPV6_MINHOPCOUNT = 73  # linux/in6.h
GTSM_TTL = 255  # RFC 5082 §3
_SOCKADDR_STORAGE = 128


def _sockaddr(address: IPAddress, family: int) -> bytes:
    if family == socket.AF_INET6 and address.version == 4:
        address = ipaddress.IPv6Address(f"::ffff:{address}")
    if address.version == 4:
        raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + address.packed
    else:
        raw = (
            struct.pack("=H", socket.AF_INET6)
            + struct.pack("!HI", 0, 0)
            + address.packed
            + struct.pack("=I", 0)
        )
    return raw.ljust(_SOCKADDR_STORAGE, b"\0")


def tcp_md5sig(address: IPAddress, password: str | None, family: int) -> bytes:
    """The ``struct tcp_md5sig`` that sets (or with no password, deletes) a peer's key."""
    key = (password or "").encode()
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError("TCP-MD5 key longer than 80 octets")
    return (
        _sockaddr(address, family)
        + struct.pack("=BBHi", 0, 0, len(key), 0)
        + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")
    )


def set_md5(sock: socket.socket, address: IPAddress, password: str | None) -> None:
    """RFC 2385: sign segments to/from ``address`` with ``password`` (None removes the key)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, tcp_md5sig(address, password, sock.family))
    except OSError:
        if password:  # deleting a key that was never set fails with ENOENT: harmless
            raise


def set_ttl(sock: socket.socket, ttl: int) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    if sock.family == socket.AF_INET or _dual_stack(sock):
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)


def set_min_ttl(sock: socket.socket, ttl: int) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT, ttl)
    if sock.family == socket.AF_INET or _dual_stack(sock):
        sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, ttl)


def _dual_stack(sock: socket.socket) -> bool:
    if sock.family != socket.AF_INET6:
        return False
    return not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)


def apply_session_options(sock: socket.socket, config: SessionConfig) -> None:
    """TTL rules of a connected (or about to connect) socket: GTSM or multihop TTL."""
    if config.ttl_security is not None:
        set_ttl(sock, GTSM_TTL)
        set_min_ttl(sock, GTSM_TTL + 1 - config.ttl_security)
    elif config.multihop_ttl is not None:
        set_ttl(sock, config.multihop_ttl)


def outgoing_socket(config: SessionConfig) -> socket.socket:
    """A non-blocking socket for an active connect: source bound, MD5 key and TTL set."""
    family = socket.AF_INET if config.peer_address.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if config.source_address is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((str(config.source_address), 0))
        if config.md5_password:
            set_md5(sock, config.peer_address, config.md5_password)
        apply_session_options(sock, config)
    except BaseException:
        sock.close()
        raise
    return sock
