"""The priority encoding, written once (bgpd.calico.priority, calico-bgp.md §2.10)."""

from __future__ import annotations

import pytest

from bgpd.calico.priority import local_pref_for_metric, metric_for_local_pref


def test_priority_encoding() -> None:
    assert local_pref_for_metric(1024) == 2147482623
    assert local_pref_for_metric(512) == 2147483135


@pytest.mark.parametrize(
    ("local_pref", "metric"),
    [
        (None, 2147483547),  # learned without LOCAL_PREF: BIRD attaches its default 100
        (2147482623, 1024),  # what a Calico peer sends for a normal-priority route
        (2147483135, 512),  # elevated priority (live migration)
        (100, 2147483547),  # eBGP default local-pref as BIRD attaches it
        (2147483647, 0),
        (4294967295, 1024),  # no encoding: default
    ],
)
def test_route_metric(local_pref: int | None, metric: int) -> None:
    assert metric_for_local_pref(local_pref, 1024) == metric


def test_the_encoding_round_trips() -> None:
    for metric in (0, 512, 1024, 2147483647):
        assert metric_for_local_pref(local_pref_for_metric(metric), 1024) == metric
