"""Messages as JSON-ready dictionaries, for ``bgpd decode``, logs and the control socket.

Rules:
1. Field names are stable and documented in the README; prefixes and addresses are strings.
2. Rendering never fails on a decoded message.
"""

from __future__ import annotations

import ipaddress
from typing import Any

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
from bgpd.wire.constants import Origin, SegmentType
from bgpd.wire.messages import Keepalive, Message, Notification, Open, RouteRefresh, Update
from bgpd.wire.types import (
    Family,
    PathAttributes,
    next_hop_to_str,
    prefix_to_str,
)

_SEGMENT_NAMES: dict[int, str] = {
    SegmentType.AS_SET: "as-set",
    SegmentType.AS_SEQUENCE: "as-sequence",
    SegmentType.AS_CONFED_SEQUENCE: "confed-sequence",
    SegmentType.AS_CONFED_SET: "confed-set",
}
_ADD_PATH_MODES: dict[int, str] = {1: "receive", 2: "send", 3: "send/receive"}


def _ipv4(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def _community(value: int) -> str:
    return f"{value >> 16}:{value & 0xFFFF}"


def attributes_to_json(attrs: PathAttributes) -> dict[str, Any]:
    out: dict[str, Any] = {
        "origin": Origin(attrs.origin).name.lower(),
        "as_path": [
            {"type": _SEGMENT_NAMES.get(seg.type, str(seg.type)), "asns": list(seg.asns)}
            for seg in attrs.as_path
        ],
    }
    if attrs.next_hop:
        out["next_hop"] = next_hop_to_str(attrs.next_hop)
    if attrs.med is not None:
        out["med"] = attrs.med
    if attrs.local_pref is not None:
        out["local_pref"] = attrs.local_pref
    if attrs.atomic_aggregate:
        out["atomic_aggregate"] = True
    if attrs.aggregator is not None:
        out["aggregator"] = {"asn": attrs.aggregator[0], "address": _ipv4(attrs.aggregator[1])}
    if attrs.communities:
        out["communities"] = [_community(c) for c in attrs.communities]
    if attrs.large_communities:
        out["large_communities"] = [f"{a}:{b}:{c}" for a, b, c in attrs.large_communities]
    if attrs.extended_communities:
        out["extended_communities"] = [c.hex() for c in attrs.extended_communities]
    if attrs.originator_id is not None:
        out["originator_id"] = _ipv4(attrs.originator_id)
    if attrs.cluster_list:
        out["cluster_list"] = [_ipv4(c) for c in attrs.cluster_list]
    if attrs.unknown:
        out["unknown"] = [
            {"code": u.code, "flags": u.flags, "value": u.value.hex()} for u in attrs.unknown
        ]
    return out


def _family_json(family: Family) -> str:
    return str(family)


def capability_to_json(cap: Capability) -> dict[str, Any]:
    if isinstance(cap, Multiprotocol):
        return {"name": "multiprotocol", "family": _family_json(cap.family)}
    if isinstance(cap, RouteRefreshCapability):
        return {"name": "route-refresh"}
    if isinstance(cap, EnhancedRouteRefresh):
        return {"name": "enhanced-route-refresh"}
    if isinstance(cap, ExtendedMessage):
        return {"name": "extended-message"}
    if isinstance(cap, ExtendedNextHop):
        return {
            "name": "extended-next-hop",
            "entries": [{"family": _family_json(f), "next_hop_afi": nh} for f, nh in cap.entries],
        }
    if isinstance(cap, GracefulRestart):
        return {
            "name": "graceful-restart",
            "restart_flags": cap.restart_flags,
            "restart_time": cap.restart_time,
            "families": [
                {"family": _family_json(f), "forwarding_preserved": bool(flags & 0x80)}
                for f, flags in cap.families
            ],
        }
    if isinstance(cap, FourOctetAs):
        return {"name": "four-octet-as", "asn": cap.asn}
    if isinstance(cap, AddPath):
        return {
            "name": "add-path",
            "families": [
                {"family": _family_json(f), "mode": _ADD_PATH_MODES.get(m, str(m))}
                for f, m in cap.entries
            ],
        }
    if isinstance(cap, LongLivedGracefulRestart):
        return {
            "name": "long-lived-graceful-restart",
            "families": [
                {"family": _family_json(f), "flags": flags, "stale_time": stale}
                for f, flags, stale in cap.entries
            ],
        }
    if isinstance(cap, Fqdn):
        return {"name": "fqdn", "hostname": cap.hostname, "domain": cap.domain}
    assert isinstance(cap, UnknownCapability)
    return {"name": "unknown", "code": cap.code, "value": cap.value.hex()}


def message_to_json(message: Message) -> dict[str, Any]:
    if isinstance(message, Update):
        return update_to_json(message)
    if isinstance(message, Keepalive):
        return {"type": "keepalive"}
    if isinstance(message, Open):
        return {
            "type": "open",
            "version": message.version,
            "my_as": message.my_as,
            "hold_time": message.hold_time,
            "bgp_id": str(ipaddress.IPv4Address(message.bgp_id)),
            "capabilities": [capability_to_json(c) for c in message.capabilities],
        }
    if isinstance(message, Notification):
        out: dict[str, Any] = {
            "type": "notification",
            "code": message.code,
            "subcode": message.subcode,
            "reason": message.token,
            "data": message.data.hex(),
        }
        if message.shutdown_message is not None:
            out["shutdown_message"] = message.shutdown_message
        return out
    assert isinstance(message, RouteRefresh)
    subtypes = {0: "normal", 1: "begin", 2: "end"}
    return {
        "type": "route-refresh",
        "family": _family_json(message.family),
        "subtype": subtypes.get(message.subtype, str(message.subtype)),
    }


def update_to_json(update: Update) -> dict[str, Any]:
    announce: list[dict[str, Any]] = []
    for a in update.announced:
        next_hop = next_hop_to_str(a.attributes.next_hop)
        for i, prefix in enumerate(a.prefixes):
            announce.append(
                {
                    "prefix": prefix_to_str(prefix, a.family),
                    "next_hop": next_hop,
                    "path_id": a.path_ids[i] if a.path_ids is not None else None,
                }
            )
    withdraw: list[str] = []
    withdraw_ids: list[int] = []
    for w in update.withdrawn:
        withdraw.extend(prefix_to_str(p, w.family) for p in w.prefixes)
        if w.path_ids is not None:
            withdraw_ids.extend(w.path_ids)
    attributes = update.attributes or (update.announced[0].attributes if update.announced else None)
    out: dict[str, Any] = {
        "type": "update",
        "announce": announce,
        "withdraw": withdraw,
        "attributes": attributes_to_json(attributes) if attributes is not None else {},
    }
    if withdraw_ids:
        out["withdraw_path_ids"] = withdraw_ids
    if update.end_of_rib is not None:
        out["end_of_rib"] = _family_json(update.end_of_rib)
    if update.issues:
        out["issues"] = [
            {"attribute": i.attr_code, "action": i.action.name.lower(), "reason": i.reason}
            for i in update.issues
        ]
    if update.treat_as_withdraw:
        out["treat_as_withdraw"] = True
    return out
