"""The passive side: listening sockets that hand connections to their configured peer.

Rules:
1. Listens on a configurable port (default 179, RFC 4271 §8.2.1.1) and address: none means
   one dual-stack socket on every address; several (Calico's ``bindMode: NodeIP``, one per
   family, ``::`` or ``0.0.0.0`` for a family the node has no address of) mean one socket
   each, an IPv6 wildcard then IPv6-only so the IPv4 one can bind beside it. With port 0 the
   first socket's port is every socket's.
2. A connection from an address with no configured peer gets NOTIFICATION Cease/Connection
   Rejected (RFC 4486 §4) and is closed; every one is counted (``rejected``), but a source's
   first rejection gets a line and the rest one summary per interval (``bgpd.net.ratelimit``),
   so a flood of connections is not a flood of log.
3. TCP-MD5 keys (RFC 2385) are installed on the listening socket per peer address, so the
   kernel drops unsigned or wrongly signed SYNs from that peer.
4. Accepted connections get the stream reader limit of outgoing ones (``STREAM_LIMIT``), so a
   peer's buffered input has the same bound either way (transport.py rule 3).
5. The accept queue is the system's largest (``listen_backlog``: ``net.core.somaxconn`` of our
   network namespace, else ``socket.SOMAXCONN``), so a route reflector whose thousand clients
   reconnect at once after its restart overflows nothing; it is logged at start and shown in
   ``bgpd status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import socket
import time
from collections.abc import Callable

import structlog

from bgpd.net.ratelimit import RejectionLog, RejectionSummary
from bgpd.net.sockopts import set_md5
from bgpd.net.transport import STREAM_LIMIT
from bgpd.session.config import BGP_PORT, IPAddress
from bgpd.wire.constants import CeaseSubcode, ErrorCode
from bgpd.wire.messages import Notification, encode_notification

log = structlog.get_logger("bgpd.net")

Handoff = Callable[[IPAddress, asyncio.StreamReader, asyncio.StreamWriter], bool]
"""Give an accepted connection to its peer; False when no peer is configured there."""

REJECTED = encode_notification(Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_REJECTED))
SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"


def listen_backlog(path: str = SOMAXCONN_PATH) -> int:
    """Rule 5: the kernel caps ``listen``'s backlog at ``net.core.somaxconn``, so asking for
    exactly that gets the largest accept queue; ``socket.SOMAXCONN`` when it does not read."""
    try:
        with open(path, encoding="ascii") as f:
            value = int(f.read().strip())
    except (OSError, ValueError):
        return socket.SOMAXCONN
    return value if value > 0 else socket.SOMAXCONN


def _peer_address(writer: asyncio.StreamWriter) -> IPAddress:
    host = writer.get_extra_info("peername")[0]
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Listener:
    """Accepts BGP connections and routes them with ``handoff``."""

    def __init__(
        self,
        handoff: Handoff,
        address: str | tuple[str, ...] | None = None,
        port: int = BGP_PORT,
        *,
        rejections: RejectionLog | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.addresses = (address,) if isinstance(address, str) else tuple(address or ())
        self.address = self.addresses[0] if self.addresses else None
        self.port = port
        self.backlog = listen_backlog()  # rule 5
        self.rejected = 0  # every rejected connection, logged or summarised (rule 2)
        self._rejections = rejections if rejections is not None else RejectionLog()
        self._clock = clock
        self._summary_timer: asyncio.TimerHandle | None = None
        self._handoff = handoff
        self._server: asyncio.Server | None = None
        self._more: list[asyncio.Server] = []
        self._sockets: list[socket.socket] = []
        self._keys: dict[IPAddress, str] = {}

    async def start(self) -> None:
        sockets: list[socket.socket] = []
        try:
            for host in self.addresses or ("::",):
                sock = self._make_socket(host, dual_stack=not self.addresses)
                sockets.append(sock)
                self.port = sock.getsockname()[1]
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self._sockets = sockets
        for sock in sockets:
            for address, password in self._keys.items():
                set_md5(sock, address, password)
        self._server = await asyncio.start_server(
            self._accepted, sock=sockets[0], limit=STREAM_LIMIT, backlog=self.backlog
        )  # asyncio calls listen() again with this backlog when it starts serving
        self._more = [
            await asyncio.start_server(
                self._accepted, sock=sock, limit=STREAM_LIMIT, backlog=self.backlog
            )
            for sock in sockets[1:]
        ]
        log.info(
            "listening",
            address=",".join(self.addresses) or "::",
            port=self.port,
            backlog=self.backlog,
        )

    def _make_socket(self, host: str, *, dual_stack: bool) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
            sock.bind((host, self.port))
            sock.listen(self.backlog)
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
        if self._summary_timer is not None:
            self._summary_timer.cancel()
            self._summary_timer = None
        self._log_summary(self._rejections.close(math.inf))
        for server in (self._server, *self._more):
            if server is not None:
                server.close()
                with contextlib.suppress(Exception):
                    await server.wait_closed()
        self._server = None
        self._more = []

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = _peer_address(writer)
        if self._handoff(address, reader, writer):
            return
        self.reject(address)
        with contextlib.suppress(ConnectionError):
            writer.write(REJECTED)
            await writer.drain()
        writer.close()

    def reject(self, address: IPAddress) -> None:
        """Count a rejected connection; log it if it is its source's first (rule 2)."""
        self.rejected += 1
        now = self._clock()
        self._log_summary(self._rejections.close(now))
        if self._rejections.reject(str(address), now):
            log.warning(
                "connection rejected: no configured peer",
                address=str(address),
                reason="connection-rejected",
                rejected_total=self.rejected,
                further=f"summarised every {self._rejections.interval:g} s",
            )
        self._schedule_summary(now)

    def summarise(self) -> None:
        """Log the closed window's summary; called when it is due (rule 2)."""
        self._summary_timer = None
        now = self._clock()
        self._log_summary(self._rejections.close(now))
        self._schedule_summary(now)  # a timer that fired a little early tries again

    def _schedule_summary(self, now: float) -> None:
        due = self._rejections.due()
        if due is not None and self._summary_timer is None:
            loop = asyncio.get_running_loop()
            self._summary_timer = loop.call_later(max(0.0, due - now), self.summarise)

    def _log_summary(self, summary: RejectionSummary | None) -> None:
        if summary is None:
            return
        sources = f"{summary.sources}{'+' if summary.untracked else ''}"
        plural = "" if sources == "1" else "s"
        log.warning(
            f"rejected {summary.connections} more connections from {sources} "
            f"source{plural}: no configured peer",
            reason="connection-rejected",
            connections=summary.connections,
            sources=summary.sources,
            busiest={source: count for source, count in summary.top},
            untracked_connections=summary.untracked,
            interval=self._rejections.interval,
            rejected_total=self.rejected,
        )
