"""Hypothesis strategies for BGP messages under every negotiated variant (shared by tests)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from hypothesis import strategies as st

from bgpd.wire.capabilities import (
    AddPath,
    Capability,
    EnhancedRouteRefresh,
    ExtendedMessage,
    ExtendedNextHop,
    FourOctetAs,
    Fqdn,
    GracefulRestart,
    LongLivedGracefulRestart,
    Multiprotocol,
    UnknownCapability,
)
from bgpd.wire.capabilities import (
    RouteRefresh as RouteRefreshCapability,
)
from bgpd.wire.constants import CeaseSubcode
from bgpd.wire.messages import (
    Announcement,
    Keepalive,
    Notification,
    Open,
    RouteRefresh,
    Update,
    Withdrawal,
)
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    Family,
    PathAttributes,
    Prefix,
    UnknownAttribute,
    prefix_from_network,
)

families = st.sampled_from([IPV4_UNICAST, IPV6_UNICAST])


def prefixes(family: Family) -> st.SearchStrategy[Prefix]:
    bits = family.max_prefix_len
    return st.tuples(st.integers(0, (1 << bits) - 1), st.integers(0, bits)).map(
        lambda t: prefix_from_network(
            ipaddress.ip_network((t[0] >> (bits - t[1]) << (bits - t[1]), t[1]))
            if bits == 32
            else ipaddress.IPv6Network((t[0] >> (bits - t[1]) << (bits - t[1]), t[1]))
        )
    )


unicast_v4 = st.tuples(st.integers(1, 223), st.binary(min_size=3, max_size=3)).map(
    lambda t: bytes((t[0],)) + t[1]
)
next_hop_v6 = st.one_of(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32))


@st.composite
def negotiated(draw: st.DrawFn) -> Negotiated:
    """A sender's context. ADD-PATH receive and send are drawn per family independently
    (RFC 7911 §4); decode what it encodes with ``mirrored``."""
    return Negotiated(
        asn4=draw(st.booleans()),
        families=frozenset({IPV4_UNICAST, IPV6_UNICAST}),
        add_path_rx=draw(st.frozensets(families)),
        add_path_tx=draw(st.frozensets(families)),
        extended_message=draw(st.booleans()),
        extended_next_hop=draw(st.frozensets(st.just(IPV4_UNICAST))),
        enhanced_route_refresh=draw(st.booleans()),
    )


def mirrored(neg: Negotiated) -> Negotiated:
    """The receiving end of ``neg``: it receives paths where ``neg`` sends them and back."""
    return replace(neg, add_path_rx=neg.add_path_tx, add_path_tx=neg.add_path_rx)


@st.composite
def as_paths(draw: st.DrawFn, asn4: bool) -> tuple[AsPathSegment, ...]:
    max_asn = 0xFFFFFFFF
    segments = []
    if asn4:
        types = st.sampled_from([1, 2, 3, 4])
    else:
        # On 2-octet sessions AS4_PATH carries no confederation segments (RFC 6793 §6), so a
        # round trip only holds for paths without them.
        types = st.sampled_from([1, 2])
    for _ in range(draw(st.integers(0, 4))):
        seg_type = draw(types)
        asns = tuple(draw(st.lists(st.integers(1, max_asn), min_size=1, max_size=8)))
        if segments and segments[-1].type == seg_type == 2:
            continue  # adjacent sequences are one sequence after AS4 reconstruction
        segments.append(AsPathSegment(seg_type, asns))
    return tuple(segments)


@st.composite
def path_attributes(draw: st.DrawFn, asn4: bool = True) -> PathAttributes:
    as_path = draw(as_paths(asn4))
    aggregator = draw(
        st.none() | st.tuples(st.integers(1, 0xFFFFFFFF), st.binary(min_size=4, max_size=4))
    )
    wide = any(a > 0xFFFF for seg in as_path for a in seg.asns)
    if not asn4 and aggregator is not None and wide and aggregator[0] <= 0xFFFF:
        # RFC 6793 §4.2.3: a 2-octet AGGREGATOR (not AS_TRANS) makes the receiver ignore AS4_PATH.
        aggregator = (0x10000 + aggregator[0], aggregator[1])
    if not asn4 and aggregator is not None and aggregator[0] == 23456:
        aggregator = (23457, aggregator[1])
    return PathAttributes(
        origin=draw(st.integers(0, 2)),
        as_path=as_path,
        next_hop=draw(unicast_v4),
        med=draw(st.none() | st.integers(0, 0xFFFFFFFF)),
        local_pref=draw(st.none() | st.integers(0, 0xFFFFFFFF)),
        atomic_aggregate=draw(st.booleans()),
        aggregator=aggregator,
        communities=tuple(draw(st.lists(st.integers(0, 0xFFFFFFFF), max_size=6))),
        originator_id=draw(st.none() | st.binary(min_size=4, max_size=4)),
        cluster_list=tuple(draw(st.lists(st.binary(min_size=4, max_size=4), max_size=4))),
        extended_communities=tuple(draw(st.lists(st.binary(min_size=8, max_size=8), max_size=3))),
        large_communities=tuple(
            draw(st.lists(st.tuples(*[st.integers(0, 0xFFFFFFFF)] * 3), max_size=3))
        ),
        unknown=tuple(
            UnknownAttribute(0xE0, code, value)
            for code, value in sorted(
                draw(
                    st.dictionaries(st.integers(100, 250), st.binary(max_size=20), max_size=2)
                ).items()
            )
        ),
    )


def _ids(draw: st.DrawFn, family: Family, neg: Negotiated, n: int) -> list[int] | None:
    if family not in neg.add_path_tx:
        return None
    return draw(st.lists(st.integers(0, 0xFFFFFFFF), min_size=n, max_size=n))


@st.composite
def updates(draw: st.DrawFn, neg: Negotiated) -> Update:
    """A canonical Update: what decode(encode(u)) must give back unchanged."""
    withdrawn: list[Withdrawal] = []
    announced: list[Announcement] = []
    v4_withdrawn = draw(st.lists(prefixes(IPV4_UNICAST), max_size=20))
    v6_withdrawn = draw(st.lists(prefixes(IPV6_UNICAST), max_size=10))
    if v4_withdrawn:
        withdrawn.append(
            Withdrawal(IPV4_UNICAST, v4_withdrawn, _ids(draw, IPV4_UNICAST, neg, len(v4_withdrawn)))
        )
    if v6_withdrawn:
        withdrawn.append(
            Withdrawal(IPV6_UNICAST, v6_withdrawn, _ids(draw, IPV6_UNICAST, neg, len(v6_withdrawn)))
        )
    attrs = draw(path_attributes(neg.asn4))
    v4 = draw(st.lists(prefixes(IPV4_UNICAST), max_size=20))
    # RFC 8950: with extended next hop negotiated, IPv4 NLRI may ride in MP_REACH_NLRI with an
    # IPv6 next hop; that MP_REACH_NLRI is then the UPDATE's only one (RFC 7606 §3 (g)).
    v4_in_mp = bool(v4) and IPV4_UNICAST in neg.extended_next_hop and draw(st.booleans())
    v6 = [] if v4_in_mp else draw(st.lists(prefixes(IPV6_UNICAST), max_size=10))
    base: PathAttributes | None = None
    if v4:
        v4_attrs = replace(attrs, next_hop=draw(next_hop_v6)) if v4_in_mp else attrs
        announced.append(
            Announcement(IPV4_UNICAST, v4_attrs, v4, _ids(draw, IPV4_UNICAST, neg, len(v4)))
        )
        base = replace(attrs, next_hop=b"") if v4_in_mp else attrs
    if v6:
        v6_attrs = replace(attrs, next_hop=draw(next_hop_v6))
        announced.append(
            Announcement(IPV6_UNICAST, v6_attrs, v6, _ids(draw, IPV6_UNICAST, neg, len(v6)))
        )
        base = base or replace(attrs, next_hop=b"")
    if not withdrawn and not announced:
        return Update(end_of_rib=draw(families), withdrawn=())
    return Update(withdrawn=tuple(withdrawn), announced=tuple(announced), attributes=base)


capabilities = st.one_of(
    families.map(Multiprotocol),
    st.just(RouteRefreshCapability()),
    st.just(EnhancedRouteRefresh()),
    st.just(ExtendedMessage()),
    st.lists(st.tuples(families, st.sampled_from([1, 2])), max_size=3).map(
        lambda e: ExtendedNextHop(tuple(e))
    ),
    st.builds(
        GracefulRestart,
        st.integers(0, 15),
        st.integers(0, 4095),
        st.lists(st.tuples(families, st.sampled_from([0, 0x80])), max_size=2).map(tuple),
    ),
    st.integers(0, 0xFFFFFFFF).map(FourOctetAs),
    st.lists(st.tuples(families, st.sampled_from([1, 2, 3])), max_size=2).map(
        lambda e: AddPath(tuple(e))
    ),
    st.lists(st.tuples(families, st.integers(0, 255), st.integers(0, 0xFFFFFF)), max_size=2).map(
        lambda e: LongLivedGracefulRestart(tuple(e))
    ),
    st.builds(
        Fqdn,
        st.text("abcdefghijklmnopqrstuvwxyz-0123456789", max_size=30),
        st.text("abc.", max_size=10),
    ),
    st.builds(UnknownCapability, st.integers(128, 255), st.binary(max_size=20)),
)


def _opens(caps: st.SearchStrategy[tuple[Capability, ...]]) -> st.SearchStrategy[Open]:
    return st.builds(
        Open,
        my_as=st.integers(0, 0xFFFF),
        hold_time=st.sampled_from([0, 3, 9, 90, 240, 65535]),
        bgp_id=st.integers(1, 0xFFFFFFFF),
        capabilities=caps,
    )


opens = _opens(st.lists(capabilities, max_size=12).map(tuple))
# Optional parameters beyond 255 octets need RFC 9072 extended optional parameters: two opaque
# capabilities of at least 130 octets guarantee it (at most 4096 octets in all, RFC 8654 §3).
large_capabilities = st.builds(
    UnknownCapability, st.integers(128, 255), st.binary(min_size=130, max_size=255)
)
large_opens = _opens(
    st.tuples(
        st.lists(st.one_of(capabilities, large_capabilities), max_size=8),
        st.lists(large_capabilities, min_size=2, max_size=4),
    )
    .flatmap(lambda parts: st.permutations(parts[0] + parts[1]))
    .map(tuple)
)

notifications = st.one_of(
    st.builds(Notification, st.integers(1, 7), st.integers(0, 11), st.binary(max_size=40)),
    st.builds(
        Notification.shutdown,
        st.sampled_from([CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, CeaseSubcode.ADMINISTRATIVE_RESET]),
        st.text(min_size=1, max_size=80),
    ),
)
route_refreshes = st.builds(RouteRefresh, families, st.integers(0, 2))
keepalives = st.just(Keepalive())
