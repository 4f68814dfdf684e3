"""Learned local routes in the speaker (``Speaker.set_learned_routes``): they enter and leave the
Loc-RIB, rank below BGP, and reach the export policy with their interface and gateway flag."""

from __future__ import annotations

import ipaddress

from bgpd.rib.policy import Match, Policy, PolicyContext, Rule, RuleSet, Verdict
from bgpd.rib.route import RouteSource
from bgpd.speaker import BestChanged, PeerSettings, Speaker, SpeakerConfig
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, PathAttributes, prefix_from_str

P = prefix_from_str("10.244.5.0/28")
Q = prefix_from_str("10.244.6.0/28")
ATTRS = PathAttributes(next_hop=bytes([10, 0, 0, 1]), local_pref=2147483647 - 1024)
SEEN: list[PolicyContext] = []


def source(ifname: str, gateway: bool = False) -> RouteSource:
    return RouteSource(
        f"kernel {ifname}", local=True, learned=True, interface=ifname, gateway=gateway
    )


def recording_hook(
    family: object, prefix: object, attrs: PathAttributes, ctx: PolicyContext
) -> PathAttributes:
    SEEN.append(ctx)
    return attrs


def test_learned_routes_come_and_go_and_carry_their_interface_to_export() -> None:
    speaker = Speaker(SpeakerConfig(router_id=1, local_as=64512), AttributeCache())
    negotiated = Negotiated(peer_as=64512, local_as=64512, peer_id=2, external=False)
    settings = PeerSettings(
        address=ipaddress.IPv4Address("10.0.0.2"), peer_as=64512, local_as=64512
    )
    speaker.peer_up("p", settings, negotiated, 0)
    blocked = RuleSet("f", (Rule(Match(interface="blk*"), Verdict.REJECT),))
    speaker.set_policy("p", Policy(), Policy(filters=(blocked,), hook=recording_hook), 0)
    speaker.drain()
    speaker.set_learned_routes(
        {IPV4_UNICAST: {P: (source("wl0"), ATTRS), Q: (source("blk0", True), ATTRS)}}, 1
    )
    changed = {o.prefix for o in speaker.drain() if isinstance(o, BestChanged)}
    assert changed == {P, Q}
    assert speaker.loc_rib(IPV4_UNICAST).best(P) is not None
    speaker.take("p", 100)
    assert [(c.interface, c.learned, c.gateway) for c in SEEN] == [("wl0", True, False)]
    speaker.set_learned_routes({IPV4_UNICAST: {P: (source("wl1"), ATTRS)}}, 2)
    changed = {o.prefix: o.best for o in speaker.drain() if isinstance(o, BestChanged)}
    assert changed[Q] is None and changed[P] is not None and changed[P].source.interface == "wl1"
    speaker.take("p", 100)
    assert list(speaker._peers["p"].learned_ctx) == [source("wl1")]  # wl0's is forgotten
