"""Calico's BGPFilter resources compiled into the speaker's policy engine (``bgpd.rib.policy``):
the one translation between the resource types of ``peers.model`` and the engine's rules
(calico-bgp.md §1.2.5, §2.9, confd ``filterStatement`` and ``BGPFilterBIRDFuncs`` [TF]).

Rules:
1. One BGPFilter, one direction (``import``/``export``) and one IP version compile to one
   ``RuleSet`` for that version's family; its rules keep their order, so the first matching rule
   ends the whole policy with its action (§2.9, ``bgpd.rib.policy`` rule 1).
2. CIDR: Equal, NotEqual, In and NotIn become the engine's prefix conditions, with
   ``prefixLength`` as the length range (min = max(CIDR length, min), max = min(32/128, max)).
   A CIDR of the other IP version never matches Equal/In (the rule is dropped) and always
   matches NotEqual/NotIn (the condition is dropped).
3. ``source: RemotePeers`` matches routes learned over BGP; ``interface`` is a shell glob on
   the route's interface (false when it has none); ``peerType`` iBGP/eBGP matches the session's
   ``is_same_as``; a community (standard or large) must be carried; ``asPathPrefix`` matches a
   path whose leading ASes are those (``[= a b * =]``); ``priority p`` matches the LOCAL_PREF
   that carries metric p (§2.9, ``bgpd.calico.priority``), so an export policy normalises the
   priority first (``bgpd.calico.export``).
4. Operations (only on Accept): ``addCommunity`` adds a standard or large community,
   ``prependASPath`` prepends so the path reads as listed, ``setPriority p`` sets the LOCAL_PREF
   that carries metric p.
5. A session calls, in its ``filters`` order, only the BGPFilters that exist and have rules for
   the direction and version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bgpd.calico.priority import local_pref_for_metric
from bgpd.calico.sessions import FAMILY_OF_VERSION
from bgpd.rib.policy import (
    AddCommunity,
    AddLargeCommunity,
    Match,
    MatchOperator,
    Operation,
    PrefixMatch,
    PrependAsPath,
    Rule,
    RuleSet,
    SetLocalPref,
    SourceKind,
    Verdict,
)
from peers.model import (
    BGPFilter,
    BGPFilterRule,
    FilterAction,
    FilterAddCommunity,
    FilterMatchOperator,
    FilterOperation,
    FilterPrependASPath,
)

OPERATORS = {
    FilterMatchOperator.EQUAL: MatchOperator.EQUAL,
    FilterMatchOperator.NOT_EQUAL: MatchOperator.NOT_EQUAL,
    FilterMatchOperator.IN: MatchOperator.IN,
    FilterMatchOperator.NOT_IN: MatchOperator.NOT_IN,
}
NEGATIVE_OPERATORS = (FilterMatchOperator.NOT_EQUAL, FilterMatchOperator.NOT_IN)
PEER_TYPES = {"": None, "iBGP": True, "eBGP": False}


def compile_filter(bgp_filter: BGPFilter, direction: str, version: int) -> RuleSet:
    """Rule 1: ``direction`` is "import" or "export", ``version`` 4 or 6."""
    rules = tuple(
        compiled
        for rule in bgp_filter.rules(direction, version)
        if (compiled := compile_rule(rule, version)) is not None
    )
    return RuleSet(bgp_filter.name, rules, frozenset({FAMILY_OF_VERSION[version]}))


def compile_rule(rule: BGPFilterRule, version: int) -> Rule | None:
    """Rules 2-4 for one rule; None for a rule that can never match (rule 2)."""
    prefix = None
    cidr = rule.cidr
    if cidr is not None and rule.match_operator is not None:
        if cidr.version != version:
            if rule.match_operator not in NEGATIVE_OPERATORS:
                return None
        else:
            prefix = PrefixMatch(
                cidr,
                OPERATORS[rule.match_operator],
                rule.prefix_length_min,
                rule.prefix_length_max,
            )
    community = rule.community
    match = Match(
        prefix=prefix,
        communities=(community,) if isinstance(community, int) else (),
        large_communities=(community,) if isinstance(community, tuple) else (),
        as_path_prefix=rule.as_path_prefix,
        same_as=PEER_TYPES[rule.peer_type],
        source=SourceKind.REMOTE_PEERS if rule.source == "RemotePeers" else None,
        interface=rule.interface or None,
        local_pref=None if rule.priority is None else local_pref_for_metric(rule.priority),
    )
    if rule.action is FilterAction.REJECT:
        return Rule(match, Verdict.REJECT)
    return Rule(match, Verdict.ACCEPT, tuple(compile_operation(op) for op in rule.operations))


def compile_operation(operation: FilterOperation) -> Operation:
    """Rule 4."""
    if isinstance(operation, FilterAddCommunity):
        value = operation.value
        return AddLargeCommunity(value) if isinstance(value, tuple) else AddCommunity(value)
    if isinstance(operation, FilterPrependASPath):
        return PrependAsPath(operation.prefix)
    return SetLocalPref(local_pref_for_metric(operation.value))


def session_rule_sets(
    names: Sequence[str], filters: Mapping[str, BGPFilter], direction: str, version: int
) -> tuple[RuleSet, ...]:
    """Rule 5: the compiled filters a session with these BGPFilter ``names`` calls."""
    found = (filters.get(name) for name in names)
    return tuple(
        compile_filter(bgp_filter, direction, version)
        for bgp_filter in found
        if bgp_filter is not None and bgp_filter.rules(direction, version)
    )
