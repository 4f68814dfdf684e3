"""Calico's route priority carried in LOCAL_PREF (calico-bgp.md §2.10, [TF ``BirdIntMaxValue``]).

Rules:
1. A route's priority is its kernel metric; across BGP it travels as
   LOCAL_PREF = ``BIRD_INT_MAX`` - metric, ``BIRD_INT_MAX`` being 2^31 - 1 (§2.10, §2.9
   ``setPriority`` and ``priority``).
2. Back from LOCAL_PREF: metric = ``BIRD_INT_MAX`` - LOCAL_PREF; a route without LOCAL_PREF, or
   with one outside 0..``BIRD_INT_MAX`` (no encoding), gets the caller's default metric (§2.10:
   the kernel filter's 1024, the normal route priority).
3. This is the only place the encoding is written.
"""

from __future__ import annotations

BIRD_INT_MAX = 2_147_483_647  # [TF BirdIntMaxValue]: the largest BIRD int, the encoding's base


def local_pref_for_metric(metric: int) -> int:
    """Rule 1."""
    return BIRD_INT_MAX - metric


def metric_for_local_pref(local_pref: int | None, default_metric: int) -> int:
    """Rule 2."""
    if local_pref is None or not 0 <= local_pref <= BIRD_INT_MAX:
        return default_metric
    return BIRD_INT_MAX - local_pref
