"""Which BGP sessions use BFD, with which timers: Calico Enterprise's ``BFDConfiguration`` and
BGPPeer ``failureDetectionMode`` (Calico OSS has neither), pure.

Rules:
1. A BFDConfiguration applies to the nodes its ``nodeSelector`` selects (an empty selector
   selects none); among those that select this node, by name, the first ``interfaces`` entry
   whose ``matchPattern`` matches the interface towards the peer gives the timers. A pattern is
   an exact name, a prefix with ``*`` ("eth*"), or ``*`` (a shell-style match).
2. The interface towards the peer is the local interface whose network holds the peer address,
   the longest such prefix: the peer is directly connected (RFC 5881 single hop). A peer no
   interface holds gets no BFD (multihop BFD, RFC 5883, is not planned).
3. Node-to-node mesh sessions use BFD when rules 1 and 2 give timers; explicit BGPPeer sessions
   when their ``failureDetectionMode`` is ``BFDIfDirectlyConnected`` and rules 1 and 2 give
   timers.
4. Timers (RFC 5880 §6.8.1, microseconds): Desired Min TX ``minimumSendInterval``, Required Min
   RX ``minimumRecvInterval``, Detect Mult ``multiplier``, and ``idleSendInterval`` as the
   Desired Min TX while the session is not Up (``bgpd.bfd.fsm`` rule 3).
5. The BFD session runs from the session's source address, else the interface's address; only
   IPv4 sessions get BFD (the BFD edge is IPv4).
6. A selector that does not parse selects nothing and is reported as a problem.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bgpd.bfd.client import BfdSpec
from bgpd.bfd.fsm import Timers
from peers.model import BFDConfiguration, BFDInterface, Node
from peers.selectors import SelectorError, parse_selector
from peers.spec import SessionKind, SessionSpec

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True, slots=True)
class LocalInterface:
    """One address of one of the host's interfaces (a host fact the daemon reads)."""

    name: str
    address: IPInterface


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
    interfaces: Iterable[LocalInterface],
    problems: list[str],
) -> dict[str, BfdSpec]:
    """Rules 1-5: the BFD each session asks for, by session name."""
    if node is None or not configs:
        return {}
    entries = selected_entries(node, configs, problems)
    if not entries:
        return {}
    local_interfaces = tuple(interfaces)
    out: dict[str, BfdSpec] = {}
    for name, spec in sessions.items():
        if spec.family != 4:
            continue
        if spec.kind is not SessionKind.MESH and not spec.bfd_if_directly_connected:
            continue
        interface = interface_towards(spec.peer_ip, local_interfaces)
        if interface is None:
            continue
        entry = next(
            (e for e in entries if fnmatch.fnmatchcase(interface.name, e.match_pattern)), None
        )
        if entry is None:
            continue
        local = spec.source_address or interface.address.ip
        out[name] = BfdSpec(timers_of(entry), local, interface=interface.name)
    return out
