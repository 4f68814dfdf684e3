"""A Calico session's import and export filters as ``bgpd.rib.policy.Policy`` values (calico-bgp.md
§2.8 items 5-6, §2.9, §2.10, §2.12b).

Rules:
1. Export (§2.8 item 6): priority normalisation (``prepare``: ``bgpd.calico.advertise`` rule 2;
   a route learned from the kernel is Calico's kernel route, with its interface, gateway flag
   and metric: ``bgpd.calico.learned``),
   the session's BGPFilters in order (``bgpd.calico.filters``; an accept or reject there ends the
   whole filter, as in BIRD), then ``calico_export_to_bgp_peers`` as the terminal ``hook``, which
   adds the prefixAdvertisement communities of an accepted route.
2. Import (§2.8 item 5): the session's BGPFilters, then accept. A session without filters
   imports with ``ACCEPT_ALL``, and filters that look only at communities, AS path or priority
   leave the policy prefix-independent (the speaker evaluates it once per attribute set).
3. Both steps are frozen values: policies built from equal inputs are equal, so installing
   one again changes nothing in the speaker.
4. The export step runs once per exported prefix: it works on the packed prefix (integers, no
   ``ipaddress`` object) and returns the attributes unchanged when it adds nothing.
5. Priority normalisation reads no prefix, so its result is remembered per (attributes, source
   protocol, kernel metric), at most ``MEMO_LIMIT`` of them (emptied when full): a route
   exported to several peers, or an attribute set shared by many prefixes, is normalised once,
   not once per prefix and peer (each a new attribute set). The export decision is remembered
   the same way per (family, prefix, and what ``RouteContext`` reads), so the peers a route goes
   to share one ``calico_export`` whatever their AS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from bgpd.calico.advertise import (
    ExportDecision,
    ExportPolicy,
    RouteContext,
    SourceProtocol,
    calico_export,
    export_priority,
)
from bgpd.calico.filters import session_rule_sets
from bgpd.calico.origin import Origination
from bgpd.calico.priority import metric_for_local_pref
from bgpd.kernel.plan import prefix_destination
from bgpd.rib.policy import ACCEPT_ALL, Policy, PolicyContext, SourceKind
from bgpd.wire.types import Family, PathAttributes, Prefix
from peers.model import BGPFilter
from peers.spec import SessionSpec

MEMO_LIMIT = 65536  # rule 5


def _source_protocol(ctx: PolicyContext) -> SourceProtocol:
    """Our own routes are BIRD's static routes, routes learned from the kernel or an interface
    its kernel (and direct) routes; every other route was learned over BGP."""
    if ctx.source is not SourceKind.LOCAL:
        return SourceProtocol.BGP
    return SourceProtocol.KERNEL if ctx.learned else SourceProtocol.STATIC


def _kernel_metric(attrs: PathAttributes, ctx: PolicyContext, normal_priority: int) -> int | None:
    """A learned route's kernel metric, carried in its LOCAL_PREF (``bgpd.calico.learned``
    rule 3); None for every other route and for a direct route (no metric)."""
    if not ctx.learned or attrs.local_pref is None:
        return None
    return metric_for_local_pref(attrs.local_pref, normal_priority)


@dataclass(frozen=True, slots=True)
class NormalisePriority:
    """Rule 1's ``prepare``: a local route gets the LOCAL_PREF of its kernel metric if it was
    learned from the kernel, else of the normal route priority; a BGP-learned LOCAL_PREF is
    kept, BIRD's default 100 on a learned route without one (``bgpd.calico.priority`` rule 2)."""

    normal_priority: int
    _normalised: dict[tuple[PathAttributes, SourceProtocol, int | None], PathAttributes] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )  # rule 5

    def __call__(
        self, family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> PathAttributes:
        source = _source_protocol(ctx)
        metric = _kernel_metric(attrs, ctx, self.normal_priority)
        key = (attrs, source, metric)
        normalised = self._normalised.get(key)
        if normalised is None:
            _, local_pref = export_priority(source, attrs.local_pref, metric, self.normal_priority)
            normalised = (
                attrs if attrs.local_pref == local_pref else replace(attrs, local_pref=local_pref)
            )
            if len(self._normalised) >= MEMO_LIMIT:
                self._normalised.clear()
            self._normalised[key] = normalised
        return normalised


@dataclass(frozen=True, slots=True)
class CalicoExport:
    """Rule 1's ``hook``: ``calico_export_to_bgp_peers(is_same_as)`` on a packed prefix (rule 4)."""

    policy: ExportPolicy
    _decisions: dict[tuple[object, ...], ExportDecision] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )  # rule 5

    def __call__(
        self, family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> PathAttributes | None:
        decision = self._decide(family, prefix, attrs, ctx)
        if not decision.accept:
            return None
        communities = tuple(c for c in decision.communities if c not in attrs.communities)
        large = tuple(c for c in decision.large_communities if c not in attrs.large_communities)
        if not communities and not large:
            return attrs
        return replace(
            attrs,
            communities=attrs.communities + communities,
            large_communities=attrs.large_communities + large,
        )

    def explain(
        self, family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> str:
        """The step of ``calico_export_to_bgp_peers`` that decided, in words (``bgpd explain``)."""
        decision = self._decide(family, prefix, attrs, ctx)
        verdict = "accept" if decision.accept else "reject"
        return f"calico_export_to_bgp_peers: {verdict}: {decision.reason}"

    def _decide(
        self, family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> ExportDecision:
        source = _source_protocol(ctx)
        metric = _kernel_metric(attrs, ctx, self.policy.normal_priority)
        local_pref = attrs.local_pref
        key = (family, prefix, source, ctx.same_as, ctx.interface, ctx.gateway, metric, local_pref)
        decision = self._decisions.get(key)
        if decision is None:
            route = RouteContext(
                source,
                ctx.same_as,
                ifname=ctx.interface,
                has_gateway=ctx.gateway,
                metric=metric,
                local_pref=local_pref,
            )
            decision = calico_export(prefix_destination(prefix, family), self.policy, route)
            if len(self._decisions) >= MEMO_LIMIT:
                self._decisions.clear()
            self._decisions[key] = decision
        return decision


def export_policy(
    spec: SessionSpec, origination: Origination, filters: Mapping[str, BGPFilter]
) -> Policy:
    """Rule 1: the session's export filter."""
    calico = origination.policy
    return Policy(
        filters=session_rule_sets(spec.filters, filters, "export", spec.family),
        hook=CalicoExport(calico),
        prepare=NormalisePriority(calico.normal_priority),
    )


def import_policy(spec: SessionSpec, filters: Mapping[str, BGPFilter]) -> Policy:
    """Rule 2: the session's import filter. §2.8 item 5's ``preference = 200`` for an elevated
    LOCAL_PREF has no counterpart in the RIB yet (``bgpd.rib.best_path`` ranks own routes before
    LOCAL_PREF), as it had none before BGPFilters were compiled."""
    rule_sets = session_rule_sets(spec.filters, filters, "import", spec.family)
    return Policy(filters=rule_sets) if rule_sets else ACCEPT_ALL
