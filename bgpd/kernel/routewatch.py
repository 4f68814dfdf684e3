"""The kernel's routes that are not ours and the interfaces' addresses, as ``KernelView`` values:
what BIRD's kernel protocol (``learn``, ``scan time 2``) and direct protocol see in Calico, kept
up to date from netlink notifications instead of scans.

Rules:
1. One raw NETLINK_ROUTE socket in the namespace, bound to the route, link and address groups
   (rtnetlink(7): RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE, RTMGRP_LINK, RTMGRP_IPV4_IFADDR,
   RTMGRP_IPV6_IFADDR) and read by the event loop. A socket filter (classic BPF,
   ``SO_ATTACH_FILTER``) drops the route notifications of our own protocol in the kernel, so the
   daemon's own writes (a full table) never reach the loop nor fill the receive buffer (an
   overrun would cost a re-read, rule 2). A route notification that passes is parsed by hand and
   dropped at its header when its protocol is ours or its table is not the main one.
2. Start, a receive overrun (``ENOBUFS``) and any link or address notification re-read the
   state: links (name, up) and addresses (of links that are up, with their scope) through
   pyroute2, routes through a hand-parsed dump of the main table that drops ours at the
   header. Route notifications between re-reads are applied one by one (RTM_NEWROUTE replaces
   the route of the same table, destination and metric; RTM_DELROUTE removes it).
3. Changes are coalesced: ``on_view`` is called from the event loop with the new
   ``KernelView`` at most once per ``settle`` seconds, and only when it differs from the last.
   The rest of the learn rules (route types, the kernel's own protocol) are
   ``bgpd.kernel.learn``'s.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Callable

import structlog
from pyroute2 import AsyncIPRoute
from pyroute2.netns import create_socket

from bgpd.kernel.learn import MAIN_TABLE, KernelView, ObservedAddress, ObservedRoute
from bgpd.kernel.netlink import (
    _ERROR_HEAD,
    _HEADER_LEN,
    _NLMSGHDR,
    _RTMSG,
    _RTNEXTHOP,
    _U32_ATTR,
    NETLINK_GET_STRICT_CHK,
    NETLINK_ROUTE,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_OIF,
    RTA_PRIORITY,
    RTA_TABLE,
    RTM_DELROUTE,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    SOL_NETLINK,
    _attributes,
    _messages,
    _u32,
)
from encap.model import IPAddress, IPNetwork

log = structlog.get_logger(__name__)

RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
)
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR = 16, 17, 20, 21
IFF_UP = 0x1
_RECV_SIZE = 1 << 20
_RCVBUF = 4 << 20
DEFAULT_SETTLE = 0.2

SO_ATTACH_FILTER = 26  # asm-generic/socket.h
_BPF_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_BPF_LDH_ABS, _BPF_LDB_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x28, 0x30, 0x15, 0x06
_RTM_PROTOCOL_OFFSET = _NLMSGHDR.size + 5  # rtmsg: family, dst_len, src_len, tos, table, protocol

RouteKey = tuple[int, IPNetwork, int]  # (table, destination, metric)
# (protocol, type, output interface index, has a gateway, the (first) gateway, metric)
_Route = tuple[int, int, int | None, bool, IPAddress | None, int | None]


class RouteWatch:
    """Calls ``on_view`` with the kernel's view (rules 1-3)."""

    def __init__(
        self,
        on_view: Callable[[KernelView], None],
        *,
        own_protocol: int,
        netns: str | None = None,
        settle: float = DEFAULT_SETTLE,
    ) -> None:
        self._on_view = on_view
        self._own = own_protocol
        self._netns = netns
        self._settle = settle
        self._sock: socket.socket | None = None
        self._routes: dict[RouteKey, _Route] = {}
        self._links: dict[int, tuple[str, bool]] = {}
        self._addresses: tuple[tuple[int, IPNetwork, int, IPAddress], ...] = ()
        self._last: KernelView | None = None
        self._emit: asyncio.TimerHandle | None = None
        self._reread: asyncio.Task[None] | None = None
        self._reread_again = False
        self.views = 0
        self.route_notifications = 0  # route notifications that reached the loop (rule 1)

    async def start(self) -> None:
        sock: socket.socket = await asyncio.to_thread(
            create_socket, self._netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, flags=0
        )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            _drop_own_routes(sock, self._own)
            sock.bind((0, GROUPS))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        await self._read_state()
        self._publish()

    async def close(self) -> None:
        if self._emit is not None:
            self._emit.cancel()
        if self._reread is not None:
            self._reread.cancel()
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> RouteWatch:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- notifications (rule 1) ------------------------------------------------------------------

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        changed = reread = False
        while True:
            try:
                data = sock.recv(_RECV_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                reread = True  # rule 2
                continue
            for msg_type, _seq, msg in _messages(memoryview(data)):
                if msg_type in (RTM_NEWROUTE, RTM_DELROUTE):
                    self.route_notifications += 1
                    changed = self._route_message(msg_type, msg) or changed
                elif msg_type in (RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_DELADDR):
                    reread = True
        if reread:
            self._schedule_reread()
        elif changed:
            self._schedule_emit()

    def _entry(self, msg: memoryview) -> tuple[RouteKey, _Route] | None:
        """A route message as the watch keeps it; None for ours or another table's (rule 1)."""
        family, dst_len, _src, _tos, table, protocol, _scope, rtype, _flags = _RTMSG.unpack_from(
            msg, _NLMSGHDR.size
        )
        if protocol == self._own:
            return None
        attrs = _attributes(msg, _HEADER_LEN, len(msg))
        if RTA_TABLE in attrs:
            table = _u32(attrs[RTA_TABLE])
        if table != MAIN_TABLE:
            return None
        return _route_entry(family, dst_len, protocol, rtype, table, attrs)

    def _route_message(self, msg_type: int, msg: memoryview) -> bool:
        entry = self._entry(msg)
        if entry is None:
            return False
        key, value = entry
        if msg_type == RTM_DELROUTE:
            return self._routes.pop(key, None) is not None
        if self._routes.get(key) == value:
            return False
        self._routes[key] = value
        return True

    # -- state (rule 2) ---------------------------------------------------------------------------

    def _schedule_reread(self) -> None:
        if self._reread is not None and not self._reread.done():
            self._reread_again = True
            return
        self._reread = asyncio.get_running_loop().create_task(self._reread_loop())

    async def _reread_loop(self) -> None:
        while True:
            self._reread_again = False
            try:
                await self._read_state()
            except OSError as exc:
                log.warning("kernel.routewatch.read_failed", error=str(exc))
            self._schedule_emit()
            if not self._reread_again:
                return

    async def _read_state(self) -> None:
        ipr = AsyncIPRoute(netns=self._netns, flags=0) if self._netns else AsyncIPRoute()
        try:
            await ipr.setup_endpoint()
            links: dict[int, tuple[str, bool]] = {}
            async for link in await ipr.link("dump"):
                links[link["index"]] = (link.get("ifname"), bool(link["flags"] & IFF_UP))
            addresses: list[tuple[int, IPNetwork, int, IPAddress]] = []
            async for addr in await ipr.addr("dump"):
                text = addr.get("IFA_LOCAL") or addr.get("IFA_ADDRESS")
                if text is None:
                    continue
                interface = ipaddress.ip_interface(f"{text}/{addr['prefixlen']}")
                addresses.append((addr["index"], interface.network, addr["scope"], interface.ip))
        finally:
            ipr.close()
        routes = await self._dump_routes()
        self._links = links
        self._addresses = tuple(addresses)
        self._routes = routes

    async def _dump_routes(self) -> dict[RouteKey, _Route]:
        """The main table's routes that are not ours, parsed by hand (our own routes, a full
        table, are dropped at their header: rule 1)."""
        sock: socket.socket = await asyncio.to_thread(
            create_socket, self._netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, flags=0
        )
        routes: dict[RouteKey, _Route] = {}
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            sock.bind((0, 0))
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            buffer = bytearray(_RECV_SIZE)
            for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
                request = _RTMSG.pack(family, 0, 0, 0, MAIN_TABLE, 0, 0, 0, 0) + _U32_ATTR.pack(
                    8, RTA_TABLE, MAIN_TABLE
                )
                header = _NLMSGHDR.pack(
                    _NLMSGHDR.size + len(request), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
                )
                sock.send(header + request)
                done = False
                while not done:
                    size = await loop.sock_recv_into(sock, buffer)
                    for msg_type, msg_seq, msg in _messages(memoryview(buffer)[:size]):
                        if msg_seq != seq:
                            continue
                        if msg_type == NLMSG_DONE:
                            done = True
                        elif msg_type == NLMSG_ERROR:
                            code = -_ERROR_HEAD.unpack_from(msg, _NLMSGHDR.size)[0]
                            if code:
                                raise OSError(code, f"route dump failed: {os.strerror(code)}")
                        elif msg_type == RTM_NEWROUTE:
                            entry = self._entry(msg)
                            if entry is not None:
                                routes[entry[0]] = entry[1]
        finally:
            sock.close()
        return routes

    # -- views (rule 3) ---------------------------------------------------------------------------

    def _schedule_emit(self) -> None:
        if self._emit is None:
            self._emit = asyncio.get_running_loop().call_later(self._settle, self._publish)

    def _publish(self) -> None:
        self._emit = None
        view = self.view()
        if view != self._last:
            self._last = view
            self.views += 1
            self._on_view(view)

    def view(self) -> KernelView:
        links = self._links
        routes = tuple(
            ObservedRoute(
                network,
                protocol,
                metric=metric,
                ifname=None if oif is None else links.get(oif, (f"if{oif}", False))[0],
                gateway=gateway,
                via=via,
                table=table,
                type=rtype,
            )
            for (table, network, _), (protocol, rtype, oif, gateway, via, metric) in sorted(
                self._routes.items(), key=lambda item: (item[0][1].version, str(item[0]))
            )
        )
        addresses = tuple(
            ObservedAddress(network, links[index][0], scope, address)
            for index, network, scope, address in self._addresses
            if index in links and links[index][1]
        )
        return KernelView(routes, addresses)


def _drop_own_routes(sock: socket.socket, protocol: int) -> None:
    """Rule 1's socket filter: RTM_NEWROUTE and RTM_DELROUTE of ``protocol`` are dropped in the
    kernel, everything else passes. A notification is one message per datagram; BPF loads the
    host-order ``nlmsg_type`` big-endian, so the constants are converted once here."""

    def as_loaded(value: int) -> int:
        return int.from_bytes(struct.pack("=H", value), "big")

    program = [
        (_BPF_LDH_ABS, 0, 0, 4),  # nlmsg_type
        (_BPF_JEQ_K, 1, 0, as_loaded(RTM_NEWROUTE)),
        (_BPF_JEQ_K, 0, 2, as_loaded(RTM_DELROUTE)),
        (_BPF_LDB_ABS, 0, 0, _RTM_PROTOCOL_OFFSET),
        (_BPF_JEQ_K, 1, 0, protocol),
        (_BPF_RET_K, 0, 0, 0xFFFFFFFF),  # pass
        (_BPF_RET_K, 0, 0, 0),  # drop
    ]
    code = b"".join(_BPF_INSN.pack(*insn) for insn in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _route_entry(
    family: int, dst_len: int, protocol: int, rtype: int, table: int, attrs: dict[int, bytes]
) -> tuple[RouteKey, _Route]:
    """A route notification as the watch keeps it."""
    raw_dst = attrs.get(RTA_DST)
    size = 4 if family == socket.AF_INET else 16
    address = ipaddress.ip_address(raw_dst if raw_dst is not None else bytes(size))
    network = ipaddress.ip_network(f"{address}/{dst_len}")
    priority = attrs.get(RTA_PRIORITY)
    metric = _u32(priority) if priority is not None else None
    oif = attrs.get(RTA_OIF)
    raw_gateway = attrs.get(RTA_GATEWAY)
    multipath = attrs.get(RTA_MULTIPATH)
    if raw_gateway is None and multipath is not None:
        raw_gateway = _first_gateway(memoryview(multipath))
    via = None if raw_gateway is None else ipaddress.ip_address(raw_gateway)
    gateway = raw_gateway is not None or multipath is not None
    index = None if oif is None else _u32(oif)
    return (table, network, metric or 0), (protocol, rtype, index, gateway, via, metric)


def _first_gateway(multipath: memoryview) -> bytes | None:
    """The gateway of the first next hop of an RTA_MULTIPATH (rtnexthop records)."""
    if len(multipath) < _RTNEXTHOP.size:
        return None
    length = _RTNEXTHOP.unpack_from(multipath, 0)[0]
    return _attributes(multipath, _RTNEXTHOP.size, min(length, len(multipath))).get(RTA_GATEWAY)
