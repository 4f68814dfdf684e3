"""The BFD edge (IO): UDP sockets, the session table and the clock around ``bgpd.bfd``.

Rules:
1. One receive socket per endpoint on UDP 3784 (RFC 5881 §4) with ``IP_RECVTTL``; a packet whose
   TTL is not 255 is dropped (RFC 5881 §5). Each session sends from its own socket, bound to one
   source port in 49152-65535 for its whole life (§4), with TTL 255 (§5). A multihop endpoint
   (RFC 5883) uses UDP 4784 both ways (§4) and accepts any TTL of at least ``MULTIHOP_MIN_TTL``
   (§5: a configured minimum; 255 is still what it sends), its sessions demultiplexed by the
   source address as each endpoint serves one local address (§3).
2. Demultiplexing (RFC 5880 §6.3, §6.8.6): a nonzero Your Discriminator selects the session; a
   zero one selects it by the source address, and only in Down or AdminDown. Every drop is
   counted by reason (``drops``); none reaches a session, none is fatal.
3. The endpoint alone calls its sessions; time is ``loop.time()`` and jitter ``random.random``,
   passed in. State changes go to ``on_change(peer, StateChanged)``.
4. ``remove_peer`` sends AdminDown (RFC 5880 §6.8.16) for one detection time before the socket
   closes; ``close`` does so for every session. ``update_peer`` changes a session's timers
   through a Poll Sequence (§6.8.3), without a state change.
5. ``BfdEdge`` keeps the set the router wants (``bgpd.router.BfdWanted``): one endpoint per local
   address, sessions added, re-timed and removed by diff, and every state change reported as the
   session's level (``bgpd.bfd.client.BfdReport``). An address that does not bind is logged
   and its sessions skipped; the other sessions run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import random
import socket
import sys
import time
from collections.abc import Callable, Mapping

import structlog

from bgpd.bfd.client import BfdReport, BfdSpec
from bgpd.bfd.fsm import BfdSession, Output, StateChanged, Timers, Transmit
from bgpd.bfd.packet import (
    MULTIHOP_PORT,
    SINGLE_HOP_PORT,
    SINGLE_HOP_TTL,
    SOURCE_PORTS,
    DropReason,
    PacketDropped,
    SessionState,
    decode,
    encode,
    session_checks,
    ttl_check,
)
from bgpd.status import BFD_STATES, BfdStatus

log = structlog.get_logger("bgpd.bfd")

Address = ipaddress.IPv4Address
AnyAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ChangeHandler = Callable[[Address, StateChanged], None]
_ANCILLARY = socket.CMSG_SPACE(4)  # IP_TTL arrives as one int, in host byte order
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # linux/in.h
MULTIHOP_MIN_TTL = 192  # rule 1: at most 63 hops away, as BGP's own multihop TTL 64 allows


class _Peer:
    __slots__ = ("address", "session", "sock")

    def __init__(self, address: Address, session: BfdSession, sock: socket.socket) -> None:
        self.address = address
        self.session = session
        self.sock = sock


class BfdEndpoint:
    """Single-hop (or, with ``multihop``, RFC 5883) BFD sessions from ``local`` (rules 1-4)."""

    def __init__(
        self,
        local: Address,
        on_change: ChangeHandler,
        port: int | None = None,
        multihop: bool = False,
    ) -> None:
        self.local = local
        self.multihop = multihop
        self.port = port or (MULTIHOP_PORT if multihop else SINGLE_HOP_PORT)
        self.on_change = on_change
        self.drops: collections.Counter[DropReason] = collections.Counter()
        self._peers: dict[Address, _Peer] = {}
        self._by_discriminator: dict[int, _Peer] = {}
        self._leaving: list[_Peer] = []  # rule 4: AdminDown until their detection time passes
        self._rx: socket.socket | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._random = random.Random()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        rx.setblocking(False)
        rx.bind((str(self.local), self.port))
        self._rx = rx
        asyncio.get_running_loop().add_reader(rx.fileno(), self._readable)
        self._task = asyncio.create_task(self._timers(), name="bfd-timers")

    async def close(self) -> None:
        """Rule 4 for every session, then stop."""
        for address in list(self._peers):
            self.remove_peer(address)
        loop = asyncio.get_running_loop()
        while self._leaving:
            await asyncio.sleep(0.05)
            self._run_timers(loop.time())
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._rx is not None:
            loop.remove_reader(self._rx.fileno())
            self._rx.close()

    # -- the session set ---------------------------------------------------------------------

    def add_peer(self, address: Address, timers: Timers) -> BfdSession:
        discriminator = self._new_discriminator()
        session = BfdSession(discriminator, timers, self._random.random)
        sock = self._sender()
        peer = _Peer(address, session, sock)
        self._peers[address] = peer
        self._by_discriminator[discriminator] = peer
        self._execute(peer, session.start(asyncio.get_running_loop().time()))
        return session

    def update_peer(self, address: Address, timers: Timers) -> None:
        peer = self._peers.get(address)
        if peer is not None:
            now = asyncio.get_running_loop().time()
            self._execute(peer, peer.session.set_timers(timers, now))

    def remove_peer(self, address: Address) -> None:
        peer = self._peers.pop(address, None)
        if peer is None:
            return
        del self._by_discriminator[peer.session.local_discriminator]
        self._leaving.append(peer)
        self._execute(peer, peer.session.disable(asyncio.get_running_loop().time()))

    def session(self, address: Address) -> BfdSession | None:
        peer = self._peers.get(address)
        return peer.session if peer is not None else None

    def sessions(self) -> dict[Address, BfdSession]:
        return {address: peer.session for address, peer in self._peers.items()}

    # -- internals ---------------------------------------------------------------------------

    def _new_discriminator(self) -> int:
        while True:
            value = self._random.randrange(1, 1 << 32)
            if value not in self._by_discriminator:
                return value

    def _sender(self) -> socket.socket:
        """Rule 1: a socket bound to a free port of 49152-65535, TTL 255."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, SINGLE_HOP_TTL)
        sock.setblocking(False)
        for _ in range(64):
            try:
                sock.bind((str(self.local), self._random.choice(SOURCE_PORTS)))
                return sock
            except OSError:
                continue
        sock.close()
        raise OSError("no free BFD source port in 49152-65535")

    def _readable(self) -> None:
        assert self._rx is not None
        while True:
            try:
                data, ancillary, _flags, source = self._rx.recvmsg(512, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            self._receive(data, ancillary, Address(source[0]))

    def _receive(
        self, data: bytes, ancillary: list[tuple[int, int, bytes]], source: Address
    ) -> None:
        ttl = next(
            (
                int.from_bytes(d[:4], sys.byteorder)
                for _, kind, d in ancillary
                if kind == socket.IP_TTL
            ),
            0,
        )
        reason = ttl_check(ttl, self.multihop, MULTIHOP_MIN_TTL)
        if reason is not None:
            self.drops[reason] += 1
            return
        try:
            packet = decode(data)
        except PacketDropped as dropped:
            self.drops[dropped.reason] += 1
            return
        if packet.your_discriminator:
            peer = self._by_discriminator.get(packet.your_discriminator)
        else:
            peer = self._peers.get(source)
        reason = session_checks(packet, peer is not None)
        if peer is None or reason is not None:
            self.drops[reason or DropReason.UNKNOWN_PEER] += 1
            return
        self._execute(peer, peer.session.receive(packet, asyncio.get_running_loop().time()))

    def _execute(self, peer: _Peer, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Transmit):
                with contextlib.suppress(OSError):  # an unreachable peer is BFD's to notice
                    peer.sock.sendto(encode(output.packet), (str(peer.address), self.port))
            else:
                log.info(
                    "bfd.state",
                    peer=str(peer.address),
                    old=output.old.name,
                    new=output.new.name,
                    diagnostic=output.diagnostic.name,
                )
                self.on_change(peer.address, output)
        self._wake.set()

    def _run_timers(self, now: float) -> None:
        for peer in (*self._peers.values(), *self._leaving):
            deadline = peer.session.next_deadline()
            if deadline is not None and deadline <= now:
                self._execute(peer, peer.session.timer(now))
        for peer in [p for p in self._leaving if p.session.next_deadline() is None]:
            peer.sock.close()  # rule 4: its AdminDown time is over
            self._leaving.remove(peer)

    async def _timers(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._run_timers(loop.time())
            deadlines = [
                d
                for p in (*self._peers.values(), *self._leaving)
                if (d := p.session.next_deadline()) is not None
            ]
            self._wake.clear()
            timeout = max(0.0, min(deadlines) - loop.time()) if deadlines else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)


def wanted_interface(wanted: Mapping[AnyAddress, BfdSpec], address: Address) -> str:
    spec = wanted.get(address)
    return spec.interface if spec is not None else ""


def report_of(session: BfdSession) -> BfdReport:
    """A session's level (rule 5)."""
    return BfdReport(
        state=session.state,
        ups=session.up_count,
        downs=session.down_count,
        remote_admin_down=session.state == SessionState.DOWN
        and session.remote_state == SessionState.ADMIN_DOWN,
    )


Endpoint = tuple[Address, bool]  # (local address, multihop)


class BfdEdge:
    """Rule 5."""

    def __init__(self, on_report: Callable[[Address, BfdReport], None]) -> None:
        self.on_report = on_report
        self.endpoints: dict[Endpoint, BfdEndpoint] = {}
        self._specs: dict[Address, tuple[Endpoint, Timers]] = {}  # peer: (endpoint, timers)
        self._interfaces: dict[Address, str] = {}
        self._since: dict[Address, float] = {}  # wall clock of the last state change
        self._failed: set[Endpoint] = set()  # endpoints that did not bind

    async def apply(self, wanted: Mapping[AnyAddress, BfdSpec]) -> None:
        """Rule 5 (IPv4: other sessions are not run)."""
        specs: dict[Address, tuple[Endpoint, Timers]] = {}
        for address, spec in wanted.items():
            if isinstance(address, Address) and isinstance(spec.local, Address):
                specs[address] = ((spec.local, spec.multihop), spec.timers)
        for address, (key, _) in list(self._specs.items()):
            new = specs.get(address)
            if new is None or new[0] != key:
                self.endpoints[key].remove_peer(address)
                del self._specs[address]
        for address, (key, timers) in specs.items():
            endpoint = self.endpoints.get(key) or await self._open(key)
            if endpoint is None:
                continue
            old = self._specs.get(address)
            self._interfaces[address] = wanted_interface(wanted, address)
            if old is None:
                self._since[address] = time.time()
                endpoint.add_peer(address, timers)
            elif old[1] != timers:
                endpoint.update_peer(address, timers)
            self._specs[address] = (key, timers)

    def sessions(self) -> dict[Address, BfdSession]:
        return {a: s for e in self.endpoints.values() for a, s in e.sessions().items()}

    def statuses(self) -> dict[str, BfdStatus]:
        """Every running session as a status value, by peer address text."""
        out: dict[str, BfdStatus] = {}
        for (local, multihop), endpoint in self.endpoints.items():
            for address, session in endpoint.sessions().items():
                timers = session.timers
                out[str(address)] = BfdStatus(
                    peer_ip=str(address),
                    local_ip=str(local),
                    interface=self._interfaces.get(address, ""),
                    state=BFD_STATES[session.state],
                    since=self._since.get(address, 0.0),
                    tx_interval_ms=session.transmit_interval() * 1000,
                    detection_time_ms=session.detection_time() * 1000,
                    desired_min_tx_ms=timers.desired_min_tx / 1000,
                    required_min_rx_ms=timers.required_min_rx / 1000,
                    detect_mult=timers.detect_mult,
                    ups=session.up_count,
                    downs=session.down_count,
                    local_discriminator=session.local_discriminator,
                    remote_discriminator=session.remote_discriminator,
                    multihop=multihop,
                )
        return out

    @property
    def drops(self) -> collections.Counter[DropReason]:
        total: collections.Counter[DropReason] = collections.Counter()
        for endpoint in self.endpoints.values():
            total.update(endpoint.drops)
        return total

    async def close(self) -> None:
        await asyncio.gather(*(e.close() for e in self.endpoints.values()))
        self.endpoints.clear()

    async def _open(self, key: Endpoint) -> BfdEndpoint | None:
        local, multihop = key
        endpoint = BfdEndpoint(local, self._changed, multihop=multihop)
        try:
            await endpoint.start()
        except OSError as exc:
            if key not in self._failed:
                log.error(
                    "bfd endpoint did not bind", local=str(local), multihop=multihop, error=str(exc)
                )
            self._failed.add(key)
            return None
        self._failed.discard(key)
        self.endpoints[key] = endpoint
        return endpoint

    def _changed(self, address: Address, _change: StateChanged) -> None:
        spec = self._specs.get(address)
        endpoint = self.endpoints.get(spec[0]) if spec is not None else None
        session = endpoint.session(address) if endpoint is not None else None
        if session is not None:
            self._since[address] = time.time()
            self.on_report(address, report_of(session))
