"""A bug in the routing core stops the daemon loudly, with forwarding kept (bgpd/daemon.py rules
1 and 4): the exception leaves ``Daemon.run`` (so ``bgpd run`` exits non-zero with the
traceback) instead of being taken for a peer's fault, and the sessions are closed without a
NOTIFICATION. The supervisor is a recording stand-in, so nothing binds a port."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import pytest

import bgpd.daemon
from bgpd.config import DaemonConfig, FileSource
from bgpd.daemon import Daemon
from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.net.supervisor import RoutingCore
from bgpd.session.config import PeerKey, SessionConfig
from bgpd.session.events import Established
from bgpd.wire.negotiated import Negotiated


class RecordingSupervisor:
    """Brings every desired session up at once and records how the daemon leaves."""

    last: RecordingSupervisor | None = None

    def __init__(self, core: RoutingCore, **_settings: object) -> None:
        self.core = core
        self.aborted = False
        self.ceased = False
        self.up: list[PeerKey] = []
        self.listener = None
        RecordingSupervisor.last = self

    async def __aenter__(self) -> RecordingSupervisor:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.ceased = not self.aborted  # the real supervisor sends Cease unless aborted

    def abort(self) -> None:
        self.aborted = True

    async def apply(
        self, desired: Mapping[PeerKey, SessionConfig], bfd_down: frozenset[PeerKey] = frozenset()
    ) -> None:
        for key in desired:
            if key not in self.up:
                self.up.append(key)
                negotiated = Negotiated(peer_as=64512, local_as=64512, peer_id=int(key.address))
                await self.core.peer_event(key, Established(negotiated))

    async def shutdown(self, message: str = "") -> None:
        self.ceased = True

    async def listen(self, addresses: Sequence[str], port: int) -> list[str]:
        return []

    async def send(self, peer: PeerKey, messages: list[bytes], prefixes: int = 0) -> bool:
        return True

    def statistics(self) -> dict[PeerKey, object]:
        return {}


async def _both_sessions_up() -> RecordingSupervisor:
    while RecordingSupervisor.last is None or len(RecordingSupervisor.last.up) < 2:
        await asyncio.sleep(0.01)
    return RecordingSupervisor.last


def _config(tmp_path: Path) -> DaemonConfig:
    return DaemonConfig(
        node="node1",
        datastore=FileSource(DEFAULT_DATASTORE),
        control_socket=str(tmp_path / "bird.ctl"),
        metrics_listen=None,
        program_kernel=False,
    )


async def test_a_router_exception_ends_the_daemon_with_forwarding_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bgpd.daemon, "Supervisor", RecordingSupervisor)
    RecordingSupervisor.last = None
    daemon = Daemon(_config(tmp_path))

    def broken(*_args: object) -> str:
        raise RuntimeError("a bug in the routing core")

    monkeypatch.setattr(daemon.router, "session_event", broken)
    with pytest.raises(ExceptionGroup) as caught:
        await asyncio.wait_for(daemon.run(), 10)
    assert caught.group_contains(RuntimeError, match="a bug in the routing core")
    supervisor = RecordingSupervisor.last
    assert supervisor is not None and supervisor.up  # the event came from a live session
    assert supervisor.aborted and not supervisor.ceased  # no NOTIFICATION: peers keep our routes


async def test_a_graceful_stop_leaves_without_a_notification(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bgpd.daemon, "Supervisor", RecordingSupervisor)
    RecordingSupervisor.last = None
    daemon = Daemon(_config(tmp_path))
    running = asyncio.ensure_future(daemon.run())
    supervisor = await asyncio.wait_for(_both_sessions_up(), 10)
    assert {str(k.address) for k in supervisor.up} == {"10.0.0.2", "10.0.0.3"}
    daemon.request_stop()
    assert await asyncio.wait_for(running, 10) == 0
    assert supervisor.aborted and not supervisor.ceased
    assert ipaddress.IPv4Address(daemon.daemon_status().router_id) == ipaddress.IPv4Address(
        "10.0.0.1"
    )
