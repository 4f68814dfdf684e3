"""After our restart, a configured peer that never comes back holds the live peers' changes out
of the kernel only for ``ESTABLISH_WAIT``, not the whole selection deferral (issue 20 point 8,
``bgpd.rib.graceful_restart`` rule 3): with BIRD up and a second BGPPeer nobody answers, a
route a previous run left in the kernel that nobody asks for is swept once BIRD's End-of-RIB
is in, well before the 120 s deadline."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from bgpd_driver import BgpdNode, ExternalPeer, OurNode
from netns import Pair
from peer_drivers import Bird, PeerSpec, wait_for

from bgpd.rib.graceful_restart import ESTABLISH_WAIT

pytestmark = pytest.mark.netns

OUR_AS, BIRD_AS = 64512, 64600
BIRD_ROUTES = ("10.50.1.0/24",)
LEFTOVER = "10.77.0.0/24"  # a route of "ours" nobody asks for after the restart
DEAD_PEER = "192.0.2.1"  # configured, never reachable
WAIT = 60.0  # generous, but half of the 120 s deadline the dead peer used to hold


def test_a_peer_that_never_comes_back_does_not_hold_the_kernel_for_the_whole_deadline(
    pair: Pair, tmp_path: Path
) -> None:
    if not Bird.available():
        pytest.skip("BIRD 1.6 is not installed")
    assert ESTABLISH_WAIT < WAIT / 2
    ours, theirs = str(pair.our_address), str(pair.peer_address)
    node = BgpdNode(
        pair.us,
        OurNode("node-a", f"{ours}/30", OUR_AS),
        (ExternalPeer(theirs, BIRD_AS), ExternalPeer(DEAD_PEER, BIRD_AS)),
        tmp_path / "bgpd",
    )
    spec = PeerSpec(BIRD_AS, OUR_AS, theirs, theirs, ours, routes=BIRD_ROUTES)
    bird = Bird(pair.peer, spec, tmp_path)
    bird.start()
    try:
        node.start()
        wait_for(lambda: set(BIRD_ROUTES) <= set(node.routes()), 30, node.describe)
        node.stop(signal.SIGTERM)
        pair.us.ip("route", "add", "blackhole", LEFTOVER, "proto", "bird")
        node.start()
        wait_for(lambda: node.logged("kept kernel routes from a previous run"), 20, node.describe)
        wait_for(lambda: node.logged("routing converged after restart"), WAIT, node.describe)
        wait_for(lambda: LEFTOVER not in node.routes(), 10, node.describe)
        assert set(BIRD_ROUTES) <= set(node.routes())
    finally:
        node.stop(signal.SIGKILL)
        bird.stop()
