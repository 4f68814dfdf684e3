"""exabgp 5.0.15 as a test oracle for the wire codec, and the one normalised content form both
sides are compared in.

exabgp's codec is undocumented internal API with traps (deps-eval.md §1a); this module is the
only place that knows them, so the differential tests read as plain comparisons.

Rules:
1. The content form of UPDATEs is a dict: ``announce`` (sorted ``(family, prefix, path_id,
   next_hop)``), ``withdraw`` (sorted ``(family, prefix, path_id)``) and ``attributes`` (a dict of
   every attribute but NEXT_HOP, or None when nothing is announced). Families are ``ipv4`` /
   ``ipv6``, addresses and prefixes are ``ipaddress`` strings, a global + link-local next hop is
   the two addresses joined by a space. Content split over several UPDATEs is merged.
   ``attributes_form`` / ``path_attributes`` map our ``PathAttributes`` to and from the form.
2. Communities, large and extended communities keep their wire order in the form. exabgp sorts
   them when it decodes (``Communities.add``); callers generate them sorted (RFC 1997 and
   RFC 8092 give the order no meaning).
3. exabgp represents an empty AS_PATH by leaving the attribute out (``ASPath.unpack`` returns
   None for a zero-length value): an absent AS_PATH on exabgp's side reads as ``()``.
4. exabgp decodes an MP_REACH_NLRI with a 32-octet next hop (RFC 2545 §3: global + link-local)
   into each NLRI twice, once per address; the copies are merged back into one next hop.
5. Sessions are iBGP (local AS = peer AS = 64512), so LOCAL_PREF is carried (RFC 4271 §5.1.5);
   exabgp's encoder supplies LOCAL_PREF 100 when none is given (``Attributes.pack`` defaults).
   Extended messages are off (4096-octet UPDATEs, RFC 8654).
6. exabgp's trap list (deps-eval.md §1a): ``log.init`` before any decode; a ``Negotiated`` needs
   a ``Neighbor`` and two ``Open`` messages; ``extended-message`` defaults on; NEXT_HOP goes both
   into the attributes and onto each IPv4 NLRI; the 19-octet header is split off by hand.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from exabgp.bgp.message import KeepAlive, Message, Open, Update
from exabgp.bgp.message.action import Action
from exabgp.bgp.message.direction import Direction
from exabgp.bgp.message.notification import Notification, Notify
from exabgp.bgp.message.open import ASN, HoldTime, RouterID, Version
from exabgp.bgp.message.open.capability import Capabilities, Capability, Negotiated
from exabgp.bgp.message.open.capability.addpath import AddPath as ExaAddPath
from exabgp.bgp.message.open.capability.asn4 import ASN4
from exabgp.bgp.message.open.capability.extended import ExtendedMessage as ExaExtendedMessage
from exabgp.bgp.message.open.capability.graceful import Graceful
from exabgp.bgp.message.open.capability.mp import MultiProtocol
from exabgp.bgp.message.open.capability.refresh import EnhancedRouteRefresh as ExaEnhancedRefresh
from exabgp.bgp.message.open.capability.refresh import RouteRefresh as ExaRouteRefresh
from exabgp.bgp.message.update.attribute import Attributes
from exabgp.bgp.message.update.attribute.aggregator import Aggregator
from exabgp.bgp.message.update.attribute.aspath import SEQUENCE, SET, ASPath
from exabgp.bgp.message.update.attribute.atomicaggregate import AtomicAggregate
from exabgp.bgp.message.update.attribute.clusterlist import ClusterID, ClusterList
from exabgp.bgp.message.update.attribute.community.extended import (
    ExtendedCommunities,
    ExtendedCommunity,
)
from exabgp.bgp.message.update.attribute.community.initial.communities import Communities
from exabgp.bgp.message.update.attribute.community.initial.community import Community
from exabgp.bgp.message.update.attribute.community.large.communities import LargeCommunities
from exabgp.bgp.message.update.attribute.community.large.community import LargeCommunity
from exabgp.bgp.message.update.attribute.localpref import LocalPreference
from exabgp.bgp.message.update.attribute.med import MED
from exabgp.bgp.message.update.attribute.nexthop import NextHop
from exabgp.bgp.message.update.attribute.origin import Origin
from exabgp.bgp.message.update.attribute.originatorid import OriginatorID
from exabgp.bgp.message.update.eor import EOR
from exabgp.bgp.message.update.nlri import INET
from exabgp.bgp.message.update.nlri.cidr import CIDR
from exabgp.bgp.message.update.nlri.qualifier import PathInfo
from exabgp.bgp.neighbor import Neighbor
from exabgp.environment import getenv
from exabgp.logger import log
from exabgp.protocol.family import AFI, SAFI
from exabgp.protocol.ip import IP, IPv4

from bgpd.wire.constants import AttrType, SegmentType
from bgpd.wire.types import AsPathSegment, PathAttributes

log.init(getenv())
log.silence()

LOCAL_AS = 64512
FAMILY_NAMES = {(1, 1): "ipv4", (2, 1): "ipv6"}
FAMILY_CODES = {name: code for code, name in FAMILY_NAMES.items()}
EXA_FAMILIES = {"ipv4": (AFI.ipv4, SAFI.unicast), "ipv6": (AFI.ipv6, SAFI.unicast)}

Content = dict[str, Any]
AnnounceEntry = tuple[str, str, int | None, str]
WithdrawEntry = tuple[str, str, int | None]


@dataclass(frozen=True)
class Session:
    """The negotiated variant both codecs work in: 4-octet AS on/off, ADD-PATH on/off (both
    directions, both families); always IPv4 and IPv6 unicast, iBGP, no extended message."""

    asn4: bool
    add_path: bool


# ---------------------------------------------------------------- addresses and prefixes


def address_str(packed: bytes) -> str:
    """4 or 16 octets as an address; 32 octets (global + link-local) as two, space-separated."""
    if len(packed) == 32:
        return f"{ipaddress.IPv6Address(packed[:16])} {ipaddress.IPv6Address(packed[16:])}"
    return str(ipaddress.ip_address(packed))


def address_bytes(text: str) -> bytes:
    return b"".join(ipaddress.ip_address(part).packed for part in text.split())


def prefix_str(text: str) -> str:
    return str(ipaddress.ip_network(text, strict=False))


# ---------------------------------------------------------------- the content form


def empty_content() -> Content:
    return {"announce": [], "withdraw": [], "attributes": None}


def attributes_form(attrs: PathAttributes) -> dict[str, Any]:
    """Our ``PathAttributes`` in the content form: every attribute but the next hop."""
    return {
        "origin": attrs.origin,
        "as_path": tuple((seg.type, seg.asns) for seg in attrs.as_path),
        "med": attrs.med,
        "local_pref": attrs.local_pref,
        "atomic_aggregate": attrs.atomic_aggregate,
        "aggregator": None
        if attrs.aggregator is None
        else (attrs.aggregator[0], address_str(attrs.aggregator[1])),
        "communities": attrs.communities,
        "large_communities": attrs.large_communities,
        "extended_communities": tuple(c.hex() for c in attrs.extended_communities),
        "originator_id": None if attrs.originator_id is None else address_str(attrs.originator_id),
        "cluster_list": tuple(address_str(c) for c in attrs.cluster_list),
    }


def path_attributes(form: dict[str, Any], next_hop: str) -> PathAttributes:
    """The ``PathAttributes`` of a content-form attribute dict and a next hop."""
    aggregator = form["aggregator"]
    return PathAttributes(
        origin=form["origin"],
        as_path=tuple(AsPathSegment(t, tuple(asns)) for t, asns in form["as_path"]),
        next_hop=address_bytes(next_hop),
        med=form["med"],
        local_pref=form["local_pref"],
        atomic_aggregate=form["atomic_aggregate"],
        aggregator=None if aggregator is None else (aggregator[0], address_bytes(aggregator[1])),
        communities=tuple(form["communities"]),
        originator_id=None
        if form["originator_id"] is None
        else address_bytes(form["originator_id"]),
        cluster_list=tuple(address_bytes(c) for c in form["cluster_list"]),
        extended_communities=tuple(bytes.fromhex(c) for c in form["extended_communities"]),
        large_communities=tuple(form["large_communities"]),
    )


def merge_content(parts: Iterable[Content]) -> Content:
    """One content from the contents of several UPDATEs (rule 1). Announcing messages must
    agree on their attributes; a disagreement is kept visible under ``attributes_conflict``."""
    out = empty_content()
    conflicts: list[Any] = []
    for part in parts:
        out["announce"].extend(part["announce"])
        out["withdraw"].extend(part["withdraw"])
        if part["attributes"] is not None:
            if out["attributes"] is None:
                out["attributes"] = part["attributes"]
            elif out["attributes"] != part["attributes"]:
                conflicts.append(part["attributes"])
        for key in part.keys() - out.keys():
            out.setdefault(key, []).extend(part[key])
    out["announce"].sort(key=repr)
    out["withdraw"].sort(key=repr)
    if conflicts:
        out["attributes_conflict"] = conflicts
    return out


# ---------------------------------------------------------------- exabgp sessions


def _neighbor(session: Session) -> Any:
    neighbor = Neighbor()
    neighbor["router-id"] = RouterID("10.0.0.1")
    neighbor["local-as"] = ASN(LOCAL_AS)
    neighbor["peer-as"] = ASN(LOCAL_AS)
    neighbor["local-address"] = IPv4("10.0.0.1")
    neighbor["peer-address"] = IPv4("10.0.0.2")
    neighbor["hold-time"] = HoldTime(90)
    neighbor.add_family((AFI.ipv4, SAFI.unicast))
    neighbor.add_family((AFI.ipv6, SAFI.unicast))
    neighbor["capability"]["extended-message"] = False
    neighbor["capability"]["asn4"] = session.asn4
    if session.add_path:
        neighbor["capability"]["add-path"] = 3  # send/receive (RFC 7911 §4)
        neighbor.add_addpath((AFI.ipv4, SAFI.unicast))
        neighbor.add_addpath((AFI.ipv6, SAFI.unicast))
    return neighbor


@cache
def exabgp_negotiated(session: Session) -> Any:
    """exabgp's ``Negotiated`` for ``session`` (trap 2: a Neighbor and two OPENs)."""
    neighbor = _neighbor(session)
    capabilities = Capabilities().new(neighbor, False)
    negotiated = Negotiated(neighbor)
    negotiated.sent(
        Open(Version(4), ASN(LOCAL_AS), HoldTime(90), RouterID("10.0.0.1"), capabilities)
    )
    negotiated.received(
        Open(Version(4), ASN(LOCAL_AS), HoldTime(90), RouterID("10.0.0.2"), capabilities)
    )
    assert negotiated.asn4 == session.asn4
    assert negotiated.msg_size == 4096
    assert negotiated.addpath.send(AFI.ipv6, SAFI.unicast) == session.add_path
    return negotiated


def exabgp_decode(wire: bytes, session: Session) -> Any:
    """One whole message (header included) through ``Message.unpack`` (trap 6)."""
    (length,) = struct.unpack_from("!H", wire, 16)
    assert length == len(wire), f"message length field {length}, {len(wire)} octets"
    return Message.unpack(wire[18], wire[19:], Direction.IN, exabgp_negotiated(session))


def exabgp_messages(stream: bytes, session: Session) -> Iterator[Any]:
    """Every message of a byte stream, decoded by exabgp (header split by hand, trap 6)."""
    negotiated = exabgp_negotiated(session)
    unpack = Message.unpack
    view = memoryview(stream)
    offset, end = 0, len(stream)
    while offset < end:
        length = (stream[offset + 16] << 8) | stream[offset + 17]
        yield unpack(
            stream[offset + 18],
            bytes(view[offset + 19 : offset + length]),
            Direction.IN,
            negotiated,
        )
        offset += length


def exabgp_forget(session: Session) -> None:
    """Drop the attribute set exabgp cached on the session (``Attributes.unpack`` keeps the last
    one), so a timed run starts cold."""
    negotiated = exabgp_negotiated(session)
    negotiated.cached_wire = b""
    negotiated.cached_attributes = None


# ---------------------------------------------------------------- UPDATE: exabgp -> content


def _segment_type(segment: Any) -> int:
    return SegmentType.AS_SET if isinstance(segment, SET) else SegmentType.AS_SEQUENCE


def _exabgp_attributes(attributes: Any) -> tuple[dict[str, Any], list[Any]]:
    """exabgp's decoded attributes in the content form, and anything it did not understand."""
    form: dict[str, Any] = {
        "origin": None,
        "as_path": (),  # rule 3
        "med": None,
        "local_pref": None,
        "atomic_aggregate": False,
        "aggregator": None,
        "communities": (),
        "large_communities": (),
        "extended_communities": (),
        "originator_id": None,
        "cluster_list": (),
    }
    unexpected: list[Any] = []
    for code, attribute in attributes.items():
        if code == AttrType.ORIGIN:
            form["origin"] = attribute.origin
        elif code == AttrType.AS_PATH:
            form["as_path"] = tuple(
                (_segment_type(seg), tuple(int(asn) for asn in seg)) for seg in attribute.aspath
            )
        elif code == AttrType.NEXT_HOP:
            continue  # carried by each IPv4 NLRI
        elif code == AttrType.MULTI_EXIT_DISC:
            form["med"] = attribute.med
        elif code == AttrType.LOCAL_PREF:
            form["local_pref"] = attribute.localpref
        elif code == AttrType.ATOMIC_AGGREGATE:
            form["atomic_aggregate"] = True
        elif code in (AttrType.AGGREGATOR, AttrType.AS4_AGGREGATOR):
            # RFC 6793 §4.2.3: exabgp keeps the AS4_AGGREGATOR and drops an AS_TRANS AGGREGATOR.
            form["aggregator"] = (int(attribute.asn), str(attribute.speaker))
        elif code == AttrType.COMMUNITIES:
            form["communities"] = tuple(
                int.from_bytes(c.community, "big") for c in attribute.communities
            )
        elif code == AttrType.LARGE_COMMUNITY:
            form["large_communities"] = tuple(
                struct.unpack("!III", c.large_community) for c in attribute.communities
            )
        elif code == AttrType.EXTENDED_COMMUNITIES:
            form["extended_communities"] = tuple(
                bytes(c.community).hex() for c in attribute.communities
            )
        elif code == AttrType.ORIGINATOR_ID:
            form["originator_id"] = str(attribute)
        elif code == AttrType.CLUSTER_LIST:
            form["cluster_list"] = tuple(str(c) for c in attribute.clusters)
        else:
            unexpected.append((int(code), repr(attribute)))
    return form, unexpected


def content_from_exabgp(message: Any) -> Content:
    """The content of one message exabgp decoded (an ``Update`` or an ``EOR``)."""
    out = empty_content()
    if isinstance(message, EOR):
        return out
    assert isinstance(message, Update), f"exabgp decoded {type(message).__name__}"
    attributes, unexpected = _exabgp_attributes(message.attributes)
    if unexpected:
        out["exabgp_unexpected_attributes"] = unexpected
    next_hops: dict[tuple[str, str, int | None], list[bytes]] = {}
    for nlri in message.nlris:
        family = FAMILY_NAMES[(int(nlri.afi), int(nlri.safi))]
        path_id = (
            None
            if nlri.path_info is PathInfo.NOPATH
            else int.from_bytes(nlri.path_info.path_info, "big")
        )
        prefix = prefix_str(nlri.cidr.prefix())
        if nlri.action == Action.WITHDRAW:
            out["withdraw"].append((family, prefix, path_id))
            continue
        # rule 4: one NLRI per next-hop address, in wire order; joined back here
        next_hops.setdefault((family, prefix, path_id), []).append(bytes(nlri.nexthop.ton()))
    for (family, prefix, path_id), hops in next_hops.items():
        out["announce"].append((family, prefix, path_id, address_str(b"".join(hops))))
    if out["announce"]:
        out["attributes"] = attributes
    out["announce"].sort(key=repr)
    out["withdraw"].sort(key=repr)
    return out


def exabgp_decode_content(wires: Iterable[bytes], session: Session) -> Content:
    return merge_content(content_from_exabgp(exabgp_decode(w, session)) for w in wires)


# ---------------------------------------------------------------- UPDATE: content -> exabgp


def _exabgp_attribute_set(attributes: dict[str, Any]) -> Any:
    out = Attributes()
    out.add(Origin(attributes["origin"]))
    segments = []
    for seg_type, asns in attributes["as_path"]:
        kind = SET if seg_type == SegmentType.AS_SET else SEQUENCE
        segments.append(kind([ASN(a) for a in asns]))
    out.add(ASPath(segments))
    if attributes["med"] is not None:
        out.add(MED(attributes["med"]))
    if attributes["local_pref"] is not None:
        out.add(LocalPreference(attributes["local_pref"]))
    if attributes["atomic_aggregate"]:
        out.add(AtomicAggregate())
    if attributes["aggregator"] is not None:
        asn, speaker = attributes["aggregator"]
        out.add(Aggregator(ASN(asn), IPv4(speaker)))
    if attributes["communities"]:
        out.add(Communities([Community(struct.pack("!I", c)) for c in attributes["communities"]]))
    if attributes["large_communities"]:
        out.add(
            LargeCommunities(
                [LargeCommunity(struct.pack("!III", *c)) for c in attributes["large_communities"]]
            )
        )
    if attributes["extended_communities"]:
        out.add(
            ExtendedCommunities(
                [ExtendedCommunity(bytes.fromhex(c)) for c in attributes["extended_communities"]]
            )
        )
    if attributes["originator_id"] is not None:
        out.add(OriginatorID(attributes["originator_id"]))
    if attributes["cluster_list"]:
        out.add(ClusterList([ClusterID(c) for c in attributes["cluster_list"]]))
    return out


def _exabgp_nlri(family: str, prefix: str, path_id: int | None, action: Any) -> Any:
    afi, safi = EXA_FAMILIES[family]
    network = ipaddress.ip_network(prefix)
    nlri = INET(afi, safi, action)
    nlri.cidr = CIDR(network.network_address.packed, network.prefixlen)
    if path_id is not None:
        nlri.path_info = PathInfo(packed=struct.pack("!I", path_id))
    return nlri


def _exabgp_next_hop(text: str) -> Any:
    """An exabgp next hop whose wire form is ``text``'s octets (32 for global + link-local:
    exabgp has no type for that pair, but ``IP.ton`` returns the packed octets as given)."""
    first = text.split()[0]
    return IP.create(first, address_bytes(text))


def exabgp_announcement(
    family: str, attributes: dict[str, Any], next_hop: str, prefixes: Iterable[str]
) -> Any:
    """An exabgp ``Update`` announcing ``prefixes`` (ADD-PATH off) with one attribute set."""
    exa_attributes = _exabgp_attribute_set(attributes)
    hop = _exabgp_next_hop(next_hop)
    if family == "ipv4":
        # trap 5: the IPv4 next hop is an attribute as well as the NLRI's
        exa_attributes.add(NextHop(next_hop, address_bytes(next_hop)))
    nlris = []
    for prefix in prefixes:
        nlri = _exabgp_nlri(family, prefix, None, Action.ANNOUNCE)
        nlri.nexthop = hop
        nlris.append(nlri)
    return Update(nlris, exa_attributes)


def exabgp_encode(content: Content, session: Session) -> list[bytes]:
    """exabgp's UPDATEs for ``content`` (``Update(...).messages(negotiated)``)."""
    negotiated = exabgp_negotiated(session)
    nlris = []
    attributes = Attributes()
    if content["attributes"] is not None:
        attributes = _exabgp_attribute_set(content["attributes"])
    for family, prefix, path_id, next_hop in content["announce"]:
        nlri = _exabgp_nlri(family, prefix, path_id, Action.ANNOUNCE)
        nlri.nexthop = _exabgp_next_hop(next_hop)
        if family == "ipv4":
            attributes.add(NextHop(next_hop, address_bytes(next_hop)))  # trap 5
        nlris.append(nlri)
    for family, prefix, path_id in content["withdraw"]:
        nlris.append(_exabgp_nlri(family, prefix, path_id, Action.WITHDRAW))
    return list(Update(nlris, attributes).messages(negotiated))


def exabgp_end_of_rib(family: str) -> bytes:
    """exabgp's End-of-RIB marker for ``family`` (RFC 4724 §2)."""
    return bytes(EOR(*EXA_FAMILIES[family]).message())


def exabgp_end_of_rib_family(wire: bytes) -> str | None:
    """The family of the End-of-RIB exabgp reads in ``wire``, None if it reads something else."""
    message = exabgp_decode(wire, Session(asn4=True, add_path=False))
    if not isinstance(message, EOR):
        return None
    nlri = message.nlris[0]
    return FAMILY_NAMES[(int(nlri.afi), int(nlri.safi))]


# ---------------------------------------------------------------- OPEN


def open_form(
    version: int, my_as: int, hold_time: int, bgp_id: int, capabilities: Iterable[tuple[Any, ...]]
) -> Content:
    """OPEN content: header fields and the sorted, de-duplicated capability tuples."""
    return {
        "version": version,
        "my_as": my_as,
        "hold_time": hold_time,
        "bgp_id": bgp_id,
        "capabilities": sorted(set(capabilities), key=repr),
    }


def _exabgp_capability_forms(code: int, capability: Any) -> list[tuple[Any, ...]]:
    if code == Capability.CODE.MULTIPROTOCOL:
        return [("multiprotocol", int(afi), int(safi)) for afi, safi in capability]
    if code == Capability.CODE.FOUR_BYTES_ASN:
        return [("four-octet-as", int(capability))]
    if code == Capability.CODE.ROUTE_REFRESH:
        return [("route-refresh",)]
    if code == Capability.CODE.ENHANCED_ROUTE_REFRESH:
        return [("enhanced-route-refresh",)]
    if code == Capability.CODE.EXTENDED_MESSAGE:
        return [("extended-message",)]
    if code == Capability.CODE.GRACEFUL_RESTART:
        families = tuple((int(a), int(s), flags) for (a, s), flags in capability.items())
        return [("graceful-restart", capability.restart_flag, capability.restart_time, families)]
    if code == Capability.CODE.ADD_PATH:
        entries = tuple((int(a), int(s), mode) for (a, s), mode in capability.items())
        return [("add-path", entries)]
    return [("unexpected", int(code), repr(capability))]


def exabgp_open_content(wire: bytes) -> Content:
    message = exabgp_decode(wire, Session(asn4=True, add_path=False))
    assert isinstance(message, Open), f"exabgp decoded {type(message).__name__}"
    forms = [
        f for code, c in message.capabilities.items() for f in _exabgp_capability_forms(code, c)
    ]
    return open_form(
        int(message.version),
        int(message.asn),
        int(message.hold_time),
        int.from_bytes(message.router_id.ton(), "big"),
        forms,
    )


def exabgp_encode_open(content: Content) -> bytes:
    """exabgp's OPEN for ``content`` (capabilities set by hand: ``Capabilities().new`` would
    derive them from a Neighbor and add a host name)."""
    capabilities = Capabilities()
    families = []
    for form in content["capabilities"]:
        kind = form[0]
        if kind == "multiprotocol":
            families.append((AFI.create(form[1]), SAFI.create(form[2])))
        elif kind == "four-octet-as":
            capabilities[Capability.CODE.FOUR_BYTES_ASN] = ASN4(form[1])
        elif kind == "route-refresh":
            capabilities[Capability.CODE.ROUTE_REFRESH] = ExaRouteRefresh()
        elif kind == "enhanced-route-refresh":
            capabilities[Capability.CODE.ENHANCED_ROUTE_REFRESH] = ExaEnhancedRefresh()
        elif kind == "extended-message":
            capabilities[Capability.CODE.EXTENDED_MESSAGE] = ExaExtendedMessage()
        elif kind == "graceful-restart":
            _, flags, time, entries = form
            protos = [(AFI.create(a), SAFI.create(s), f) for a, s, f in entries]
            capabilities[Capability.CODE.GRACEFUL_RESTART] = Graceful().set(flags, time, protos)
        elif kind == "add-path":
            add_path = ExaAddPath()
            for afi, safi, mode in form[1]:
                add_path.add_path(AFI.create(afi), SAFI.create(safi), mode)
            capabilities[Capability.CODE.ADD_PATH] = add_path
        else:
            raise ValueError(f"no exabgp encoding for capability {form!r}")
    if families:
        multiprotocol = MultiProtocol()
        multiprotocol.extend(families)
        capabilities[Capability.CODE.MULTIPROTOCOL] = multiprotocol
    router_id = str(ipaddress.IPv4Address(content["bgp_id"]))
    message = Open(
        Version(content["version"]),
        ASN(content["my_as"]),
        HoldTime(content["hold_time"]),
        RouterID(router_id),
        capabilities,
    )
    return bytes(message.message())


# ---------------------------------------------------------------- NOTIFICATION, KEEPALIVE

SHUTDOWN_PREFIX = b'Shutdown Communication: "'


def exabgp_notification_content(wire: bytes) -> Content:
    """(code, subcode, data) as exabgp decoded it; for Cease 2/4 the data is exabgp's rendering
    of the RFC 9003 shutdown communication, turned back into the message text."""
    message = exabgp_decode(wire, Session(asn4=True, add_path=False))
    assert isinstance(message, Notification), f"exabgp decoded {type(message).__name__}"
    data = bytes(message.data)
    shutdown = None
    if (message.code, message.subcode) in ((6, 2), (6, 4)) and data.startswith(SHUTDOWN_PREFIX):
        shutdown = data[len(SHUTDOWN_PREFIX) : -1].decode("utf-8")
        data = b""
    return {"code": message.code, "subcode": message.subcode, "data": data, "shutdown": shutdown}


def exabgp_encode_notification(code: int, subcode: int, data: bytes | str) -> bytes:
    """``Notify`` (trap 4: ``Notification`` has no ``message()``). A ``str`` for Cease 2/4 is
    sent as an RFC 9003 shutdown communication (exabgp prefixes its length)."""
    return bytes(Notify(code, subcode, data).message())


def exabgp_keepalive() -> bytes:
    return bytes(KeepAlive().message())


def exabgp_is_keepalive(wire: bytes) -> bool:
    return isinstance(exabgp_decode(wire, Session(asn4=True, add_path=False)), KeepAlive)
