"""The passive side: one listening socket that hands connections to their configured peer.

Rules:
1. Listens on a configurable address and port (default port 179, RFC 4271 §8.2.1.1).
2. A connection from an address with no configured peer gets NOTIFICATION Cease/Connection
   Rejected (RFC 4486 §4) and is closed; it is logged with its address and counted.
3. TCP-MD5 keys (RFC 2385) are installed on the listening socket per peer address, so the
   kernel drops unsigned or wrongly signed SYNs from that peer.
4. Accepted connections get the stream reader limit of outgoing ones (``STREAM_LIMIT``), so a
   peer's buffered input has the same bound either way (transport.py rule 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable

import structlog

from bgpd.net.sockopts import set_md5
from bgpd.net.transport import STREAM_LIMIT
from bgpd.session.config import BGP_PORT, IPAddress
from bgpd.wire.constants import CeaseSubcode, ErrorCode
from bgpd.wire.messages import Notification, encode_notification

log = structlog.get_logger("bgpd.net")

Handoff = Callable[[IPAddress, asyncio.StreamReader, asyncio.StreamWriter], bool]
"""Give an accepted connection to its peer; False when no peer is configured there."""

REJECTED = encode_notification(Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_REJECTED))


def _peer_address(writer: asyncio.StreamWriter) -> IPAddress:
    host = writer.get_extra_info("peername")[0]
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Listener:
    """Accepts BGP connections and routes them with ``handoff``."""

    def __init__(self, handoff: Handoff, address: str | None = None, port: int = BGP_PORT) -> None:
        self.address = address
        self.port = port
        self.rejected = 0
        self._handoff = handoff
        self._server: asyncio.Server | None = None
        self._sockets: list[socket.socket] = []
        self._keys: dict[IPAddress, str] = {}

    async def start(self) -> None:
        sock = self._make_socket()
        self._sockets = [sock]
        for address, password in self._keys.items():
            set_md5(sock, address, password)
        self._server = await asyncio.start_server(self._accepted, sock=sock, limit=STREAM_LIMIT)
        self.port = sock.getsockname()[1]
        log.info("listening", address=self.address or "::", port=self.port)

    def _make_socket(self) -> socket.socket:
        host = self.address or "::"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def set_password(self, address: IPAddress, password: str | None) -> None:
        """Install (or with None remove) the TCP-MD5 key for connections from ``address``."""
        if password:
            self._keys[address] = password
        elif self._keys.pop(address, None) is None:
            return
        for sock in self._sockets:
            set_md5(sock, address, password)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = _peer_address(writer)
        if self._handoff(address, reader, writer):
            return
        self.rejected += 1
        log.warning(
            "connection rejected: no configured peer",
            address=str(address),
            reason="connection-rejected",
            rejected_total=self.rejected,
        )
        with contextlib.suppress(ConnectionError):
            writer.write(REJECTED)
            await writer.drain()
        writer.close()
