"""The node-to-node mesh (calico-bgp.md §2.8.1, confd ``processMeshPeers`` [BP]).

Rules:
1. No mesh on a route reflector (a node with a cluster ID), nor when
   ``nodeToNodeMeshEnabled`` is false in the ``default`` BGPConfiguration (default true).
2. One session per other node that has an address of the family, is not a route reflector,
   and whose IP differs from ours.
3. Peer AS = that node's AS, else **this node's** AS (master; v3.31 used the global AS).
   Port = that node's ``node.<n>`` listenPort, else the global listenPort, else 179.
4. Source address = our IP; TTL security off (multihop); password from ``nodeMeshPassword``;
   graceful-restart time from ``nodeMeshMaxRestartTime``; no BGPFilters; never an RR client.
5. Passive when the peer's IP *string* is greater than ours (PR projectcalico/node#79).
"""

from __future__ import annotations

from collections.abc import Callable

from peers.model import Snapshot, whole_seconds
from peers.rules import LocalNode, is_passive_towards
from peers.spec import BGP_PORT, SessionKind, SessionSpec, session_name

SecretLookup = Callable[[str, str], str | None]


def mesh_sessions(
    node_name: str,
    local: LocalNode,
    snapshot: Snapshot,
    secrets: SecretLookup,
) -> list[SessionSpec]:
    """The mesh sessions of ``node_name`` for the family of ``local.ip``."""
    if local.rr_cluster_id or not snapshot.mesh_enabled():
        return []
    cfg = snapshot.global_config
    password = None
    restart_time = None
    if cfg is not None:
        if cfg.node_mesh_password is not None:
            password = secrets(cfg.node_mesh_password.name, cfg.node_mesh_password.key)
        if cfg.node_mesh_max_restart_time is not None:
            restart_time = whole_seconds(cfg.node_mesh_max_restart_time)
    version = local.ip.version
    sessions: list[SessionSpec] = []
    for name in sorted(snapshot.nodes):
        other = snapshot.nodes[name]
        peer_ip = other.ip(version)
        if peer_ip is None or peer_ip == local.ip or other.is_route_reflector:
            continue
        sessions.append(
            SessionSpec(
                name=session_name(SessionKind.MESH, peer_ip),
                kind=SessionKind.MESH,
                family=version,
                peer_ip=peer_ip,
                port=snapshot.listen_port_of(name) or BGP_PORT,
                peer_as=other.as_number if other.as_number is not None else local.as_number,
                local_as=local.as_number,
                passive=is_passive_towards(peer_ip, local.ip),
                source_address=local.ip,
                password=password,
                restart_time=restart_time,
                is_calico_node=True,
            )
        )
    return sessions
