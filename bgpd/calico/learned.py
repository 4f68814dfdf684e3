"""The routes a Calico node learns from its kernel and interfaces, as local routes for Calico's
export rules: BIRD's ``protocol kernel { learn; }`` and ``protocol direct`` in Calico's
templates (calico-bgp.md §2.4, §2.12b; projectcalico/calico 87c15906 confd cases
``ignored_interfaces``, ``bgpfilter/match_interface``, ``bgpfilter/kubevirt_live_migration``).

Rules:
1. Kernel routes are learned by ``bgpd.kernel.learn.learnable`` (not ours, not the kernel's
   connected routes); direct routes come from the addresses of interfaces that are up, except
   interfaces matching the direct protocol's exclusions: BGPConfiguration ``ignoredInterfaces``
   first, then Calico's ``cali*`` and ``kube-ipvs*`` (the template's
   ``interface -"<ignored>", ..., -"cali*", -"kube-ipvs*", "*"``), shell patterns as BIRD's.
2. One route per prefix: a direct route wins over a kernel route (BIRD's preference 240 over
   10); among kernel routes the lowest metric wins, then the first interface by name.
3. Each route is local and learned (``RouteSource.learned``), with one source per interface and
   gateway flag, so the export policy sees its interface (BGPFilter ``interface`` rules) and
   Calico's export function whether it has a gateway (§2.12b step 2). A kernel route's metric
   travels as its LOCAL_PREF (``bgpd.calico.priority`` rule 1: BIRD's export prelude sets
   ``bgp_local_pref = 2147483647 - krt_metric``), so a KubeVirt VM's /32 with metric 512 is
   elevated past block aggregation; a direct route, and a kernel route the kernel reports
   without a metric (``bgpd.kernel.learn`` rule 5: Felix's workload routes), have none (the
   export prelude gives them the normal route priority), so they carry no LOCAL_PREF.
4. ORIGIN IGP, an empty AS_PATH and the node's address of the family as next hop, as our own
   routes (``bgpd.calico.origin`` rule 6).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from bgpd.calico.priority import local_pref_for_metric
from bgpd.calico.sessions import FAMILY_OF_VERSION
from bgpd.kernel.learn import KernelView, ObservedRoute, direct_candidate, learnable
from bgpd.rib.route import RouteSource
from bgpd.wire.constants import Origin
from bgpd.wire.types import Family, PathAttributes, Prefix, prefix_from_network
from peers.model import Snapshot

CALICO_DIRECT_EXCLUSIONS = ("cali*", "kube-ipvs*")  # rule 1: the template's own

LearnedRoutes = dict[Family, dict[Prefix, tuple[RouteSource, PathAttributes]]]


def direct_exclusions(snapshot: Snapshot) -> tuple[str, ...]:
    """Rule 1: the interfaces whose addresses give no direct route, in the template's order."""
    config = snapshot.global_config
    ignored = config.ignored_interfaces if config is not None else ()
    return (*ignored, *CALICO_DIRECT_EXCLUSIONS)


def _order(metric: int | None) -> int:
    """Rule 2: a route without a metric sorts as metric 0, as the kernel ranks it."""
    return 0 if metric is None else metric


def learned_source(ifname: str | None, gateway: bool, kind: str) -> RouteSource:
    """Rule 3: the source of the routes learned through one interface."""
    name = f"{kind} {ifname or '-'}{' via' if gateway else ''}"
    return RouteSource(peer_id=name, local=True, learned=True, interface=ifname, gateway=gateway)


@dataclass(frozen=True, slots=True)
class Learning:
    """Turns a ``KernelView`` into the node's learned local routes (rules 1-4)."""

    own_protocol: int
    exclusions: tuple[str, ...]
    next_hops: Mapping[int, bytes]

    def excluded(self, ifname: str) -> bool:
        return any(fnmatch.fnmatchcase(ifname, pattern) for pattern in self.exclusions)

    def routes(self, view: KernelView) -> LearnedRoutes:
        out: LearnedRoutes = {}
        kernel: dict[tuple[int, Prefix], ObservedRoute] = {}
        for route in view.routes:
            if not learnable(route, self.own_protocol):
                continue
            key = (route.network.version, prefix_from_network(route.network))
            held = kernel.get(key)
            if held is None or (_order(route.metric), route.ifname or "") < (
                _order(held.metric),
                held.ifname or "",
            ):
                kernel[key] = route
        for (version, prefix), route in kernel.items():
            local_pref = None if route.metric is None else local_pref_for_metric(route.metric)
            attrs = self._attrs(version, local_pref)
            source = learned_source(route.ifname, route.gateway, "kernel")
            out.setdefault(FAMILY_OF_VERSION[version], {})[prefix] = (source, attrs)
        for address in sorted(view.addresses, key=lambda a: a.ifname):
            if not direct_candidate(address) or self.excluded(address.ifname):
                continue
            version = address.network.version
            table = out.setdefault(FAMILY_OF_VERSION[version], {})
            prefix = prefix_from_network(address.network)
            held_source = table.get(prefix)
            if held_source is not None and held_source[0].peer_id.startswith("direct "):
                continue
            table[prefix] = (
                learned_source(address.ifname, False, "direct"),
                self._attrs(version, None),
            )
        return out

    def _attrs(self, version: int, local_pref: int | None) -> PathAttributes:
        return PathAttributes(
            origin=Origin.IGP,
            as_path=(),
            next_hop=self.next_hops.get(version, b""),
            local_pref=local_pref,
        )
