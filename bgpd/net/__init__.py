"""The asyncio edge of BGP sessions: sockets, one task per peer, the listener, the supervisor.

Rules:
1. IO lives here; every protocol decision is made by ``bgpd.session``.
2. The public API is re-exported here.
"""

from __future__ import annotations

from bgpd.net.listener import Listener
from bgpd.net.supervisor import RoutingCore, Supervisor
from bgpd.net.transport import PeerEvent, PeerRunner, PeerStatistics

__all__ = ["Listener", "PeerEvent", "PeerRunner", "PeerStatistics", "RoutingCore", "Supervisor"]
