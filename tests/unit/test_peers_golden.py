"""Desired-state goldens: a Calico datastore YAML in, sessions and originated routes out.

Each ``tests/golden/desired/<scenario>/`` holds ``datastore.yaml`` and ``expected.json``; the
latter names its inputs (``nodes`` to evaluate, ``env``) and the reviewed ``results``.
Regenerate with ``BGPD_UPDATE_GOLDEN=1 python3 -m pytest tests/unit/test_peers_golden.py``
and review the diff against calico-bgp.md before committing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bgpd.calico.origin import Origination, originate
from bgpd.datastore.cache import Cache
from bgpd.datastore.file import parse_text
from peers.model import Community, PeerNextHopMode, Snapshot
from peers.resolve import Environment, hash_router_id, resolve_node, router_id
from peers.spec import SessionKind, SessionSpec, diff_sessions

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "desired"
SCENARIOS = sorted(p.name for p in GOLDEN.iterdir() if (p / "datastore.yaml").exists())
UPDATE = os.environ.get("BGPD_UPDATE_GOLDEN") == "1"


def community_text(value: Community) -> str:
    if isinstance(value, tuple):
        return ":".join(str(part) for part in value)
    return f"{value >> 16}:{value & 0xFFFF}"


def render_session(spec: SessionSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "peer_ip": str(spec.peer_ip),
        "port": spec.port,
        "peer_as": spec.peer_as,
        "local_as": spec.local_as,
        "passive": spec.passive,
        "source_address": None if spec.source_address is None else str(spec.source_address),
    }
    if spec.password is not None:
        out["password"] = spec.password
    if spec.keepalive_time is not None:
        out["keepalive_time"] = spec.keepalive_time
    if spec.restart_time is not None:
        out["restart_time"] = spec.restart_time
    if spec.ttl_security is not None:
        out["ttl_security"] = spec.ttl_security
    if spec.rr_client:
        out["rr_client"] = True
        out["cluster_id"] = str(spec.cluster_id)
    if spec.next_hop_mode is not PeerNextHopMode.AUTO:
        out["next_hop_mode"] = spec.next_hop_mode.value
    if spec.num_allowed_local_as:
        out["num_allowed_local_as"] = spec.num_allowed_local_as
    if spec.filters:
        out["filters"] = list(spec.filters)
    if spec.reachable_by is not None:
        out["reachable_by"] = str(spec.reachable_by)
    out["is_calico_node"] = spec.is_calico_node
    return out


def render_origination(origination: Origination) -> dict[str, Any]:
    return {
        "routes": [
            {
                "network": str(route.network),
                "kind": route.kind.value,
                "blackhole": route.blackhole,
                "install_blackhole": route.install_blackhole,
                "advertise": route.advertise,
                "communities": [community_text(c) for c in route.communities],
                "large_communities": [community_text(c) for c in route.large_communities],
                "local_pref": route.local_pref,
            }
            for route in origination.routes
        ],
        "reject": [str(n) for n in origination.reject.networks],
        "pinned": [f"{p.network} via {p.gateway}" for p in origination.pinned],
    }


def load_snapshot(scenario: str) -> tuple[Snapshot, int]:
    parsed = parse_text((GOLDEN / scenario / "datastore.yaml").read_text(), scenario)
    cache = Cache()
    return cache.replace(parsed.records, revision=1), len(parsed.errors)


def compute(scenario: str, inputs: dict[str, Any]) -> dict[str, Any]:
    snapshot, errors = load_snapshot(scenario)
    assert errors == 0, f"{scenario}: datastore.yaml has {errors} bad documents"
    env = Environment.from_environ(inputs.get("env", {}))
    results: dict[str, Any] = {}
    for node_name in inputs["nodes"]:
        peering = resolve_node(node_name, snapshot, env)
        results[node_name] = {
            "router_id": None if peering.router_id is None else str(peering.router_id),
            "local_as": peering.local_as,
            "listen_port": peering.listen_port,
            "listen_addresses": [str(a) for a in peering.listen_addresses],
            "log_level": peering.log_level,
            "problems": list(peering.problems),
            "sessions": {name: render_session(s) for name, s in peering.sessions.items()},
            "origination": {
                f"ipv{version}": render_origination(
                    originate(node_name, snapshot, version, peering.sessions.values())
                )
                for version in (4, 6)
            },
        }
    return results


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_desired_state(scenario: str) -> None:
    path = GOLDEN / scenario / "expected.json"
    expected = json.loads(path.read_text())
    actual = compute(scenario, expected)
    if UPDATE:
        expected["results"] = actual
        path.write_text(json.dumps(expected, indent=2) + "\n")
    assert actual == expected["results"]


def test_every_scenario_has_results() -> None:
    assert len(SCENARIOS) >= 6
    for scenario in SCENARIOS:
        expected = json.loads((GOLDEN / scenario / "expected.json").read_text())
        assert expected.get("results"), f"{scenario} has no reviewed results"


# -- router ID and session diffs ----------------------------------------------------------------


def test_router_id_hash_keeps_out_of_multicast() -> None:

    high = next(
        n
        for n in (f"node-{i}" for i in range(1000))
        if hashlib.sha256(n.encode()).digest()[0] > 223
    )
    low = next(
        n
        for n in (f"node-{i}" for i in range(1000))
        if hashlib.sha256(n.encode()).digest()[0] <= 223
    )
    raw_high = hashlib.sha256(high.encode()).digest()[:4]
    assert hash_router_id(high) == ipaddress.IPv4Address(bytes([raw_high[0] - 32, *raw_high[1:]]))
    assert int(str(hash_router_id(high)).split(".")[0]) <= 223
    assert hash_router_id(low).packed == hashlib.sha256(low.encode()).digest()[:4]
    snapshot, _ = load_snapshot("mesh-string-order")
    assert str(router_id("node-nine", snapshot, Environment())) == "10.0.0.9"
    assert str(router_id("node-nine", snapshot, Environment(router_id="192.0.2.9"))) == "192.0.2.9"
    assert router_id("node-nine", snapshot, Environment(router_id="not-an-ip")) is None
    assert router_id("node-noaddr", snapshot, Environment()) is None


def _session(**changes: Any) -> SessionSpec:

    base = SessionSpec(
        name="Global_192_0_2_1",
        kind=SessionKind.GLOBAL,
        family=4,
        peer_ip=ipaddress.ip_address("192.0.2.1"),
        port=179,
        peer_as=65001,
        local_as=64512,
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "bucket", "fields"),
    [
        ({"peer_as": 65002}, "reset", ("peer_as",)),
        ({"port": 1790}, "reset", ("port",)),
        ({"password": "x"}, "reset", ("password",)),
        ({"local_as": 65010}, "reset", ("local_as",)),
        ({"ttl_security": 1}, "reset", ("ttl_security",)),
        (
            {"source_address": ipaddress.ip_address("10.0.0.1")},
            "reset",
            ("source_address",),
        ),
        ({"filters": ("f",)}, "refreshed", ("filters",)),
        ({"next_hop_mode": PeerNextHopMode.SELF}, "refreshed", ("next_hop_mode",)),
        ({"rr_client": True}, "refreshed", ("rr_client",)),
        ({"num_allowed_local_as": 2}, "refreshed", ("num_allowed_local_as",)),
        ({"passive": True}, "updated", ("passive",)),
        ({"keepalive_time": 10, "restart_time": 60}, "updated", ("keepalive_time", "restart_time")),
        ({"filters": ("f",), "peer_as": 1}, "reset", ("filters", "peer_as")),
    ],
)
def test_session_diff_classification(
    changes: dict[str, Any], bucket: str, fields: tuple[str, ...]
) -> None:

    old = _session()
    new = _session(**changes)
    diff = diff_sessions({old.name: old}, {new.name: new})
    changed = getattr(diff, bucket)
    assert [c.changed for c in changed] == [fields]
    assert sum(len(getattr(diff, b)) for b in ("reset", "refreshed", "updated")) == 1
    assert not diff.added and not diff.removed


def test_session_diff_add_remove_router_id() -> None:

    kept = _session()
    gone = _session(name="Node_192_0_2_9")
    new = _session(name="Mesh_10_0_0_2")
    diff = diff_sessions({kept.name: kept, gone.name: gone}, {kept.name: kept, new.name: new})
    assert diff.added == (new,) and diff.removed == (gone,)
    assert not diff.reset and not diff.refreshed and not diff.updated
    assert diff_sessions({kept.name: kept}, {kept.name: kept}).is_empty
    moved = diff_sessions({kept.name: kept}, {kept.name: kept}, router_id_changed=True)
    assert [c.changed for c in moved.reset] == [("router_id",)]


def test_diff_of_a_datastore_change() -> None:
    """Changing a BGPPeer's filters refreshes, changing its AS resets, end to end."""

    snapshot, _ = load_snapshot("explicit-peers")
    env = Environment.from_environ({"BGPD_SECRET_BGP_SECRETS__TOR": "tor-pass"})
    before = resolve_node("node-a", snapshot, env).sessions

    peers = dict(snapshot.peers)
    peers["tor-global"] = dataclasses.replace(peers["tor-global"], filters=())
    peers["ibgp-global"] = dataclasses.replace(peers["ibgp-global"], as_number=65099)
    del peers["node-a-port"]
    changed = Snapshot.build(
        nodes=snapshot.nodes,
        pools=snapshot.pools,
        peers=peers,
        configs=snapshot.configs,
        filters=snapshot.filters,
        affinities=snapshot.affinities,
        blocks=snapshot.blocks,
    )
    after = resolve_node("node-a", changed, env).sessions
    diff = diff_sessions(before, after)
    assert [c.name for c in diff.refreshed] == ["Global_192_168_0_1"]
    assert [c.name for c in diff.reset] == ["Global_192_168_0_5"]
    assert [s.name for s in diff.removed] == ["Node_192_168_0_2_port_1179"]
    assert not diff.added
