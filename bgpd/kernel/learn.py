"""What the node's kernel shows the routing daemon besides its own routes, as BIRD 1.6's kernel
protocol with ``learn`` and its direct protocol see it (calico-bgp.md §2.4; Calico's
``kernel_template`` writes ``learn;``, its ``direct_template`` the interfaces).

Rules:
1. A kernel route is learned (BIRD 1.6 ``sysdep/linux/netlink.c``, ``nl_parse_route``) when it
   is in the main table, of type unicast, blackhole, unreachable or prohibit, and its protocol
   is none of: redirect (1), the kernel's own (2: the connected routes, which the direct
   protocol stands for), or ours (the protocol we install with: those routes are BIRD's own).
   Routes of the other types (local, broadcast, multicast, anycast) never are.
2. An interface address gives a direct route (BIRD's ``protocol direct``): the address's network,
   the interface as its interface, no gateway, unless the address is of host or link scope
   (BIRD 1.6 ``dev_ifa_notify`` skips those: 127.0.0.1, fe80::/10) or the interface is down.
3. The view is a value: equal kernels give equal views, so the router re-learns nothing for a
   scan that found no change.
4. Recursive next hops (BIRD's ``gateway recursive``, which Calico's BGP template sets): a
   BGP next hop inside a connected network (an address of an interface that is up, rule 2's
   scopes) is used as it is; any other resolves through the longest route towards it that has
   a gateway (a kernel route that is not ours, of the main table, rule 1) to that route's
   gateway (a route without one, through a device, leads to the next hop itself; the default
   route counts, as in BIRD); a next hop with none of these is unresolvable. ``Resolver``
   holds only what resolution reads, and leaves out host routes without a gateway (Felix's
   workload routes through ``cali*``: no BGP next hop is a workload), so pods coming and going
   change no resolution and cause no re-planning.
5. A route's metric is its RTA_PRIORITY, and undefined when the kernel sends none: Linux leaves
   it out of an IPv4 route of metric 0 (``fib_dump_info``), so Felix's workload routes (metric
   0) have no metric, as BIRD's ``krt_metric`` is then undefined (Calico's export prelude gives
   such a route the normal priority: it stays behind block aggregation).
"""

from __future__ import annotations

from dataclasses import dataclass

from encap.model import IPAddress, IPNetwork

RTPROT_REDIRECT = 1
RTPROT_KERNEL = 2
MAIN_TABLE = 254
RTN_UNICAST = 1
RTN_BLACKHOLE = 6
RTN_UNREACHABLE = 7
RTN_PROHIBIT = 8
LEARNED_TYPES = frozenset({RTN_UNICAST, RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT})
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254


@dataclass(frozen=True, slots=True)
class ObservedRoute:
    """One kernel route as the dump shows it."""

    network: IPNetwork
    protocol: int
    metric: int | None = None  # RTA_PRIORITY; None when the kernel reports none (rule 5)
    ifname: str | None = None
    gateway: bool = False  # it has a next hop (RTA_GATEWAY or RTA_MULTIPATH)
    table: int = MAIN_TABLE
    type: int = RTN_UNICAST
    via: IPAddress | None = None  # its (first) gateway address


@dataclass(frozen=True, slots=True)
class ObservedAddress:
    """One address of an interface that is up; ``network`` is the address with its prefix
    length, as a network (10.0.0.5/24 -> 10.0.0.0/24)."""

    network: IPNetwork
    ifname: str
    scope: int = 0
    address: IPAddress | None = None  # the interface's own address (IFA_LOCAL, else IFA_ADDRESS)


@dataclass(frozen=True, slots=True)
class KernelView:
    routes: tuple[ObservedRoute, ...] = ()
    addresses: tuple[ObservedAddress, ...] = ()


def learnable(route: ObservedRoute, own_protocol: int) -> bool:
    """Rule 1."""
    return (
        route.table == MAIN_TABLE
        and route.type in LEARNED_TYPES
        and route.protocol not in (RTPROT_REDIRECT, RTPROT_KERNEL, own_protocol)
    )


@dataclass(frozen=True, slots=True)
class Resolver:
    """Rule 4: the networks a next hop can be found in, longest first, each with the gateway to
    use (None: the next hop itself, a connected network or a device route)."""

    entries: tuple[tuple[IPNetwork, IPAddress | None], ...]

    @classmethod
    def of(cls, view: KernelView, own_protocol: int) -> Resolver:
        entries: set[tuple[IPNetwork, IPAddress | None]] = {
            (a.network, None) for a in view.addresses if direct_candidate(a)
        }
        entries |= {
            (r.network, r.via)
            for r in view.routes
            if r.type == RTN_UNICAST
            and learnable(r, own_protocol)
            and (r.via is not None or r.network.prefixlen < r.network.max_prefixlen)
        }
        return cls(tuple(sorted(entries, key=_longest_first)))

    def resolve(self, gateway: IPAddress) -> IPAddress | None:
        """The address to install as the gateway; None when nothing leads to it."""
        for network, via in self.entries:
            if network.version == gateway.version and gateway in network:
                return gateway if via is None else via
        return None


def _longest_first(entry: tuple[IPNetwork, IPAddress | None]) -> tuple[int, int, bytes, bytes]:
    network, via = entry
    return (
        network.version,
        -network.prefixlen,
        network.network_address.packed,
        b"" if via is None else via.packed,
    )


def direct_candidate(address: ObservedAddress) -> bool:
    """Rule 2 (the interface patterns are the caller's)."""
    return address.scope not in (RT_SCOPE_LINK, RT_SCOPE_HOST)
