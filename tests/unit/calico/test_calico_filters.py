"""BGPFilter compile goldens (bgpd.calico.filters, calico-bgp.md §2.9): a BGPFilter resource in,
a ``RuleSet`` of the speaker's policy engine out, with the verdicts and operations BIRD's
rendered functions give."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.calico.filters import compile_filter, session_rule_sets
from bgpd.calico.priority import local_pref_for_metric
from bgpd.rib.policy import (
    AddCommunity,
    AddLargeCommunity,
    Match,
    MatchOperator,
    PolicyContext,
    PrefixMatch,
    PrependAsPath,
    Rule,
    RuleSet,
    SetLocalPref,
    SourceKind,
    Verdict,
)
from bgpd.rib.route import PeerKind
from bgpd.wire.constants import SegmentType
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    PathAttributes,
    prefix_from_str,
)
from peers.model import (
    BGPFilter,
    BGPFilterRule,
    FilterAction,
    FilterAddCommunity,
    FilterMatchOperator,
    FilterPrependASPath,
    FilterSetPriority,
)

net = ipaddress.ip_network


def rule(action: str = "Accept", **kw: object) -> BGPFilterRule:
    return BGPFilterRule(FilterAction(action), **kw)  # type: ignore[arg-type]


# A BGP-learned route: two communities, an AS path and priority 512 carried in LOCAL_PREF.
BGP_ROUTE = PathAttributes(
    as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, (65001, 65002, 65003)),),
    local_pref=local_pref_for_metric(512),
    communities=((65000 << 16) | 1,),
    large_communities=((1, 2, 3),),
)


def learned(same_as: bool) -> PolicyContext:
    kind = PeerKind.IBGP if same_as else PeerKind.EBGP
    return PolicyContext(kind, same_as, SourceKind.REMOTE_PEERS)


def verdict(ruleset: RuleSet, network: str, same_as: bool = True) -> Verdict | None:
    family = IPV4_UNICAST if net(network).version == 4 else IPV6_UNICAST
    decided = ruleset.decide(family, prefix_from_str(network), BGP_ROUTE, learned(same_as))
    return None if decided is None else decided[0]


@pytest.mark.parametrize(
    ("the_rule", "network", "is_same_as", "matches"),
    [
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=FilterMatchOperator.EQUAL),
            "10.0.0.0/8",
            True,
            True,
        ),
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=FilterMatchOperator.EQUAL),
            "10.1.0.0/16",
            True,
            False,
        ),
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=FilterMatchOperator.NOT_EQUAL),
            "10.1.0.0/16",
            True,
            True,
        ),
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=FilterMatchOperator.IN),
            "10.1.0.0/16",
            True,
            True,
        ),
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=FilterMatchOperator.IN),
            "10.0.0.0/8",
            True,
            True,
        ),
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=FilterMatchOperator.IN),
            "11.0.0.0/8",
            True,
            False,
        ),
        (
            rule(cidr=net("10.0.0.0/8"), match_operator=FilterMatchOperator.NOT_IN),
            "11.0.0.0/8",
            True,
            True,
        ),
        (
            rule(
                cidr=net("10.0.0.0/8"),
                match_operator=FilterMatchOperator.IN,
                prefix_length_min=16,
                prefix_length_max=24,
            ),
            "10.1.0.0/16",
            True,
            True,
        ),
        (
            rule(
                cidr=net("10.0.0.0/8"),
                match_operator=FilterMatchOperator.IN,
                prefix_length_min=16,
                prefix_length_max=24,
            ),
            "10.1.1.1/32",
            True,
            False,
        ),
        (
            rule(
                cidr=net("10.0.0.0/8"),
                match_operator=FilterMatchOperator.IN,
                prefix_length_max=24,
            ),
            "10.0.0.0/8",
            True,
            True,
        ),
        (
            rule(
                cidr=net("10.0.0.0/8"),
                match_operator=FilterMatchOperator.NOT_IN,
                prefix_length_min=16,
            ),
            "10.0.0.0/8",
            True,
            True,
        ),
        (
            rule(
                cidr=net("10.0.0.0/8"),
                match_operator=FilterMatchOperator.EQUAL,
                prefix_length_min=16,
                prefix_length_max=24,
            ),
            "10.1.2.0/24",
            True,
            True,
        ),  # with a length range Equal is membership of [cidr{min,max}]
        (
            rule(
                cidr=net("10.0.0.0/8"),
                match_operator=FilterMatchOperator.NOT_EQUAL,
                prefix_length_min=16,
            ),
            "10.0.0.0/8",
            True,
            True,
        ),
        (
            rule(cidr=net("fd00::/8"), match_operator=FilterMatchOperator.IN),
            "10.0.0.0/8",
            True,
            False,
        ),  # a CIDR of the other IP version
        (
            rule(cidr=net("fd00::/8"), match_operator=FilterMatchOperator.NOT_IN),
            "10.0.0.0/8",
            True,
            True,
        ),
        (rule(source="RemotePeers"), "10.0.0.0/8", True, True),
        (rule(interface="eth*"), "10.0.0.0/8", True, False),  # a BGP route has no interface
        (rule(peer_type="iBGP"), "10.0.0.0/8", True, True),
        (rule(peer_type="iBGP"), "10.0.0.0/8", False, False),
        (rule(peer_type="eBGP"), "10.0.0.0/8", False, True),
        (rule(community=(65000 << 16) | 1), "10.0.0.0/8", True, True),
        (rule(community=(65000 << 16) | 2), "10.0.0.0/8", True, False),
        (rule(community=(1, 2, 3)), "10.0.0.0/8", True, True),
        (rule(as_path_prefix=(65001, 65002)), "10.0.0.0/8", True, True),
        (rule(as_path_prefix=(65002,)), "10.0.0.0/8", True, False),
        (rule(priority=512), "10.0.0.0/8", True, True),
        (rule(priority=1024), "10.0.0.0/8", True, False),
    ],
)
def test_filter_conditions(
    the_rule: BGPFilterRule, network: str, is_same_as: bool, matches: bool
) -> None:
    flt = BGPFilter("f", export_v4=(the_rule,))
    compiled = compile_filter(flt, "export", 4)
    assert verdict(compiled, network, is_same_as) is (Verdict.ACCEPT if matches else None)


def test_source_remote_peers_does_not_match_local_routes() -> None:
    compiled = compile_filter(BGPFilter("f", export_v4=(rule(source="RemotePeers"),)), "export", 4)
    local = PolicyContext(PeerKind.IBGP, True, SourceKind.LOCAL)
    assert compiled.decide(IPV4_UNICAST, prefix_from_str("10.0.0.0/8"), BGP_ROUTE, local) is None


def test_compiled_rules_golden() -> None:
    flt = BGPFilter(
        "f",
        export_v4=(
            rule(
                cidr=net("10.0.0.0/8"),
                match_operator=FilterMatchOperator.IN,
                prefix_length_min=16,
                prefix_length_max=24,
                source="RemotePeers",
                peer_type="eBGP",
                community=(1, 2, 3),
                as_path_prefix=(65001,),
                priority=512,
                operations=(
                    FilterAddCommunity((65000 << 16) | 7),
                    FilterAddCommunity((9, 9, 9)),
                    FilterPrependASPath((64512, 64513)),
                    FilterSetPriority(256),
                ),
            ),
            rule("Reject", interface="cali*"),
        ),
    )
    assert compile_filter(flt, "export", 4) == RuleSet(
        "f",
        (
            Rule(
                Match(
                    prefix=PrefixMatch(net("10.0.0.0/8"), MatchOperator.IN, 16, 24),
                    large_communities=((1, 2, 3),),
                    as_path_prefix=(65001,),
                    same_as=False,
                    source=SourceKind.REMOTE_PEERS,
                    local_pref=2147483135,
                ),
                Verdict.ACCEPT,
                (
                    AddCommunity((65000 << 16) | 7),
                    AddLargeCommunity((9, 9, 9)),
                    PrependAsPath((64512, 64513)),
                    SetLocalPref(2147483391),
                ),
            ),
            Rule(Match(interface="cali*"), Verdict.REJECT),
        ),
        frozenset({IPV4_UNICAST}),
    )


def test_first_matching_rule_wins_and_operations_apply() -> None:
    flt = BGPFilter(
        "f",
        import_v4=(
            rule("Reject", cidr=net("10.9.0.0/16"), match_operator=FilterMatchOperator.IN),
            rule(
                operations=(
                    FilterAddCommunity((65000 << 16) | 7),
                    FilterAddCommunity((9, 9, 9)),
                    FilterPrependASPath((64512, 64513)),
                    FilterSetPriority(256),
                )
            ),
            rule("Reject"),
        ),
    )
    compiled = compile_filter(flt, "import", 4)
    ctx = learned(True)

    def deciding_rule(network: str) -> int:
        key = prefix_from_str(network)
        return next(i for i, r in enumerate(compiled.rules) if r.match.matches(key, BGP_ROUTE, ctx))

    rejected = compiled.decide(IPV4_UNICAST, prefix_from_str("10.9.1.0/24"), BGP_ROUTE, ctx)
    assert rejected is not None and rejected[0] is Verdict.REJECT
    assert deciding_rule("10.9.1.0/24") == 0
    accepted = compiled.decide(IPV4_UNICAST, prefix_from_str("10.8.1.0/24"), BGP_ROUTE, ctx)
    assert accepted is not None and accepted[0] is Verdict.ACCEPT
    assert deciding_rule("10.8.1.0/24") == 1
    after = accepted[1]
    assert after.as_path[0].asns == (64512, 64513, 65001, 65002, 65003)  # reads as listed
    assert after.communities == ((65000 << 16) | 1, (65000 << 16) | 7)
    assert after.large_communities == ((1, 2, 3), (9, 9, 9))
    assert after.local_pref == local_pref_for_metric(256)
    assert verdict(compile_filter(flt, "export", 4), "10.8.1.0/24") is None
    v6 = compile_filter(flt, "import", 6)
    assert verdict(v6, "fd00::/64") is None
    # A compiled filter applies only to its own family.
    assert verdict(compiled, "fd00::/64") is None


def test_a_session_calls_only_filters_that_exist_and_have_rules() -> None:
    filters = {
        "f": BGPFilter("f", import_v4=(rule(),)),
        "export-only": BGPFilter("export-only", export_v4=(rule(),)),
    }
    found = session_rule_sets(("missing", "export-only", "f"), filters, "import", 4)
    assert [r.name for r in found] == ["f"]
    assert session_rule_sets(("f",), filters, "import", 6) == ()
