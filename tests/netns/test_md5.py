"""TCP-MD5 (RFC 2385) against BIRD: a matching password establishes (through our listener's
per-peer key), a mismatching one never does and our log says why."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog
from netns import Pair
from netns_speaker import RecordingCore, our_config, our_speaker, peer_spec, running_peer
from peer_drivers import wait_for_async

from bgpd.session import Established, State

pytestmark = pytest.mark.netns


async def test_matching_password_establishes(pair: Pair, tmp_path: Path) -> None:
    core = RecordingCore()
    config = our_config(pair, passive=True, md5_password="calico-secret")
    spec = peer_spec(pair, config, password="calico-secret")
    with running_peer("bird", pair, spec, tmp_path) as peer:
        async with our_speaker(pair, config, core) as speaker:

            def describe() -> str:
                return f"ours: {speaker.statistics()[config.key]}\npeer: {peer.describe()}"

            await wait_for_async(
                lambda: (
                    speaker.statistics()[config.key].state is State.ESTABLISHED
                    and peer.established()
                ),
                20,
                describe,
            )
            assert len(core.of(Established)) == 1


async def test_mismatching_password_never_establishes_and_is_logged(
    pair: Pair, tmp_path: Path
) -> None:
    core = RecordingCore()
    config = our_config(pair, md5_password="calico-secret", connect_retry_time=1.0)
    spec = peer_spec(pair, config, password="other-secret")
    with (
        structlog.testing.capture_logs() as logs,
        running_peer("bird", pair, spec, tmp_path) as peer,
    ):
        async with our_speaker(pair, config, core) as speaker:
            await asyncio.sleep(6)
            stats = speaker.statistics()[config.key]
            assert stats.state is not State.ESTABLISHED
            assert stats.established_transitions == 0
            assert not peer.established()
    assert core.of(Established) == []
    md5_lines = [e for e in logs if e.get("reason") == "tcp-md5-connect-failed"]
    assert md5_lines, logs
    assert "TCP-MD5" in md5_lines[0]["event"]
