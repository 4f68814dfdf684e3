"""A node's routing plan from a datastore snapshot: what BIRD's config, as confd renders it,
would make of the node (calico-bgp.md §2), as the one value the router takes.

Rules:
1. ``NodePlanner.plan(snapshot)`` is pure and total: the node's sessions (``peers.resolve``),
   each with its FSM config, RIB settings and import/export policies; what the node originates
   (``calico.origin``); how it learns routes from its kernel (``calico.learned``); the kernel
   planner (``bgpd.kernel.plan``); the tunnel devices it needs; the BFD each session asks for
   (``calico.bfd``, from the ``host``'s addresses and routes).
   A snapshot where the node has no router id gives a plan without one (the router waits).
2. Two sessions to one address and port cannot both run: the first by name is kept, the other
   is reported as a problem.
3. A session's policies are values (``calico.export``): equal inputs (the session, the
   BGPFilters it uses, the node's export policy) give equal policies, so the router re-exports
   and refreshes nothing for an unrelated datastore change.
4. The Restart State bit of the sessions is the router's to set; plans carry it clear.
5. Listening (``listen_addresses``): see the function.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from bgpd.calico.bfd import HostFacts, plan_bfd
from bgpd.calico.export import export_policy, import_policy
from bgpd.calico.learned import Learning, direct_exclusions
from bgpd.calico.origin import Origination, local_routes, originate, route_origins
from bgpd.calico.sessions import peer_settings, session_config, session_key
from bgpd.calico.tunnels import plan_config, pool_specs, tunnel_info, tunnel_needs
from bgpd.config import DaemonConfig
from bgpd.kernel.plan import KernelPlanner, PlanConfig
from bgpd.router import RoutingPlan, SessionPlan
from bgpd.session.config import PeerKey
from encap.model import PoolSpec
from encap.vxlan import TunnelPlan
from peers.model import Node, Snapshot
from peers.resolve import Environment, NodePeering, environ_secret_lookup, resolve_node

WILDCARD = {4: "0.0.0.0", 6: "::"}


def listen_addresses(peering: NodePeering) -> tuple[str, ...]:
    """Rule 5: with ``bindMode: NodeIP`` each family listens on the node's address of that
    family, and on every address of a family the node has none of (Calico's templates then
    write ``listen bgp port N`` for that family's daemon, confd case
    ``explicit_peering/global``); without it, every address."""
    if not peering.listen_addresses:
        return ()
    by_version = {a.version: str(a) for a in peering.listen_addresses}
    return tuple(by_version.get(v, WILDCARD[v]) for v in (4, 6))


NO_HOST_FACTS = HostFacts()


@dataclass(frozen=True, slots=True)
class NodePlanner:
    """Plans one node (rules 1-4)."""

    config: DaemonConfig

    def plan(self, snapshot: Snapshot, host: HostFacts = NO_HOST_FACTS) -> RoutingPlan:
        config = self.config
        secrets = (
            snapshot.secrets.lookup
            if snapshot.secrets is not None
            else environ_secret_lookup(config.environ)
        )
        env = Environment(router_id=config.router_id, secrets=secrets)
        peering = resolve_node(config.node, snapshot, env)
        originations = tuple(
            originate(
                config.node,
                snapshot,
                version,
                peering.sessions.values(),
                cluster_ips_override=config.advertise_cluster_ips,
                program_vxlan=config.program_vxlan,
                k8s_node=config.environ.get("CALICO_K8S_NODE_REF") or None,
            )
            for version in (4, 6)
        )
        me = snapshot.nodes.get(config.node)
        own = {v: a.packed for v in (4, 6) if me is not None and (a := me.ip(v)) is not None}
        problems = list(peering.problems)
        bfd = plan_bfd(me, snapshot.bfd_configs, peering.sessions, host, problems)
        sessions = self._sessions(peering, snapshot, originations, me, problems)
        sessions = {n: replace(s, bfd=bfd.get(n)) for n, s in sessions.items()}
        kernel = plan_config(
            snapshot,
            config.node,
            originations,
            protocol=config.kernel_protocol,
            program_vxlan=config.program_vxlan,
        )
        pools = pool_specs(snapshot)
        blackholes = frozenset(net for o in originations for net in o.blackholes())
        pinned = {net: gw for o in originations for net, gw in o.pinned_routes().items()}
        cluster = me.rr_cluster_id if me is not None else ""
        return RoutingPlan(
            router_id=peering.router_id,
            local_as=peering.local_as,
            cluster_id=int(ipaddress.IPv4Address(cluster)) if cluster else None,
            sessions=sessions,
            local_routes=local_routes(originations, own),
            kernel=KernelPlanner(blackholes, pools, kernel, pinned),
            tunnels=self._tunnels(snapshot, pools, kernel),
            listen_addresses=listen_addresses(peering),
            listen_port=peering.listen_port,
            log_severity=peering.log_severity,
            problems=tuple(problems),
            local_route_origins=route_origins(originations),
            learning=Learning(config.kernel_protocol, direct_exclusions(snapshot), own),
        )

    def _sessions(
        self,
        peering: NodePeering,
        snapshot: Snapshot,
        originations: tuple[Origination, ...],
        me: Node | None,
        problems: list[str],
    ) -> dict[str, SessionPlan]:
        """Rule 2 and each session's parts."""
        sessions: dict[str, SessionPlan] = {}
        keys: dict[PeerKey, str] = {}
        for name, spec in sorted(peering.sessions.items()):
            key = session_key(spec)
            if key in keys:
                problems.append(f"duplicate session address {key}: {name} (kept {keys[key]})")
                continue
            keys[key] = name
            origination = next(o for o in originations if o.version == spec.family)
            sessions[name] = SessionPlan(
                config=session_config(
                    spec,
                    peering,
                    restarting=False,
                    graceful_restart_time=self.config.graceful_restart_time,
                ),
                settings=peer_settings(spec, me.ip(spec.family) if me is not None else None),
                import_policy=import_policy(spec, snapshot.filters),
                export_policy=export_policy(spec, origination, snapshot.filters),
                problem=spec.password_problem,
            )
        return sessions

    def _tunnels(
        self, snapshot: Snapshot, pools: tuple[PoolSpec, ...], kernel: PlanConfig
    ) -> TunnelPlan | None:
        """The tunnel devices this node keeps (calico-bgp.md §3.2-§3.5)."""
        if not self.config.program_kernel:
            return None
        me = snapshot.nodes.get(self.config.node)
        if me is None:
            return None
        vxlan, ipip = tunnel_needs(pools, kernel)
        others = tuple(tunnel_info(n) for n in snapshot.nodes.values() if n.name != me.name)
        return TunnelPlan(tunnel_info(me), others, vxlan, ipip)
