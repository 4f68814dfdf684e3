"""The passive side: one listening socket that hands connections to their configured peer.

Rules:
1. Listens on a configurable address and port (default port 179, RFC 4271 §8.2.1.1).
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
6. ``Listeners`` keeps one listener per wanted address, on the wanted port: every address
   (``::``, dual-stack) when none is named (bindMode None), else each named one (bindMode
   NodeIP, one per family: the node's address, or ``0.0.0.0``/``::`` for a family the node has
   no address of; an IPv6 wildcard is then IPv6-only so that the IPv4 socket binds beside it).
   With port 0 the first socket's port is every socket's. ``listen`` follows a change at run time:
   listeners no longer wanted close, new ones open with every TCP-MD5 key, sessions already
   accepted are not the listener's and stay. At start an address that does not bind is bad
   configuration (the ``OSError`` propagates); at run time it is reported and the others keep
   listening, for the caller to try again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import socket
import time
from collections.abc import Callable, Sequence

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
        address: str | None = None,
        port: int = BGP_PORT,
        *,
        rejections: RejectionLog | None = None,
        clock: Callable[[], float] = time.monotonic,
        dual_stack: bool = True,
    ) -> None:
        self.address = address
        self.dual_stack = dual_stack  # ``::`` takes IPv4 too (rule 6)
        self.port = port
        self.backlog = listen_backlog()  # rule 5
        self.rejected = 0  # every rejected connection, logged or summarised (rule 2)
        self._rejections = rejections if rejections is not None else RejectionLog()
        self._clock = clock
        self._summary_timer: asyncio.TimerHandle | None = None
        self._handoff = handoff
        self._server: asyncio.Server | None = None
        self._sockets: list[socket.socket] = []
        self._keys: dict[IPAddress, str] = {}

    async def start(self) -> None:
        sock = self._make_socket()
        self._sockets = [sock]
        for address, password in self._keys.items():
            set_md5(sock, address, password)
        self._server = await asyncio.start_server(
            self._accepted, sock=sock, limit=STREAM_LIMIT, backlog=self.backlog
        )  # asyncio calls listen() again with this backlog when it starts serving
        self.port = sock.getsockname()[1]
        log.info("listening", address=self.address or "::", port=self.port, backlog=self.backlog)

    def _make_socket(self) -> socket.socket:
        host = self.address or "::"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(not self.dual_stack))
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
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

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


class Listeners:
    """Rule 6: the listening sockets of one speaker, kept equal to the wanted set."""

    def __init__(
        self, handoff: Handoff, addresses: Sequence[str] = (), port: int = BGP_PORT
    ) -> None:
        self._handoff = handoff
        self._addresses: tuple[str | None, ...] = tuple(addresses) or (None,)
        self._port = port
        self._open: dict[str | None, Listener] = {}
        self._keys: dict[IPAddress, str] = {}
        self._rejections = RejectionLog()
        self._rejected_by_closed = 0
        self.backlog = listen_backlog()

    @property
    def port(self) -> int:
        """The port listened on (the kernel's choice when asked for 0, as tests do)."""
        return next(iter(self._open.values())).port if self._open else self._port

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(address or "::" for address in self._open)

    @property
    def rejected(self) -> int:
        return self._rejected_by_closed + sum(lst.rejected for lst in self._open.values())

    async def start(self) -> None:
        """Rule 6 at start: the first address that does not bind raises."""
        for address in self._addresses:
            await self._open_one(address)

    async def listen(self, addresses: Sequence[str], port: int) -> list[str]:
        """Rule 6 at run time: the addresses that could not be bound, each with its error."""
        wanted: tuple[str | None, ...] = tuple(addresses) or (None,)
        moved = port != self._port
        gone = [address for address in self._open if moved or address not in wanted]
        for address in gone:
            await self._close_one(address)
            log.info("stopped listening", address=address or "::", port=self._port)
        self._addresses, self._port = wanted, port
        failed: list[str] = []
        for address in wanted:
            if address in self._open:
                continue
            try:
                await self._open_one(address)
            except OSError as exc:
                failed.append(f"{address or '::'}:{port}: {exc.strerror or exc}")
        return failed

    def set_password(self, address: IPAddress, password: str | None) -> None:
        """Install (or with None remove) the TCP-MD5 key for ``address`` on every listener."""
        if password:
            self._keys[address] = password
        else:
            self._keys.pop(address, None)
        for listener in self._open.values():
            listener.set_password(address, password)

    async def close(self) -> None:
        for address in list(self._open):
            await self._close_one(address)

    async def _open_one(self, address: str | None) -> None:
        port = self.port if self._port == 0 and self._open else self._port
        listener = Listener(
            self._handoff,
            address,
            port,
            rejections=self._rejections,
            dual_stack=address is None,
        )
        for peer, password in self._keys.items():
            listener.set_password(peer, password)
        await listener.start()
        self._open[address] = listener

    async def _close_one(self, address: str | None) -> None:
        listener = self._open.pop(address)
        self._rejected_by_closed += listener.rejected
        await listener.close()
