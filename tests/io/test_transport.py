"""The asyncio edge over loopback: supervisors, listener, runners, against each other and
against a scripted peer built from our own codec (no root needed)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from structlog.testing import capture_logs

from bgpd.net import PeerEvent, PeerRunner, Supervisor
from bgpd.net.transport import READ_SIZE, READS_AHEAD, STREAM_LIMIT
from bgpd.session import (
    DataReceived,
    Down,
    DownReason,
    Established,
    Input,
    PeerKey,
    Session,
    SessionConfig,
    State,
    UpdateReceived,
)
from bgpd.wire.capabilities import FourOctetAs, Multiprotocol
from bgpd.wire.constants import CeaseSubcode, ErrorCode, MessageType
from bgpd.wire.framer import Framer
from bgpd.wire.messages import (
    KEEPALIVE_MESSAGE,
    Notification,
    Open,
    decode_notification,
    encode_notification,
    encode_open,
)
from bgpd.wire.types import IPV4_UNICAST, PathAttributes, next_hop_from_str, prefix_from_str
from bgpd.wire.update import encode_updates

A = ipaddress.IPv4Address("127.0.0.1")
B = ipaddress.IPv4Address("127.0.0.2")
C = ipaddress.IPv4Address("127.0.0.3")


class RecordingCore:
    """A routing core that records events; ``fail_on`` makes it raise (a core bug) when that
    peer comes up."""

    def __init__(self) -> None:
        self.events: list[tuple[PeerKey, PeerEvent]] = []
        self.fail_on: PeerKey | None = None

    async def peer_event(self, peer: PeerKey, event: PeerEvent) -> None:
        self.events.append((peer, event))
        if peer == self.fail_on and isinstance(event, Established):
            self.fail_on = None
            raise RuntimeError("core bug for this peer")

    def of(self, kind: type, peer: PeerKey | None = None) -> list[Any]:
        return [e for p, e in self.events if isinstance(e, kind) and (peer is None or p == peer)]


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def config(
    local: ipaddress.IPv4Address, peer: ipaddress.IPv4Address, port: int, **kw: Any
) -> SessionConfig:
    values: dict[str, Any] = {
        "local_as": 65000,
        "peer_as": 65000,
        "router_id": local,
        "peer_address": peer,
        "port": port,
        "source_address": local,
        "hold_time": 3,
        "connect_delay_time": 0.0,
        "connect_retry_time": 1.0,
        "error_wait_min": 0.2,
        "error_wait_max": 1.0,
    }
    values.update(kw)
    return SessionConfig(**values)


async def test_two_supervisors_establish_and_exchange_updates() -> None:
    core_a, core_b = RecordingCore(), RecordingCore()
    async with (
        Supervisor(core_a, listen_addresses=(str(A),), listen_port=0) as sup_a,
        Supervisor(core_b, listen_addresses=(str(B),), listen_port=0) as sup_b,
    ):
        assert sup_a.listener and sup_b.listener
        port_a, port_b = sup_a.listener.port, sup_b.listener.port
        cfg_a = config(A, B, port_b)
        cfg_b = config(B, A, port_a, passive=True)
        await sup_b.apply({cfg_b.key: cfg_b})
        await sup_a.apply({cfg_a.key: cfg_a})
        await wait_until(lambda: core_a.of(Established) and core_b.of(Established), 10, "up")
        negotiated = core_a.of(Established)[0].negotiated
        attrs = PathAttributes(next_hop=next_hop_from_str(str(A)), local_pref=100)
        prefixes = [prefix_from_str("10.9.0.0/24"), prefix_from_str("10.9.1.0/24")]
        messages = encode_updates(IPV4_UNICAST, attrs, prefixes, negotiated)
        assert await sup_a.send(cfg_a.key, messages, prefixes=2)
        await wait_until(lambda: core_b.of(UpdateReceived), 5, "update")
        update = core_b.of(UpdateReceived)[0].update
        assert sorted(update.announced[0].prefixes) == sorted(prefixes)
        await asyncio.sleep(4)  # longer than the 3 s hold time: keepalives keep it up
        stats_a = sup_a.statistics()[cfg_a.key]
        stats_b = sup_b.statistics()[cfg_b.key]
        assert stats_a.state is State.ESTABLISHED and stats_b.state is State.ESTABLISHED
        assert stats_a.updates_out == 1 and stats_a.prefixes_out == 2
        assert stats_b.updates_in == 1 and stats_b.prefixes_in == 2
        assert stats_b.messages_in >= 4  # OPEN, KEEPALIVEs, UPDATE
        # Removing the peer sends Cease/Peer De-configured to the other side.
        await sup_a.apply({})
        await wait_until(lambda: core_b.of(Down), 5, "down on B")
        down = core_b.of(Down)[0]
        assert down.reason is DownReason.NOTIFICATION_RECEIVED
        assert down.notification.subcode == CeaseSubcode.PEER_DECONFIGURED


async def test_unknown_peer_is_rejected_with_cease_and_counted() -> None:
    core = RecordingCore()
    async with Supervisor(core, listen_addresses=(str(A),), listen_port=0) as sup:
        assert sup.listener
        reader, writer = await asyncio.open_connection(
            str(A), sup.listener.port, local_addr=(str(C), 0)
        )
        data = await asyncio.wait_for(reader.read(4096), 5)
        frames = Framer().feed(data)
        assert frames[0][0] == MessageType.NOTIFICATION
        note = decode_notification(frames[0][1])
        assert (note.code, note.subcode) == (ErrorCode.CEASE, CeaseSubcode.CONNECTION_REJECTED)
        assert sup.listener.rejected == 1
        writer.close()


async def _scripted_peer(
    port: int, source: ipaddress.IPv4Address, router_id: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(str(A), port, local_addr=(str(source), 0))
    caps = (Multiprotocol(IPV4_UNICAST), FourOctetAs(65000))
    writer.write(encode_open(Open(65000, 3, router_id, caps)) + KEEPALIVE_MESSAGE)
    await writer.drain()
    return reader, writer


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _two_passive_peers(
    sup: Supervisor, core: RecordingCore
) -> tuple[SessionConfig, SessionConfig, Streams, Streams]:
    """Passive sessions for B and C, both brought up by scripted peers: (configs, streams)."""
    assert sup.listener
    port = sup.listener.port
    cfg_b = config(A, B, 1, passive=True)
    cfg_c = config(A, C, 1, passive=True)
    await sup.apply({cfg_b.key: cfg_b, cfg_c.key: cfg_c})
    streams_b = await _scripted_peer(port, B, int(B))
    streams_c = await _scripted_peer(port, C, int(C))
    await wait_until(lambda: len(core.of(Established)) == 2, 5, "both up")
    return cfg_b, cfg_c, streams_b, streams_c


async def _read_until_notification(reader: asyncio.StreamReader) -> tuple[int, int]:
    framer = Framer()
    while True:
        data = await asyncio.wait_for(reader.read(4096), 5)
        assert data, "closed without NOTIFICATION"
        for msg_type, body in framer.feed(data):
            if msg_type == MessageType.NOTIFICATION:
                note = decode_notification(body)
                return note.code, note.subcode


async def test_garbage_gets_header_error_and_other_peer_is_untouched() -> None:
    core = RecordingCore()
    async with Supervisor(core, listen_addresses=(str(A),), listen_port=0) as sup:
        cfg_b, cfg_c, (_, writer_b), (reader_c, writer_c) = await _two_passive_peers(sup, core)
        writer_c.write(b"\x00" * 19)  # bad marker: Connection Not Synchronized
        assert await _read_until_notification(reader_c) == (ErrorCode.MESSAGE_HEADER, 1)
        await wait_until(lambda: core.of(Down, cfg_c.key), 5, "C down")
        assert sup.statistics()[cfg_b.key].state is State.ESTABLISHED
        assert (
            sup.statistics()[cfg_c.key].last_error
            == "message-error:message-header/connection-not-synchronized"
        )
        writer_b.write(KEEPALIVE_MESSAGE)
        writer_b.close()
        writer_c.close()


async def test_a_session_fault_resets_only_that_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 6: an exception in the session (the peer's side of the boundary) resets that peer
    alone; the core, told Established before, gets a Down; the other peer keeps going."""
    handle = Session.handle
    faults: list[Input] = []

    def faulty_handle(session: Session, event: Input, now: float) -> list[Any]:
        first_data_when_up = (
            session.config.peer_address == C
            and session.state is State.ESTABLISHED
            and isinstance(event, DataReceived)
        )
        if first_data_when_up and not faults:
            faults.append(event)
            raise RuntimeError("session bug for this peer")
        return handle(session, event, now)

    monkeypatch.setattr(Session, "handle", faulty_handle)
    core = RecordingCore()
    with capture_logs() as logs:
        async with Supervisor(core, listen_addresses=(str(A),), listen_port=0) as sup:
            cfg_b, cfg_c, (_, writer_b), (reader_c, writer_c) = await _two_passive_peers(sup, core)
            writer_c.write(KEEPALIVE_MESSAGE)
            # C's runner crashed and reset: its connection is closed, B keeps going.
            data = await asyncio.wait_for(reader_c.read(65536), 5)
            while data:
                data = await asyncio.wait_for(reader_c.read(65536), 5)
            await wait_until(
                lambda: sup.statistics()[cfg_c.key].last_error == "internal-error", 5, "reset"
            )
            await wait_until(lambda: core.of(Down, cfg_c.key), 5, "C down for the core")
            assert core.of(Down, cfg_c.key) == [
                Down(DownReason.CONNECTION_LOST, was_established=True)
            ]
            await wait_until(
                lambda: sup.statistics()[cfg_c.key].state is State.ACTIVE, 5, "C restarted"
            )
            assert sup.statistics()[cfg_b.key].state is State.ESTABLISHED
            writer_b.close()
            writer_c.close()
    assert [e for e in logs if e["event"] == "session crashed; resetting this peer only"]


async def test_an_exception_in_the_routing_core_is_not_a_peer_reset() -> None:
    """Rule 6 (the other side of the boundary): the core's exception is not swallowed as a peer
    reset; it ends the supervisor's TaskGroup and leaving the context raises it."""
    core = RecordingCore()
    writers: list[asyncio.StreamWriter] = []
    with capture_logs() as logs, pytest.raises(ExceptionGroup) as raised:
        async with Supervisor(core, listen_addresses=(str(A),), listen_port=0) as sup:
            assert sup.listener
            cfg_b = config(A, B, 1, passive=True)
            core.fail_on = cfg_b.key
            await sup.apply({cfg_b.key: cfg_b})
            _, writer = await _scripted_peer(sup.listener.port, B, int(B))
            writers.append(writer)
            await asyncio.wait_for(asyncio.Event().wait(), 10)  # the core's failure ends this
    for writer in writers:
        writer.close()
    assert raised.group_contains(RuntimeError, match="core bug for this peer")
    assert not raised.group_contains(TimeoutError)
    assert not [e for e in logs if e["event"] == "session crashed; resetting this peer only"]


async def test_a_peer_that_reconnects_replaces_its_lingering_connection() -> None:
    """Rule 5, collision.py rule 4: a second connection from the peer replaces an older one
    that is not Established yet; once Established, the newcomer is closed instead. Either way
    the loser gets Cease/Connection Collision Resolution (RFC 4486 §4, RFC 4271 §6.8)."""
    core = RecordingCore()
    collision = (ErrorCode.CEASE, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
    async with Supervisor(core, listen_addresses=(str(A),), listen_port=0) as sup:
        assert sup.listener
        port = sup.listener.port
        cfg_b = config(A, B, 1, passive=True)
        await sup.apply({cfg_b.key: cfg_b})
        stats = lambda: sup.statistics()[cfg_b.key]  # noqa: E731
        old_reader, old_writer = await asyncio.open_connection(
            str(A), port, local_addr=(str(B), 0)
        )  # TCP only: the session waits in OpenSent
        await wait_until(lambda: stats().state is State.OPEN_SENT, 5, "the first connection")
        _, writer = await _scripted_peer(port, B, int(B))
        assert await _read_until_notification(old_reader) == collision
        await wait_until(lambda: core.of(Established), 5, "the new connection up")
        newest_reader, newest_writer = await _scripted_peer(port, B, int(B))
        assert await _read_until_notification(newest_reader) == collision
        assert stats().state is State.ESTABLISHED
        assert not core.of(Down)
        for w in (old_writer, writer, newest_writer):
            w.close()


async def test_peer_silence_expires_hold_timer() -> None:
    core = RecordingCore()
    async with Supervisor(core, listen_addresses=(str(A),), listen_port=0) as sup:
        assert sup.listener
        cfg_b = config(A, B, 1, passive=True)
        await sup.apply({cfg_b.key: cfg_b})
        reader, writer = await _scripted_peer(sup.listener.port, B, int(B))
        assert await _read_until_notification(reader) == (ErrorCode.HOLD_TIMER_EXPIRED, 0)
        downs = core.of(Down)
        assert [d.reason for d in downs] == [DownReason.HOLD_TIMER_EXPIRED]
        writer.close()


async def test_changed_config_resets_with_other_configuration_change() -> None:
    """Supervisor rule 1: re-applying a peer with a changed config resets its session with
    Cease/Other Configuration Change (RFC 4486 §4), and it comes back with the new config."""
    core_a, core_b = RecordingCore(), RecordingCore()
    async with (
        Supervisor(core_a, listen_addresses=(str(A),), listen_port=0) as sup_a,
        Supervisor(core_b, listen_addresses=(str(B),), listen_port=0) as sup_b,
    ):
        assert sup_a.listener and sup_b.listener
        cfg_a = config(A, B, sup_b.listener.port)
        cfg_b = config(B, A, sup_a.listener.port, passive=True, hold_time=9)
        await sup_b.apply({cfg_b.key: cfg_b})
        await sup_a.apply({cfg_a.key: cfg_a})
        await wait_until(lambda: core_a.of(Established) and core_b.of(Established), 10, "up")
        assert core_a.of(Established)[0].negotiated.hold_time == 3
        await sup_a.apply({cfg_a.key: cfg_a})  # unchanged: left alone
        changed = replace(cfg_a, hold_time=5)
        await sup_a.apply({changed.key: changed})
        await wait_until(lambda: core_b.of(Down), 5, "down on B")
        down = core_b.of(Down)[0]
        assert down.reason is DownReason.NOTIFICATION_RECEIVED
        assert (down.notification.code, down.notification.subcode) == (
            ErrorCode.CEASE,
            CeaseSubcode.OTHER_CONFIGURATION_CHANGE,
        )
        await wait_until(
            lambda: len(core_a.of(Established)) == 2 and len(core_b.of(Established)) == 2,
            15,
            "back up",
        )
        assert core_a.of(Established)[1].negotiated.hold_time == 5  # min(5, 9)
        assert sup_a.statistics()[changed.key].state is State.ESTABLISHED
        assert len(core_b.of(Down)) == 1


async def test_repeated_notifications_grow_the_reported_idle_hold() -> None:
    """The statistics show the IdleHoldTime of each restart (RFC 4271 §8.1.1): it doubles
    from 0.2 s while the peer keeps ending the session with a NOTIFICATION."""
    core = RecordingCore()
    async with Supervisor(core, listen_addresses=(str(A),), listen_port=0) as sup:
        assert sup.listener
        cfg_b = config(A, B, 1, passive=True)
        await sup.apply({cfg_b.key: cfg_b})
        stats = lambda: sup.statistics()[cfg_b.key]  # noqa: E731
        assert stats().idle_hold_time == 0.0
        holds = []
        for done in range(1, 4):
            await wait_until(lambda: stats().state is State.ACTIVE, 5, "listening again")
            _, writer = await _scripted_peer(sup.listener.port, B, int(B))
            await wait_until(lambda: len(core.of(Established)) == done, 5, "up")  # noqa: B023
            writer.write(encode_notification(Notification(ErrorCode.CEASE, 2)))
            await writer.drain()
            await wait_until(lambda: len(core.of(Down)) == done, 5, "down")  # noqa: B023
            holds.append(stats().idle_hold_time)
            writer.close()
        assert holds == [0.2, 0.4, 0.8]
        assert stats().last_error == "notification-received:cease/administrative-shutdown"


async def test_connection_from_an_unknown_address_is_logged_with_it() -> None:
    core = RecordingCore()
    async with Supervisor(core, listen_addresses=(str(A),), listen_port=0) as sup:
        assert sup.listener
        with capture_logs() as logs:
            reader, writer = await asyncio.open_connection(
                str(A), sup.listener.port, local_addr=(str(C), 0)
            )
            await asyncio.wait_for(reader.read(4096), 5)
            writer.close()
        rejected = [e for e in logs if e.get("reason") == "connection-rejected"]
        assert len(rejected) == 1
        assert rejected[0]["address"] == str(C) and rejected[0]["log_level"] == "warning"


async def test_a_peer_that_stops_reading_is_backpressured_then_reset_alone() -> None:
    """Write backpressure: sends wait while the socket is full (nothing piles up in memory),
    and a peer that never reads again falls after the hold time; another peer is untouched."""
    core = RecordingCore()
    async with Supervisor(core, listen_addresses=(str(A),), listen_port=0) as sup:
        cfg_b, cfg_c, (_, writer_b), (reader_c, writer_c) = await _two_passive_peers(sup, core)

        async def keepalives() -> None:  # B talks but never reads; C reads and talks
            while True:
                writer_b.write(KEEPALIVE_MESSAGE)
                writer_c.write(KEEPALIVE_MESSAGE)
                await reader_c.read(1 << 20)
                await asyncio.sleep(0.5)

        talker = asyncio.create_task(keepalives())
        negotiated = core.of(Established)[0].negotiated
        attrs = PathAttributes(next_hop=next_hop_from_str(str(A)), local_pref=100)
        prefixes = [prefix_from_str(f"10.{i >> 8}.{i & 255}.0/24") for i in range(60_000)]
        batch = encode_updates(IPV4_UNICAST, attrs, prefixes, negotiated)
        batch_bytes = sum(len(m) for m in batch)
        accepted = 0
        try:
            for _ in range(400):  # at most 400 batches (~100 MB): the stall comes long before
                if not await sup.send(cfg_b.key, batch):
                    break
                accepted += batch_bytes
            await wait_until(lambda: core.of(Down, cfg_b.key), 10, "B reset")
        finally:
            talker.cancel()
        # What we took on is what the kernel's socket buffers hold plus our high-water mark,
        # never the whole stream.
        assert 0 < accepted < 64 * 1024 * 1024
        # Blocked on a full socket, the session falls by the write stall or by the hold timer
        # (its KEEPALIVEs wait behind the stalled write): either way within the hold time.
        down = core.of(Down, cfg_b.key)[0]
        stalled = (DownReason.CONNECTION_LOST, DownReason.HOLD_TIMER_EXPIRED)
        assert down.reason in stalled, down
        assert sup.statistics()[cfg_c.key].state is State.ESTABLISHED
        writer_b.close()
        writer_c.close()


# ---- the runner on its own: bounded input, owned tasks, the timer, the graceful exit ----

KERNEL_BUFFER = 64 * 1024  # small socket buffers: the kernel cannot hide a backlog
STREAM_READER_BOUND = 2 * STREAM_LIMIT + 256 * 1024  # pause mark + one asyncio recv (max_size)
INPUT_BOUND = READS_AHEAD * READ_SIZE + STREAM_READER_BOUND  # transport.py rule 3: 640 KiB


@contextlib.asynccontextmanager
async def _serving(runner: PeerRunner) -> AsyncIterator[int]:
    """A listening socket on A with a small receive buffer, handing every connection to
    ``runner`` as the supervisor's listener would: yields its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, KERNEL_BUFFER)  # inherited on accept
    sock.bind((str(A), 0))
    sock.listen()
    sock.setblocking(False)
    server = await asyncio.start_server(runner.accept, sock=sock, limit=STREAM_LIMIT)
    try:
        yield sock.getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def _running(runner: PeerRunner) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.run(), name="runner under test")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _peer_with_small_send_buffer(port: int, hold_time: int) -> Streams:
    """A scripted peer from B whose kernel send buffer is small, OPEN and KEEPALIVE sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_BUFFER)
    sock.bind((str(B), 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (str(A), port))
    reader, writer = await asyncio.open_connection(sock=sock)
    caps = (Multiprotocol(IPV4_UNICAST), FourOctetAs(65000))
    writer.write(encode_open(Open(65000, hold_time, int(B), caps)) + KEEPALIVE_MESSAGE)
    return reader, writer


def _unprocessed_input(runner: PeerRunner) -> tuple[int, int]:
    """(reads waiting in the runner's inbox, octets they and the stream reader hold): what
    transport.py rule 3 bounds, measured in the runner, not the process."""
    reads = [
        item.event.data
        for item in runner._inbox._queue  # type: ignore[attr-defined]
        if isinstance(getattr(item, "event", None), DataReceived)
    ]
    (connection,) = runner._connections.values()
    stream = len(connection.reader._buffer)  # type: ignore[attr-defined]
    return len(reads), sum(map(len, reads)) + stream


async def test_a_fast_peer_is_held_back_by_tcp_while_the_core_is_busy() -> None:
    """Rule 3: a peer floods UPDATEs while the routing core does not take events. The runner
    stops reading, TCP pushes back to the sender, what the runner holds stays within the stated
    bound, and once the core resumes every UPDATE arrives, in order."""
    resumed = asyncio.Event()
    events: list[PeerEvent] = []

    async def busy_core(peer: PeerKey, event: PeerEvent) -> None:
        events.append(event)
        if isinstance(event, UpdateReceived):
            await resumed.wait()

    runner = PeerRunner(config(A, B, 1, passive=True, hold_time=90), busy_core)
    async with _serving(runner) as port, _running(runner):
        _, writer = await _peer_with_small_send_buffer(port, hold_time=90)
        await wait_until(lambda: any(isinstance(e, Established) for e in events), 5, "up")
        negotiated = next(e for e in events if isinstance(e, Established)).negotiated
        # Large UPDATEs (900 communities, one shared attribute set) with one prefix each.
        attrs = PathAttributes(
            next_hop=next_hop_from_str(str(B)), local_pref=100, communities=tuple(range(900))
        )
        prefixes = [prefix_from_str(f"10.{i >> 8}.{i & 255}.0/24") for i in range(1500)]
        flood = b"".join(
            m for p in prefixes for m in encode_updates(IPV4_UNICAST, attrs, [p], negotiated)
        )
        assert len(flood) > 8 * INPUT_BOUND
        writer.write(flood)
        (connection,) = runner._connections.values()
        await wait_until(
            lambda: connection.read_credits.locked() and connection.reader._paused,
            10,
            "the runner to stop reading and asyncio to pause the socket",
        )
        waiting_reads, held = _unprocessed_input(runner)
        assert waiting_reads <= READS_AHEAD - 1  # the fourth is the one being delivered
        assert held <= INPUT_BOUND
        # TCP pushed back: most of the flood still waits in the sender's own buffer.
        assert writer.transport.get_write_buffer_size() > len(flood) // 2

        resumed.set()
        received = lambda: [e for e in events if isinstance(e, UpdateReceived)]  # noqa: E731
        await wait_until(lambda: len(received()) == len(prefixes), 60, "every UPDATE")
        assert [u.update.announced[0].prefixes[0] for u in received()] == prefixes
        assert runner.statistics().state is State.ESTABLISHED
        writer.close()


async def test_the_runner_keeps_reading_while_a_send_waits_for_the_socket() -> None:
    """Rule 4: a send held at the high-water mark by a peer that does not read holds only its
    caller; the runner goes on reading, so the peer's UPDATE reaches the core meanwhile."""
    core = RecordingCore()
    runner = PeerRunner(config(A, B, 1, passive=True, hold_time=90), core.peer_event)
    async with _serving(runner) as port, _running(runner):
        _, writer = await _peer_with_small_send_buffer(port, hold_time=90)  # never reads
        await wait_until(lambda: core.of(Established), 5, "up")
        negotiated = core.of(Established)[0].negotiated
        attrs = PathAttributes(next_hop=next_hop_from_str(str(A)), local_pref=100)
        prefixes = [prefix_from_str(f"10.{i >> 8}.{i & 255}.0/24") for i in range(60_000)]
        batch = encode_updates(IPV4_UNICAST, attrs, prefixes, negotiated)

        async def send_until_held() -> None:
            while await runner.send(batch):
                pass

        sender = asyncio.create_task(send_until_held())
        (connection,) = runner._connections.values()
        await wait_until(lambda: connection.drain_waiters, 10, "a send held at the high-water mark")
        peer_attrs = PathAttributes(next_hop=next_hop_from_str(str(B)), local_pref=100)
        writer.write(
            b"".join(
                encode_updates(
                    IPV4_UNICAST, peer_attrs, [prefix_from_str("10.99.0.0/24")], negotiated
                )
            )
        )
        await wait_until(lambda: core.of(UpdateReceived), 5, "the peer's UPDATE")
        assert not sender.done() and connection.drain_waiters
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.close()


async def test_the_runner_owns_its_tasks_and_keeps_an_unmoved_timer() -> None:
    """Rule 2: the reader ends with ``run``. Rule 1: an input that moves no deadline keeps the
    armed TimerHandle."""
    core = RecordingCore()
    runner = PeerRunner(config(A, B, 1, passive=True, hold_time=90), core.peer_event)
    async with _serving(runner) as port:
        async with _running(runner):
            _, writer = await _peer_with_small_send_buffer(port, hold_time=90)
            await wait_until(lambda: core.of(Established), 5, "up")
            armed = runner._timer
            assert armed is not None and armed.when() == runner.primary.next_deadline()
            assert not await runner.send([])  # nothing to send: no deadline moves
            assert runner._timer is armed
            owned = [t for t in asyncio.all_tasks() if t.get_name().startswith("read ")]
            assert len(owned) == 1
        assert owned[0].done()
        assert not await runner.send([KEEPALIVE_MESSAGE])  # a finished runner answers at once
        writer.close()


async def test_abort_closes_every_connection_without_a_notification() -> None:
    """Supervisor rule 5: after ``abort()`` leaving the context closes the listener and every
    connection at the TCP level only: the peer reads our OPEN and KEEPALIVEs, then the end of
    the stream, and no NOTIFICATION (graceful restart, RFC 4724 §4.2)."""
    core = RecordingCore()
    async with Supervisor(core, listen_addresses=(str(A),), listen_port=0) as sup:
        assert sup.listener
        port = sup.listener.port
        cfg_b = config(A, B, 1, passive=True)
        await sup.apply({cfg_b.key: cfg_b})
        reader, writer = await _scripted_peer(port, B, int(B))
        await wait_until(lambda: core.of(Established), 5, "up")
        sup.abort()
    received = b""
    while data := await asyncio.wait_for(reader.read(65536), 5):
        received += data
    types = [msg_type for msg_type, _ in Framer().feed(received)]
    assert types[0] == MessageType.OPEN
    assert MessageType.NOTIFICATION not in types
    assert set(types[1:]) == {MessageType.KEEPALIVE}
    with pytest.raises(OSError):
        await asyncio.open_connection(str(A), port)  # the listener is closed too
    writer.close()
