"""Interop with real routers, each in its own namespace joined to ours by veth.

Each case: the session establishes, carries UPDATEs both ways (checked in the peer's RIB via its
CLI and in ours via the events our core received), and stays up across several keepalive
intervals (hold 6 s, keepalive 2 s). The cases cover active and passive, iBGP and eBGP, and a
4-octet private AS on either side.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from netns import Pair
from netns_speaker import RecordingCore, our_config, our_speaker, peer_spec, running_peer
from peer_drivers import wait_for_async

from bgpd.session import Established, State, UpdateReceived
from bgpd.wire.types import (
    IPV4_UNICAST,
    PathAttributes,
    next_hop_from_str,
    prefix_from_str,
    prefix_to_str,
)
from bgpd.wire.update import encode_updates

pytestmark = pytest.mark.netns

OUR_ROUTES = ("10.60.1.0/24", "10.60.2.0/24")

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    # id: (daemon, our config overrides); the peer takes the opposite role and ASes.
    "bird-ebgp-we-connect": ("bird", {}),
    "bird-ibgp-we-listen": ("bird", {"local_as": 65001, "peer_as": 65001, "passive": True}),
    "bird2-ebgp-our-as4-we-listen": ("bird2", {"local_as": 4200000001, "passive": True}),
    "frr-ebgp-peer-as4-we-connect": ("frr", {"peer_as": 4200000002}),
    "frr-ibgp-we-listen": ("frr", {"local_as": 65001, "peer_as": 65001, "passive": True}),
    "gobgp-ebgp-we-listen": ("gobgp", {"passive": True}),
    "gobgp-ibgp-as4-we-connect": ("gobgp", {"local_as": 4200000001, "peer_as": 4200000001}),
    "exabgp-ebgp-we-connect": ("exabgp", {}),
}


def _received_prefixes(core: RecordingCore) -> set[str]:
    found: set[str] = set()
    for event in core.of(UpdateReceived):
        for announcement in event.update.announced:
            found |= {prefix_to_str(p, announcement.family) for p in announcement.prefixes}
    return found


@pytest.mark.parametrize("case", list(CASES))
async def test_session_with_real_router(case: str, pair: Pair, tmp_path: Path) -> None:
    kind, overrides = CASES[case]
    core = RecordingCore()
    config = our_config(pair, **overrides)
    spec = peer_spec(pair, config)
    with running_peer(kind, pair, spec, tmp_path) as peer:
        async with our_speaker(pair, config, core) as speaker:
            stats = lambda: speaker.statistics()[config.key]  # noqa: E731

            def describe() -> str:
                return f"ours: {stats()}\npeer: {peer.describe()}"

            await wait_for_async(
                lambda: stats().state is State.ESTABLISHED and peer.established(), 30, describe
            )
            negotiated = core.of(Established)[0].negotiated
            assert negotiated.peer_as == spec.local_as
            assert negotiated.external == (config.local_as != config.peer_as)
            # Ours -> peer.
            attrs = PathAttributes(
                next_hop=next_hop_from_str(str(pair.our_address)),
                local_pref=100 if not negotiated.external else None,
                as_path=() if not negotiated.external else _our_path(config.local_as),
            )
            prefixes = [prefix_from_str(p) for p in OUR_ROUTES]
            messages = encode_updates(IPV4_UNICAST, attrs, prefixes, negotiated)
            assert await speaker.send(config.key, messages, prefixes=len(prefixes))
            await wait_for_async(lambda: set(OUR_ROUTES) <= peer.received(), 15, describe)
            # Peer -> ours.
            await wait_for_async(lambda: set(spec.routes) <= _received_prefixes(core), 15, describe)
            # Stays up across several keepalive intervals (more than one hold time).
            before = stats().messages_in
            await asyncio.sleep(config.hold_time + 1.5)
            after = stats()
            assert after.state is State.ESTABLISHED and peer.established(), describe()
            assert after.established_transitions == 1
            assert after.messages_in >= before + 3  # keepalives arrived
            assert after.prefixes_in >= len(spec.routes) and after.prefixes_out == 2


def _our_path(asn: int) -> tuple[Any, ...]:
    from bgpd.wire.constants import SegmentType
    from bgpd.wire.types import AsPathSegment

    return (AsPathSegment(SegmentType.AS_SEQUENCE, (asn,)),)
