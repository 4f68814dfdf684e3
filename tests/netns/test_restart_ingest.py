"""The fast instance of ``bench/restart_ingest.py`` (issue 20 points 6 and 7): bgpd killed while
a table streams in, then restarted, converges to exactly the table; restarted every second
with graceful restart, it never deletes the peer's routes. The bench runs each case many
times; this runs each once, small."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
from netns import have_root

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import restart_ingest  # noqa: E402

pytestmark = pytest.mark.netns


@pytest.fixture(autouse=True)
def _root() -> None:
    if not have_root():
        pytest.skip("needs root and iproute2")


@pytest.mark.parametrize("sig", ["TERM", "KILL"])
def test_killed_during_ingest_then_restarted_converges(sig: str, tmp_path: Path) -> None:
    args = argparse.Namespace(
        case="ingest",
        runs=1,
        signal=sig,
        routes=20_000,
        limit=60.0,
        kill_within=0.5,
        feeder="sim",
        keep_failures=str(tmp_path / "failures"),
    )
    assert restart_ingest.ingest(args, tmp_path) == [True]


def test_restarted_in_a_loop_never_deletes_the_peers_routes(tmp_path: Path) -> None:
    args = argparse.Namespace(runs=1, every=1.0, duration=6.0, feeder="sim")
    assert restart_ingest.loop(args, tmp_path) == [True]
