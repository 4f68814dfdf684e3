"""``bgpd plan``: a node's desired state from a datastore snapshot, and what a change to the
datastore would do to it, computed offline by the same code the daemon runs.

Rules:
1. The desired state is ``bgpd.calico.node``'s routing plan, shown per session (every setting:
   peer, AS, local AS, passive, TTL, password source, route-reflector role, next-hop mode,
   timers, BFD as the session configuration carries it, filters, maximum prefix count), what
   the node originates (with its datastore record), what each session is sent (with
   communities), and the kernel rules per pool.
2. What is sent and installed is not re-derived: a ``Router`` (``bgpd.router``) is run on the
   plan with every session Established and the known learned routes received, so import and
   export policy, best path, the protocol's export rules and the kernel plan are the daemon's
   own. Learned routes come from a running daemon's Loc-RIB (``KnownRoute``, its attributes as
   selected, so the import policy runs a second time over them) or are absent offline.
3. A change (``planned_change``) compares the plans before and after: sessions added, removed,
   reset or refreshed (``peers.spec.diff_sessions``: a reset tears the session down), prefixes
   gained and lost per session, and kernel routes added, removed or changed. A removed
   session's learned routes are gone after the change.
4. Passwords are never shown: a session shows where its password comes from (the Secret key and
   the environment variable the daemon reads it from).
5. Pure: values in, documents out (the CLI reads the datastore and the daemon).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bgpd.calico.node import NodePlanner
from bgpd.calico.sessions import BIRD_HOLD_TIME, BIRD_MULTIHOP_TTL
from bgpd.calico.tunnels import pool_specs
from bgpd.config import DaemonConfig
from bgpd.datastore.cache import Cache
from bgpd.datastore.schema import Kind, RecordError, RecordKey, decode_document
from bgpd.kernel.plan import KernelPlanner, destination_of, kernel_refusal
from bgpd.router import Router, RoutingPlan
from bgpd.session.config import SessionConfig
from bgpd.session.events import Established, UpdateReceived
from bgpd.session.timers import keepalive_interval
from bgpd.wire.constants import Origin, SegmentType
from bgpd.wire.messages import Announcement, Update
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.render import attributes_to_json
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    Family,
    PathAttributes,
    Prefix,
    prefix_from_str,
    prefix_to_str,
)
from peers.model import Snapshot
from peers.resolve import Environment, NodePeering, resolve_node, secret_env_name
from peers.spec import SessionSpec, diff_sessions

CHANGE_ANNOTATION = "bgpd.projectcalico.org/change"  # value ``delete``: delete the resource


def apply_change(snapshot: Snapshot, documents: Sequence[tuple[str, object]]) -> Snapshot:
    """``snapshot`` with each (where, document) applied as ``calicoctl apply`` would, or deleted
    when the document carries the annotation ``bgpd.projectcalico.org/change: delete`` (then
    kind and name suffice). A bad document raises ``RecordError`` naming it."""
    cache = Cache.from_snapshot(snapshot)
    for where, document in documents:
        meta = document.get("metadata") if isinstance(document, dict) else None
        annotations = (meta.get("annotations") if isinstance(meta, dict) else None) or {}
        if annotations.get(CHANGE_ANNOTATION) != "delete":
            cache.change(*decode_document(document, where))
            continue
        try:
            record_key, _ = decode_document(document, where)
        except RecordError:
            assert isinstance(document, dict) and isinstance(meta, dict)
            try:
                record_key = RecordKey(Kind(str(document.get("kind"))), str(meta.get("name", "")))
            except ValueError:
                raise RecordError(where, f"kind {document.get('kind')!r} unknown") from None
        cache.change(record_key, None)
    return cache.snapshot()


@dataclass(frozen=True, slots=True)
class KnownRoute:
    """A Loc-RIB candidate of a running daemon (``bgpd show routes --json``): the session it was
    learned from (``local`` for our own) and its attributes."""

    family: Family
    prefix: Prefix
    session: str
    attrs: PathAttributes


def known_route(route: Mapping[str, Any]) -> KnownRoute:
    """One entry of the control socket's ``json routes`` as a ``KnownRoute``."""
    network = ipaddress.ip_network(route["prefix"])
    family = IPV6_UNICAST if network.version == 6 else IPV4_UNICAST
    next_hop = route.get("next_hop") or ""
    as_path = tuple(route.get("as_path") or ())
    return KnownRoute(
        family,
        prefix_from_str(str(network)),
        route["peer"],
        PathAttributes(
            origin=Origin[str(route.get("origin", "igp")).upper()],
            as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, as_path),) if as_path else (),
            next_hop=b"".join(ipaddress.ip_address(hop).packed for hop in next_hop.split()),
            local_pref=route.get("local_pref"),
            med=route.get("med"),
            communities=tuple(
                (int(a) << 16) | int(b)
                for a, b in (c.split(":") for c in route.get("communities") or ())
            ),
            large_communities=tuple(
                (int(a), int(b), int(c))
                for a, b, c in (c.split(":") for c in route.get("large_communities") or ())
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class NodeState:
    """Rule 1's parts for one snapshot."""

    node: str
    snapshot: Snapshot
    peering: NodePeering
    plan: RoutingPlan
    sent: Mapping[str, Mapping[str, PathAttributes]]  # session -> prefix -> what it is sent
    kernel: Mapping[str, str]  # prefix -> the kernel route


def _password_source(name: str, key: str) -> str:
    """Rule 4: a stand-in "password" naming its source, so a changed source shows as a reset."""
    return f"Secret {name}/{key} (read from ${secret_env_name(name, key)})"


def node_state(
    config: DaemonConfig, snapshot: Snapshot, learned: Sequence[KnownRoute] = ()
) -> NodeState:
    """Rules 1-2 for ``config.node`` in ``snapshot``."""
    plan = NodePlanner(config).plan(snapshot)
    env = Environment(router_id=config.router_id, secrets=_password_source)
    peering = resolve_node(config.node, snapshot, env)
    router = Router()
    router.apply_plan(plan, 0.0)
    router.drain()
    sessions = plan.sessions
    for name, session in sessions.items():
        cfg = session.config
        peer_id = int(cfg.peer_address) if cfg.peer_address.version == 4 else 1
        negotiated = Negotiated(
            families=frozenset(cfg.families),
            peer_as=session.settings.peer_as,
            local_as=cfg.local_as,
            peer_id=peer_id,
            external=session.settings.peer_as != cfg.local_as,
        )
        router.session_event(cfg.key, Established(negotiated), 1.0)
        by_attrs: dict[tuple[Family, PathAttributes], list[Prefix]] = {}
        for route in learned:
            if route.session == name:
                by_attrs.setdefault((route.family, route.attrs), []).append(route.prefix)
        announced = tuple(Announcement(f, a, p) for (f, a), p in by_attrs.items())
        if announced:
            router.session_event(cfg.key, UpdateReceived(Update(announced=announced)), 2.0)
    router.drain()
    speaker = router.speaker
    sent: dict[str, dict[str, PathAttributes]] = {}
    for name, session in sessions.items():
        router.take(session.config.key, budget=1 << 30)
        table = sent[name] = {}
        if speaker is None or name not in speaker.peers():
            continue
        for family in session.config.families:
            for prefix, state in speaker.advertised(name, family).items():
                if isinstance(state, PathAttributes):
                    table[prefix_to_str(prefix, family)] = state
    kernel: dict[str, str] = {}
    batch = router.kernel_batch(1 << 30)
    for kernel_route in batch.upserts:
        kernel[str(kernel_route.dst)] = str(kernel_route)
    return NodeState(config.node, snapshot, peering, plan, sent, kernel)


def _ttl(spec: SessionSpec, config: SessionConfig | None) -> str:
    """The session's TTL rule as the FSM config carries it (``bgpd.calico.sessions`` rule 2)."""
    if spec.ttl_security:
        return f"TTL security (GTSM): {spec.ttl_security} hop(s), RFC 5082"
    hops = config.multihop_ttl if config is not None else BIRD_MULTIHOP_TTL
    return f"multihop, TTL {hops}"


def _reflector_role(spec: SessionSpec, state: NodeState) -> str:
    """RFC 4456 roles on the session, as Calico derives them (calico-bgp.md §2.8.2)."""
    if spec.rr_client:
        return f"peer is our route-reflector client (cluster {spec.cluster_id})"
    peer_node = next(
        (n for n in state.snapshot.nodes.values() if n.ip(spec.family) == spec.peer_ip), None
    )
    peer_reflects = peer_node is not None and bool(peer_node.rr_cluster_id)
    if state.plan.cluster_id is not None:
        cluster = ipaddress.IPv4Address(state.plan.cluster_id)
        other = "another reflector" if peer_reflects else "not our client"
        return f"we are a route reflector (cluster {cluster}); peer is {other}"
    if peer_reflects and spec.is_ibgp:
        assert peer_node is not None
        return f"peer is our route reflector (cluster {peer_node.rr_cluster_id})"
    return "none"


def _session_json(name: str, spec: SessionSpec, state: NodeState) -> dict[str, Any]:
    session = state.plan.sessions.get(name)
    config = session.config if session is not None else None
    hold = config.hold_time if config is not None else BIRD_HOLD_TIME
    keepalive = config.keepalive_time if config is not None else spec.keepalive_time
    return {
        "peer_ip": str(spec.peer_ip),
        "port": spec.port,
        "kind": str(spec.kind),
        "peer_as": spec.peer_as,
        "local_as": spec.local_as,
        "type": "iBGP" if spec.is_ibgp else "eBGP",
        "passive": spec.passive,
        "ttl": _ttl(spec, config),
        "password": spec.password or "none",
        "route_reflector": _reflector_role(spec, state),
        "next_hop_mode": str(spec.next_hop_mode),
        "source_address": str(spec.source_address) if spec.source_address else None,
        "reachable_by": str(spec.reachable_by) if spec.reachable_by else None,
        "allowed_local_as": spec.num_allowed_local_as,
        "filters": list(spec.filters),
        "timers": {
            "hold_time": hold,
            "keepalive_time": round(keepalive_interval(hold, keepalive)),
            "connect_retry_time": config.connect_retry_time if config is not None else None,
            "graceful_restart_time": config.graceful_restart_time if config is not None else None,
        },
        "bfd": _bfd(config),
        "max_prefixes": _max_prefixes(spec),
        "planned": session is not None,
    }


def _max_prefixes(spec: SessionSpec) -> str:
    limit = spec.max_prefixes
    if limit is None:
        return "off"
    return (
        f"{limit.limit} per family, warning past {limit.warning},"
        f" idle {limit.restart_time:g} s after a stop"
    )


def _bfd(config: object) -> str:
    """BFD as the session configuration states it (issue 19 adds it); ``off`` without it."""
    value = getattr(config, "bfd", None)
    return "off" if not value else str(value)


def _pools_json(snapshot: Snapshot, planner: object) -> list[dict[str, Any]]:
    out = []
    for pool in sorted(pool_specs(snapshot), key=lambda p: p.label):
        entry: dict[str, Any] = {
            "name": pool.label,
            "cidr": str(pool.cidr),
            "ipip_mode": str(pool.ipip_mode),
            "vxlan_mode": str(pool.vxlan_mode),
            "encapsulation": str(pool.encapsulation),
        }
        if isinstance(planner, KernelPlanner):
            refusal = kernel_refusal(destination_of(pool.cidr), pool, planner.config)
            entry["kernel_routes"] = (
                "installed by bgpd" if refusal is None else f"not ours: {refusal}"
            )
        out.append(entry)
    return out


def desired_state(state: NodeState) -> dict[str, Any]:
    """Rule 1: the document ``bgpd plan`` prints."""
    plan, peering = state.plan, state.peering
    specs = peering.sessions
    origins = [
        {"prefix": prefix_to_str(prefix, family), "record": text}
        for family, table in sorted(plan.local_route_origins.items())
        for prefix, text in table.items()
    ]
    planner = plan.kernel
    return {
        "node": state.node,
        "router_id": str(plan.router_id) if plan.router_id is not None else None,
        "local_as": plan.local_as,
        "route_reflector_cluster_id": (
            str(ipaddress.IPv4Address(plan.cluster_id)) if plan.cluster_id is not None else None
        ),
        "listen": f"{','.join(plan.listen_addresses) or '*'}:{plan.listen_port}",
        "problems": list(plan.problems),
        "sessions": {name: _session_json(name, specs[name], state) for name in sorted(specs)},
        "originated": origins,
        "exports": {
            name: {prefix: attributes_to_json(attrs) for prefix, attrs in sorted(table.items())}
            for name, table in sorted(state.sent.items())
        },
        "kernel": {
            "pools": _pools_json(state.snapshot, planner),
            "blackholes": sorted(str(n) for n in getattr(planner, "blackholes", ())),
            "reject_cidrs": [
                str(n) for n in getattr(getattr(planner, "config", None), "reject_cidrs", ())
            ],
            "routes": dict(sorted(state.kernel.items())),
        },
    }


def planned_change(before: NodeState, after: NodeState) -> dict[str, Any]:
    """Rule 3: what the change does to the node."""
    identity_changed = (before.plan.router_id, before.plan.local_as, before.plan.cluster_id) != (
        after.plan.router_id,
        after.plan.local_as,
        after.plan.cluster_id,
    )
    diff = diff_sessions(
        before.peering.sessions,
        after.peering.sessions,
        router_id_changed=before.plan.router_id != after.plan.router_id,
    )
    prefixes: dict[str, dict[str, list[str]]] = {}
    for name in sorted(before.sent.keys() | after.sent.keys()):
        old, new = before.sent.get(name, {}), after.sent.get(name, {})
        gained = sorted(p for p in new if p not in old)
        lost = sorted(p for p in old if p not in new)
        changed = sorted(p for p in new if p in old and new[p] != old[p])
        if gained or lost or changed:
            prefixes[name] = {"gained": gained, "lost": lost, "changed": changed}
    kernel = {
        "added": sorted(after.kernel[p] for p in after.kernel.keys() - before.kernel.keys()),
        "removed": sorted(before.kernel[p] for p in before.kernel.keys() - after.kernel.keys()),
        "changed": [
            {"before": before.kernel[p], "after": after.kernel[p]}
            for p in sorted(before.kernel.keys() & after.kernel.keys())
            if before.kernel[p] != after.kernel[p]
        ],
    }
    return {
        "node": after.node,
        "speaker_restart": identity_changed,
        "sessions": {
            "added": [s.name for s in diff.added],
            "removed": [s.name for s in diff.removed],
            "reset": [{"name": c.name, "changed": list(c.changed)} for c in diff.reset],
            "refreshed": [{"name": c.name, "changed": list(c.changed)} for c in diff.refreshed],
            "updated": [{"name": c.name, "changed": list(c.changed)} for c in diff.updated],
        },
        "prefixes": prefixes,
        "kernel": kernel,
    }


def desired_state_text(doc: Mapping[str, Any]) -> str:
    """``bgpd plan``'s document for people."""
    lines = [
        f"node {doc['node']}: router id {doc['router_id']}, AS {doc['local_as']},"
        f" listen {doc['listen']}"
    ]
    if doc["route_reflector_cluster_id"]:
        lines.append(f"route reflector, cluster id {doc['route_reflector_cluster_id']}")
    lines += [f"problem: {p}" for p in doc["problems"]]
    lines.append("sessions:")
    for name, s in doc["sessions"].items():
        t = s["timers"]
        lines.append(
            f"  {name}: {s['peer_ip']}:{s['port']} AS {s['peer_as']} (local AS {s['local_as']},"
            f" {s['type']}, {s['kind']}){' passive' if s['passive'] else ''}"
        )
        lines.append(
            f"      {s['ttl']}; password {s['password']}; route reflection: {s['route_reflector']}"
        )
        lines.append(
            f"      next hop {s['next_hop_mode']}; hold {t['hold_time']} s, keepalive"
            f" {t['keepalive_time']} s, connect retry {t['connect_retry_time']} s, graceful"
            f" restart {t['graceful_restart_time']} s; BFD {s['bfd']}; max prefixes"
            f" {s['max_prefixes']}"
            + (f"; filters {', '.join(s['filters'])}" if s["filters"] else "")
            + (f"; reachable by {s['reachable_by']}" if s["reachable_by"] else "")
        )
    lines.append("originated:")
    lines += [f"  {o['prefix']}: {o['record']}" for o in doc["originated"]] or ["  nothing"]
    lines.append("exported:")
    for name, table in doc["exports"].items():
        if not table:
            lines.append(f"  {name}: nothing")
        for prefix, attrs in table.items():
            extra = " ".join(attrs.get("communities", []) + attrs.get("large_communities", []))
            path = " ".join(str(a) for seg in attrs["as_path"] for a in seg["asns"])
            lines.append(
                f"  {name}: {prefix} next hop {attrs.get('next_hop', '-')} as-path [{path}]"
                + (f" communities {extra}" if extra else "")
            )
    kernel = doc["kernel"]
    lines.append("kernel:")
    for pool in kernel["pools"]:
        lines.append(
            f"  pool {pool['name']} {pool['cidr']}: ipip {pool['ipip_mode']}, vxlan"
            f" {pool['vxlan_mode']}; kernel routes {pool.get('kernel_routes', '-')}"
        )
    lines += [f"  blackhole {b}" for b in kernel["blackholes"]]
    lines += [f"  never installed (reject): {c}" for c in kernel["reject_cidrs"]]
    lines += [f"  route {r}" for r in kernel["routes"].values()]
    return "\n".join(lines)


def planned_change_text(doc: Mapping[str, Any]) -> str:
    """``bgpd plan --change``'s document for people."""
    lines = [f"node {doc['node']}:"]
    if doc["speaker_restart"]:
        lines.append("  router id, AS or cluster id changes: every session restarts")
    sessions = doc["sessions"]
    for what in ("added", "removed"):
        lines += [f"  session {what}: {name}" for name in sessions[what]]
    for what in ("reset", "refreshed", "updated"):
        lines += [
            f"  session {what}: {c['name']} ({', '.join(c['changed'])})" for c in sessions[what]
        ]
    for name, change in doc["prefixes"].items():
        for what in ("gained", "lost", "changed"):
            if change[what]:
                lines.append(f"  {name} {what}: {' '.join(change[what])}")
    kernel = doc["kernel"]
    lines += [f"  kernel add: {r}" for r in kernel["added"]]
    lines += [f"  kernel remove: {r}" for r in kernel["removed"]]
    lines += [f"  kernel change: {c['before']} -> {c['after']}" for c in kernel["changed"]]
    if len(lines) == 1:
        lines.append("  no change")
    return "\n".join(lines)


__all__ = [
    "CHANGE_ANNOTATION",
    "apply_change",
    "KnownRoute",
    "NodeState",
    "desired_state",
    "desired_state_text",
    "known_route",
    "node_state",
    "planned_change",
    "planned_change_text",
]
