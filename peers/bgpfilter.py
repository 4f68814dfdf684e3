"""BGPFilter evaluation over plain route values (calico-bgp.md §2.9, confd ``filterStatement``
and ``BGPFilterBIRDFuncs`` [TF]).

Rules:
1. Rules run in order; the first rule whose conditions all hold applies its operations (only
   ``Accept`` rules carry any) and ends the filter with its verdict. No match: no verdict, and
   the caller goes on (the next filter of the session, then Calico's own logic).
2. CIDR: Equal is ``net = cidr``, NotEqual ``net != cidr``, In ``net ~ cidr`` (inside, or
   equal), NotIn its negation. With ``prefixLength`` the CIDR becomes the BIRD set
   ``[cidr{min,max}]``, min = max(cidr length, min), max = min(32/128, max); Equal/In then mean
   membership in that set and NotEqual/NotIn its negation.
3. ``source: RemotePeers`` matches routes learned over BGP; ``interface`` is a shell glob on
   the route's interface (false when it has none); ``peerType`` iBGP/eBGP guards the rule with
   the session's ``is_same_as``; a community matches when the route carries it (standard or
   large); ``asPathPrefix`` matches an AS path that starts with those ASNs
   (``[= a b * =]``); ``priority`` matches the route's metric.
4. Operations: ``addCommunity`` appends the community, ``prependASPath`` puts its ASNs in front
   so the path reads as listed, ``setPriority`` sets the metric (and LOCAL_PREF follows, §2.10).
5. A session calls only filters that exist and have rules for the direction and family.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from peers.model import (
    AddCommunity,
    BGPFilter,
    BGPFilterRule,
    FilterAction,
    FilterOperation,
    IPNetwork,
    LargeCommunity,
    MatchOperator,
    PrependASPath,
    SetPriority,
)


class Verdict(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    NONE = "none"


class RouteSource(StrEnum):
    """Where a route in this node's table came from (BIRD's ``source``)."""

    BGP = "bgp"  # RTS_BGP: learned from a BGP peer
    KERNEL = "kernel"  # RTS_INHERIT: learned from the kernel (Felix's routes)
    STATIC = "static"  # RTS_STATIC: originated from the datastore (blocks, services)


@dataclass(frozen=True, slots=True)
class RouteView:
    """The attributes a filter reads. ``communities`` are RFC 1997 packed ints."""

    source: RouteSource
    communities: tuple[int, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    as_path: tuple[int, ...] = ()  # flattened AS_SEQUENCE order
    priority: int | None = None  # the route metric (krt_metric), §2.10
    ifname: str | None = None


@dataclass(frozen=True, slots=True)
class FilterResult:
    verdict: Verdict
    operations: tuple[FilterOperation, ...] = ()
    rule_index: int | None = None  # which rule decided


def _prefix_bounds(rule: BGPFilterRule, cidr: IPNetwork) -> tuple[int, int] | None:
    if rule.prefix_length_min is None and rule.prefix_length_max is None:
        return None
    low = max(cidr.prefixlen, rule.prefix_length_min or 0)
    high: int = cidr.max_prefixlen
    if rule.prefix_length_max is not None:
        high = min(high, rule.prefix_length_max)
    return low, high


def _cidr_matches(rule: BGPFilterRule, network: IPNetwork) -> bool:
    cidr = rule.cidr
    if cidr is None:
        return True
    if cidr.version != network.version:
        return rule.match_operator in (MatchOperator.NOT_EQUAL, MatchOperator.NOT_IN)
    bounds = _prefix_bounds(rule, cidr)
    inside = network.subnet_of(cidr)  # type: ignore[arg-type]
    if bounds is not None:
        hit = inside and bounds[0] <= network.prefixlen <= bounds[1]
        positive = rule.match_operator in (MatchOperator.EQUAL, MatchOperator.IN)
        return hit if positive else not hit
    if rule.match_operator is MatchOperator.EQUAL:
        return network == cidr
    if rule.match_operator is MatchOperator.NOT_EQUAL:
        return network != cidr
    if rule.match_operator is MatchOperator.IN:
        return inside
    return not inside


def rule_matches(
    rule: BGPFilterRule, network: IPNetwork, route: RouteView, is_same_as: bool
) -> bool:
    """All conditions of one rule (module rules 2-3)."""
    if rule.peer_type == "iBGP" and not is_same_as:
        return False
    if rule.peer_type == "eBGP" and is_same_as:
        return False
    if not _cidr_matches(rule, network):
        return False
    if rule.source == "RemotePeers" and route.source is not RouteSource.BGP:
        return False
    if rule.interface and (
        route.ifname is None or not fnmatch.fnmatchcase(route.ifname, rule.interface)
    ):
        return False
    if rule.community is not None:
        if isinstance(rule.community, tuple):
            if rule.community not in route.large_communities:
                return False
        elif rule.community not in route.communities:
            return False
    if rule.as_path_prefix and route.as_path[: len(rule.as_path_prefix)] != rule.as_path_prefix:
        return False
    return rule.priority is None or route.priority == rule.priority


def apply_bgp_filter(
    bgp_filter: BGPFilter,
    direction: str,
    version: int,
    network: IPNetwork,
    route: RouteView,
    is_same_as: bool,
) -> FilterResult:
    """Evaluate one BGPFilter for ``direction`` ("import"/"export") and IP ``version``."""
    for index, rule in enumerate(bgp_filter.rules(direction, version)):
        if rule_matches(rule, network, route, is_same_as):
            verdict = Verdict.ACCEPT if rule.action is FilterAction.ACCEPT else Verdict.REJECT
            return FilterResult(verdict, rule.operations, index)
    return FilterResult(Verdict.NONE)


def apply_operations(route: RouteView, operations: Sequence[FilterOperation]) -> RouteView:
    """Module rule 4, applied to a view (the caller maps it back onto path attributes)."""
    communities = list(route.communities)
    large = list(route.large_communities)
    as_path = route.as_path
    priority = route.priority
    for op in operations:
        if isinstance(op, AddCommunity):
            if isinstance(op.value, tuple):
                if op.value not in large:
                    large.append(op.value)
            elif op.value not in communities:
                communities.append(op.value)
        elif isinstance(op, PrependASPath):
            as_path = op.prefix + as_path
        elif isinstance(op, SetPriority):
            priority = op.value
    return RouteView(
        source=route.source,
        communities=tuple(communities),
        large_communities=tuple(large),
        as_path=as_path,
        priority=priority,
        ifname=route.ifname,
    )


def run_session_filters(
    filters: Mapping[str, BGPFilter],
    names: Sequence[str],
    direction: str,
    version: int,
    network: IPNetwork,
    route: RouteView,
    is_same_as: bool,
) -> tuple[Verdict, RouteView]:
    """A session's filter chain (module rules 1 and 5): the first verdict wins; the returned
    view carries the operations of the deciding rule."""
    for name in names:
        bgp_filter = filters.get(name)
        if bgp_filter is None or not bgp_filter.rules(direction, version):
            continue
        result = apply_bgp_filter(bgp_filter, direction, version, network, route, is_same_as)
        if result.verdict is not Verdict.NONE:
            return result.verdict, apply_operations(route, result.operations)
    return Verdict.NONE, route
