"""``bgpd explain PREFIX``: why a route is (not) here, what was sent to whom, and what the kernel
got, as one value (``Explanation``, built by ``Router.explain``), its JSON document and its text.

Rules:
1. The explanation is computed on demand from the router's state (``bgpd.rib.explain``); the
   routing hot path keeps nothing for it.
2. The JSON document is the stable interface (``bgpd explain --json``, the control socket's
   ``json explain PREFIX``); the text is rendered from the document, so a client renders what
   the daemon sent.
3. Sessions are named as the plan names them (Calico's ``Mesh_10_0_0_2``, ``Node_...``,
   ``Global_...``); a session that is planned and not established is listed as such.
4. Pure: values in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bgpd.kernel.plan import KernelRoute
from bgpd.rib.explain import Advertisement, Candidate, Received, RibExplanation
from bgpd.rib.policy import PolicyTrace
from bgpd.wire.render import attributes_to_json
from bgpd.wire.types import Family


@dataclass(frozen=True, slots=True)
class Explanation:
    """One prefix, end to end. ``rib`` None: no routing plan yet (``in_sync`` False)."""

    prefix: str
    family: Family
    rib: RibExplanation | None
    not_established: tuple[str, ...]  # planned sessions without an established session
    kernel: KernelRoute | None  # the route the kernel plan asks for
    no_kernel_reason: str  # why none, when ``kernel`` is None
    origin: str  # the datastore record a route we originate comes from ("" if none)
    in_sync: bool = True
    kernel_pending: bool = False  # the desired change has not reached the kernel yet
    covered_by: str = ""  # no route for the prefix: the longest Loc-RIB prefix covering it


def _policy_json(trace: PolicyTrace | None) -> dict[str, Any] | None:
    if trace is None:
        return None
    return {
        "accepted": trace.accepted,
        "decided_by": trace.decided_by,
        "filter": trace.filter,
        "rule": trace.rule,
        "attributes": attributes_to_json(trace.result) if trace.result is not None else None,
    }


def _received_json(item: Received) -> dict[str, Any]:
    return {
        "peer": item.peer_id,
        "path_id": item.path_id,
        "attributes": attributes_to_json(item.attrs),
        "stale": item.stale,
        "refused": item.refused,
        "import": _policy_json(item.policy),
        "import_changed": item.policy is not None and item.policy.result not in (None, item.attrs),
        "in_loc_rib": item.in_loc_rib,
    }


def _candidate_json(item: Candidate) -> dict[str, Any]:
    source = item.path.source
    return {
        "source": "local" if source.local else source.peer_id,
        "peer_ip": "" if source.local else str(source.address),
        "peer_as": source.peer_as,
        "kind": str(source.kind),
        "path_id": item.path.path_id,
        "attributes": attributes_to_json(item.path.attrs),
        "best": item.best,
        "ecmp": item.ecmp,
        "lost_at": item.lost_at,
        "rule": item.rule,
        "best_value": item.best_value,
        "own_value": item.own_value,
    }


def _advertisement_json(item: Advertisement) -> dict[str, Any]:
    return {
        "peer": item.peer_id,
        "advertised": item.advertised,
        "sent": attributes_to_json(item.sent) if item.sent is not None else None,
        "pending": item.pending,
        "refused": item.refused,
        "export": _policy_json(item.policy),
        "add_path": item.add_path,
    }


def _kernel_json(route: KernelRoute | None) -> dict[str, Any] | None:
    if route is None:
        return None
    return {
        "route": str(route),
        "kind": str(route.kind),
        "metric": route.metric,
        "table": route.table,
        "protocol": route.protocol,
        "nexthops": [
            {
                "gateway": str(hop.gateway) if hop.gateway is not None else None,
                "device": hop.ifname,
                "onlink": hop.onlink,
                "encapsulation": _encapsulation(hop.ifname),
            }
            for hop in route.nexthops
        ],
    }


def _encapsulation(device: str | None) -> str:
    if device == "tunl0":
        return "ipip"
    if device == "vxlan.calico" or device == "vxlan-v6.calico":
        return "vxlan"
    return "none"


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    """Rule 2: the document."""
    rib = explanation.rib
    return {
        "prefix": explanation.prefix,
        "family": str(explanation.family),
        "in_sync": explanation.in_sync,
        "origin": explanation.origin or None,
        "received": [_received_json(r) for r in rib.received] if rib else [],
        "candidates": [_candidate_json(c) for c in rib.candidates] if rib else [],
        "advertised": [_advertisement_json(a) for a in rib.advertisements] if rib else [],
        "not_established": list(explanation.not_established),
        "kernel": _kernel_json(explanation.kernel),
        "kernel_reason": explanation.no_kernel_reason or None,
        "kernel_pending": explanation.kernel_pending,
        "covered_by": explanation.covered_by or None,
    }


def _attrs_text(attrs: dict[str, Any] | None) -> str:
    if not attrs:
        return "-"
    path = " ".join(
        " ".join(str(a) for a in seg["asns"])
        if seg["type"] == "as-sequence"
        else "{" + ",".join(str(a) for a in seg["asns"]) + "}"
        for seg in attrs.get("as_path", ())
    )
    parts = [f"next hop {attrs.get('next_hop', '-')}", f"as-path [{path}]"]
    parts.append(f"origin {attrs['origin']}")
    for key, label in (("local_pref", "local-pref"), ("med", "med")):
        if key in attrs:
            parts.append(f"{label} {attrs[key]}")
    if attrs.get("communities"):
        parts.append("communities " + " ".join(attrs["communities"]))
    if attrs.get("large_communities"):
        parts.append("large " + " ".join(attrs["large_communities"]))
    if attrs.get("originator_id"):
        parts.append(f"originator {attrs['originator_id']}")
    if attrs.get("cluster_list"):
        parts.append("cluster-list " + " ".join(attrs["cluster_list"]))
    return ", ".join(parts)


def _decision_text(policy: dict[str, Any] | None, refused: str | None) -> str:
    if refused:
        return f"refused: {refused}"
    if policy is None:
        return "-"
    verdict = "accepted" if policy["accepted"] else "rejected"
    return f"{verdict} by {policy['decided_by']}"


def explanation_text(doc: dict[str, Any]) -> str:
    """Rule 2: the document for people."""
    lines = [f"{doc['prefix']} ({doc['family']})"]
    if not doc["in_sync"]:
        lines.append("  no routing plan yet: the datastore has not been read")
        return "\n".join(lines)
    if doc["origin"]:
        lines.append(f"  originated here: {doc['origin']}")
    lines.append("candidates:")
    if not doc["candidates"]:
        lines.append("  none: no route in the Loc-RIB")
        if doc.get("covered_by"):
            covering = doc["covered_by"]
            lines.append(f"  the longest route covering it is {covering}: bgpd explain {covering}")
    for cand in doc["candidates"]:
        who = "local" if cand["source"] == "local" else f"{cand['source']} {cand['peer_ip']}"
        who += f" AS{cand['peer_as']} ({cand['kind']})" if cand["source"] != "local" else ""
        if cand["path_id"]:
            who += f" path-id {cand['path_id']}"
        mark = "best" if cand["best"] else "lost"
        lines.append(f"  [{mark}{', ecmp' if cand['ecmp'] else ''}] {who}")
        lines.append(f"      {_attrs_text(cand['attributes'])}")
        if not cand["best"]:
            lines.append(
                f"      lost at {cand['lost_at']}: best {cand['best_value']} vs {cand['own_value']}"
                f" ({cand['rule']})"
            )
    lines.append("received (Adj-RIB-In, import):")
    if not doc["received"]:
        lines.append("  none")
    for item in doc["received"]:
        stale = " stale" if item["stale"] else ""
        where = "in Loc-RIB" if item["in_loc_rib"] else "not in Loc-RIB"
        decision = _decision_text(item["import"], item["refused"])
        path_id = f" path-id {item['path_id']}" if item["path_id"] else ""
        lines.append(f"  {item['peer']}{path_id}{stale}: {decision}; {where}")
        lines.append(f"      {_attrs_text(item['attributes'])}")
        if item["import_changed"]:
            lines.append(f"      imported as {_attrs_text(item['import']['attributes'])}")
    lines.append("advertised to (export):")
    if not doc["advertised"] and not doc["not_established"]:
        lines.append("  no sessions")
    for item in doc["advertised"]:
        state = "advertised" if item["advertised"] else "not advertised"
        if item["pending"]:
            state += " (change pending)"
        lines.append(
            f"  {item['peer']}: {state}; {_decision_text(item['export'], item['refused'])}"
        )
        if item["sent"]:
            lines.append(f"      sent {_attrs_text(item['sent'])}")
    for name in doc["not_established"]:
        lines.append(f"  {name}: not advertised; session not established")
    kernel = doc["kernel"]
    if kernel is None:
        lines.append(f"kernel: none: {doc['kernel_reason']}")
    else:
        pending = " (pending)" if doc["kernel_pending"] else ""
        lines.append(f"kernel: {kernel['route']}{pending}")
        for hop in kernel["nexthops"]:
            device = f"dev {hop['device']}" if hop["device"] else "device chosen by the kernel"
            lines.append(f"  via {hop['gateway']}, {device}, encapsulation {hop['encapsulation']}")
    return "\n".join(lines)
