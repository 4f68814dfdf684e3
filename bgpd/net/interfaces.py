"""The host's interface addresses and main-table routes (IO): the host facts BFD planning needs
(``calico.bfd`` rule 2), read with netlink dumps of links, addresses and IPv4 routes in the
daemon's namespace, on a worker thread (pyroute2's synchronous socket runs its own event loop)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import structlog
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from bgpd.calico.bfd import HostFacts, HostRoute, LocalInterface

log = structlog.get_logger("bgpd.bfd")
MAIN_TABLE = 254  # RT_TABLE_MAIN
UNICAST = 1  # RTN_UNICAST


async def host_facts() -> HostFacts:
    """The facts, or none when netlink refuses the dump (logged): BFD is then planned for no
    session, and everything else runs."""
    try:
        return await asyncio.to_thread(_dump)
    except (OSError, NetlinkError) as exc:
        log.error("host interfaces and routes unreadable; no BFD planned", error=str(exc))
        return HostFacts()


def _dump() -> HostFacts:
    """Every address of every interface, with its interface's name (IFA_LOCAL where the kernel
    gives one: on a point-to-point link IFA_ADDRESS is the far end)."""
    found: list[LocalInterface] = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for message in ipr.get_addr():
            address = message.get_attr("IFA_LOCAL") or message.get_attr("IFA_ADDRESS")
            name = names.get(message["index"])
            if address is None or name is None:
                continue
            interface = ipaddress.ip_interface(f"{address}/{message['prefixlen']}")
            found.append(LocalInterface(name, interface))
        routes: list[HostRoute] = []
        for message in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            oif = names.get(message.get_attr("RTA_OIF"))
            if message["type"] != UNICAST or oif is None:
                continue
            destination = message.get_attr("RTA_DST") or "0.0.0.0"
            network = ipaddress.ip_network(f"{destination}/{message['dst_len']}")
            routes.append(HostRoute(network, oif))
    return HostFacts(tuple(found), tuple(routes))
