"""Which BGP sessions use BFD, with which timers: Calico Enterprise's ``BFDConfiguration`` and
BGPPeer ``failureDetectionMode`` (Calico OSS has neither), pure.

Rules:
1. A BFDConfiguration applies to the nodes its ``nodeSelector`` selects (an empty selector
   selects none); among those that select this node, by name, the first ``interfaces`` entry
   whose ``matchPattern`` matches the interface towards the peer gives the timers. A pattern is
   an exact name, a prefix with ``*`` ("eth*"), or ``*`` (a shell-style match).
2. The interface towards the peer is the local interface whose network holds the peer address,
   the longest such prefix: the peer is directly connected (RFC 5881 single hop). Otherwise it
   is the interface of the host's longest route to the peer, and the BFD session is multihop
   (RFC 5883), as the BGP session is (Calico's BIRD runs every session ``multihop``).
3. Node-to-node mesh sessions use BFD when rules 1 and 2 give timers, directly connected or
   not; explicit BGPPeer sessions when their ``failureDetectionMode`` is
   ``BFDIfDirectlyConnected``, the peer is directly connected and rule 1 gives timers.
4. Timers (RFC 5880 §6.8.1, microseconds): Desired Min TX ``minimumSendInterval``, Required Min
   RX ``minimumRecvInterval``, Detect Mult ``multiplier``, and ``idleSendInterval`` as the
   Desired Min TX while the session is not Up (``bgpd.bfd.fsm`` rule 3).
5. The BFD session runs from the session's source address, else the interface's address; only
   IPv4 sessions get BFD (the BFD edge is IPv4).
6. A selector that does not parse selects nothing and is reported as a problem.
7. The host facts come from the kernel's view (``host_facts_of``: the interface addresses and
   the routes that are not bgpd's, as ``bgpd.kernel.routewatch`` follows them), not from a dump
   of their own: IPv4 unicast routes of the main table with an interface, except routes
   through workload interfaces (``cali*``: a BFD peer is a node or a router, never a pod), so
   pods coming and going change no host fact and re-plan nothing.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bgpd.bfd.client import BfdSpec
from bgpd.bfd.fsm import Timers
from bgpd.kernel.learn import MAIN_TABLE, RTN_UNICAST, KernelView
from peers.model import BFDConfiguration, BFDInterface, Node
from peers.selectors import SelectorError, parse_selector
from peers.spec import SessionKind, SessionSpec

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True, slots=True)
class LocalInterface:
    """One address of one of the host's interfaces (a host fact the daemon reads)."""

    name: str
    address: IPInterface


@dataclass(frozen=True, slots=True)
class HostRoute:
    """One route of the host's main table and its outgoing interface (a host fact)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    interface: str


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What BFD planning reads of the host (rule 2), read by the daemon's datastore task."""

    addresses: tuple[LocalInterface, ...] = ()
    routes: tuple[HostRoute, ...] = ()


WORKLOAD_INTERFACES = "cali*"


def host_facts_of(view: KernelView) -> HostFacts:
    """Rule 7."""
    addresses = tuple(
        LocalInterface(a.ifname, ipaddress.ip_interface(f"{a.address}/{a.network.prefixlen}"))
        for a in view.addresses
        if a.address is not None
    )
    routes = tuple(
        HostRoute(r.network, r.ifname)
        for r in view.routes
        if r.ifname is not None
        and r.network.version == 4
        and r.table == MAIN_TABLE
        and r.type == RTN_UNICAST
        and not fnmatch.fnmatchcase(r.ifname, WORKLOAD_INTERFACES)
    )
    return HostFacts(addresses, routes)


def _usec(seconds: float) -> int:
    return round(seconds * 1_000_000)


def timers_of(entry: BFDInterface) -> Timers:
    """Rule 4."""
    return Timers(
        desired_min_tx=_usec(entry.minimum_send_interval),
        required_min_rx=_usec(entry.minimum_recv_interval),
        detect_mult=entry.multiplier,
        idle_min_tx=_usec(entry.idle_send_interval),
    )


def interface_towards(
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address, interfaces: Iterable[LocalInterface]
) -> LocalInterface | None:
    """Rule 2."""
    holding = [i for i in interfaces if peer in i.address.network and peer != i.address.ip]
    return max(holding, key=lambda i: i.address.network.prefixlen, default=None)


def route_towards(
    peer: ipaddress.IPv4Address | ipaddress.IPv6Address, routes: Iterable[HostRoute]
) -> HostRoute | None:
    """Rule 2 for a peer that is not directly connected."""
    holding = [r for r in routes if peer in r.network]
    return max(holding, key=lambda r: r.network.prefixlen, default=None)


def selected_entries(
    node: Node, configs: Mapping[str, BFDConfiguration], problems: list[str]
) -> list[BFDInterface]:
    """Rule 1 and 6: the interface entries of the configurations that select ``node``."""
    entries: list[BFDInterface] = []
    for name in sorted(configs):
        config = configs[name]
        if not config.node_selector:
            continue
        try:
            selected = parse_selector(config.node_selector).matches(node.labels)
        except SelectorError as exc:
            problems.append(f"BFDConfiguration {name}: nodeSelector: {exc}")
            continue
        if selected:
            entries.extend(config.interfaces)
    return entries


def plan_bfd(
    node: Node | None,
    configs: Mapping[str, BFDConfiguration],
    sessions: Mapping[str, SessionSpec],
    host: HostFacts,
    problems: list[str],
) -> dict[str, BfdSpec]:
    """Rules 1-5: the BFD each session asks for, by session name."""
    if node is None or not configs:
        return {}
    entries = selected_entries(node, configs, problems)
    if not entries:
        return {}
    out: dict[str, BfdSpec] = {}
    for name, spec in sessions.items():
        mesh = spec.kind is SessionKind.MESH
        if spec.family != 4 or not (mesh or spec.bfd_if_directly_connected):
            continue
        connected = interface_towards(spec.peer_ip, host.addresses)
        route = route_towards(spec.peer_ip, host.routes) if connected is None and mesh else None
        if connected is not None:
            ifname, local = connected.name, spec.source_address or connected.address.ip
        elif route is not None and spec.source_address is not None:
            ifname, local = route.interface, spec.source_address
        else:
            continue
        entry = next((e for e in entries if fnmatch.fnmatchcase(ifname, e.match_pattern)), None)
        if entry is not None:
            multihop = connected is None
            out[name] = BfdSpec(timers_of(entry), local, multihop=multihop, interface=ifname)
    return out
