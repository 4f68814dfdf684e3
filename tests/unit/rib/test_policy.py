"""Policy rules with first-match-terminates semantics and the hook (calico-bgp.md §2.9)."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest

from bgpd.rib.policy import (
    AddCommunity,
    AddLargeCommunity,
    Match,
    MatchOperator,
    Policy,
    PolicyContext,
    PrefixMatch,
    PrependAsPath,
    Rule,
    RuleSet,
    SetLocalPref,
    SetMed,
    SourceKind,
    Verdict,
)
from bgpd.rib.route import PeerKind
from bgpd.speaker import PeerSettings, Speaker, SpeakerConfig
from bgpd.wire.constants import SegmentType
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    Family,
    PathAttributes,
    Prefix,
    prefix_from_str,
)

IBGP = PolicyContext(PeerKind.IBGP, True, SourceKind.REMOTE_PEERS)
EBGP = PolicyContext(PeerKind.EBGP, False, SourceKind.LOCAL, interface="eth0")
ATTRS = PathAttributes(as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, (65001, 65002)),))
POOL = ipaddress.IPv4Network("10.244.0.0/16")


def _match(pm: PrefixMatch, prefix: str) -> bool:
    return pm.matches(prefix_from_str(prefix))


@pytest.mark.parametrize(
    ("operator", "prefix", "expected"),
    [
        (MatchOperator.EQUAL, "10.244.0.0/16", True),
        (MatchOperator.EQUAL, "10.244.1.0/24", False),
        (MatchOperator.NOT_EQUAL, "10.244.1.0/24", True),
        (MatchOperator.IN, "10.244.1.0/24", True),
        (MatchOperator.IN, "10.244.0.0/16", True),
        (MatchOperator.IN, "10.0.0.0/8", False),
        (MatchOperator.IN, "10.245.0.0/24", False),
        (MatchOperator.NOT_IN, "10.245.0.0/24", True),
        (MatchOperator.NOT_IN, "10.244.3.4/32", False),
    ],
)
def test_prefix_operators(operator: MatchOperator, prefix: str, expected: bool) -> None:
    assert _match(PrefixMatch(POOL, operator), prefix) is expected


def test_prefix_length_range_within_a_cidr() -> None:
    pm = PrefixMatch(POOL, MatchOperator.IN, min_len=26, max_len=28)
    assert _match(pm, "10.244.1.64/26")
    assert _match(pm, "10.244.1.64/28")
    assert not _match(pm, "10.244.1.0/24")
    assert not _match(pm, "10.244.1.1/32")
    assert not _match(pm, "10.245.1.64/26")


def test_a_length_range_makes_equal_and_not_equal_set_membership() -> None:
    equal = PrefixMatch(POOL, MatchOperator.EQUAL, min_len=24, max_len=24)
    assert _match(equal, "10.244.1.0/24")
    assert not _match(equal, "10.244.0.0/16") and not _match(equal, "10.245.1.0/24")
    not_equal = PrefixMatch(POOL, MatchOperator.NOT_EQUAL, min_len=24, max_len=24)
    assert not _match(not_equal, "10.244.1.0/24") and _match(not_equal, "10.244.0.0/16")


def test_a_length_range_never_goes_below_the_cidr_length() -> None:
    pm = PrefixMatch(POOL, MatchOperator.IN, min_len=8, max_len=40)
    assert _match(pm, "10.244.0.0/16") and _match(pm, "10.244.1.1/32")
    assert not _match(pm, "10.0.0.0/8")


def test_longer_is_strictly_more_specific() -> None:
    pm = PrefixMatch.longer(POOL)
    assert _match(pm, "10.244.0.0/17") and not _match(pm, "10.244.0.0/16")
    assert PrefixMatch.exact(POOL).matches(prefix_from_str("10.244.0.0/16"))


def test_ipv6_prefix_match() -> None:
    pm = PrefixMatch(ipaddress.IPv6Network("fd00:10::/64"), MatchOperator.IN)
    assert pm.matches(prefix_from_str("fd00:10::/122"))
    assert not pm.matches(prefix_from_str("fd00:11::/122"))


def test_first_matching_rule_terminates() -> None:
    rules = RuleSet(
        "f",
        (
            Rule(Match(prefix=PrefixMatch(POOL)), Verdict.REJECT),
            Rule(Match(), Verdict.ACCEPT, (AddCommunity(1),)),
        ),
    )
    policy = Policy(filters=(rules,), default=Verdict.REJECT)
    assert policy.evaluate(IPV4_UNICAST, prefix_from_str("10.244.1.0/24"), ATTRS, IBGP) is None
    out = policy.evaluate(IPV4_UNICAST, prefix_from_str("192.168.0.0/24"), ATTRS, IBGP)
    assert out is not None and out.communities == (1,)


def test_accept_in_an_earlier_filter_skips_the_hook_and_later_filters() -> None:
    calls: list[Prefix] = []

    def hook(
        family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> PathAttributes | None:
        calls.append(prefix)
        return None

    first = RuleSet("a", (Rule(Match(prefix=PrefixMatch(POOL)), Verdict.ACCEPT),))
    second = RuleSet("b", (Rule(Match(), Verdict.REJECT),))
    policy = Policy(filters=(first, second), hook=hook)
    assert policy.evaluate(IPV4_UNICAST, prefix_from_str("10.244.0.0/26"), ATTRS, IBGP) == ATTRS
    assert calls == []
    assert policy.evaluate(IPV4_UNICAST, prefix_from_str("10.9.0.0/26"), ATTRS, IBGP) is None
    # The second filter rejected before the hook ran (BIRD: reject ends the filter).
    assert calls == []


def test_hook_decides_when_no_rule_matches() -> None:
    def hook(
        family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> PathAttributes | None:
        return attrs if ctx.same_as else None

    policy = Policy(filters=(RuleSet("none", ()),), hook=hook)
    assert policy.evaluate(IPV4_UNICAST, b"\0", ATTRS, IBGP) == ATTRS
    assert policy.evaluate(IPV4_UNICAST, b"\0", ATTRS, EBGP) is None
    assert not policy.prefix_independent


def test_prepare_runs_before_rules() -> None:
    def normalise(
        family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> PathAttributes:
        return PathAttributes(local_pref=300)

    rules = RuleSet("p", (Rule(Match(local_pref=300), Verdict.ACCEPT, (SetLocalPref(512),)),))
    out = Policy(prepare=normalise, filters=(rules,)).evaluate(IPV4_UNICAST, b"\0", ATTRS, IBGP)
    assert out is not None and out.local_pref == 512


def test_community_and_large_community_match() -> None:
    attrs = PathAttributes(communities=(0xFDE80001,), large_communities=((1, 2, 3),))
    assert Match(communities=(0xFDE80001,)).matches(b"\0", attrs, IBGP)
    assert not Match(communities=(0xFDE80002,)).matches(b"\0", attrs, IBGP)
    assert Match(large_communities=((1, 2, 3),)).matches(b"\0", attrs, IBGP)
    assert not Match(large_communities=((1, 2, 4),)).matches(b"\0", attrs, IBGP)


def test_as_path_prefix_match() -> None:
    assert Match(as_path_prefix=(65001,)).matches(b"\0", ATTRS, IBGP)
    assert Match(as_path_prefix=(65001, 65002)).matches(b"\0", ATTRS, IBGP)
    assert not Match(as_path_prefix=(65002,)).matches(b"\0", ATTRS, IBGP)
    assert not Match(as_path_prefix=(65001, 65002, 3)).matches(b"\0", ATTRS, IBGP)


def test_local_pref_match() -> None:
    attrs = PathAttributes(local_pref=2147483135)
    assert Match(local_pref=2147483135).matches(b"\0", attrs, IBGP)
    assert not Match(local_pref=2147482623).matches(b"\0", attrs, IBGP)
    assert not Match(local_pref=2147483135).matches(b"\0", ATTRS, IBGP)  # no LOCAL_PREF
    assert Policy(filters=(RuleSet("lp", (Rule(Match(local_pref=1)),)),)).prefix_independent


def test_peer_type_source_and_interface_match() -> None:
    assert Match(same_as=True).matches(b"\0", ATTRS, IBGP)
    assert not Match(same_as=True).matches(b"\0", ATTRS, EBGP)
    assert Match(peer_kinds=frozenset({PeerKind.EBGP})).matches(b"\0", ATTRS, EBGP)
    assert Match(source=SourceKind.REMOTE_PEERS).matches(b"\0", ATTRS, IBGP)
    assert not Match(source=SourceKind.REMOTE_PEERS).matches(b"\0", ATTRS, EBGP)
    assert Match(interface="eth*").matches(b"\0", ATTRS, EBGP)
    assert not Match(interface="*.calico").matches(b"\0", ATTRS, EBGP)
    assert not Match(interface="eth*").matches(b"\0", ATTRS, IBGP)  # no interface known


def test_operations() -> None:
    rule_ops = (
        AddCommunity(7),
        AddCommunity(7),
        AddLargeCommunity((1, 2, 3)),
        PrependAsPath((64999, 64998)),
        SetLocalPref(250),
        SetMed(42),
    )
    rules = RuleSet("ops", (Rule(Match(), Verdict.ACCEPT, rule_ops),))
    out = Policy(filters=(rules,)).evaluate(IPV4_UNICAST, b"\0", ATTRS, IBGP)
    assert out is not None
    assert out.communities == (7,)
    assert out.large_communities == ((1, 2, 3),)
    assert out.as_path[0].asns == (64999, 64998, 65001, 65002)  # reads as listed
    assert (out.local_pref, out.med) == (250, 42)


def test_rule_sets_apply_only_to_their_families() -> None:
    rules = RuleSet("v6 only", (Rule(Match(), Verdict.REJECT),), frozenset({IPV6_UNICAST}))
    policy = Policy(filters=(rules,))
    assert policy.evaluate(IPV4_UNICAST, b"\0", ATTRS, IBGP) == ATTRS
    assert policy.evaluate(IPV6_UNICAST, b"\0", ATTRS, IBGP) is None


def test_prefix_independence_lets_the_speaker_cache() -> None:
    assert Policy().prefix_independent
    assert Policy(filters=(RuleSet("c", (Rule(Match(communities=(1,))),)),)).prefix_independent
    assert not Policy(
        filters=(RuleSet("p", (Rule(Match(prefix=PrefixMatch(POOL))),)),)
    ).prefix_independent


def test_external_peers_of_different_ases_share_one_export_evaluation_per_route() -> None:
    """Speaker rule 4 with ``PolicyContext`` holding nothing of the session but what policies
    read: three external peers in three ASes, one equal export policy, one evaluation of a
    route (four peers sending one table was three evaluations per change before)."""
    evaluated: Counter[bytes] = Counter()

    def counting(
        family: Family, prefix: bytes, attrs: PathAttributes, ctx: PolicyContext
    ) -> PathAttributes:
        evaluated[prefix] += 1
        return attrs

    speaker = Speaker(SpeakerConfig(router_id=1, local_as=64512))
    for index in range(1, 4):
        name, asn = f"tor{index}", 65000 + index
        address = ipaddress.IPv4Address(f"192.0.2.{index}")
        negotiated = Negotiated(local_as=64512, peer_as=asn, peer_id=index, external=True)
        speaker.set_policy(name, Policy(), Policy(hook=counting), 0.0)
        speaker.peer_up(name, PeerSettings(address=address, peer_as=asn), negotiated, 0.0)
    route = prefix_from_str("10.244.0.0/26")
    speaker.set_local_routes({IPV4_UNICAST: {route: PathAttributes(next_hop=b"")}}, 0.0)
    speaker.drain()
    assert evaluated == Counter({route: 1})
