"""The maximum prefix guardrail against a real peer (issue 21 point 3), in the suite's namespace
pair: GoBGP sends more routes than its BGPPeer's ``bgpd.projectcalico.org/max-prefixes``
annotation allows; bgpd closes the session with Cease/Maximum Number of Prefixes Reached
carrying RFC 4486 §4's data (AFI 1, SAFI 1, the upper bound), withdraws the peer's routes from
the kernel, stays idle for the configured time and connects again (and stops again, the peer
still sending too many)."""

from __future__ import annotations

import time

import pytest
from bgpd_driver import BgpdNode, ExternalPeer, OurNode, calico_datastore
from netns import Pair
from peer_drivers import GoBgp, PeerSpec, wait_for

pytestmark = pytest.mark.netns

OUR_AS, GOBGP_AS = 64512, 65001
LIMIT, RESTART = 4, 5
ROUTES = tuple(f"10.60.{i}.0/24" for i in range(1, 7))  # six: past the limit of four
TIMEOUT = 40.0


def test_a_peer_past_its_limit_is_stopped_with_rfc_4486_data_and_restarted(
    pair: Pair, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if not GoBgp.available():
        pytest.skip("GoBGP is not installed")
    workdir = tmp_path_factory.mktemp("max-prefixes")
    us, peer = str(pair.our_address), str(pair.peer_address)
    ours = OurNode("node-a", f"{us}/30", OUR_AS, blocks=("10.244.1.0/26",))
    peers = (ExternalPeer(peer, GOBGP_AS),)
    text = calico_datastore(ours, peers).replace(
        "name: peer-0\n",
        "name: peer-0\n  annotations:\n"
        f"    bgpd.projectcalico.org/max-prefixes: '{LIMIT},warning=50,restart={RESTART}s'\n",
    )
    assert "max-prefixes" in text
    node = BgpdNode(pair.us, ours, peers, workdir / "bgpd", datastore_text=text)
    gobgp = GoBgp(pair.peer, PeerSpec(GOBGP_AS, OUR_AS, peer, peer, us, routes=ROUTES), workdir)
    try:
        gobgp.start()
        node.start()

        def describe() -> str:
            return f"{node.describe()}\n{gobgp.describe()}"

        def stops() -> list[dict[str, object]]:
            return [
                e
                for e in node.events_since_start()
                if e.get("event") == "session down"
                and e.get("notification") == "cease/maximum-prefixes-reached"
            ]

        wait_for(lambda: len(stops()) >= 1, TIMEOUT, describe)
        first = stops()[0]
        assert first["sent"] is True
        assert first["data"] == f"000101{LIMIT:08x}"  # AFI 1, SAFI 1, upper bound
        assert node.logged("maximum prefixes reached: closing session")
        stopped_at = time.monotonic()
        wait_for(lambda: not any(r in node.routes() for r in ROUTES), TIMEOUT, describe)
        assert not gobgp.established() or len(stops()) >= 2
        # It connects again after the idle time, receives too many again, and stops again.
        wait_for(lambda: len(stops()) >= 2, TIMEOUT + RESTART, describe)
        assert time.monotonic() - stopped_at >= RESTART - 1
        assert node.running
    finally:
        node.stop()
        gobgp.stop()
