"""Readiness and liveness, with Calico's semantics for BIRD (calico-bgp.md §4.1, §4.2).

Pure: values and ``now`` in, a ``HealthResult`` out. ``bgpd.control.server.HealthChecker``
gathers the values (and the nodename file's mtime) for ``bgpd health``, ``json health`` and the
HTTP ``/readyz`` and ``/livez`` endpoints, so every surface answers the same.

Rules (Calico ``node/pkg/health/health.go`` ``checkBIRDReady``, ``node/pkg/health/bird/bird.go``):
1. Only sessions named ``^(Global|Node|Mesh)_(.+)$`` count (``bgpPeerRegex``); a session is up
   when the sixth column of ``show protocols`` (the BGP state word) is ``Established``.
2. No such sessions: ready.
3. Within ``threshold`` seconds (default 30) of the start mark (calico-node's nodename file mtime):
   ready only if every session is Established and no graceful-restart recovery is in progress
   (the ``0024`` line of ``show status``).
4. After the threshold: ready if at least one session is Established.
5. Failure texts are Calico's: ``BGP not established with <ip>,<ip>``, ``graceful restart in
   progress``.
6. Live: the daemon answered with its status and no supervised task has died. Datastore
   outages do not fail liveness (BIRD keeps routing while etcd is away; so do we).
7. Degraded: a pool whose tunnel the kernel cannot build (no ``ipip`` module, say) makes the node
   not ready whatever its sessions, naming the pools: its pods are unreachable from elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bgpd.control.birdproto import bgp_state_description
from bgpd.status import DaemonStatus, PeerStatus

DEFAULT_THRESHOLD = 30.0  # calico-node --threshold-time default, seconds
CALICO_SESSION_NAME = re.compile(r"^(Global|Node|Mesh)_(.+)$")


@dataclass(frozen=True, slots=True)
class HealthResult:
    ok: bool
    reason: str


def calico_sessions(peers: Sequence[PeerStatus]) -> list[PeerStatus]:
    """The sessions Calico's readiness looks at (rule 1)."""
    return [peer for peer in peers if CALICO_SESSION_NAME.match(peer.name)]


def readiness(
    peers: Sequence[PeerStatus],
    status: DaemonStatus,
    start_mark: float,
    now: float,
    threshold: float = DEFAULT_THRESHOLD,
) -> HealthResult:
    if status.unroutable_pools:  # rule 7
        pools = ", ".join(status.unroutable_pools)
        return HealthResult(False, f"tunnel encapsulation unsupported for pools: {pools}")
    sessions = calico_sessions(peers)
    if not sessions:
        return HealthResult(True, "no BGP peers")  # rule 2
    established = [peer for peer in sessions if bgp_state_description(peer) == "Established"]
    down = [peer.peer_ip for peer in sessions if bgp_state_description(peer) != "Established"]
    not_established = f"BGP not established with {','.join(down)}"
    if now - start_mark < threshold:  # rule 3
        if down:
            return HealthResult(False, not_established)
        if status.graceful_restart_recovering:
            return HealthResult(False, "graceful restart in progress")
        return HealthResult(True, f"all {len(sessions)} BGP peers established")
    if established:  # rule 4
        return HealthResult(True, f"{len(established)} of {len(sessions)} BGP peers established")
    return HealthResult(False, not_established)


def liveness(status: DaemonStatus | None, failed_tasks: Sequence[str] = ()) -> HealthResult:
    if status is None:
        return HealthResult(False, "daemon not answering")
    if failed_tasks:
        return HealthResult(False, f"task stopped: {', '.join(failed_tasks)}")
    return HealthResult(True, "daemon is up and running")
