"""Tunnel devices in the kernel: ``vxlan.calico``, ``vxlan-v6.calico``, ``tunl0``, and the VXLAN
neighbour/FDB entries, through ``pyroute2.AsyncIPRoute``.

Rules (calico-bgp.md §3.2, §3.3, §3.5; Felix ``vxlan_mgr``, ``route_mgr``, ``ipip_mgr``):
1. Levels, not edges: every call reads the device, compares it with the spec
   (``encap.vxlan.incompatibilities``) and converges. An incompatible device (wrong kind, VNI,
   port, parent, local address, learning, MAC) is deleted and recreated; MTU, addresses and
   admin state are repaired in place.
2. The parent interface is the one holding the spec's local address, unless the spec names it.
3. The device carries exactly the spec's address in its family; other addresses of that family
   are removed (IPv6 link-local addresses are the kernel's and stay).
4. Neighbour and FDB entries are reconciled as permanent entries: missing ones are written with
   replace semantics, stale *permanent* ones are removed, entries the kernel created itself are
   left alone.
5. A kernel without the ``ipip`` link type (NetlinkError 95 / unknown type) raises
   ``EncapUnsupported`` naming the pools that need it; nothing else is affected, so the caller
   keeps every other pool working and reports degraded readiness.
6. ``converge(plan)`` brings a whole ``TunnelPlan`` about and never raises for a device: each
   device that cannot be built is a problem in the returned ``TunnelReport`` (with the pools
   that cannot be routed), and the other devices still converge.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from encap.model import IPAddress, IPInterface
from encap.vxlan import (
    FdbEntry,
    IpipDeviceSpec,
    NeighbourEntry,
    TunnelPlan,
    VxlanDeviceSpec,
    VxlanL2State,
    VxlanLinkState,
    desired_l2,
    diff_entries,
    incompatibilities,
    ipip_device_spec,
    normalise_mac,
    remote_vtep,
    vxlan_device_spec,
)

NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
UNSUPPORTED_ERRNOS = frozenset({errno.EOPNOTSUPP, errno.ENODEV, errno.ENOENT, errno.EINVAL})


class EncapUnsupported(Exception):
    """The kernel cannot build a tunnel some pools need (rule 5)."""

    def __init__(self, encapsulation: str, pools: Iterable[str], reason: str) -> None:
        self.encapsulation = encapsulation
        self.pools = tuple(pools)
        self.reason = reason
        names = ", ".join(self.pools) or "none"
        super().__init__(
            f"{encapsulation} is not supported by this kernel ({reason}); "
            f"pools that need it cannot be routed: {names}"
        )


class DeviceError(Exception):
    """A tunnel device cannot be configured as specified (e.g. no interface holds its IP)."""


@dataclass(frozen=True, slots=True)
class ParentInterface:
    index: int
    name: str
    mtu: int


@dataclass(frozen=True, slots=True)
class DeviceReport:
    """What ``ensure_*`` did: the device index and, when recreated, why."""

    index: int
    created: bool = False
    recreated_because: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class L2Report:
    added: tuple[NeighbourEntry | FdbEntry, ...] = ()
    removed: tuple[NeighbourEntry | FdbEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class TunnelReport:
    """What ``converge`` could not do (rule 6): one line per device, the pools left unroutable,
    and the devices recreated because they were incompatible (device, reasons)."""

    problems: tuple[str, ...] = ()
    unroutable_pools: tuple[str, ...] = ()
    recreated: tuple[tuple[str, tuple[str, ...]], ...] = ()


async def converge(plan: TunnelPlan | None) -> TunnelReport:
    """Rule 6: the devices of ``plan`` (None or an empty plan: nothing to keep)."""
    if plan is None or not (plan.vxlan_versions or plan.ipip_pools):
        return TunnelReport()
    problems: list[str] = []
    unroutable: list[str] = []
    recreated: list[tuple[str, tuple[str, ...]]] = []
    local = plan.local
    async with AsyncIPRoute() as ipr:
        devices = TunnelDevices(ipr)
        for version in plan.vxlan_versions:
            address = local.address(version)
            try:
                if address is None:
                    raise DeviceError(f"node has no IPv{version} address for VXLAN")
                parent = await devices.find_parent(address.ip)
                spec = vxlan_device_spec(local, version, parent.mtu, parent.name)
                if spec is None:
                    continue
                report = await devices.ensure_vxlan(spec)
                if report.recreated_because:
                    recreated.append((spec.name, report.recreated_because))
                vteps = [v for n in plan.others if (v := remote_vtep(n, version)) is not None]
                await devices.reconcile_l2(spec.name, desired_l2(vteps, local.name))
            except (DeviceError, OSError) as exc:
                problems.append(f"vxlan (IPv{version}): {exc}")
        if plan.ipip_pools:
            try:
                address = local.address(4)
                mtu = (await devices.find_parent(address.ip)).mtu if address else 1500
                await devices.ensure_ipip(ipip_device_spec(local, mtu), plan.ipip_pools)
            except EncapUnsupported as exc:
                problems.append(str(exc))
                unroutable.extend(exc.pools)
            except (DeviceError, OSError) as exc:
                problems.append(f"ipip: {exc}")
    return TunnelReport(tuple(problems), tuple(sorted(set(unroutable))), tuple(recreated))


def _vxlan_state(link: Any) -> VxlanLinkState | None:
    """Read a link message into a ``VxlanLinkState``; None when it is not a VXLAN link."""
    if link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") != "vxlan":
        return None
    data = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
    local = data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6")
    learning = data.get("IFLA_VXLAN_LEARNING")
    return VxlanLinkState(
        vni=data.get("IFLA_VXLAN_ID"),
        port=data.get("IFLA_VXLAN_PORT"),
        local_ip=ipaddress.ip_address(local) if local else None,
        mac=link.get("address"),
        learning=None if learning is None else bool(learning),
        parent_index=data.get("IFLA_VXLAN_LINK"),
    )


class TunnelDevices:
    """Converges tunnel devices and VXLAN L2 entries in one network namespace."""

    def __init__(self, ipr: AsyncIPRoute) -> None:
        self._ipr = ipr

    async def _link(self, name: str) -> Any | None:
        try:
            links = await self._ipr.link("get", ifname=name)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return None
            raise
        return links[0] if links else None

    async def find_parent(self, address: IPAddress) -> ParentInterface:
        """Rule 2: the interface holding ``address``."""
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        async for entry in await self._ipr.addr("dump", family=family):
            if ipaddress.ip_address(entry.get("IFA_ADDRESS")) == address:
                link = await self._ipr.link("get", index=entry["index"])
                return ParentInterface(entry["index"], link[0].get("ifname"), link[0].get("mtu"))
        raise DeviceError(f"no interface holds the node address {address}")

    async def ensure_vxlan(self, spec: VxlanDeviceSpec) -> DeviceReport:
        """Rules 1-3 for a VXLAN device."""
        if spec.parent_ifname is not None:
            parent_links = await self._ipr.link_lookup(ifname=spec.parent_ifname)
            if not parent_links:
                raise DeviceError(f"parent interface {spec.parent_ifname} does not exist")
            parent_index = parent_links[0]
        else:
            parent_index = (await self.find_parent(spec.local_ip)).index
        link = await self._link(spec.name)
        reasons: tuple[str, ...] = ()
        if link is not None:
            state = _vxlan_state(link)
            reasons = (
                ("not a vxlan device",)
                if state is None
                else incompatibilities(state, spec, parent_index)
            )
            if reasons:
                await self._ipr.link("del", index=link["index"])
                link = None
        created = link is None
        if link is None:
            local_key = "vxlan_local" if spec.local_ip.version == 4 else "vxlan_local6"
            await self._ipr.link(
                "add",
                ifname=spec.name,
                kind="vxlan",
                vxlan_id=spec.vni,
                vxlan_port=spec.port,
                vxlan_learning=int(spec.learning),
                vxlan_link=parent_index,
                address=spec.mac,
                mtu=spec.mtu,
                **{local_key: str(spec.local_ip)},
            )
            link = await self._link(spec.name)
            if link is None:
                raise DeviceError(f"{spec.name} vanished right after creation")
        index = link["index"]
        await self._converge_link(
            index, link.get("mtu"), spec.mtu, spec.address, spec.local_ip.version
        )
        return DeviceReport(index, created, reasons)

    async def ensure_ipip(self, spec: IpipDeviceSpec, pools: Iterable[str]) -> DeviceReport:
        """Rules 1, 3 and 5 for ``tunl0``: the kernel's fallback IP-in-IP device."""
        link = await self._link(spec.name)
        created = link is None
        if link is None:
            try:
                await self._ipr.link("add", ifname=spec.name, kind="ipip")
            except NetlinkError as exc:
                if exc.code in UNSUPPORTED_ERRNOS:
                    raise EncapUnsupported("IP-in-IP", pools, f"ipip link: {exc}") from exc
                raise
            link = await self._link(spec.name)
            if link is None:
                raise EncapUnsupported("IP-in-IP", pools, f"{spec.name} missing after creation")
        index = link["index"]
        await self._converge_link(index, link.get("mtu"), spec.mtu, spec.address, 4)
        return DeviceReport(index, created)

    async def remove(self, name: str) -> bool:
        """Delete a device if it exists; True when something was deleted."""
        link = await self._link(name)
        if link is None:
            return False
        await self._ipr.link("del", index=link["index"])
        return True

    async def _converge_link(
        self,
        index: int,
        mtu: int | None,
        wanted_mtu: int,
        address: IPInterface | None,
        version: int,
    ) -> None:
        if mtu != wanted_mtu:
            await self._ipr.link("set", index=index, mtu=wanted_mtu)
        await self._converge_addresses(index, address, version)
        await self._ipr.link("set", index=index, state="up")

    async def _converge_addresses(
        self, index: int, wanted: IPInterface | None, version: int
    ) -> None:
        """Rule 3."""
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        present: set[IPInterface] = set()
        async for entry in await self._ipr.addr("dump", index=index, family=family):
            interface = ipaddress.ip_interface(f"{entry.get('IFA_ADDRESS')}/{entry['prefixlen']}")
            if interface.ip.is_link_local:
                continue
            present.add(interface)
        for stale in present - ({wanted} if wanted else set()):
            await self._ipr.addr(
                "del", index=index, address=str(stale.ip), prefixlen=stale.network.prefixlen
            )
        if wanted is not None and wanted not in present:
            await self._ipr.addr(
                "add", index=index, address=str(wanted.ip), prefixlen=wanted.network.prefixlen
            )

    async def l2_entries(self, name: str) -> tuple[set[NeighbourEntry], set[FdbEntry]]:
        """The permanent neighbour and FDB entries on a device (rule 4)."""
        link = await self._link(name)
        if link is None:
            raise DeviceError(f"{name} does not exist")
        index = link["index"]
        neighbours: set[NeighbourEntry] = set()
        async for entry in await self._ipr.neigh("dump", ifindex=index):
            if entry["ifindex"] != index or not entry["state"] & NUD_PERMANENT:
                continue
            dst, mac = entry.get("NDA_DST"), entry.get("NDA_LLADDR")
            if dst and mac:
                neighbours.add(NeighbourEntry(ipaddress.ip_address(dst), normalise_mac(mac)))
        fdb: set[FdbEntry] = set()
        async for entry in await self._ipr.fdb("dump", ifindex=index):
            if entry["ifindex"] != index or not entry["state"] & NUD_PERMANENT:
                continue
            dst, mac = entry.get("NDA_DST"), entry.get("NDA_LLADDR")
            if dst and mac:
                fdb.add(FdbEntry(normalise_mac(mac), ipaddress.ip_address(dst)))
        return neighbours, fdb

    async def reconcile_l2(self, name: str, desired: VxlanL2State) -> L2Report:
        """Rule 4: make the device's permanent neighbour and FDB entries equal ``desired``."""
        link = await self._link(name)
        if link is None:
            raise DeviceError(f"{name} does not exist")
        index = link["index"]
        neighbours, fdb = await self.l2_entries(name)
        add_neigh, remove_neigh = diff_entries(neighbours, desired.neighbours)
        add_fdb, remove_fdb = diff_entries(fdb, desired.fdb)
        for stale_fdb in remove_fdb:
            await self._ipr.fdb("del", ifindex=index, lladdr=stale_fdb.mac, dst=str(stale_fdb.dst))
        for stale_neigh in remove_neigh:
            await self._ipr.neigh(
                "del", ifindex=index, dst=str(stale_neigh.ip), lladdr=stale_neigh.mac
            )
        for neigh in add_neigh:
            await self._ipr.neigh(
                "replace", ifindex=index, dst=str(neigh.ip), lladdr=neigh.mac, state=NUD_PERMANENT
            )
        for entry in add_fdb:
            await self._ipr.fdb(
                "replace",
                ifindex=index,
                lladdr=entry.mac,
                dst=str(entry.dst),
                state=NUD_PERMANENT | NUD_NOARP,
                flags=NTF_SELF,
            )
        added: tuple[NeighbourEntry | FdbEntry, ...] = (*add_neigh, *add_fdb)
        removed: tuple[NeighbourEntry | FdbEntry, ...] = (*remove_neigh, *remove_fdb)
        return L2Report(added, removed)
