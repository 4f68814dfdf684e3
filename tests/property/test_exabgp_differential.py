"""Differential tests of the wire codec against exabgp 5.0.15 (issue 2, point 6).

Both directions: what we encode exabgp decodes to the same content, and what exabgp encodes we
decode to the same content. Content is compared in the one normalised form of
``exabgp_oracle`` (prefixes, path identifiers, next hops, every attribute value).

Rules:
1. Generated UPDATEs cover IPv4 NLRI and IPv6 MP_REACH_NLRI (global, and global + link-local next
   hops, RFC 2545 §3), withdrawals in both families, ORIGIN, AS_PATH (AS_SEQUENCE and AS_SET,
   4-octet ASNs), MED, LOCAL_PREF, COMMUNITIES, LARGE_COMMUNITY, EXTENDED_COMMUNITIES,
   ORIGINATOR_ID, CLUSTER_LIST, ATOMIC_AGGREGATE and AGGREGATOR, under 4-octet AS on/off and
   ADD-PATH on/off.
2. Content arrives unchanged under every variant. On a 2-octet-AS session 4-octet ASNs travel as
   AS_TRANS plus AS4_PATH / AS4_AGGREGATOR (RFC 6793 §4.2.2) and are reconstructed (§4.2.3); the
   "ignore AS4_PATH" rule of §4.2.3 applies only "when both" AGGREGATOR and AS4_AGGREGATOR are
   received, which an encoder never produces with an AGGREGATOR that is not AS_TRANS.
3. Where exabgp departs from the RFCs the case is excluded narrowly, with the RFC cited:
   - shutdown communications are kept to 128 octets: exabgp still applies RFC 8203's limit
     where RFC 9003 §2 allows 255, and turns CR/LF into spaces (its rendering, not the wire);
   - GRACEFUL_RESTART per-family flags are 0 or 0x80: exabgp keeps only the F bit (RFC 4724 §3
     reserves the others, so this loses nothing the RFC defines);
   - generated AS paths never hold two adjacent AS_SEQUENCE segments (a speaker sends one):
     exabgp joins all adjacent sequences when it reconstructs a path from AS4_PATH, which
     RFC 6793 §4.2.3 does not ask for (the joined path has the same meaning);
   - extended communities use the route-target and route-origin types (RFC 4360 §4): exabgp
     interprets FlowSpec types (RFC 8955 §7) and rejects values it cannot render.
4. Example counts stay modest (about 200 per test) so the suite stays fast.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from exabgp_oracle import (
    Content,
    Session,
    address_str,
    attributes_form,
    empty_content,
    exabgp_decode_content,
    exabgp_encode,
    exabgp_encode_notification,
    exabgp_encode_open,
    exabgp_end_of_rib,
    exabgp_end_of_rib_family,
    exabgp_is_keepalive,
    exabgp_keepalive,
    exabgp_notification_content,
    exabgp_open_content,
    merge_content,
    open_form,
    path_attributes,
    prefix_str,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgpd.wire.attributes import AttributeCache
from bgpd.wire.capabilities import (
    AddPath,
    Capability,
    EnhancedRouteRefresh,
    ExtendedMessage,
    FourOctetAs,
    GracefulRestart,
    Multiprotocol,
    RouteRefresh,
)
from bgpd.wire.codec import decode_message, encode_message
from bgpd.wire.constants import CeaseSubcode, ErrorCode, MessageType, SegmentType
from bgpd.wire.framer import Framer
from bgpd.wire.messages import (
    Announcement,
    Keepalive,
    Message,
    Notification,
    Open,
    Update,
    Withdrawal,
)
from bgpd.wire.negotiated import Negotiated, two_octet_as
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Family,
    prefix_from_str,
    prefix_to_str,
)
from bgpd.wire.update import encode_end_of_rib, encode_update, encode_updates, encode_withdrawals

pytestmark = pytest.mark.property

EXAMPLES = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FAMILIES = {"ipv4": IPV4_UNICAST, "ipv6": IPV6_UNICAST}
FAMILY_NAMES = {family: name for name, family in FAMILIES.items()}
LOCAL_AS = 64512
AsPathForm = tuple[tuple[int, tuple[int, ...]], ...]


# ---------------------------------------------------------------- our side of the content form


def our_negotiated(session: Session) -> Negotiated:
    both = frozenset({IPV4_UNICAST, IPV6_UNICAST})
    return Negotiated(
        asn4=session.asn4,
        families=both,
        add_path_rx=both if session.add_path else frozenset(),
        add_path_tx=both if session.add_path else frozenset(),
        external=False,
        local_as=LOCAL_AS,
        peer_as=LOCAL_AS,
    )


def _entries(family: Family, prefixes: list[bytes], ids: list[int] | None) -> list[Any]:
    name = FAMILY_NAMES[family]
    path_ids: list[int | None] = list(ids) if ids is not None else [None] * len(prefixes)
    return [
        (name, prefix_str(prefix_to_str(p, family)), i)
        for p, i in zip(prefixes, path_ids, strict=True)
    ]


def content_from_ours(update: Message) -> Content:
    """The content of one message our codec decoded."""
    assert isinstance(update, Update), f"decoded {type(update).__name__}"
    parts = []
    for w in update.withdrawn:
        part = empty_content()
        part["withdraw"] = _entries(w.family, w.prefixes, w.path_ids)
        parts.append(part)
    for a in update.announced:
        part = empty_content()
        hop = address_str(a.attributes.next_hop)
        part["announce"] = [e + (hop,) for e in _entries(a.family, a.prefixes, a.path_ids)]
        part["attributes"] = attributes_form(a.attributes)
        parts.append(part)
    out = merge_content(parts)
    if update.issues or update.treat_as_withdraw:
        out["our_issues"] = [(i.attr_code, i.action.name, i.reason) for i in update.issues]
    return out


def our_decode(wires: list[bytes], session: Session) -> list[Message]:
    """Our real receive path: one Framer, one AttributeCache, ``decode_message`` per message."""
    framer = Framer(4096)
    cache = AttributeCache()
    negotiated = our_negotiated(session)
    return [decode_message(t, body, negotiated, cache) for t, body in framer.feed(b"".join(wires))]


def our_decode_content(wires: list[bytes], session: Session) -> Content:
    return merge_content(content_from_ours(m) for m in our_decode(wires, session))


def _by_family(entries: list[Any], family: str) -> tuple[list[bytes], list[int] | None]:
    mine = [e for e in entries if e[0] == family]
    ids = [e[2] for e in mine]
    return [prefix_from_str(e[1]) for e in mine], (ids if mine and ids[0] is not None else None)


def our_update(content: Content) -> Update:
    """One ``Update`` carrying all of ``content`` (for ``encode_update``)."""
    withdrawn = []
    announced = []
    for name, family in FAMILIES.items():
        prefixes, ids = _by_family(content["withdraw"], name)
        if prefixes:
            withdrawn.append(Withdrawal(family, prefixes, ids))
        prefixes, ids = _by_family(content["announce"], name)
        if prefixes:
            hop = next(e[3] for e in content["announce"] if e[0] == name)
            attrs = path_attributes(content["attributes"], hop)
            announced.append(Announcement(family, attrs, prefixes, ids))
    return Update(withdrawn=tuple(withdrawn), announced=tuple(announced))


# ---------------------------------------------------------------- strategies

asns = st.one_of(st.integers(1, 0xFFFF), st.integers(0x10000, 0xFFFFFFFF))
ipv4_unicast = st.builds(
    lambda first, rest: str(ipaddress.IPv4Address((first << 24) | rest)),
    st.integers(1, 223),
    st.integers(0, 0xFFFFFF),
)
ipv6_global = st.builds(lambda value: str(ipaddress.IPv6Address(value)), st.integers(1, 2**128 - 1))
ipv6_link_local = st.builds(
    lambda value: str(ipaddress.IPv6Address((0xFE80 << 112) | value)), st.integers(1, 2**64 - 1)
)
ipv6_next_hop = st.one_of(
    ipv6_global, st.builds(lambda g, ll: f"{g} {ll}", ipv6_global, ipv6_link_local)
)


def networks(family: str) -> st.SearchStrategy[str]:
    """Prefixes of any length; host bits cleared (RFC 4271 §4.3 makes them irrelevant)."""
    bits = 32 if family == "ipv4" else 128
    network = ipaddress.IPv4Network if family == "ipv4" else ipaddress.IPv6Network
    return st.builds(
        lambda plen, value: str(network((value, plen), strict=False)),
        st.integers(0, bits),
        st.integers(0, 2**bits - 1),
    )


def sorted_unique(elements: st.SearchStrategy[Any], max_size: int) -> st.SearchStrategy[Any]:
    """Rule 2 of the oracle: community lists in ascending order, no duplicates."""
    return st.lists(elements, max_size=max_size, unique=True).map(lambda xs: tuple(sorted(xs)))


# RFC 4360 §4 route target (subtype 2) and route origin (subtype 3), in the 2-octet AS, IPv4
# address and 4-octet AS forms (types 0x00, 0x01, 0x02); rule 3 of this module.
extended_community = st.builds(
    lambda kind, subtype, value: (bytes((kind, subtype)) + value).hex(),
    st.sampled_from((0x00, 0x01, 0x02)),
    st.sampled_from((0x02, 0x03)),
    st.binary(min_size=6, max_size=6),
)


def _join_adjacent_sequences(path: list[tuple[int, tuple[int, ...]]]) -> AsPathForm:
    out: list[tuple[int, tuple[int, ...]]] = []
    for seg_type, members in path:
        if out and seg_type == out[-1][0] == SegmentType.AS_SEQUENCE:
            out[-1] = (seg_type, out[-1][1] + members)
        else:
            out.append((seg_type, members))
    return tuple(out)


# rule 3: canonical paths, no two adjacent AS_SEQUENCE segments
segments = st.lists(
    st.tuples(
        st.sampled_from((int(SegmentType.AS_SEQUENCE), int(SegmentType.AS_SET))),
        st.lists(asns, min_size=1, max_size=6).map(tuple),
    ),
    max_size=4,
).map(_join_adjacent_sequences)

attribute_forms = st.fixed_dictionaries(
    {
        "origin": st.integers(0, 2),
        "as_path": segments,
        "med": st.none() | st.integers(0, 0xFFFFFFFF),
        "local_pref": st.none() | st.integers(0, 0xFFFFFFFF),
        "atomic_aggregate": st.booleans(),
        "aggregator": st.none() | st.tuples(asns, ipv4_unicast),
        "communities": sorted_unique(st.integers(0, 0xFFFFFFFF), 6),
        "large_communities": sorted_unique(
            st.tuples(
                st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF)
            ),
            4,
        ),
        "extended_communities": sorted_unique(extended_community, 4),
        "originator_id": st.none() | ipv4_unicast,
        "cluster_list": st.lists(ipv4_unicast, max_size=4).map(tuple),
    }
)


@st.composite
def update_contents(draw: st.DrawFn, session: Session, max_prefixes: int = 16) -> Content:
    """An UPDATE's content that fits one 4096-octet message: announcements and withdrawals in
    both families (disjoint prefixes), path identifiers when ADD-PATH is on."""

    def path_id() -> int | None:
        return draw(st.integers(0, 0xFFFFFFFF)) if session.add_path else None

    content = empty_content()
    for family in ("ipv4", "ipv6"):
        prefixes = draw(st.lists(networks(family), max_size=max_prefixes * 2, unique=True))
        cut = draw(st.integers(0, len(prefixes)))
        hop = draw(ipv4_unicast if family == "ipv4" else ipv6_next_hop)
        content["announce"] += [(family, p, path_id(), hop) for p in prefixes[:cut]]
        content["withdraw"] += [(family, p, path_id()) for p in prefixes[cut:]]
    if content["announce"]:
        content["attributes"] = draw(attribute_forms)
    content["announce"].sort(key=repr)
    content["withdraw"].sort(key=repr)
    return content


@st.composite
def sessions_and_updates(draw: st.DrawFn) -> tuple[Session, Content]:
    session = Session(asn4=draw(st.booleans()), add_path=draw(st.booleans()))
    return session, draw(update_contents(session))


# ---------------------------------------------------------------- UPDATE, both directions


@EXAMPLES
@given(sessions_and_updates())
def test_our_update_decodes_the_same_in_exabgp(case: tuple[Session, Content]) -> None:
    session, content = case
    wire = encode_update(our_update(content), our_negotiated(session))
    assert exabgp_decode_content([wire], session) == content


@EXAMPLES
@given(sessions_and_updates())
def test_exabgp_update_decodes_the_same_in_ours(case: tuple[Session, Content]) -> None:
    session, content = case
    wires = exabgp_encode(content, session)
    expected = content
    if expected["attributes"] is not None and expected["attributes"]["local_pref"] is None:
        # exabgp supplies LOCAL_PREF 100 on an iBGP session when none is given
        # (Attributes.pack defaults; RFC 4271 §5.1.5 makes it mandatory on iBGP)
        expected = {**expected, "attributes": {**expected["attributes"], "local_pref": 100}}
    assert our_decode_content(wires, session) == expected


@st.composite
def packed_runs(draw: st.DrawFn) -> tuple[Session, str, Content]:
    """Many prefixes of one family and one attribute set, as a table dump sends them."""
    session = Session(asn4=draw(st.booleans()), add_path=draw(st.booleans()))
    family = draw(st.sampled_from(("ipv4", "ipv6")))
    count = draw(st.integers(1, 700))
    plen = draw(st.integers(10, 32) if family == "ipv4" else st.integers(16, 64))
    bits = 32 if family == "ipv4" else 128
    start = draw(st.integers(0, (1 << plen) - count - 1))
    network = ipaddress.IPv4Network if family == "ipv4" else ipaddress.IPv6Network
    prefixes = [str(network(((start + i) << (bits - plen), plen))) for i in range(count)]
    first_id = draw(st.integers(0, 0xFFFF))
    ids: list[int | None] = (
        [first_id + i for i in range(count)] if session.add_path else [None] * count
    )
    content = empty_content()
    if draw(st.booleans()):
        hop = draw(ipv4_unicast if family == "ipv4" else ipv6_next_hop)
        content["announce"] = [(family, p, i, hop) for p, i in zip(prefixes, ids, strict=True)]
        content["attributes"] = draw(attribute_forms)
    else:
        content["withdraw"] = [(family, p, i) for p, i in zip(prefixes, ids, strict=True)]
    content["announce"].sort(key=repr)
    content["withdraw"].sort(key=repr)
    return session, family, content


@settings(EXAMPLES, max_examples=60)
@given(packed_runs())
def test_our_packed_updates_decode_the_same_in_exabgp(case: tuple[Session, str, Content]) -> None:
    session, name, content = case
    family = FAMILIES[name]
    negotiated = our_negotiated(session)
    if content["announce"]:
        prefixes, ids = _by_family(content["announce"], name)
        attrs = path_attributes(content["attributes"], content["announce"][0][3])
        wires = encode_updates(family, attrs, prefixes, negotiated, ids)
    else:
        prefixes, ids = _by_family(content["withdraw"], name)
        wires = encode_withdrawals(family, prefixes, negotiated, ids)
    assert all(len(w) <= 4096 for w in wires)
    assert exabgp_decode_content(wires, session) == content


@pytest.mark.parametrize("family", [IPV4_UNICAST, IPV6_UNICAST], ids=str)
def test_end_of_rib_both_ways(family: Family) -> None:
    """RFC 4724 §2: exabgp reads our End-of-RIB as its EOR, and we read exabgp's as ours."""
    name = FAMILY_NAMES[family]
    assert exabgp_end_of_rib_family(encode_end_of_rib(family)) == name
    (ours,) = our_decode([exabgp_end_of_rib(name)], Session(asn4=True, add_path=False))
    assert isinstance(ours, Update) and ours.end_of_rib == family


# ---------------------------------------------------------------- OPEN, both directions

MP_FAMILIES = [Family(1, 1), Family(2, 1), Family(1, 2), Family(2, 2)]


def our_open_content(message: Message) -> Content:
    assert isinstance(message, Open), f"decoded {type(message).__name__}"
    forms: list[tuple[Any, ...]] = []
    for cap in message.capabilities:
        if isinstance(cap, Multiprotocol):
            forms.append(("multiprotocol", cap.family.afi, cap.family.safi))
        elif isinstance(cap, FourOctetAs):
            forms.append(("four-octet-as", cap.asn))
        elif isinstance(cap, RouteRefresh):
            forms.append(("route-refresh",))
        elif isinstance(cap, EnhancedRouteRefresh):
            forms.append(("enhanced-route-refresh",))
        elif isinstance(cap, ExtendedMessage):
            forms.append(("extended-message",))
        elif isinstance(cap, GracefulRestart):
            entries = tuple((f.afi, f.safi, flags) for f, flags in cap.families)
            forms.append(("graceful-restart", cap.restart_flags, cap.restart_time, entries))
        elif isinstance(cap, AddPath):
            forms.append(("add-path", tuple((f.afi, f.safi, m) for f, m in cap.entries)))
        else:
            forms.append(("unexpected", cap))
    return open_form(message.version, message.my_as, message.hold_time, message.bgp_id, forms)


@st.composite
def opens(draw: st.DrawFn) -> Open:
    """OPENs with at most one capability of each kind (exabgp keys capabilities by code) and
    one Multiprotocol capability per family."""
    asn = draw(asns)
    four_octet = asn > 0xFFFF or draw(st.booleans())
    caps: list[Capability] = [
        Multiprotocol(f) for f in draw(st.lists(st.sampled_from(MP_FAMILIES), unique=True))
    ]
    if four_octet:
        caps.append(FourOctetAs(asn))
    for kind in (RouteRefresh, EnhancedRouteRefresh, ExtendedMessage):
        if draw(st.booleans()):
            caps.append(kind())
    if draw(st.booleans()):
        gr_families = draw(st.lists(st.sampled_from(MP_FAMILIES), unique=True))
        # rule 3: per-family flags 0 or F (0x80), the only bit RFC 4724 §3 defines
        flags = [draw(st.sampled_from((0, 0x80))) for _ in gr_families]
        caps.append(
            GracefulRestart(
                draw(st.integers(0, 15)),
                draw(st.integers(0, 4095)),
                tuple(zip(gr_families, flags, strict=True)),
            )
        )
    if draw(st.booleans()):
        ap_families = draw(st.lists(st.sampled_from(MP_FAMILIES), min_size=1, unique=True))
        modes = [draw(st.integers(1, 3)) for _ in ap_families]
        caps.append(AddPath(tuple(zip(ap_families, modes, strict=True))))
    caps = draw(st.permutations(caps))
    return Open(
        my_as=two_octet_as(asn),
        hold_time=draw(st.sampled_from((0,)) | st.integers(3, 0xFFFF)),
        bgp_id=draw(st.integers(1, 0xFFFFFFFF)),
        capabilities=tuple(caps),
    )


@EXAMPLES
@given(opens())
def test_our_open_decodes_the_same_in_exabgp(message: Open) -> None:
    assert exabgp_open_content(encode_message(message)) == our_open_content(message)


@EXAMPLES
@given(opens())
def test_exabgp_open_decodes_the_same_in_ours(message: Open) -> None:
    content = our_open_content(message)
    (decoded,) = our_decode([exabgp_encode_open(content)], Session(asn4=True, add_path=False))
    assert our_open_content(decoded) == content


# ---------------------------------------------------------------- NOTIFICATION, KEEPALIVE

SHUTDOWN_SUBCODES = (CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, CeaseSubcode.ADMINISTRATIVE_RESET)
# rule 3: no CR/LF (exabgp renders them as spaces), at most 128 octets (RFC 8203's limit)
shutdown_texts = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40
).filter(lambda t: len(t.encode()) <= 128)


@st.composite
def notifications(draw: st.DrawFn) -> Notification:
    code = draw(st.integers(1, 7))
    subcode = draw(st.integers(0, 12))
    if code == ErrorCode.CEASE and subcode in SHUTDOWN_SUBCODES:
        return Notification.shutdown(subcode, draw(shutdown_texts))
    return Notification(code, subcode, draw(st.binary(max_size=64)))


def notification_form(message: Notification) -> Content:
    shutdown = message.shutdown_message
    return {
        "code": message.code,
        "subcode": message.subcode,
        "data": b"" if shutdown is not None else message.data,
        "shutdown": shutdown or None,
    }


@EXAMPLES
@given(notifications())
def test_our_notification_decodes_the_same_in_exabgp(message: Notification) -> None:
    got = exabgp_notification_content(encode_message(message))
    if got["shutdown"] == "":
        got["shutdown"] = None
    assert got == notification_form(message)


@EXAMPLES
@given(notifications())
def test_exabgp_notification_decodes_the_same_in_ours(message: Notification) -> None:
    shutdown = message.shutdown_message
    if shutdown:
        if not shutdown.isascii():
            shutdown = shutdown.encode("ascii", "replace").decode()  # exabgp's Notify is ASCII
        wire = exabgp_encode_notification(message.code, message.subcode, shutdown)
        expected = Notification.shutdown(message.subcode, shutdown)
    else:
        wire = exabgp_encode_notification(message.code, message.subcode, message.data)
        expected = message
    (decoded,) = our_decode([wire], Session(asn4=True, add_path=False))
    assert decoded == expected
    assert isinstance(decoded, Notification) and decoded.shutdown_message == (
        expected.shutdown_message
    )


def test_keepalive_both_ways() -> None:
    ours = encode_message(Keepalive())
    assert ours == exabgp_keepalive()
    assert exabgp_is_keepalive(ours)
    (decoded,) = our_decode([exabgp_keepalive()], Session(asn4=True, add_path=False))
    assert decoded == Keepalive()
    assert MessageType.KEEPALIVE == ours[18]
