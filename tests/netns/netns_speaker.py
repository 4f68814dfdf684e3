"""Our side of a real-peer test: a recording routing core, configs for both ends, and our
supervisor running inside our namespace.

Rules:
1. Our speaker runs in this process, moved into our namespace for the block (``netns.inside``).
2. ``peer_spec`` mirrors our ``SessionConfig``: the peer takes the opposite role and ASes.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from netns import Pair, inside
from peer_drivers import DRIVERS, PeerDaemon, PeerSpec

from bgpd.net import PeerEvent, Supervisor
from bgpd.session import PeerKey, SessionConfig


class RecordingCore:
    """The routing core stand-in: records every peer event."""

    def __init__(self) -> None:
        self.events: list[tuple[PeerKey, PeerEvent]] = []

    async def peer_event(self, peer: PeerKey, event: PeerEvent) -> None:
        self.events.append((peer, event))

    def of(self, kind: type) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]


def our_config(pair: Pair, **overrides: Any) -> SessionConfig:
    values: dict[str, Any] = {
        "local_as": 65001,
        "peer_as": 65002,
        "router_id": ipaddress.IPv4Address("10.213.255.1"),
        "peer_address": pair.peer_address,
        "source_address": pair.our_address,
        "hold_time": 6,
        "connect_delay_time": 0.5,
        "connect_retry_time": 2.0,
        "error_wait_min": 1.0,
        "error_wait_max": 4.0,
        "name": "test_peer",
    }
    values.update(overrides)
    return SessionConfig(**values)


def peer_spec(pair: Pair, config: SessionConfig, **overrides: Any) -> PeerSpec:
    assert isinstance(config.peer_as, int)
    values: dict[str, Any] = {
        "local_as": config.peer_as,
        "peer_as": config.local_as,
        "router_id": "10.213.255.2",
        "address": str(pair.peer_address),
        "neighbor": str(pair.our_address),
        "hold_time": config.hold_time,
        "keepalive": max(1, config.hold_time // 3),
        "passive": not config.passive,
    }
    values.update(overrides)
    return PeerSpec(**values)


@contextlib.contextmanager
def running_peer(kind: str, pair: Pair, spec: PeerSpec, workdir: Path) -> Iterator[PeerDaemon]:
    driver = DRIVERS[kind]
    if not driver.available():
        pytest.skip(f"{kind} is not installed")
    daemon = driver(pair.peer, spec, workdir)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@contextlib.asynccontextmanager
async def our_speaker(
    pair: Pair, config: SessionConfig, core: RecordingCore
) -> AsyncIterator[Supervisor]:
    """Our supervisor listening on our end of the link, with ``config`` as its one peer."""
    with inside(pair.us):
        async with Supervisor(core, listen_addresses=(str(pair.our_address),)) as supervisor:
            await supervisor.apply({config.key: config})
            yield supervisor
