"""Calico's route priority carried in LOCAL_PREF (calico-bgp.md §2.10, [TF ``BirdIntMaxValue``]).

Rules:
1. A route's priority is its kernel metric; across BGP it travels as
   LOCAL_PREF = ``BIRD_INT_MAX`` - metric, ``BIRD_INT_MAX`` being 2^31 - 1 (§2.10, §2.9
   ``setPriority`` and ``priority``).
2. A BGP-learned route that came without LOCAL_PREF (from an eBGP peer, RFC 4271 §5.1.5) has
   BIRD's ``default bgp_local_pref`` 100, which BIRD 1.6 attaches on receipt and keeps when it
   reflects the route (``learned_local_pref``); so it is installed with metric
   ``BIRD_INT_MAX`` - 100 = 2147483547 and passed on with LOCAL_PREF 100, as Calico's
   ``calico_kernel_programming`` and ``calico_export_to_bgp_peers`` read ``bgp_local_pref``
   (projectcalico/calico 87c15906, ``confd/pkg/backends/calico/bgp_processor.go``, the
   priority normalisation of the generated filters).
3. Back from LOCAL_PREF: metric = ``BIRD_INT_MAX`` - LOCAL_PREF; a LOCAL_PREF outside
   0..``BIRD_INT_MAX`` (no encoding) gets the caller's default metric (§2.10: the kernel
   filter's 1024, the normal route priority).
4. This is the only place the encoding is written.
"""

from __future__ import annotations

BIRD_INT_MAX = 2_147_483_647  # [TF BirdIntMaxValue]: the largest BIRD int, the encoding's base
BIRD_DEFAULT_LOCAL_PREF = 100  # rule 2: BIRD 1.6 ``default bgp_local_pref``


def local_pref_for_metric(metric: int) -> int:
    """Rule 1."""
    return BIRD_INT_MAX - metric


def learned_local_pref(local_pref: int | None) -> int:
    """Rule 2: a BGP-learned route's LOCAL_PREF, BIRD's default when it came without one."""
    return BIRD_DEFAULT_LOCAL_PREF if local_pref is None else local_pref


def metric_for_local_pref(local_pref: int | None, default_metric: int) -> int:
    """Rules 2 and 3 for a BGP-learned route."""
    value = learned_local_pref(local_pref)
    if not 0 <= value <= BIRD_INT_MAX:
        return default_metric
    return BIRD_INT_MAX - value
