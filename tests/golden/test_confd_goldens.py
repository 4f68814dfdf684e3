"""Calico's own confd golden suite as a test layer of bgpd: outcomes, not text.

``tests/golden/calico/`` holds, per case of projectcalico/calico's ``confd/tests`` (revision in
``manifest.json``), Calico's inputs and the facts its expected ``bird.cfg``/``bird6.cfg`` state
(``tools/extract.py``; ``tools/bird_filter.py`` ran the probe routes through BIRD's filters).
Each case is loaded through bgpd's file datastore parsing, planned by ``bgpd.calico.node`` for the
case's node and environment, and compared with the facts per family:

- router id, listen address and port;
- the set of sessions and, per session, every BIRD statement that matters (neighbor, port, AS,
  local AS, source address, passive, multihop/TTL security, route-reflector client and cluster
  id, next-hop mode, password, graceful-restart time, ``allow local as``);
- per probe route, the import and export verdicts through the session's policies with the
  communities, LOCAL_PREF and AS path they leave, and the kernel verdict (metric, tunnel) of a
  learned route through bgpd's kernel plan;
- what is originated (BIRD's static routes) and blackholed;
- the interfaces whose addresses are direct routes (``ignoredInterfaces``);
- kernel routes that Felix or a user installs (``cali*``/``eth0``/``tunl0``, metric 1024, 512,
  200 or 100), learned through the plan's ``learning`` and exported through each session's
  policy (BGPFilter ``interface`` and ``priority`` rules on local routes).

A case passes, or it is in ``KNOWN_DIFFERENCES`` with the reason (the same list is in README
"Where bgpd still differs from Calico's BIRD"); every mismatch of a listed case must be one the
entry names, and a listed case that stops differing fails, so the table stays true.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.calico.learned import Learning
from bgpd.calico.node import NodePlanner
from bgpd.config import DaemonConfig, FileSource
from bgpd.datastore.cache import Cache
from bgpd.datastore.file import parse_documents
from bgpd.datastore.kdd import endpoint_slice_of, service_of
from bgpd.datastore.schema import decode_document
from bgpd.kernel.learn import KernelView, ObservedRoute
from bgpd.kernel.plan import BestRoute, KernelPlanner, KernelRoute, plan_route, pool_of
from bgpd.rib.policy import PolicyContext, SourceKind
from bgpd.rib.route import PeerKind
from bgpd.router import RoutingPlan, SessionPlan
from bgpd.wire.constants import Origin, SegmentType
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    PathAttributes,
    prefix_from_network,
    prefix_to_network,
)
from peers.model import EndpointSlice, IPNetwork, KubeService, PeerNextHopMode
from peers.resolve import SECRET_ENV_PREFIX, secret_env_name

ROOT = Path(__file__).resolve().parent / "calico"
MANIFEST = json.loads((ROOT / "manifest.json").read_text())
CASES = {case["golden"]: case for case in MANIFEST["cases"]}
FAMILIES = {4: IPV4_UNICAST, 6: IPV6_UNICAST}
RTPROT_BOOT = 3  # Felix's routes (and ``ip route add``'s default)


@dataclass(frozen=True)
class Known:
    """A deliberate or not yet closed difference: why, and the mismatch texts it covers."""

    reason: str
    covers: tuple[str, ...]


KNOWN_DIFFERENCES: dict[str, Known] = {
    "mesh/static-routes-no-ipv4-address": Known(
        "a node without an IPv4 address: Calico's template leaves the pool rules out of the "
        "kernel filter, so BIRD would install routes and blackholes inside Felix's IPv4 pools; "
        "bgpd keeps its pool-ownership rule (such a node has no IPv4 session, so only the "
        "blackholes of its IPv4 blocks differ, which Felix owns)",
        ("ipv4 kernel 192.168.", "ipv4 static 192.168.221."),
    ),
}


# -- loading a case ------------------------------------------------------------------------------


def case_documents(case: dict[str, Any]) -> list[tuple[str, object]]:
    """The case's Calico resources as bgpd's file datastore reads them (a daemon step applied
    over its base, by kind and name; a scripted step's patches and deletions) and, unless the
    case runs without them, the standard block affinities of Calico's test rig."""
    docs: dict[tuple[str, str], tuple[str, object]] = {}
    for golden in ([case["base"]] if "base" in case else []) + [case["golden"]]:
        path = ROOT / "cases" / golden / "input.yaml"
        for where, doc in parse_documents(path.read_text(), golden):
            assert isinstance(doc, dict)
            docs[(doc["kind"], doc["metadata"]["name"])] = (where, doc)
    for change in case.get("changes", []):
        if "patch" in change:
            patch = change["patch"]
            where, doc = docs[(patch["kind"], patch["name"])]
            assert isinstance(doc, dict)
            docs[(patch["kind"], patch["name"])] = (
                where,
                {**doc, "spec": {**(doc.get("spec") or {}), **patch["spec"]}},
            )
        elif "delete" in change:
            del docs[(change["delete"]["kind"], change["delete"]["name"])]
    if not case.get("affinities", True):
        return list(docs.values())
    for aff in MANIFEST["block_affinities"]:
        spec = {"node": aff["node"], "cidr": aff["cidr"]}
        if aff["state"]:
            spec["state"] = aff["state"]
        name = f"{aff['node']}-{aff['cidr'].replace('/', '-')}"
        doc = {
            "kind": "BlockAffinity",
            "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": name},
            "spec": spec,
        }
        docs[("BlockAffinity", name)] = (f"block affinity {name}", doc)
    return list(docs.values())


def case_services(
    case: dict[str, Any],
) -> tuple[dict[str, KubeService], dict[str, EndpointSlice]]:
    """The Services and EndpointSlices of a KDD-only case (its ``kubectl-input.yaml``, which
    Calico's rig applies with kubectl), as bgpd reads them through the Kubernetes API."""
    services: dict[str, KubeService] = {}
    slices: dict[str, EndpointSlice] = {}
    for golden in ([case["base"]] if "base" in case else []) + [case["golden"]]:
        path = ROOT / "cases" / golden.removesuffix("/step2") / "kubectl-input.yaml"
        if not path.exists():
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            meta = doc.setdefault("metadata", {})
            meta.setdefault("namespace", "default")  # where kubectl applies it
            key = f"{meta['namespace']}/{meta['name']}"
            if doc["kind"] == "Service":
                services[key] = service_of(doc)
            elif doc["kind"] == "EndpointSlice":
                slices[key] = endpoint_slice_of(doc)
    return services, slices


def plan_case(case: dict[str, Any]) -> RoutingPlan:
    records = [decode_document(doc, where) for where, doc in case_documents(case)]
    services, slices = case_services(case)
    snapshot = replace(
        Cache().replace(records, revision=1), services=services, endpoint_slices=slices
    )
    env = dict(case["env"])
    for change in case.get("changes", []):
        if "secrets" in change:  # the secrets that exist at this step, and no others
            env = {k: v for k, v in env.items() if not k.startswith(SECRET_ENV_PREFIX)}
            for name, values in change["secrets"].items():
                env.update({secret_env_name(name, key): v for key, v in values.items()})
    config = DaemonConfig(
        node=case["node"],
        datastore=FileSource(Path("/dev/null")),
        router_id=env.get("CALICO_ROUTER_ID", ""),
        environ=env,
    )
    return NodePlanner(config).plan(snapshot)


# -- bgpd's outcomes in the facts' terms ---------------------------------------------------------


def session_facts(plan: RoutingPlan, session: SessionPlan) -> dict[str, Any]:
    config, settings = session.config, session.settings
    facts: dict[str, Any] = {
        "neighbor": str(config.peer_address),
        "port": config.port,
        "as": config.peer_as,
        "local_as": config.local_as,
        "passive": config.passive,
        "ttl_security": config.ttl_security is not None,
        "multihop": config.ttl_security if config.ttl_security else config.multihop_ttl,
        "graceful_restart_time": config.graceful_restart_time,
    }
    if config.source_address is not None:
        facts["source_address"] = str(config.source_address)
    if settings.rr_client:
        facts["rr_client"] = True
        assert plan.cluster_id is not None
        facts["rr_cluster_id"] = str(ipaddress.IPv4Address(plan.cluster_id))
    mode = settings.next_hop_mode.value.lower()
    if mode != PeerNextHopMode.AUTO.value.lower():
        facts["next_hop"] = mode
    if config.md5_password is not None:
        facts["password"] = config.md5_password
    if config.keepalive_time is not None:
        facts["keepalive_time"] = config.keepalive_time
    if settings.allow_own_as:
        facts["other"] = [f"allow local as {settings.allow_own_as}"]
    return facts


def bird_session_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """The facts' session settings in the same terms (BIRD's defaults made explicit)."""
    out = {k: v for k, v in facts.items() if k not in ("verdicts", "import_calls", "export_calls")}
    out.setdefault("graceful_restart_time", 120)
    if out["ttl_security"] is False and out["multihop"] is None:
        out["multihop"] = None
    return out


def probe_attrs(kind: str, version: int) -> PathAttributes:
    spec = MANIFEST["probe_kinds"][kind]
    hop = ipaddress.ip_address(MANIFEST["next_hops"]["near"][str(version)])
    return PathAttributes(
        origin=Origin.IGP,
        as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, tuple(spec.get("bgp_path", ()))),),
        next_hop=hop.packed,
        local_pref=spec.get("bgp_local_pref"),
        communities=tuple((a << 16) | b for a, b in spec.get("bgp_community", [])),
    )


def render(result: PathAttributes | None, given: PathAttributes | None) -> str:
    if result is None:
        return "reject"
    parts = ["accept"]
    if result.local_pref is not None:
        parts.append(f"lp={result.local_pref}")
    if given is None or result.communities != given.communities:
        if result.communities:
            parts.append(
                "c=" + ",".join(f"{c >> 16}:{c & 0xFFFF}" for c in sorted(result.communities))
            )
    if result.large_communities:
        parts.append(
            "lc=" + ",".join(":".join(map(str, c)) for c in sorted(result.large_communities))
        )
    if result.as_path != (given.as_path if given is not None else ()):
        path = [a for seg in result.as_path for a in seg.asns]
        parts.append("path=" + " ".join(map(str, path)))
    return " ".join(parts)


def peer_kind(session: SessionPlan) -> PeerKind:
    settings = session.settings
    if settings.peer_as != settings.local_as:
        return PeerKind.EBGP
    return PeerKind.RR_CLIENT if settings.rr_client else PeerKind.IBGP


def context(
    session: SessionPlan, source: SourceKind, interface: str | None = None
) -> PolicyContext:
    settings = session.settings
    assert settings.local_as is not None  # a Calico session always names its local AS
    return PolicyContext(
        peer_kind(session),
        settings.peer_as == settings.local_as,
        source,
        interface=interface,
    )


def learned_verdict(plan: RoutingPlan, session: SessionPlan, network: IPNetwork, kind: str) -> str:
    """A probe route that Felix or a user put in the kernel (protocol boot, not ours), learned
    through the plan's ``learning`` and exported through the session's policy."""
    spec = MANIFEST["probe_kinds"][kind]
    observed = ObservedRoute(
        network, RTPROT_BOOT, metric=spec.get("krt_metric"), ifname=spec["ifname"]
    )
    assert plan.learning is not None
    learned = plan.learning.routes(KernelView(routes=(observed,)))
    family = FAMILIES[network.version]
    source, attrs = learned[family][prefix_from_network(network)]
    ctx = replace(
        context(session, SourceKind.LOCAL),
        interface=source.interface,
        learned=True,
        gateway=source.gateway,
    )
    return render(
        session.export_policy.evaluate(family, prefix_from_network(network), attrs, ctx), None
    )


def verdict(plan: RoutingPlan, session: SessionPlan, key: str, version: int, direction: str) -> str:
    """bgpd's verdict for one probe ``"<prefix> <kind>"`` through one session's policy."""
    prefix_text, kind = key.split(" ")
    network = ipaddress.ip_network(prefix_text)
    family = FAMILIES[version]
    prefix = prefix_from_network(network)
    if kind == "static":
        attrs = plan.local_routes.get(family, {}).get(prefix)
        if attrs is None:
            return "not originated"
        result = session.export_policy.evaluate(
            family, prefix, attrs, context(session, SourceKind.LOCAL)
        )
        return render(result, None)
    if kind.startswith("kernel"):
        return learned_verdict(plan, session, network, kind)
    attrs = probe_attrs(kind, version)
    policy = session.import_policy if direction == "import" else session.export_policy
    ctx = context(session, SourceKind.REMOTE_PEERS)
    return render(policy.evaluate(family, prefix, attrs, ctx), attrs)


def kernel_verdict(plan: RoutingPlan, key: str) -> str:
    prefix_text, kind, hop = key.split(" ")
    network = ipaddress.ip_network(prefix_text)
    gateway = ipaddress.ip_address(MANIFEST["next_hops"][hop][str(network.version)])
    local_pref = MANIFEST["probe_kinds"][kind].get("bgp_local_pref")
    planner = plan.kernel
    assert isinstance(planner, KernelPlanner)
    route = BestRoute(network, (gateway,), local_pref, pool=pool_of(network, planner.pools))
    planned = plan_route(route, planner.config)
    if not isinstance(planned, KernelRoute):
        return "reject"
    devices = {hop.ifname for hop in planned.nexthops}
    return f"accept metric={planned.metric} tunnel={'/'.join(sorted(d or '-' for d in devices))}"


def installed_statics(plan: RoutingPlan, version: int) -> list[IPNetwork]:
    """The node's own routes bgpd puts in the kernel: blackholes and pinned peer routes."""
    planner = plan.kernel
    assert isinstance(planner, KernelPlanner)
    routes = [
        BestRoute(n, local_blackhole=True, pool=pool_of(n, planner.pools))
        for n in planner.blackholes
    ] + [
        BestRoute(n, (gw,), pool=pool_of(n, planner.pools), static=True)
        for n, gw in planner.pinned.items()
    ]
    return [
        r.network
        for r in routes
        if r.network.version == version and isinstance(plan_route(r, planner.config), KernelRoute)
    ]


def bird_kernel(text: str) -> str:
    if text == "reject":
        return text
    return text if "tunnel=" in text else f"{text} tunnel=-"


def strip_preference(text: str) -> str:
    """BIRD's import ``preference = 200`` for an elevated LOCAL_PREF has no counterpart in bgpd's
    RIB (``bgpd.calico.export.import_policy``): left out of the comparison."""
    return " ".join(w for w in text.split() if not w.startswith("pref="))


def load_facts(golden: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "cases" / golden / "facts.json").read_text())
    return loaded


def mismatches(golden: str, facts: dict[str, Any] | None = None) -> list[str]:
    case = CASES[golden]
    facts = load_facts(golden) if facts is None else facts
    plan = plan_case(case)
    out: list[str] = []
    for fam_key, fam in facts.items():
        version = int(fam_key[-1])
        family = FAMILIES[version]
        if fam["router_id"] != str(plan.router_id):
            out.append(f"{fam_key} router id: BIRD {fam['router_id']}, bgpd {plan.router_id}")
        bird_listen = fam["listen"]
        ours = ["bgp"]
        address = next((a for a in plan.listen_addresses if (":" in a) == (version == 6)), None)
        if address not in (None, "0.0.0.0", "::"):
            ours += ["address", str(address)]
        if plan.listen_port != 179:
            ours += ["port", str(plan.listen_port)]
        if (bird_listen or "bgp") != " ".join(ours):
            out.append(f"{fam_key} listen: BIRD {bird_listen}, bgpd {' '.join(ours)}")
        sessions = {
            name: s for name, s in plan.sessions.items() if s.config.peer_address.version == version
        }
        bird_sessions = fam["sessions"]
        for name in sorted(set(bird_sessions) ^ set(sessions)):
            where = "BIRD only" if name in bird_sessions else "bgpd only"
            out.append(f"{fam_key} session {name}: {where}")
        for name in sorted(set(bird_sessions) & set(sessions)):
            session = sessions[name]
            want = bird_session_facts(bird_sessions[name])
            have = session_facts(plan, session)
            for field in sorted(set(want) | set(have)):
                if want.get(field) != have.get(field):
                    out.append(
                        f"{fam_key} session {name} {field}: BIRD {want.get(field)!r}, "
                        f"bgpd {have.get(field)!r}"
                    )
            table = fam["verdicts"][bird_sessions[name]["verdicts"]]
            for direction in ("import", "export"):
                for key, bird in table[direction].items():
                    ours_v = verdict(plan, session, key, version, direction)
                    if strip_preference(bird) != ours_v:
                        out.append(
                            f"{fam_key} {direction} {name} {key}: BIRD {bird}, bgpd {ours_v}"
                        )
        statics = {s.split()[0]: s for s in fam["static_routes"]}
        originated = {str(prefix_to_network(p, family)) for p in plan.local_routes.get(family, {})}
        for net in sorted(originated - set(statics)):
            out.append(f"{fam_key} originated {net}: bgpd only")
        installed = {str(n) for n in installed_statics(plan, version)}
        for net, bird in sorted(fam["static_kernel"].items()):
            ours_s = "accept" if net in installed else "reject"
            if bird.split()[0] != ours_s:
                out.append(f"{fam_key} static {net} in the kernel: BIRD {bird}, bgpd {ours_s}")
        for net in sorted(installed - set(statics)):
            out.append(f"{fam_key} static {net} in the kernel: bgpd only")
        assert isinstance(plan.learning, Learning)
        ours_direct = [f"-{p}" for p in plan.learning.exclusions] + ["*"]
        if fam["direct_interfaces"] != ours_direct:
            out.append(
                f"{fam_key} direct interfaces: BIRD {fam['direct_interfaces']}, bgpd {ours_direct}"
            )
        for key, bird in fam["kernel"].items():
            ours_k = kernel_verdict(plan, key)
            if bird_kernel(bird) != ours_k:
                out.append(f"{fam_key} kernel {key}: BIRD {bird}, bgpd {ours_k}")
    return out


@pytest.mark.parametrize("golden", sorted(CASES))
def test_confd_golden(golden: str) -> None:
    found = mismatches(golden)
    known = KNOWN_DIFFERENCES.get(golden)
    if known is None:
        assert not found, "\n".join(found)
        return
    assert found, f"{golden} no longer differs: remove it from KNOWN_DIFFERENCES"
    unexplained = [m for m in found if not any(c in m for c in known.covers)]
    assert not unexplained, "\n".join(unexplained)


def test_manifest_names_calico_revision() -> None:
    assert MANIFEST["calico"]["repository"] == "projectcalico/calico"
    assert len(MANIFEST["calico"]["revision"]) == 40
    assert len(CASES) >= 86


def test_the_comparison_notices_a_changed_fact() -> None:
    """A guard against a comparison that compares nothing: each kind of fact, changed, is
    reported."""
    facts = load_facts("mesh/communities")
    v4 = facts["ipv4"]
    v4["router_id"] = "192.0.2.99"
    session = v4["sessions"]["Mesh_10_192_0_3"]
    session["passive"] = not session["passive"]
    table = v4["verdicts"][session["verdicts"]]
    key = next(k for k, v in table["export"].items() if v.startswith("accept"))
    table["export"][key] = "reject"
    v4["kernel"][next(iter(v4["kernel"]))] = "accept metric=7"
    v4["static_kernel"]["10.0.0.0/30"] = "reject"
    v4["direct_interfaces"] = ["*"]
    found = mismatches("mesh/communities", facts)
    for part in (
        "router id",
        "passive",
        f"export Mesh_10_192_0_3 {key}",
        "kernel ",
        "static ",
        "direct interfaces",
    ):
        assert any(part in m for m in found), (part, found)
