"""The host's interface addresses (IO): the one host fact BFD planning needs (``calico.bfd``
rule 2), read with one netlink dump of links and addresses in the daemon's namespace, on a
worker thread (pyroute2's synchronous socket runs its own event loop)."""

from __future__ import annotations

import asyncio
import ipaddress

from pyroute2 import IPRoute

from bgpd.calico.bfd import LocalInterface


async def local_interfaces() -> tuple[LocalInterface, ...]:
    return await asyncio.to_thread(_dump)


def _dump() -> tuple[LocalInterface, ...]:
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
    return tuple(found)
