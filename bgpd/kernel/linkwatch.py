"""Interface changes from the kernel, as a wake-up for the kernel programmer.

Role: when an interface goes down or loses its address the kernel flushes every route through
it, and it does not put them back when the interface returns; BIRD notices on its next device
scan (Calico's ``scan time 2``). This module tells the daemon at once instead, so the routes
come back when the link does, not at the next periodic reconcile.

Rules:
1. One raw NETLINK_ROUTE socket, in the programmer's network namespace, bound to the link and
   IPv4/IPv6 address multicast groups (rtnetlink(7): RTMGRP_LINK, RTMGRP_IPV4_IFADDR,
   RTMGRP_IPV6_IFADDR) and read by the event loop; nothing is parsed beyond the netlink header
   and ``ifinfomsg`` flags.
2. A change worth a reconcile: an interface becomes operational (``IFF_UP`` and
   ``IFF_LOWER_UP`` both set, not both before), or an address is added. Links going down are
   not reported: the kernel has already removed what could not stay.
3. A receive overrun (``ENOBUFS``) is reported as a change: an interface may have come up
   among the lost messages.
4. ``on_change`` is called from the event loop and must not block (the daemon sets a flag).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable

from pyroute2.netns import create_socket

NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
RTM_NEWLINK = 16
RTM_NEWADDR = 20
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
_OPERATIONAL = IFF_UP | IFF_LOWER_UP

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_RECV_SIZE = 1 << 16


def operational_changes(data: bytes, operational: dict[int, bool]) -> bool:
    """Whether ``data`` (one netlink datagram) holds a change worth a reconcile (rule 2);
    ``operational`` remembers each interface's last state and is updated."""
    changed = False
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        body = offset + _NLMSGHDR.size
        if kind == RTM_NEWADDR:
            changed = True
        elif kind == RTM_NEWLINK and body + _IFINFOMSG.size <= len(data):
            _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(data, body)
            now_up = flags & _OPERATIONAL == _OPERATIONAL
            if now_up and not operational.get(index, False):
                changed = True
            operational[index] = now_up
        offset += (length + 3) & ~3
    return changed


class LinkWatch:
    """Calls ``on_change`` when an interface becomes operational or gains an address."""

    def __init__(self, on_change: Callable[[], None], netns: str | None = None) -> None:
        self._on_change = on_change
        self._netns = netns
        self._sock: socket.socket | None = None
        self._operational: dict[int, bool] = {}
        self.changes = 0

    async def start(self) -> None:
        sock: socket.socket = await asyncio.to_thread(
            create_socket, self._netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, flags=0
        )
        try:
            sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        changed = False
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                changed = True  # rule 3
                continue
            changed = operational_changes(data, self._operational) or changed
        if changed:
            self.changes += 1
            self._on_change()

    async def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> LinkWatch:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
