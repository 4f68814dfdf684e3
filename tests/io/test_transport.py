"""The asyncio edge over loopback: supervisors, listener, runners, against each other and
against a scripted peer built from our own codec (no root needed)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from structlog.testing import capture_logs

from bgpd.net import PeerEvent, Supervisor
from bgpd.session import (
    Down,
    DownReason,
    Established,
    PeerKey,
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
    """A routing core that records events; ``fail_on`` makes it raise for one peer once."""

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
        Supervisor(core_a, listen_address=str(A), listen_port=0) as sup_a,
        Supervisor(core_b, listen_address=str(B), listen_port=0) as sup_b,
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
    async with Supervisor(core, listen_address=str(A), listen_port=0) as sup:
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
    async with Supervisor(core, listen_address=str(A), listen_port=0) as sup:
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


async def test_exception_in_one_peer_resets_only_that_peer() -> None:
    core = RecordingCore()
    async with Supervisor(core, listen_address=str(A), listen_port=0) as sup:
        assert sup.listener
        port = sup.listener.port
        cfg_b = config(A, B, 1, passive=True)
        cfg_c = config(A, C, 1, passive=True)
        core.fail_on = cfg_c.key
        await sup.apply({cfg_b.key: cfg_b, cfg_c.key: cfg_c})
        reader_b, writer_b = await _scripted_peer(port, B, int(B))
        reader_c, writer_c = await _scripted_peer(port, C, int(C))
        await wait_until(lambda: len(core.of(Established)) == 2, 5, "both up")
        # C's runner crashed and reset: its connection is closed, B keeps going.
        data = await asyncio.wait_for(reader_c.read(65536), 5)
        while data:
            data = await asyncio.wait_for(reader_c.read(65536), 5)
        await wait_until(
            lambda: sup.statistics()[cfg_c.key].last_error == "internal-error", 5, "reset"
        )
        assert sup.statistics()[cfg_b.key].state is State.ESTABLISHED
        writer_b.close()
        writer_c.close()


async def test_peer_silence_expires_hold_timer() -> None:
    core = RecordingCore()
    async with Supervisor(core, listen_address=str(A), listen_port=0) as sup:
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
        Supervisor(core_a, listen_address=str(A), listen_port=0) as sup_a,
        Supervisor(core_b, listen_address=str(B), listen_port=0) as sup_b,
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
    async with Supervisor(core, listen_address=str(A), listen_port=0) as sup:
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
    async with Supervisor(core, listen_address=str(A), listen_port=0) as sup:
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
    async with Supervisor(core, listen_address=str(A), listen_port=0) as sup:
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
