"""TCP-MD5 (RFC 2385) against BIRD and FRR: a matching password establishes (through our
listener's per-peer key), a mismatching one never does and our log says why, whichever side
connects.

Linux drops wrongly signed segments without telling the socket, so each side sees something
different: when we connect, our connects never complete (the transport's warning); when the
peer connects, its SYNs never reach our listener and only the TcpExt counters of our namespace
grow (the supervisor's warning, md5watch.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog
from netns import Pair
from netns_speaker import RecordingCore, our_config, our_speaker, peer_spec, running_peer
from peer_drivers import wait_for_async

from bgpd.session import Established, State

pytestmark = pytest.mark.netns

KINDS = ["bird", "frr"]


@pytest.mark.parametrize("kind", KINDS)
async def test_matching_password_establishes(kind: str, pair: Pair, tmp_path: Path) -> None:
    core = RecordingCore()
    config = our_config(pair, passive=True, md5_password="calico-secret")
    spec = peer_spec(pair, config, password="calico-secret")
    with running_peer(kind, pair, spec, tmp_path) as peer:
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


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("we_connect", "reason"),
    [(True, "tcp-md5-connect-failed"), (False, "tcp-md5-mismatch")],
    ids=["we-connect", "peer-connects"],
)
async def test_mismatching_password_never_establishes_and_is_logged(
    kind: str, we_connect: bool, reason: str, pair: Pair, tmp_path: Path
) -> None:
    core = RecordingCore()
    config = our_config(
        pair, passive=not we_connect, md5_password="calico-secret", connect_retry_time=1.0
    )
    spec = peer_spec(pair, config, password="other-secret")
    assert spec.passive is we_connect  # exactly one side connects
    with (
        structlog.testing.capture_logs() as logs,
        running_peer(kind, pair, spec, tmp_path) as peer,
    ):
        async with our_speaker(pair, config, core) as speaker:
            stats = lambda: speaker.statistics()[config.key]  # noqa: E731

            def lines() -> list[Any]:
                return [e for e in logs if e.get("reason") == reason]

            def describe() -> str:
                return f"ours: {stats()}\npeer: {peer.describe()}\nlogs: {logs[-10:]}"

            # Two warnings: at least two connection attempts were dropped, so it was not a race.
            await wait_for_async(lambda: len(lines()) >= 2, 30, describe)
            assert stats().state is not State.ESTABLISHED
            assert stats().established_transitions == 0
            assert not peer.established()
    assert core.of(Established) == []
    warning = lines()[0]
    assert "TCP-MD5" in warning["event"] and "password" in warning["event"]
    if not we_connect:
        assert warning["wrong_signature"] > 0
        assert warning["peers"] == [str(config.key)]
