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
   reconnects, so a benchmark sees every failure; except that with ``connect_retry`` a
   connection that fails, closes or is sent a NOTIFICATION before Established is opened again
   after that many seconds (the ConnectRetry timer, RFC 4271 §8.2.2; a Calico node's BIRD has
   ``connect retry time 5``), counted in ``retries``.
4. The caller makes the sockets' namespace current (``netns.inside``) while the peers connect.
5. With ``graceful_restart``, OPEN also carries the Graceful Restart capability with forwarding
   state kept for IPv4 unicast (RFC 4724 §3), and the first announcement ends with End-of-RIB
   (RFC 4724 §2). ``announce`` and ``withdraw`` change the peer's routes later; ``drop`` ends the
   connection without a NOTIFICATION, as a crashed speaker does.
6. With ``keep=False`` a peer keeps no prefixes, only ``count`` (kept in both modes): NLRI
   announced less withdrawn routes sent to it. When every entry of a section is a 5-octet /25
   to /32 (a Calico block or address), the count is the section's length / 5, found without a
   loop in Python; otherwise the section is decoded. An NLRI section equal to one already
   counted (a hash of it is kept) does not count again; a withdrawal forgets those hashes. A
   route sent again in another packing counts again, so a caller that counts checks exact sets
   on a few peers that keep theirs.
7. Messages are read by an ``asyncio.Protocol`` straight from the transport's buffer (no
   ``StreamReader`` coroutine per message), so the generator's cost per UPDATE is a slice and a
   length.
8. ``Fleet`` runs peers in ``processes`` forked workers, each with its own event loop and its
   share of the peers, so the generator is not one core's worth of Python: the workers are
   forked inside the caller's namespace (rule 4), connect on ``go``, report the monotonic time
   their last peer satisfied the condition, and keep their sessions until ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import multiprocessing
import resource
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

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
    """One simulated speaker (rules 1-3, 5-7)."""

    def __init__(
        self,
        address: str,
        target: str,
        asn: int,
        prefixes: list[str],
        hold: int = 90,
        port: int = 179,
        graceful_restart: bool = False,
        keep: bool = True,
        connect_retry: float | None = None,
    ) -> None:
        self.address = address
        self.target = target
        self.port = port
        self.asn = asn
        self.hold = hold
        self.graceful_restart = graceful_restart
        self.keep = keep
        self.connect_retry = connect_retry
        self.retries = 0
        self.prefixes: list[Prefix] = [prefix_from_str(p) for p in prefixes]
        self.received: set[Prefix] = set()
        self.count = 0  # rule 6
        self._seen: set[int] = set()  # rule 6: hashes of the NLRI sections counted
        self.established = asyncio.Event()
        self.established_at = 0.0  # time.monotonic()
        self.error: str | None = None
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []

    def holds(self) -> int:
        """Routes this speaker holds: its own and those it was sent."""
        if not self.keep:
            return self.count + len(self.prefixes)
        return len(self.received) + sum(1 for p in self.prefixes if p not in self.received)

    async def start(self) -> None:
        """Connect and start the session in the background."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((self.address, 0))
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, (self.target, self.port))
        except OSError as error:
            sock.close()
            self._failed(f"connect: {error}")
            return
        await loop.create_connection(lambda: _Wire(self), sock=sock)

    def _failed(self, why: str) -> None:
        """Rule 3: retry a connection that never reached Established, or fail."""
        if self.connect_retry is None or self.established.is_set() or self._closing:
            self.error = why
            return
        self.retries += 1
        self._transport = None
        self._buffer.clear()
        self._tasks.append(asyncio.create_task(self._reconnect(self.connect_retry)))

    async def _reconnect(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.start()

    def _connected(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        bgp_id = int(ipaddress.IPv4Address(self.address))
        capabilities: tuple[Capability, ...] = (Multiprotocol(IPV4_UNICAST), FourOctetAs(self.asn))
        if self.graceful_restart:
            capabilities += (GracefulRestart(families=((IPV4_UNICAST, 0x80),)),)  # rule 5
        my_as = self.asn if self.asn <= 0xFFFF else AS_TRANS  # RFC 6793 §4.2.1
        transport.write(encode_message(Open(my_as, self.hold, bgp_id, capabilities)))

    def _received(self, data: bytes) -> None:
        """Rule 7: every whole message in the buffer (RFC 4271 §4.1 header)."""
        buffer = self._buffer
        buffer += data
        at = 0
        end = len(buffer)
        while end - at >= HEADER_LEN:
            length, kind = struct.unpack_from("!HB", buffer, at + 16)
            if end - at < length:
                break
            body = bytes(buffer[at + HEADER_LEN : at + length])
            at += length
            self._message(kind, body)
            if self.error or self._transport is None:
                break
        del buffer[:at]

    def _message(self, kind: int, body: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if kind == MSG_OPEN:
            transport.write(encode_message(Keepalive()))
        elif kind == MSG_KEEPALIVE and not self.established.is_set():
            self.established.set()
            self.established_at = time.monotonic()
            self.announce(self.prefixes)
            if self.graceful_restart:
                transport.write(encode_end_of_rib(IPV4_UNICAST))
            self._tasks.append(asyncio.create_task(self._keepalives(transport)))
        elif kind == MSG_UPDATE:
            self._update(body)
        elif kind == MSG_NOTIFICATION:
            self._failed(f"NOTIFICATION {body[:2].hex()}")
            transport.close()

    def _lost(self, transport: asyncio.BaseTransport, error: Exception | None) -> None:
        if transport is not self._transport:  # a connection given up on already (rule 3)
            return
        if not self.error and not self._closing:
            self._failed(f"connection closed: {error!r}")

    def announce(self, prefixes: list[Prefix]) -> None:
        """Announce ``prefixes`` with this speaker as next hop (rule 5)."""
        if not prefixes or self._transport is None:
            return
        attrs = PathAttributes(
            origin=0,
            as_path=(),
            next_hop=ipaddress.IPv4Address(self.address).packed,
            local_pref=100,
        )
        for message in encode_updates(IPV4_UNICAST, attrs, prefixes, Negotiated()):
            self._transport.write(message)

    def withdraw(self, prefixes: list[Prefix]) -> None:
        """Withdraw ``prefixes`` (rule 5)."""
        if not prefixes or self._transport is None:
            return
        for message in encode_withdrawals(IPV4_UNICAST, prefixes, Negotiated()):
            self._transport.write(message)

    def drop(self) -> None:
        """End the connection at once, with no NOTIFICATION (rule 5)."""
        if self._transport is not None:
            self._transport.abort()

    def _update(self, body: bytes) -> None:
        """RFC 4271 §4.3: withdrawn routes, path attributes, NLRI; only the prefixes count."""
        withdrawn_len = int.from_bytes(body[0:2], "big")
        attrs_at = 2 + withdrawn_len
        attrs_len = int.from_bytes(body[attrs_at : attrs_at + 2], "big")
        nlri_at = attrs_at + 2 + attrs_len
        if self.keep:
            gone = decode_prefixes(body, 2, attrs_at, 32)
            new = decode_prefixes(body, nlri_at, len(body), 32)
            self.received.difference_update(gone)
            self.received.update(new)
            self.count += len(new) - len(gone)
            return
        withdrawn = _count(body, 2, attrs_at)
        if withdrawn:
            self.count -= withdrawn
            self._seen.clear()
        if nlri_at < len(body):
            key = hash(body[nlri_at:])
            if key not in self._seen:
                self._seen.add(key)
                self.count += _count(body, nlri_at, len(body))

    async def _keepalives(self, transport: asyncio.Transport) -> None:
        while not transport.is_closing():
            await asyncio.sleep(max(1.0, self.hold / 3))
            transport.write(encode_message(Keepalive()))

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._transport is not None:
            self._transport.close()


_FIVE_OCTETS = frozenset(range(25, 33))


def _count(body: bytes, start: int, end: int) -> int:
    """Prefixes in ``body[start:end]`` (rule 6)."""
    size = end - start
    if size % 5 == 0 and set(body[start:end:5]) <= _FIVE_OCTETS:
        return size // 5
    return len(decode_prefixes(body, start, end, 32))


class _Wire(asyncio.Protocol):
    """The transport's side of one ``SimPeer`` (rule 7)."""

    def __init__(self, peer: SimPeer) -> None:
        self.peer = peer
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer._connected(transport)

    def data_received(self, data: bytes) -> None:
        if self.transport is self.peer._transport:
            self.peer._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.peer._lost(self.transport, exc)


async def wait_all(peers: list[SimPeer], done: Callable[[SimPeer], bool], timeout: float) -> float:
    """Wait until ``done(peer)`` holds for every peer; the loop time (``time.monotonic()``)
    when it did. Raises TimeoutError with a summary, or RuntimeError when a session failed."""
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


@dataclass(frozen=True)
class PeerPlan:
    """One simulated speaker of a ``Fleet``: its address and the prefixes it announces."""

    address: str
    prefixes: tuple[str, ...]


@dataclass(frozen=True)
class FleetResult:
    """What a ``Fleet`` run saw (rule 8); times are ``time.monotonic()``."""

    connected: float  # the last worker's last TCP connection
    established: float  # the last session Established
    finished: float  # the last peer that satisfied the condition
    sessions: int  # Established
    over: int  # counting peers sent more routes than expected (rule 6: a route sent again)
    retries: int  # connections opened again (rule 3)
    witness_errors: tuple[str, ...]  # keeping peers whose set is not the expected one


@dataclass(frozen=True)
class _Job:
    """What every worker of a ``Fleet`` is given besides its share of the peers."""

    target: str
    asn: int
    expected: int | None
    want: frozenset[str]
    witnesses: int
    connect_retry: float | None
    window: int  # sessions opening at once in this worker, 0 for all


class Fleet:
    """``plans`` as ``SimPeer`` sessions to ``target`` in ``processes`` forked workers (rule 8).

    The condition: each peer was sent ``expected`` routes (rule 6); the first ``witnesses``
    peers of each worker keep their prefixes and must hold exactly ``want`` less their own.
    With ``expected`` None the condition is only that every peer's TCP connection is up.
    ``connect_retry`` is every peer's (rule 3). ``window`` > 0 paces the connects: at most that
    many sessions (split between the workers) are opening, not yet Established, at a time.
    """

    def __init__(
        self,
        plans: Sequence[PeerPlan],
        target: str,
        asn: int,
        expected: int | None,
        want: frozenset[str] = frozenset(),
        processes: int = 2,
        witnesses: int = 2,
        connect_retry: float | None = None,
        window: int = 0,
    ) -> None:
        context = multiprocessing.get_context("fork")
        share = -(-window // processes) if window else 0
        job = _Job(target, asn, expected, want, witnesses, connect_retry, share)
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for index in range(processes):
            ours, theirs = context.Pipe()
            args = (theirs, list(plans[index::processes]), job)
            proc = context.Process(target=_worker, args=args, daemon=True)
            proc.start()
            theirs.close()
            self.conns.append(ours)
            self.procs.append(proc)
        for conn in self.conns:
            self._expect(conn, "ready", 60)

    def go(self) -> float:
        """Start every worker's peers at once; the start time."""
        started = time.monotonic()
        for conn in self.conns:
            conn.send("go")
        return started

    def done(self, timeout: float) -> FleetResult:
        """Every worker's report, once all are done."""
        reports = [self._expect(conn, "done", timeout) for conn in self.conns]
        return FleetResult(
            connected=max(r[1] for r in reports),
            established=max(r[2] for r in reports),
            finished=max(r[3] for r in reports),
            sessions=sum(r[4] for r in reports),
            over=sum(r[5] for r in reports),
            retries=sum(r[6] for r in reports),
            witness_errors=tuple(e for r in reports for e in r[7]),
        )

    def stop(self) -> float:
        """Close every session; the CPU seconds the workers used."""
        cpu = 0.0
        for conn in self.conns:
            with contextlib.suppress(BrokenPipeError):  # a worker that failed has ended
                conn.send("stop")
        for conn in self.conns:
            with contextlib.suppress(RuntimeError, TimeoutError, EOFError):
                cpu += self._expect(conn, "closed", 30)[1]
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        return cpu

    @staticmethod
    def _expect(conn: Connection, kind: str, timeout: float) -> tuple[Any, ...]:
        if not conn.poll(timeout):
            raise TimeoutError(f"no {kind!r} from a load worker in {timeout} s")
        message = conn.recv()
        if message[0] != kind:
            raise RuntimeError(f"load worker: {message[1]}")
        return tuple(message)


def _worker(conn: Connection, plans: list[PeerPlan], job: _Job) -> None:
    """One worker of a ``Fleet`` (rule 8)."""
    try:
        asyncio.run(_work(conn, plans, job))
    except Exception as error:  # noqa: BLE001 - reported to the parent
        conn.send(("error", repr(error)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    conn.send(("closed", usage.ru_utime + usage.ru_stime))


async def _work(conn: Connection, plans: list[PeerPlan], job: _Job) -> None:
    wanted = {prefix_from_str(p) for p in job.want}
    peers = [
        SimPeer(
            plan.address,
            job.target,
            job.asn,
            list(plan.prefixes),
            keep=index < job.witnesses,
            connect_retry=job.connect_retry,
        )
        for index, plan in enumerate(plans)
    ]
    conn.send(("ready",))
    if conn.recv() != "go":
        return
    expected = job.expected
    try:
        if job.window:
            gate = asyncio.Semaphore(job.window)
            await asyncio.gather(*(_paced(p, gate) for p in peers))
        else:
            await asyncio.gather(*(p.start() for p in peers))
        connected = time.monotonic()
        finished = connected
        errors: list[str] = []
        if expected is not None:
            finished = await _wait_pending(peers, expected, wanted, 600)
            errors = [
                f"{p.address}: {len(p.received - wanted)} unexpected, "
                f"{len(wanted - p.received - set(p.prefixes))} missing"
                for p in peers[: job.witnesses]
                if p.received != wanted - set(p.prefixes)
            ]
        over = sum(1 for p in peers if expected is not None and p.count > expected)
        established = sum(1 for p in peers if p.established.is_set())
        last_up = max(p.established_at for p in peers)
        retries = sum(p.retries for p in peers)
        conn.send(("done", connected, last_up, finished, established, over, retries, errors))
        while not conn.poll():
            await asyncio.sleep(0.05)
        conn.recv()
    finally:
        await asyncio.gather(*(p.close() for p in peers))


async def _paced(peer: SimPeer, gate: asyncio.Semaphore) -> None:
    """Open ``peer``'s session once fewer than the window are opening (``Fleet``)."""
    async with gate:
        await peer.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(peer.established.wait(), 30)


async def _wait_pending(
    peers: list[SimPeer], expected: int, wanted: set[Prefix], timeout: float
) -> float:
    """``wait_all`` for a worker's condition, checking only the peers not yet satisfied."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = list(peers)
    while True:
        failed = [p for p in peers if p.error]
        if failed:
            raise RuntimeError(
                f"{len(failed)} sessions failed; {failed[0].address}: {failed[0].error}"
            )
        pending = [p for p in pending if not _satisfied(p, expected, wanted)]
        if not pending:
            return loop.time()
        if loop.time() > deadline:
            worst = pending[0]
            raise TimeoutError(
                f"{len(pending)}/{len(peers)} pending; {worst.address} was sent {worst.count}"
                f" of {expected}, established={worst.established.is_set()}"
            )
        await asyncio.sleep(0.02)


def _satisfied(peer: SimPeer, expected: int, wanted: set[Prefix]) -> bool:
    if peer.keep:
        if len(peer.received) + len(peer.prefixes) < len(wanted):
            return False
        return wanted <= peer.received | set(peer.prefixes)
    return peer.count >= expected
