"""Fixtures for the real-peer tests: a namespace pair per test.

Rules:
1. Everything here needs root; without it the tests skip.
2. Namespaces are named with this suite's prefix (``hD-``) and deleted after each test, also on
   failure.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import Namespace, Pair, have_root, make_pair

# The Kubernetes API test double and its helpers live with the IO tests (kube_lab.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))

PREFIX = "hD-"
SUBNET = "10.213.0.0/30"


@pytest.fixture
def pair() -> Iterator[Pair]:
    if not have_root():
        pytest.skip("needs root and iproute2")
    topology = make_pair(PREFIX, SUBNET)
    try:
        yield topology
    finally:
        topology.delete()


@pytest.fixture
def namespaces() -> Iterator[tuple[Namespace, Namespace]]:
    """Two namespaces the test links itself: a server's and its clients'."""
    if not have_root():
        pytest.skip("needs root and iproute2")
    server, clients = Namespace.create(PREFIX + "s"), Namespace.create(PREFIX + "c")
    try:
        yield server, clients
    finally:
        clients.delete()
        server.delete()
