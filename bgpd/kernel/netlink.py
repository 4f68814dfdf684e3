"""The kernel route programmer: one raw NETLINK_ROUTE socket, hand-packed route messages.

Rules:
1. One raw NETLINK_ROUTE socket per programmer, created inside the target network namespace
   (``pyroute2.netns.create_socket``; the daemon's thread never switches namespace). pyroute2's
   ``AsyncIPRoute`` only resolves interface names to indexes (cached, refreshed per operation;
   an ``update`` whose routes name no interface skips the refresh).
2. Route messages are packed here with ``struct`` (pyroute2 encodes ~3.4 k routes/s, hand
   packing ~89 k/s: deps-eval.md §2), a message's head in one ``pack`` and its next hops once
   per shared next-hop tuple, and sent in windows of ``window`` messages per ``send``.
   Only the last message of a window asks for an ACK; any failing message gets an NLMSG_ERROR
   with its sequence number, so errors are reported per route (which route, which errno).
   The kernel handles a window synchronously inside ``send``, so the final ACK means every
   earlier message has been answered.
3. A route we already know to be ours is written with ``NLM_F_CREATE|NLM_F_REPLACE``; any other
   with ``NLM_F_CREATE|NLM_F_EXCL``, so a foreign route with the same (table, dst, metric) is
   reported (EEXIST), never clobbered. Deletes carry our protocol, and the kernel only deletes a
   route whose protocol matches (``fib_table_delete``, ``ip6_route_del``): routes of other
   protocols are never touched. Deleting a route that is already gone (ESRCH) is success.
   When the kernel refuses a new version of a route of ours, the old version is deleted: the
   kernel never keeps a route we no longer want.
4. The dump asks the kernel to filter by protocol and table (``NETLINK_GET_STRICT_CHK``,
   Linux >= 4.20) and filters again on our side, parsing the replies by hand.
5. ``start`` reads our protocol's routes and keeps them, marked stale (graceful restart,
   calico-bgp.md §2.4 ``graceful restart``/``persist``): ``apply`` never deletes a stale route;
   ``sweep_stale`` removes the stale routes still unwanted once the caller has converged.
6. ``reconcile`` dumps, diffs against the last desired set and repairs drift: a route of ours
   deleted by hand returns, a route with our protocol that is not wanted is removed.
7. Writes are packed on the loop and sent from a worker thread, ``EXCHANGE_ROUTES`` routes per
   hand-over: the kernel does its work inside ``send``, which releases the GIL, so it overlaps
   the routing loop's Python instead of stalling it. The loop runs while a hand-over is in
   flight, and packs the next group meanwhile; one hand-over at a time, and operations are
   serialised by a lock, so the socket has one user at a time.
8. A caller that keeps the desired set itself (``desired``: the router's ``DesiredKernel``) and
   feeds the changes through ``update`` is not copied: ``update`` only writes, ``reconcile``
   and ``sweep_stale`` index the caller's set when they run. Otherwise (or once ``apply`` has
   been called) the programmer keeps the desired set, as the last ``apply`` and the ``update``
   calls since made it. A million routes would cost another map of a million entries.
"""

from __future__ import annotations

import asyncio
import errno as errno_codes
import ipaddress
import itertools
import os
import select
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from pyroute2 import AsyncIPRoute
from pyroute2.netns import create_socket

from bgpd.kernel.plan import (
    MAIN_TABLE,
    RTPROT_BIRD,
    KernelRoute,
    NextHop,
    RouteIdentity,
    RouteKind,
    diff_indexed,
    identity_parts,
    index_routes,
    route_identity,
    satisfies,
)
from encap.model import IPAddress

# linux/netlink.h, linux/rtnetlink.h
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_GET_STRICT_CHK = 12
SO_SNDBUFFORCE = 32  # asm-generic/socket.h (absent from the socket module)
SO_RCVBUFFORCE = 33
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP = 0x300
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_MULTIPATH = 9
RTA_TABLE = 15
RTN_UNICAST = 1
RTN_BLACKHOLE = 6
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_NOWHERE = 255
RT_TABLE_COMPAT = 252
RTNH_F_ONLINK = 4

_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_U32_ATTR = struct.Struct("=HHI")
_RTNEXTHOP = struct.Struct("=HBBi")
_ERROR_HEAD = struct.Struct("=i")
_HEADER_LEN = _NLMSGHDR.size + _RTMSG.size
# A whole RTM_NEWROUTE up to its next hops, packed in one call (rule 2): nlmsghdr, rtmsg,
# RTA_DST, RTA_PRIORITY, RTA_TABLE.
_NEW_HEAD_V4 = struct.Struct("=IHHIIBBBBBBBBIHH4sHHIHHI")
_NEW_HEAD_V6 = struct.Struct("=IHHIIBBBBBBBBIHH16sHHIHHI")
_FLAGS_NEW = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL
_FLAGS_REPLACE = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
_RECV_SIZE = 1 << 20
SOCKET_BUFFER = 8 << 20
DEFAULT_WINDOW = 2048  # route messages per send (rule 2); their errors fit SOCKET_BUFFER
EXCHANGE_ROUTES = 16384  # routes packed, then sent by the worker thread, per hand-over (rule 7)
_KIND_BY_TYPE = {RTN_UNICAST: RouteKind.UNICAST, RTN_BLACKHOLE: RouteKind.BLACKHOLE}


@dataclass(frozen=True, slots=True)
class RouteError:
    """One route the kernel refused: the operation (``replace``/``delete``) and errno."""

    route: KernelRoute
    operation: str
    errno: int

    def __str__(self) -> str:
        name = errno_codes.errorcode.get(self.errno, str(self.errno))
        return f"{self.operation} {self.route}: {name} ({os.strerror(self.errno)})"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    replaced: int = 0
    deleted: int = 0
    errors: tuple[RouteError, ...] = ()

    def __add__(self, other: ApplyResult) -> ApplyResult:
        return ApplyResult(
            self.replaced + other.replaced,
            self.deleted + other.deleted,
            self.errors + other.errors,
        )


class LinkIndex:
    """Interface name <-> index, read through ``AsyncIPRoute`` (rule 1)."""

    def __init__(self, ipr: AsyncIPRoute) -> None:
        self._ipr = ipr
        self.by_name: dict[str, int] = {}
        self.by_index: dict[int, str] = {}

    async def refresh(self) -> None:
        by_name: dict[str, int] = {}
        async for link in await self._ipr.link("dump"):
            by_name[link.get("ifname")] = link["index"]
        self.by_name = by_name
        self.by_index = {index: name for name, index in by_name.items()}

    def name_of(self, index: int) -> str:
        return self.by_index.get(index, f"if{index}")


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (-length & 3)


def _nexthop_attrs(hop: NextHop) -> bytes:
    return b"" if hop.gateway is None else _attr(RTA_GATEWAY, hop.gateway.packed)


class _Packer:
    """Packs route messages; ``ifindex`` resolves interface names (rule 2).

    The next-hop part of a message is cached per ``nexthops`` tuple object: routes planned
    together usually share one, and every route of a write stays alive for the packer's life,
    so the object ids cannot be reused while the cache is in use.
    """

    def __init__(self, links: LinkIndex) -> None:
        self._links = links
        self._hops: dict[int, tuple[bytes, int]] = {}

    def ifindex(self, ifname: str | None) -> int:
        if ifname is None:
            return 0
        index = self._links.by_name.get(ifname)
        if index is None:
            raise OSError(errno_codes.ENODEV, f"no interface {ifname}")
        return index

    def _nexthops(self, hops: tuple[NextHop, ...]) -> tuple[bytes, int]:
        """The next-hop attributes of a unicast route and its ``rtm_flags``."""
        cached = self._hops.get(id(hops))
        if cached is not None:
            return cached
        if len(hops) == 1:
            hop = hops[0]
            attrs = _nexthop_attrs(hop)
            if hop.ifname is not None:
                attrs += _U32_ATTR.pack(8, RTA_OIF, self.ifindex(hop.ifname))
            packed = (attrs, RTNH_F_ONLINK if hop.onlink else 0)
        else:
            packed = (_attr(RTA_MULTIPATH, b"".join(self._rtnexthop(h) for h in hops)), 0)
        self._hops[id(hops)] = packed
        return packed

    def new_route(self, route: KernelRoute, seq: int, flags: int) -> bytes:
        table, version, address, prefixlen, metric = identity_parts(route.identity)
        if route.kind is RouteKind.BLACKHOLE:
            rtype, hop_attrs, rtm_flags = RTN_BLACKHOLE, b"", 0
        elif route.kind is RouteKind.UNICAST and route.nexthops:
            rtype = RTN_UNICAST
            hop_attrs, rtm_flags = self._nexthops(route.nexthops)
        else:
            raise OSError(errno_codes.EINVAL, f"cannot install a {route.kind} route without hops")
        head = _NEW_HEAD_V4 if version == 4 else _NEW_HEAD_V6
        return (
            head.pack(
                head.size + len(hop_attrs),
                RTM_NEWROUTE,
                flags,
                seq,
                0,
                socket.AF_INET if version == 4 else socket.AF_INET6,
                prefixlen,
                0,
                0,
                table if table < 256 else RT_TABLE_COMPAT,
                route.protocol,
                RT_SCOPE_UNIVERSE,
                rtype,
                rtm_flags,
                head.size - _HEADER_LEN - 16,
                RTA_DST,
                address.to_bytes(4 if version == 4 else 16, "big"),
                8,
                RTA_PRIORITY,
                metric,
                8,
                RTA_TABLE,
                table,
            )
            + hop_attrs
        )

    def _rtnexthop(self, hop: NextHop) -> bytes:
        attrs = _nexthop_attrs(hop)
        flags = RTNH_F_ONLINK if hop.onlink else 0
        size = _RTNEXTHOP.size + len(attrs)
        return _RTNEXTHOP.pack(size, flags, 0, self.ifindex(hop.ifname)) + attrs

    @staticmethod
    def del_route(route: KernelRoute, seq: int, flags: int) -> bytes:
        table, version, address, prefixlen, metric = identity_parts(route.identity)
        raw_dst = address.to_bytes(4 if version == 4 else 16, "big")
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        rtm_table = table if table < 256 else RT_TABLE_COMPAT
        rtm = _RTMSG.pack(
            family, prefixlen, 0, 0, rtm_table, route.protocol, RT_SCOPE_NOWHERE, 0, 0
        )
        payload = (
            _attr(RTA_DST, raw_dst)
            + _U32_ATTR.pack(8, RTA_PRIORITY, metric)
            + _U32_ATTR.pack(8, RTA_TABLE, table)
        )
        return (
            _NLMSGHDR.pack(_HEADER_LEN + len(payload), RTM_DELROUTE, flags, seq, 0) + rtm + payload
        )


class _DumpParser:
    """Turns RTM_NEWROUTE dump replies into ``KernelRoute`` values (rule 4)."""

    def __init__(self, protocol: int, table: int, links: LinkIndex) -> None:
        self._protocol = protocol
        self._table = table
        self._links = links
        self._addresses: dict[bytes, IPAddress] = {}
        self._single_hops: dict[tuple[bytes | None, bytes | None, int], tuple[NextHop, ...]] = {}

    def address(self, raw: bytes) -> IPAddress:
        found = self._addresses.get(raw)
        if found is None:
            found = self._addresses[raw] = ipaddress.ip_address(raw)
        return found

    def route(self, msg: memoryview) -> KernelRoute | None:
        family, dst_len, _src, _tos, table, protocol, _scope, rtype, rtm_flags = _RTMSG.unpack_from(
            msg, _NLMSGHDR.size
        )
        if protocol != self._protocol:
            return None
        attrs = _attributes(msg, _HEADER_LEN, len(msg))
        table_attr = attrs.get(RTA_TABLE)
        if table_attr is not None:
            table = int.from_bytes(table_attr, "little")
        if table != self._table:
            return None
        raw_dst = attrs.get(RTA_DST)
        address = 0 if raw_dst is None else int.from_bytes(raw_dst, "big")
        priority = attrs.get(RTA_PRIORITY)
        metric = int.from_bytes(priority, "little") if priority is not None else 0
        kind = _KIND_BY_TYPE.get(rtype, RouteKind.OTHER)
        hops: tuple[NextHop, ...] = ()
        if kind is RouteKind.UNICAST:
            multipath = attrs.get(RTA_MULTIPATH)
            if multipath is not None:
                hops = self._multipath(multipath)
            else:
                hops = self._single_hop(
                    attrs.get(RTA_GATEWAY), attrs.get(RTA_OIF), rtm_flags & RTNH_F_ONLINK
                )
        version = 4 if family == socket.AF_INET else 6
        identity = route_identity(table, version, address, dst_len, metric)
        return KernelRoute.keyed(identity, kind, hops, protocol)

    def _single_hop(
        self, gateway: bytes | None, oif: bytes | None, onlink: int
    ) -> tuple[NextHop, ...]:
        """One next hop; shared by every route with the same gateway, interface and flag."""
        key = (gateway, oif, onlink)
        hops = self._single_hops.get(key)
        if hops is None:
            hops = self._single_hops[key] = (
                NextHop(
                    None if gateway is None else self.address(gateway),
                    None if oif is None else self._links.name_of(_u32(oif)),
                    bool(onlink),
                ),
            )
        return hops

    def _multipath(self, data: bytes) -> tuple[NextHop, ...]:
        hops: list[NextHop] = []
        view = memoryview(data)
        offset = 0
        while offset + _RTNEXTHOP.size <= len(view):
            length, flags, _hops, ifindex = _RTNEXTHOP.unpack_from(view, offset)
            if length < _RTNEXTHOP.size:
                break
            attrs = _attributes(view, offset + _RTNEXTHOP.size, offset + length)
            gateway = attrs.get(RTA_GATEWAY)
            hops.append(
                NextHop(
                    None if gateway is None else self.address(gateway),
                    self._links.name_of(ifindex) if ifindex else None,
                    bool(flags & RTNH_F_ONLINK),
                )
            )
            offset += (length + 3) & ~3
        return tuple(hops)


def _u32(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


def _attributes(view: memoryview, start: int, end: int) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    offset = start
    while offset + 4 <= end:
        length, kind = _RTATTR.unpack_from(view, offset)
        if length < 4:
            break
        attrs[kind & 0x3FFF] = bytes(view[offset + 4 : offset + length])
        offset += (length + 3) & ~3
    return attrs


def _messages(data: memoryview) -> Iterable[tuple[int, int, memoryview]]:
    """``(type, seq, message)`` for every netlink message in one datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        yield msg_type, seq, data[offset : offset + length]
        offset += (length + 3) & ~3


class KernelProgrammer:
    """Keeps our protocol's kernel routes equal to the desired set (rules 1-7)."""

    def __init__(
        self,
        netns: str | None = None,
        *,
        protocol: int = RTPROT_BIRD,
        table: int = MAIN_TABLE,
        window: int = DEFAULT_WINDOW,
        desired: Callable[[], Iterable[KernelRoute]] | None = None,
    ) -> None:
        self.netns = netns
        self.protocol = protocol
        self.table = table
        self.window = window
        self._sock: socket.socket | None = None
        self._ipr: AsyncIPRoute | None = None
        self._links: LinkIndex | None = None
        self._lock = asyncio.Lock()
        self._seq = 0
        self._buffer = bytearray(_RECV_SIZE)
        self._known: dict[RouteIdentity, KernelRoute] = {}
        self._stale: set[RouteIdentity] = set()
        self._desired: dict[RouteIdentity, KernelRoute] | None = None
        self._source = desired  # rule 8
        self._fed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the socket, learn the links, read our routes and keep them (rule 5)."""
        self._sock = await asyncio.to_thread(self._open_socket)
        self._ipr = AsyncIPRoute(netns=self.netns, flags=0) if self.netns else AsyncIPRoute()
        await self._ipr.setup_endpoint()
        self._links = LinkIndex(self._ipr)
        async with self._lock:
            await self._links.refresh()
            self._known = index_routes(await self._dump())
            self._stale = set(self._known)

    def _open_socket(self) -> socket.socket:
        sock: socket.socket = create_socket(
            self.netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, flags=0
        )
        try:
            _set_buffer(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, SOCKET_BUFFER)
            _set_buffer(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            sock.bind((0, 0))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    async def __aenter__(self) -> KernelProgrammer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- state -------------------------------------------------------------------------------

    @property
    def known(self) -> dict[RouteIdentity, KernelRoute]:
        """The routes of ours we believe the kernel holds."""
        return dict(self._known)

    @property
    def stale(self) -> frozenset[RouteIdentity]:
        return frozenset(self._stale)

    def mark_stale(self) -> None:
        """Protect every route we know until ``sweep_stale`` (rule 5)."""
        self._stale = set(self._known)

    # -- operations --------------------------------------------------------------------------

    async def apply(self, desired: Iterable[KernelRoute]) -> ApplyResult:
        """Make the kernel hold ``desired``: diff against what we know, then write."""
        wanted = index_routes(desired)
        async with self._lock:
            self._desired = wanted
            self._source = None  # rule 8: from now on the desired set is this one
            await self._require_links().refresh()
            return await self._converge(self._known, wanted)

    async def update(
        self, upserts: Iterable[KernelRoute], removals: Iterable[RouteIdentity]
    ) -> ApplyResult:
        """Incremental ``apply``: set the given routes and drop the given identities from the
        desired set, writing only what differs from what the kernel holds. Costs O(changes),
        so a full table can stream in without re-diffing everything (rule 1)."""
        async with self._lock:
            desired: dict[RouteIdentity, KernelRoute] | None = None
            if self._source is None:  # rule 8: the desired set is ours to keep
                desired = self._desired if self._desired is not None else {}
                self._desired = desired
            self._fed = True
            known, stale = self._known, self._stale
            to_replace: list[KernelRoute] = []
            for route in upserts:
                key = route.identity
                if desired is not None:
                    desired[key] = route
                if stale:
                    stale.discard(key)
                have = known.get(key)
                if have is None or not satisfies(have, route):
                    to_replace.append(route)
            to_delete: list[KernelRoute] = []
            for key in removals:
                if desired is not None:
                    desired.pop(key, None)
                have = known.get(key)
                if have is not None and key not in stale:
                    to_delete.append(have)
            if _names_interfaces(to_replace):
                await self._require_links().refresh()
            return await self._write(to_replace, to_delete)

    async def reconcile(self) -> ApplyResult:
        """Dump our routes and repair any drift from the last desired set (rule 6)."""
        async with self._lock:
            await self._require_links().refresh()
            actual = index_routes(await self._dump())
            self._known = actual
            wanted = self._wanted()
            if wanted is None:
                return ApplyResult()
            return await self._converge(actual, wanted)

    async def sweep_stale(self) -> ApplyResult:
        """Delete the stale routes that are still unwanted (rule 5)."""
        async with self._lock:
            wanted = self._wanted() or {}
            doomed = [
                self._known[key] for key in self._stale if key in self._known and key not in wanted
            ]
            self._stale.clear()
            return await self._write([], doomed)

    async def dump(self) -> list[KernelRoute]:
        """Our protocol's routes in our table, as the kernel holds them now."""
        async with self._lock:
            await self._require_links().refresh()
            return await self._dump()

    def _wanted(self) -> dict[RouteIdentity, KernelRoute] | None:
        """The desired set (rule 8): the caller's, indexed for this call, or our own; None
        before the first ``update`` or ``apply``."""
        if self._source is not None:
            return index_routes(self._source()) if self._fed else None
        return self._desired

    async def _converge(
        self, have: dict[RouteIdentity, KernelRoute], wanted: dict[RouteIdentity, KernelRoute]
    ) -> ApplyResult:
        to_replace, to_delete = diff_indexed(have, wanted)
        self._stale.difference_update(wanted)
        to_delete = [route for route in to_delete if route.identity not in self._stale]
        return await self._write(to_replace, to_delete)

    # -- netlink -----------------------------------------------------------------------------

    def _require_links(self) -> LinkIndex:
        if self._links is None:
            raise RuntimeError("KernelProgrammer.start() was not awaited")
        return self._links

    def _require_socket(self) -> socket.socket:
        if self._sock is None:
            raise RuntimeError("KernelProgrammer.start() was not awaited")
        return self._sock

    async def _write(
        self, to_replace: Sequence[KernelRoute], to_delete: Sequence[KernelRoute]
    ) -> ApplyResult:
        packer = _Packer(self._require_links())
        known = self._known
        errors: list[RouteError] = []
        refused: list[KernelRoute] = []
        replaced = deleted = 0

        def pack_replace(route: KernelRoute, seq: int) -> bytes:
            flags = _FLAGS_REPLACE if route.identity in known else _FLAGS_NEW
            return packer.new_route(route, seq, flags)

        replacing = self._groups(to_replace, pack_replace, "replace", errors, refused)
        async for window, failed in self._exchange(replacing, "replace", errors):
            for position, route in enumerate(window.routes):
                if position in failed:
                    refused.append(route)
                else:
                    known[route.identity] = route
                    replaced += 1
        # rule 3: a route we could not replace must not leave our previous version behind
        orphaned = [known[r.identity] for r in refused if r.identity in known]

        def pack_delete(route: KernelRoute, seq: int) -> bytes:
            return packer.del_route(route, seq, NLM_F_REQUEST)

        deleting = self._groups([*to_delete, *orphaned], pack_delete, "delete", errors, [])
        async for window, failed in self._exchange(deleting, "delete", errors):
            for position, route in enumerate(window.routes):
                if position not in failed:
                    known.pop(route.identity, None)
                    self._stale.discard(route.identity)
                    deleted += 1
        return ApplyResult(replaced, deleted, tuple(errors))

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _groups(
        self,
        routes: Sequence[KernelRoute],
        pack: Callable[[KernelRoute, int], bytes],
        operation: str,
        errors: list[RouteError],
        unpacked: list[KernelRoute],
    ) -> Iterator[list[_Window]]:
        """The routes packed into windows, ``EXCHANGE_ROUTES`` routes per group (one hand-over,
        rule 7), lazily: a group is packed while the one before it is in flight. A route that
        does not pack is an error and goes to ``unpacked``."""
        for start in range(0, len(routes), EXCHANGE_ROUTES):
            stop = min(start + EXCHANGE_ROUTES, len(routes))
            windows: list[_Window] = []
            for first in range(start, stop, self.window):
                window = _Window()
                for route in routes[first : min(first + self.window, stop)]:
                    seq = self._next_seq()
                    try:
                        window.add(pack(route, seq), seq, route)
                    except OSError as exc:
                        errors.append(RouteError(route, operation, exc.errno or errno_codes.EINVAL))
                        unpacked.append(route)
                if window.routes:
                    windows.append(window)
            yield windows

    async def _exchange(
        self, groups: Iterable[list[_Window]], operation: str, errors: list[RouteError]
    ) -> AsyncIterator[tuple[_Window, set[int]]]:
        """Each window and its failed positions, the windows sent from a worker thread one group
        per hand-over, the next group packed while the last is in flight (rule 7)."""
        sock, buffer, deleting = self._require_socket(), self._buffer, operation == "delete"
        in_flight: tuple[list[_Window], asyncio.Future[list[_Answer]]] | None = None
        for windows in itertools.chain(groups, [None]):  # packs a group while one is in flight
            if in_flight is not None:
                sent, answers = in_flight
                in_flight = None
                for window, answer in zip(sent, await answers, strict=True):
                    yield window, _failures(window, answer, operation, errors)
            if windows:
                thread = asyncio.to_thread(_send_windows, sock, buffer, windows, deleting)
                in_flight = (windows, asyncio.ensure_future(thread))

    async def _dump(self) -> list[KernelRoute]:
        parser = _DumpParser(self.protocol, self.table, self._require_links())
        routes: list[KernelRoute] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            routes.extend(await self._dump_family(family, parser))
        return routes

    async def _dump_family(self, family: int, parser: _DumpParser) -> list[KernelRoute]:
        sock = self._require_socket()
        seq = self._next_seq()
        table = self.table if self.table < 256 else RT_TABLE_COMPAT
        rtm = _RTMSG.pack(family, 0, 0, 0, table, self.protocol, 0, 0, 0)
        request = rtm + _U32_ATTR.pack(8, RTA_TABLE, self.table)
        sock.send(
            _NLMSGHDR.pack(
                _NLMSGHDR.size + len(request), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
            )
            + request
        )
        routes: list[KernelRoute] = []
        loop = asyncio.get_running_loop()
        while True:
            size = await loop.sock_recv_into(sock, self._buffer)
            for msg_type, msg_seq, message in _messages(memoryview(self._buffer)[:size]):
                if msg_seq != seq:
                    continue
                if msg_type == NLMSG_DONE:
                    return routes
                if msg_type == NLMSG_ERROR:
                    code = -_ERROR_HEAD.unpack_from(message, _NLMSGHDR.size)[0]
                    raise OSError(code, f"route dump failed: {os.strerror(code)}")
                if msg_type == RTM_NEWROUTE:
                    route = parser.route(message)
                    if route is not None:
                        routes.append(route)


class _Window:
    """One ``send``: packed messages, their sequence numbers and routes; the last message
    asks for the ACK (rule 2)."""

    __slots__ = ("messages", "positions", "routes")

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.positions: dict[int, int] = {}  # sequence number -> position, in sending order
        self.routes: list[KernelRoute] = []

    def add(self, message: bytes, seq: int, route: KernelRoute) -> None:
        self.positions[seq] = len(self.routes)
        self.messages.append(message)
        self.routes.append(route)

    def payload(self) -> bytes:
        last = self.messages[-1]
        self.messages[-1] = last[:6] + struct.pack("=H", _flag_field(last) | NLM_F_ACK) + last[8:]
        return b"".join(self.messages)


# What the worker thread reports per window: the errno of a failed ``send``, or the
# (position, errno) of each refused route.
_Answer = int | list[tuple[int, int]]


def _failures(
    window: _Window, answer: _Answer, operation: str, errors: list[RouteError]
) -> set[int]:
    """The window's failed positions, each recorded in ``errors``."""
    if isinstance(answer, int):  # the send itself failed: every route in the window
        errors.extend(RouteError(route, operation, answer) for route in window.routes)
        return set(range(len(window.routes)))
    errors.extend(RouteError(window.routes[position], operation, code) for position, code in answer)
    return {position for position, _code in answer}


def _send_windows(
    sock: socket.socket, buffer: bytearray, windows: Sequence[_Window], deleting: bool
) -> list[_Answer]:
    """Blocking, on a worker thread (rule 7): send each window and read its answers, one
    ``_Answer`` per window. The kernel answers a window inside ``send``, so its replies are
    queued when ``send`` returns."""
    answers: list[_Answer] = []
    for window in windows:
        try:
            sock.send(window.payload())
        except OSError as exc:
            answers.append(exc.errno or errno_codes.EIO)
            continue
        failures: list[tuple[int, int]] = []
        positions = window.positions
        last_seq = next(reversed(positions))
        done = False
        while not done:
            try:
                size = sock.recv_into(buffer)
            except BlockingIOError:
                select.select([sock], [], [])
                continue
            for msg_type, seq, message in _messages(memoryview(buffer)[:size]):
                if msg_type != NLMSG_ERROR or seq not in positions:
                    continue
                code = -_ERROR_HEAD.unpack_from(message, _NLMSGHDR.size)[0]
                if code and not (deleting and code == errno_codes.ESRCH):
                    failures.append((positions[seq], code))
                done = done or seq == last_seq
        answers.append(failures)
    return answers


def _set_buffer(sock: socket.socket, forced: int, capped: int, size: int) -> None:
    """A socket buffer of ``size``: past ``net.core.[rw]mem_max`` with CAP_NET_ADMIN, else as
    large as the sysctl allows. Every refused route of a window must fit in the receive buffer
    (its NLMSG_ERROR is dropped otherwise)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, forced, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, capped, size)


def _names_interfaces(routes: Iterable[KernelRoute]) -> bool:
    """Does any route need an interface index? Checked once per next-hop tuple, which routes
    through the same next hops share (``plan_destination``)."""
    seen: tuple[NextHop, ...] | None = None
    for route in routes:
        hops = route.nexthops
        if hops is seen:
            continue
        seen = hops
        if any(hop.ifname is not None for hop in hops):
            return True
    return False


def _flag_field(message: bytes) -> int:
    return int.from_bytes(message[6:8], "little")
