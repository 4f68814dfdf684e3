"""Extract Calico's confd golden suite into bgpd's test data: each case's inputs (Calico's test
data, copied as written) and the facts its expected BIRD configuration states.

Usage: ``python3 tests/golden/calico/tools/extract.py CALICO_GIT_DIR`` (a clone or bare
snapshot of projectcalico/calico; read with ``git show HEAD:...``). Writes
``tests/golden/calico/cases/<goldenDir>/`` (``input.yaml``, ``kubectl-input.yaml`` when the case
has one, ``facts.json``) and ``tests/golden/calico/manifest.json`` (the Calico revision, the
cases with their node, environment and block affinities, the probe routes).

Rules:
1. Cases are the rows of the Go test tables (``confd/tests/*_test.go``: ``runOneshotTests``
   rows with their ``envVars`` and ``kddOnly``), run for node ``kube-master`` with the standard
   block affinities of ``helpers_test.go``, plus the daemon-mode delta steps
   (``TestDaemonModeRendering``: a step's input is applied over the base, by kind and name),
   plus the daemon tests whose steps change resources from Go code (``SCRIPTED``: the node,
   whether the standard affinities exist, and per step the changes: a spec patch, a deletion,
   the Kubernetes secrets that exist).
2. Facts per family (``bird.cfg``/``bird6.cfg`` with the included ``_aggr``/``_ipam`` files):
   router id, listen address/port, the static routes, every BGP session's settings, and the
   verdicts of probe routes through each session's import and export filter and through
   ``calico_kernel_programming`` (``bird_filter``), with communities, LOCAL_PREF and metric.
3. Probe routes are made from the prefixes the configuration names (each prefix, its first
   host route, and one prefix outside all of them) crossed with route kinds (``PROBE_KINDS``).
No Calico code or template is kept: only inputs and facts.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bird_filter import Config, Evaluator, Node, Protocol, Route, read_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES = ROOT / "cases"

OUTSIDE = {4: "203.0.113.0/24", 6: "2001:db8:ff::/48"}
# Route kinds probed (rule 3): how the route entered BIRD's table and its attributes.
PROBE_KINDS: dict[str, dict[str, Any]] = {
    "bgp": {"source": "RTS_BGP", "bgp_local_pref": 100, "bgp_path": [65001]},
    "bgp-tagged": {
        "source": "RTS_BGP",
        "bgp_local_pref": 2147483547,
        "bgp_path": [65000],
        "bgp_community": [[65000, 42]],
    },
    "bgp-elevated": {"source": "RTS_BGP", "bgp_local_pref": 2147483135, "bgp_path": [65001]},
    "kernel-cali": {"source": "RTS_INHERIT", "ifname": "cali0ef24b1", "krt_metric": 1024},
    "kernel-cali-unset": {"source": "RTS_INHERIT", "ifname": "cali0ef24b1"},  # IPv4 metric 0
    "kernel-cali-512": {"source": "RTS_INHERIT", "ifname": "cali0ef24b1", "krt_metric": 512},
    "kernel-eth0": {"source": "RTS_INHERIT", "ifname": "eth0", "krt_metric": 1024},
    "kernel-eth0-100": {"source": "RTS_INHERIT", "ifname": "eth0", "krt_metric": 100},
    "kernel-cali-200": {"source": "RTS_INHERIT", "ifname": "cali0ef24b1", "krt_metric": 200},
    "kernel-tunl0": {"source": "RTS_INHERIT", "ifname": "tunl0", "krt_metric": 1024},
}
NEXT_HOPS = {
    "near": {4: "10.192.0.3", 6: "fd5f:1234::3"},
    "far": {4: "198.18.0.1", 6: "2001:db8:fe::1"},
}
BOILERPLATE = re.compile(
    r"^(debug|description|gateway recursive|add paths|connect delay time|connect retry time"
    r"|error wait time|graceful restart$)"
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def show(repo: Path, path: str) -> str | None:
    try:
        return git(repo, "show", f"HEAD:{path}")
    except subprocess.CalledProcessError:
        return None


def oneshot_rows(repo: Path) -> list[dict[str, Any]]:
    """Rule 1: the rows of every ``runOneshotTests`` table."""
    rows: list[dict[str, Any]] = []
    names = git(repo, "ls-tree", "--name-only", "HEAD", "confd/tests/").split()
    for path in names:
        if not path.endswith("_test.go"):
            continue
        text = show(repo, path) or ""
        for m in re.finditer(r"\{name: \"[^\"]+\", goldenDir: \"([^\"]+)\"([^\n]*)\},", text):
            rest = m.group(2)
            env = dict(re.findall(r"\"([A-Z_]+)\": \"([^\"]*)\"", rest))
            rows.append({"golden": m.group(1), "env": env, "kdd_only": "kddOnly: true" in rest})
    return rows


def daemon_steps(repo: Path) -> list[dict[str, Any]]:
    text = show(repo, "confd/tests/daemon_test.go") or ""
    body = text[text.index("func TestDaemonModeRendering") :]
    out = []
    for m in re.finditer(
        r"\{goldenDir: \"([^\"]+)\", steps: \[\]string\{([^}]*)\}([^\n]*)\},", body
    ):
        for step in re.findall(r"\"([^\"]+)\"", m.group(2)):
            out.append(
                {
                    "golden": f"{m.group(1)}/{step}",
                    "base": m.group(1),
                    "env": {},
                    "kdd_only": "kddOnly: true" in m.group(3),
                }
            )
    return out


def _scripted(golden: str, mock: str, node: str = "kube-master", **extra: Any) -> dict[str, Any]:
    return {"golden": golden, "input": mock, "node": node, "env": {}, "kdd_only": False, **extra}


def _steps(
    prefix: str, mock: str, changes: list[dict[str, Any]], **extra: Any
) -> list[dict[str, Any]]:
    """Cumulative steps: step N applies changes 1..N over ``mock``'s input."""
    return [
        _scripted(f"{prefix}{index + 1}", mock, changes=changes[: index + 1], **extra)
        for index in range(len(changes))
    ]


def _patch(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"patch": {"kind": kind, "name": name, "spec": spec}}


def _secrets(**secrets: dict[str, str]) -> dict[str, Any]:
    return {"secrets": secrets}


NO_AFFINITIES = {"affinities": False}
# Rule 1: the daemon tests of confd/tests/daemon_test.go that change resources from Go code,
# written down as data (what each step changes), read from that file at the manifest's revision.
SCRIPTED: list[dict[str, Any]] = [
    *_steps(
        "bgpfilter/filter_deletion/step",
        "bgpfilter/filter_deletion",
        [{}, {"delete": {"kind": "BGPFilter", "name": "test-filter"}}],
    ),
    *_steps(
        "bgpfilter/node_mesh/priority",
        "bgpfilter/node_mesh",
        [
            {},
            _patch("BGPConfiguration", "default", ipv4NormalRoutePriority=5000),
            _patch("BGPConfiguration", "default", ipv6NormalRoutePriority=80),
        ],
        **NO_AFFINITIES,
    ),
    *(
        _scripted(
            f"mesh/restart-time/pcr-{suffix}",
            "mesh/restart-time",
            changes=[_patch("BGPConfiguration", "default", programClusterRoutes=value)],
        )
        for suffix, value in (
            ("disabled", "Disabled"),
            ("enabled", "Enabled"),
            ("ipip-only", "EnabledIPIPOnly"),
        )
    ),
    *_steps(
        "sourceaddr_gracefulrestart/step",
        "sourceaddr_gracefulrestart",
        [
            {},
            _patch("BGPPeer", "bgppeer-1", sourceAddress="None"),
            _patch("BGPPeer", "bgppeer-1", maxRestartTime="10s"),
        ],
        node="node1",
        **NO_AFFINITIES,
    ),
    *_steps(
        "password/step",
        "password",
        [
            _secrets(),
            _secrets(**{"my-secrets-1": {"b": "password-b"}}),
            _secrets(
                **{"my-secrets-1": {"b": "password-b", "a": "password-a"}},
                **{"my-secrets-2": {"c": "password-c"}},
            ),
            _secrets(**{"my-secrets-1": {"b": "password-b", "a": "password-a"}}),
            _secrets(**{"my-secrets-1": {"b": "new-password-b", "a": "new-password-a"}}),
            _secrets(**{"my-secrets-1": {"b": "new-password-b"}}),
        ],
        node="node1",
        **NO_AFFINITIES,
    ),
    *_steps(
        "mesh/password/step",
        "mesh_password",
        [
            _secrets(),
            _secrets(**{"my-secrets-1": {"a": "password-a"}}),
            _secrets(**{"my-secrets-1": {"a": "new-password-a"}}),
        ],
    ),
]


def affinities(repo: Path) -> list[dict[str, str]]:
    text = show(repo, "confd/tests/helpers_test.go") or ""
    block = text[text.index("var standardBlockAffinities") :]
    block = block[: block.index("\n}\n")]
    return [
        {"cidr": c, "node": n, "state": s}
        for c, n, s in re.findall(r"\{\"([^\"]+)\", \"([^\"]+)\", \"([^\"]*)\"\}", block)
    ]


# -- facts --------------------------------------------------------------------------------------


def session_facts(proto: Protocol, template: Protocol | None) -> dict[str, Any]:
    statements = (template.statements if template else []) + proto.statements
    facts: dict[str, Any] = {"passive": False, "multihop": None, "ttl_security": False}
    other: list[str] = []
    for st in statements:
        words = st.split()
        if BOILERPLATE.match(st):
            continue
        if words[0] == "neighbor":
            facts["neighbor"] = words[1]
            facts["port"] = int(words[words.index("port") + 1]) if "port" in words else 179
            facts["as"] = int(words[words.index("as") + 1])
        elif words[:2] == ["local", "as"]:
            facts["local_as"] = int(words[2])
        elif words[:2] == ["source", "address"]:
            facts["source_address"] = words[2]
        elif words == ["passive", "on"]:
            facts["passive"] = True
        elif words[0] == "multihop":
            facts["multihop"] = int(words[1]) if len(words) > 1 else 64
        elif words[:2] == ["ttl", "security"]:
            facts["ttl_security"] = words[2] == "on"
        elif words == ["rr", "client"]:
            facts["rr_client"] = True
        elif words[:3] == ["rr", "cluster", "id"]:
            facts["rr_cluster_id"] = words[3]
        elif words[:2] == ["next", "hop"]:
            facts["next_hop"] = words[2]
        elif words[0] == "password":
            facts["password"] = words[1].strip('"')
        elif words[:3] == ["graceful", "restart", "time"]:
            facts["graceful_restart_time"] = int(words[3])
        elif words[:2] in (["keepalive", "time"], ["hold", "time"]):
            facts["_".join(words[:2])] = int(words[2])
        else:
            other.append(st)
    if other:
        facts["other"] = other
    return facts


def filter_calls(body: list[Node] | str | None) -> list[str]:
    """The functions an inline filter calls at its top level (BGPFilters, Calico's export)."""
    if not isinstance(body, list):
        return []
    out = []
    for st in body:
        if st[0] == "expr" and st[1][0] == "call":
            args = ",".join(str(a[1]).lower() for a in st[1][2])
            out.append(f"{st[1][1]}({args})")
    return out


def literals(config: Config, version: int) -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, tuple | list):
            if (
                len(node) == 2
                and node[0] == "const"
                and isinstance(node[1], ipaddress.IPv4Network | ipaddress.IPv6Network)
            ):
                if node[1].version == version:
                    found.add(str(node[1]))
            for child in node:
                walk(child)

    walk([body for _, body in config.functions.values()])
    walk(list(config.filters.values()))
    for proto in config.protocols.values():
        walk([proto.import_filter, proto.export_filter])
        for net in static_routes(proto):
            found.add(net.split()[0])
    return {n for n in found if ipaddress.ip_network(n).version == version}


def static_routes(proto: Protocol) -> list[str]:
    return [st[len("route ") :] for st in proto.statements if st.startswith("route ")]


def probe_prefixes(config: Config, version: int) -> list[str]:
    out: set[str] = {OUTSIDE[version]}
    for lit in literals(config, version):
        net = ipaddress.ip_network(lit)
        out.add(str(net))
        if net.prefixlen < net.max_prefixlen:
            out.add(f"{net.network_address}/{net.max_prefixlen}")
    return sorted(out, key=lambda n: (ipaddress.ip_network(n).network_address.packed, n))


def make_route(prefix: str, kind: str, version: int, hop: str = "near") -> Route:
    spec = PROBE_KINDS[kind]
    route = Route(ipaddress.ip_network(prefix), spec["source"])
    route.ifname = spec.get("ifname")
    route.krt_metric = spec.get("krt_metric")
    route.bgp_local_pref = spec.get("bgp_local_pref")
    if spec["source"] == "RTS_BGP":
        route.bgp_path = tuple(spec["bgp_path"])
        route.bgp_community = [tuple(c) for c in spec.get("bgp_community", [])]  # type: ignore[misc]
        route.bgp_next_hop = ipaddress.ip_address(NEXT_HOPS[hop][version])
    return route


def outcome(evaluator: Evaluator, body: list[Node], route: Route, *, export: bool) -> str:
    work = route.copy()
    verdict = evaluator.run(body, work)
    if verdict == "reject":
        return "reject"
    parts = ["accept"]
    if work.bgp_local_pref is not None:
        parts.append(f"lp={work.bgp_local_pref}")
    if work.bgp_community != route.bgp_community:
        parts.append("c=" + ",".join(f"{a}:{b}" for a, b in sorted(work.bgp_community)))
    if work.bgp_large_community:
        parts.append(
            "lc=" + ",".join(":".join(map(str, c)) for c in sorted(work.bgp_large_community))
        )
    if work.bgp_path != route.bgp_path:
        parts.append("path=" + " ".join(map(str, work.bgp_path or ())))
    if not export and work.preference is not None:
        parts.append(f"pref={work.preference}")
    return " ".join(parts)


def kernel_outcome(evaluator: Evaluator, body: list[Node], route: Route) -> str:
    work = route.copy()
    if evaluator.run(body, work) == "reject":
        return "reject"
    parts = ["accept"]
    if work.krt_metric is not None:
        parts.append(f"metric={work.krt_metric}")
    if work.krt_tunnel is not None:
        parts.append(f"tunnel={work.krt_tunnel or '-'}")
    return " ".join(parts)


def family_facts(config: Config, version: int) -> dict[str, Any]:
    evaluator = Evaluator(config.functions)
    template = config.protocols.get("bgp_template")
    prefixes = probe_prefixes(config, version)
    statics: list[str] = []
    for proto in config.protocols.values():
        if proto.kind == "static":
            statics.extend(static_routes(proto))
    sessions: dict[str, Any] = {}
    tables: dict[str, str] = {}
    for name, proto in sorted(config.protocols.items()):
        if proto.kind != "bgp" or proto.is_template:
            continue
        facts = session_facts(proto, template if proto.template == "bgp_template" else None)
        facts["import_calls"] = filter_calls(proto.import_filter)
        facts["export_calls"] = filter_calls(proto.export_filter)
        imports: dict[str, str] = {}
        exports: dict[str, str] = {}
        assert isinstance(proto.import_filter, list) and isinstance(proto.export_filter, list)
        for prefix in prefixes:
            for kind in PROBE_KINDS:
                route = make_route(prefix, kind, version)
                key = f"{prefix} {kind}"
                if kind.startswith("bgp"):
                    imports[key] = outcome(evaluator, proto.import_filter, route, export=False)
                exports[key] = outcome(evaluator, proto.export_filter, route, export=True)
        for static in statics:
            net = static.split()[0]
            route = Route(ipaddress.ip_network(net), "RTS_STATIC")
            exports[f"{net} static"] = outcome(evaluator, proto.export_filter, route, export=True)
        table = json.dumps({"import": imports, "export": exports}, sort_keys=True)
        facts["verdicts"] = tables.setdefault(table, f"t{len(tables)}")
        sessions[name] = facts
    kernel: dict[str, str] = {}
    kernel_filter = config.filters["calico_kernel_programming"]
    for prefix in prefixes:
        for kind in ("bgp", "bgp-elevated"):
            for hop in NEXT_HOPS:
                route = make_route(prefix, kind, version, hop)
                kernel[f"{prefix} {kind} {hop}"] = kernel_outcome(evaluator, kernel_filter, route)
    static_kernel = {
        static.split()[0]: kernel_outcome(
            evaluator, kernel_filter, Route(ipaddress.ip_network(static.split()[0]), "RTS_STATIC")
        )
        for static in statics
    }
    direct = config.protocols.get("direct_template")
    interfaces = next(
        (st for st in (direct.statements if direct else []) if st.startswith("interface ")), ""
    )
    return {
        "direct_interfaces": [a + b for a, b in re.findall(r'(-?) ?"([^"]*)"', interfaces)],
        "router_id": config.router_id,
        "static_kernel": static_kernel,
        "listen": " ".join(config.listen) or None,
        "static_routes": sorted(statics),
        "probes": prefixes,
        "sessions": sessions,
        "verdicts": {key: json.loads(table) for table, key in tables.items()},
        "kernel": kernel,
    }


def read_family(repo: Path, golden: str, name: str) -> Config | None:
    base = f"confd/tests/compiled_templates/{golden}"
    text = show(repo, f"{base}/{name}.cfg")
    if text is None:
        return None

    def include(file: str) -> str | None:
        return show(repo, f"{base}/{file}")

    return read_config(text, include)


def extract(repo: Path) -> None:
    revision = git(repo, "rev-parse", "HEAD").strip()
    cases: list[dict[str, Any]] = []
    rows = oneshot_rows(repo) + daemon_steps(repo) + SCRIPTED
    if CASES.exists():
        shutil.rmtree(CASES)
    for row in rows:
        golden = row["golden"]
        out = CASES / golden
        out.mkdir(parents=True, exist_ok=True)
        mock = f"confd/tests/mock_data/calicoctl/{row.get('input', golden)}"
        for file in ("input.yaml", "kubectl-input.yaml"):
            text = show(repo, f"{mock}/{file}")
            if text is not None:
                (out / file).write_text(text)
        facts: dict[str, Any] = {}
        for version, name in ((4, "bird"), (6, "bird6")):
            config = read_family(repo, golden, name)
            if config is not None:
                facts[f"ipv{version}"] = family_facts(config, version)
        (out / "facts.json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
        cases.append({"node": "kube-master", **row})
    manifest = {
        "calico": {"repository": "projectcalico/calico", "revision": revision},
        "block_affinities": affinities(repo),
        "probe_kinds": PROBE_KINDS,
        "next_hops": NEXT_HOPS,
        "cases": cases,
    }
    (ROOT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(cases)} cases from projectcalico/calico {revision}")


if __name__ == "__main__":
    extract(Path(sys.argv[1]))
