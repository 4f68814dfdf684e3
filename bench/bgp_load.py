"""A light asyncio BGP load generator: many simulated IPv4 speakers on one event loop.

Each ``SimPeer`` is one iBGP speaker with its own source address: it connects to the target,
exchanges OPEN and KEEPALIVE (RFC 4271 §8.2.2: Established once the peer's KEEPALIVE arrives),
announces its prefixes in one UPDATE and then only listens, keeping the set of prefixes it has
been sent.

Rules:
1. Messages are built with bgpd's own codec (``bgpd.wire``): ``encode_message`` for OPEN and
   KEEPALIVE, ``encode_updates`` for the announcement. Received UPDATEs are read only as far as
   their IPv4 withdrawn routes and NLRI (RFC 4271 §4.3; ``decode_prefixes``), so the generator
   stays cheap beside the daemon it loads.
2. OPEN carries Multiprotocol IPv4 unicast (RFC 4760 §8) and 4-octet AS (RFC 6793 §3)
   capabilities, hold time ``hold``; a KEEPALIVE goes out every ``hold / 3`` seconds (RFC 4271
   §4.4) so long runs keep their sessions.
3. A NOTIFICATION or a closed connection ends the peer's session (``error`` says why); nothing
   reconnects, so a benchmark sees every failure.
4. The caller makes the sockets' namespace current (``netns.inside``) while the peers connect.
5. With ``graceful_restart``, OPEN also carries the Graceful Restart capability with forwarding
   state kept for IPv4 unicast (RFC 4724 §3), and the first announcement ends with End-of-RIB
   (RFC 4724 §2). ``announce`` and ``withdraw`` change the peer's routes later; ``drop`` ends the
   connection without a NOTIFICATION, as a crashed speaker does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Callable

from bgpd.wire.capabilities import Capability, FourOctetAs, GracefulRestart, Multiprotocol
from bgpd.wire.codec import encode_message
from bgpd.wire.constants import HEADER_LEN
from bgpd.wire.messages import Keepalive, Open
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.nlri import decode_prefixes
from bgpd.wire.types import IPV4_UNICAST, PathAttributes, Prefix, prefix_from_str
from bgpd.wire.update import encode_end_of_rib, encode_updates, encode_withdrawals

MSG_OPEN, MSG_UPDATE, MSG_NOTIFICATION, MSG_KEEPALIVE = 1, 2, 3, 4
AS_TRANS = 23456


class SimPeer:
    """One simulated speaker (rules 1-3)."""

    def __init__(
        self,
        address: str,
        target: str,
        asn: int,
        prefixes: list[str],
        hold: int = 90,
        port: int = 179,
        graceful_restart: bool = False,
    ) -> None:
        self.address = address
        self.target = target
        self.port = port
        self.asn = asn
        self.hold = hold
        self.graceful_restart = graceful_restart
        self.prefixes: list[Prefix] = [prefix_from_str(p) for p in prefixes]
        self.received: set[Prefix] = set()
        self.established = asyncio.Event()
        self.error: str | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def holds(self) -> int:
        """Routes this speaker holds: its own and those it was sent."""
        return len(self.received) + sum(1 for p in self.prefixes if p not in self.received)

    async def start(self) -> None:
        """Connect and start the session in the background."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((self.address, 0))
        try:
            await asyncio.get_running_loop().sock_connect(sock, (self.target, self.port))
        except OSError as error:
            sock.close()
            self.error = f"connect: {error}"
            return
        reader, writer = await asyncio.open_connection(sock=sock)
        self._writer = writer
        self._tasks.append(asyncio.create_task(self._session(reader, writer)))

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        bgp_id = int(ipaddress.IPv4Address(self.address))
        capabilities: tuple[Capability, ...] = (Multiprotocol(IPV4_UNICAST), FourOctetAs(self.asn))
        if self.graceful_restart:
            capabilities += (GracefulRestart(families=((IPV4_UNICAST, 0x80),)),)  # rule 5
        my_as = self.asn if self.asn <= 0xFFFF else AS_TRANS  # RFC 6793 §4.2.1
        open_message = Open(my_as, self.hold, bgp_id, capabilities)
        try:
            writer.write(encode_message(open_message))
            await writer.drain()
            while True:
                header = await reader.readexactly(HEADER_LEN)
                length, kind = struct.unpack_from("!HB", header, 16)
                body = await reader.readexactly(length - HEADER_LEN)
                if kind == MSG_OPEN:
                    writer.write(encode_message(Keepalive()))
                elif kind == MSG_KEEPALIVE and not self.established.is_set():
                    self.established.set()
                    self.announce(self.prefixes)
                    if self.graceful_restart:
                        writer.write(encode_end_of_rib(IPV4_UNICAST))
                    self._tasks.append(asyncio.create_task(self._keepalives(writer)))
                elif kind == MSG_UPDATE:
                    self._update(body)
                elif kind == MSG_NOTIFICATION:
                    self.error = f"NOTIFICATION {body[:2].hex()}"
                    break
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            self.error = f"connection closed: {error!r}"
        finally:
            writer.close()

    def announce(self, prefixes: list[Prefix]) -> None:
        """Announce ``prefixes`` with this speaker as next hop (rule 5)."""
        if not prefixes or self._writer is None:
            return
        attrs = PathAttributes(
            origin=0,
            as_path=(),
            next_hop=ipaddress.IPv4Address(self.address).packed,
            local_pref=100,
        )
        for message in encode_updates(IPV4_UNICAST, attrs, prefixes, Negotiated()):
            self._writer.write(message)

    def withdraw(self, prefixes: list[Prefix]) -> None:
        """Withdraw ``prefixes`` (rule 5)."""
        if not prefixes or self._writer is None:
            return
        for message in encode_withdrawals(IPV4_UNICAST, prefixes, Negotiated()):
            self._writer.write(message)

    def drop(self) -> None:
        """End the connection at once, with no NOTIFICATION (rule 5)."""
        if self._writer is not None:
            self._writer.transport.abort()

    def _update(self, body: bytes) -> None:
        """RFC 4271 §4.3: withdrawn routes, path attributes, NLRI; only the prefixes count."""
        withdrawn_len = int.from_bytes(body[0:2], "big")
        for prefix in decode_prefixes(body, 2, 2 + withdrawn_len, 32):
            self.received.discard(prefix)
        attrs_at = 2 + withdrawn_len
        attrs_len = int.from_bytes(body[attrs_at : attrs_at + 2], "big")
        nlri_at = attrs_at + 2 + attrs_len
        self.received.update(decode_prefixes(body, nlri_at, len(body), 32))

    async def _keepalives(self, writer: asyncio.StreamWriter) -> None:
        while not writer.is_closing():
            await asyncio.sleep(max(1.0, self.hold / 3))
            writer.write(encode_message(Keepalive()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._writer is not None:
            self._writer.close()


async def wait_all(peers: list[SimPeer], done: Callable[[SimPeer], bool], timeout: float) -> float:
    """Wait until ``done(peer)`` holds for every peer; the loop time when it did. Raises
    TimeoutError with a summary, or RuntimeError when a session failed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        failed = [p for p in peers if p.error]
        if failed:
            first = failed[0]
            raise RuntimeError(f"{len(failed)} sessions failed; {first.address}: {first.error}")
        if all(done(p) for p in peers):
            return loop.time()
        left = deadline - loop.time()
        if left <= 0:
            worst = min(peers, key=lambda p: p.holds())
            raise TimeoutError(
                f"{sum(1 for p in peers if done(p))}/{len(peers)} done; worst {worst.address} "
                f"holds {worst.holds()}, established={worst.established.is_set()}"
            )
        await asyncio.sleep(min(0.05, left))
