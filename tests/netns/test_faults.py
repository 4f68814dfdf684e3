"""Faults against real peers: the link is cut until the hold timer expires, then returns; both
sides connect at once (a collision, RFC 4271 §6.8); the peer shuts the session down with a
NOTIFICATION and we reconnect with backoff once it allows us again."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from netns import Pair
from netns_speaker import RecordingCore, our_config, our_speaker, peer_spec, running_peer
from peer_drivers import wait_for_async

from bgpd.session import Down, DownReason, State

pytestmark = pytest.mark.netns


async def test_hold_timer_expires_when_the_link_is_cut_then_recovers(
    pair: Pair, tmp_path: Path
) -> None:
    core = RecordingCore()
    config = our_config(pair)
    spec = peer_spec(pair, config)
    with running_peer("bird", pair, spec, tmp_path) as peer:
        async with our_speaker(pair, config, core) as speaker:
            stats = lambda: speaker.statistics()[config.key]  # noqa: E731

            def describe() -> str:
                return f"ours: {stats()}\npeer: {peer.describe()}"

            await wait_for_async(lambda: stats().state is State.ESTABLISHED, 20, describe)
            pair.link.set(False)
            await wait_for_async(lambda: core.of(Down), 15, describe)
            down = core.of(Down)[0]
            assert down.reason is DownReason.HOLD_TIMER_EXPIRED and down.was_established
            assert stats().last_error == "hold-timer-expired:hold-timer-expired"
            pair.link.set(True)
            await wait_for_async(
                lambda: stats().state is State.ESTABLISHED and peer.established(), 30, describe
            )
            assert stats().established_transitions == 2


async def test_collision_when_both_sides_connect(pair: Pair, tmp_path: Path) -> None:
    """Our OPEN is held back by an nftables drop in the peer's namespace, so our outgoing
    connection sits in OpenSent while BIRD connects to us: two connections, one survivor."""
    core = RecordingCore()
    config = our_config(pair, connect_delay_time=0.2)
    spec = peer_spec(pair, config, passive=False, connect_delay=2)
    ours = str(pair.our_address)
    rules = [
        "add table inet hD_collision",
        "add chain inet hD_collision input { type filter hook input priority 0; }",
        f"add rule inet hD_collision input ip saddr {ours} tcp dport 179 "
        "tcp flags & syn == 0 meta length > 80 drop",
    ]
    for rule in rules:
        pair.peer.run("nft", *rule.split())
    with (
        structlog.testing.capture_logs() as logs,
        running_peer("bird", pair, spec, tmp_path) as peer,
    ):
        async with our_speaker(pair, config, core) as speaker:
            stats = lambda: speaker.statistics()[config.key]  # noqa: E731

            def describe() -> str:
                return f"ours: {stats()}\npeer: {peer.describe()}\nlogs: {logs[-10:]}"

            await wait_for_async(
                lambda: any(e["event"] == "connection collision" for e in logs), 15, describe
            )
            pair.peer.run("nft", "delete", "table", "inet", "hD_collision")
            await wait_for_async(
                lambda: stats().state is State.ESTABLISHED and peer.established(), 20, describe
            )
            assert stats().established_transitions == 1
            assert stats().last_error == (
                "connection-collision:cease/connection-collision-resolution"
            )


@pytest.mark.parametrize("kind", ["bird", "frr"])
async def test_peer_notification_then_reconnect_with_backoff(
    kind: str, pair: Pair, tmp_path: Path
) -> None:
    """Each administrative shutdown by the peer (BIRD ``disable``, FRR ``shutdown``) ends the
    session with Cease/Administrative Shutdown; we reconnect once it is enabled again, and the
    idle hold before each restart doubles (RFC 4271 §8.1.1 DampPeerOscillations)."""
    core = RecordingCore()
    config = our_config(pair, error_wait_min=1.0, error_wait_max=8.0)
    spec = peer_spec(pair, config)
    with running_peer(kind, pair, spec, tmp_path) as peer:
        async with our_speaker(pair, config, core) as speaker:
            stats = lambda: speaker.statistics()[config.key]  # noqa: E731

            def describe() -> str:
                return f"ours: {stats()}\npeer: {peer.describe()}"

            holds = []
            for flap in (1, 2):
                await wait_for_async(
                    lambda: stats().state is State.ESTABLISHED and peer.established(),
                    30,
                    describe,
                )
                assert stats().established_transitions == flap
                peer.disable()
                await wait_for_async(lambda: len(core.of(Down)) == flap, 10, describe)  # noqa: B023
                down = core.of(Down)[-1]
                assert down.reason is DownReason.NOTIFICATION_RECEIVED
                assert down.notification is not None
                assert down.notification.token == "cease/administrative-shutdown"
                assert stats().last_error == "notification-received:cease/administrative-shutdown"
                holds.append(stats().idle_hold_time)
                peer.enable()
            # A collision the primary lost (§6.8) may have damped once more: compare, not equal.
            assert config.error_wait_min <= holds[0] < holds[1] <= config.error_wait_max
            await wait_for_async(
                lambda: stats().state is State.ESTABLISHED and peer.established(), 30, describe
            )
            assert stats().established_transitions == 3
