"""encap.devices against the real kernel: vxlan.calico / vxlan-v6.calico created to spec,
recreated when incompatible, repaired in place, neighbour/FDB reconcile, IPIP unsupported."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from kernel_netns import Namespaces, ip_in, ip_json, ipip_supported, sh
from pyroute2 import AsyncIPRoute

from encap.devices import DeviceError, EncapUnsupported, TunnelDevices
from encap.model import NodeTunnelInfo
from encap.vxlan import (
    FdbEntry,
    NeighbourEntry,
    RemoteVtep,
    VxlanDeviceSpec,
    desired_l2,
    ipip_device_spec,
    vxlan_device_spec,
)

pytestmark = pytest.mark.netns

ip = ipaddress.ip_address

LOCAL = NodeTunnelInfo(
    "node-a",
    ipv4_address=ipaddress.IPv4Interface("192.168.1.10/24"),
    ipv6_address=ipaddress.IPv6Interface("fd00:1::10/64"),
    ipv4_vxlan_tunnel_addr=ipaddress.IPv4Address("10.244.1.0"),
    ipv6_vxlan_tunnel_addr=ipaddress.IPv6Address("fd00:10::1"),
    ipv4_ipip_tunnel_addr=ipaddress.IPv4Address("10.244.1.1"),
)


@pytest.fixture
def node() -> Iterator[str]:
    with Namespaces("vx") as spaces:
        name = spaces.new()
        ip_in(name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        ip_in(name, "addr", "add", "192.168.1.10/24", "dev", "eth0")
        ip_in(name, "-6", "addr", "add", "fd00:1::10/64", "dev", "eth0", "nodad")
        ip_in(name, "link", "set", "eth0", "up")
        yield name


@pytest.fixture
async def devices(node: str) -> AsyncIterator[TunnelDevices]:
    async with AsyncIPRoute(netns=node, flags=0) as ipr:
        yield TunnelDevices(ipr)


def spec_v4() -> VxlanDeviceSpec:
    spec = vxlan_device_spec(LOCAL, 4, host_mtu=1500)
    assert spec is not None
    return spec


def link_details(namespace: str, name: str) -> dict[str, Any]:
    [link] = ip_json(namespace, "-d", "link", "show", name)
    return dict(link)


def addresses(namespace: str, name: str, version: int = 4) -> list[str]:
    [link] = ip_json(namespace, f"-{version}", "addr", "show", name)
    return [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a.get("scope") != "link"]


async def test_vxlan_device_created_to_spec(node: str, devices: TunnelDevices) -> None:
    report = await devices.ensure_vxlan(spec_v4())
    assert report.created and report.recreated_because == ()
    link = link_details(node, "vxlan.calico")
    data = link["linkinfo"]["info_data"]
    assert link["linkinfo"]["info_kind"] == "vxlan"
    assert (data["id"], data["port"], data["local"]) == (4096, 4789, "192.168.1.10")
    assert data["learning"] is False
    assert data["link"] == "eth0"
    assert link["address"] == spec_v4().mac
    assert link["mtu"] == 1450
    assert "UP" in link["flags"]
    assert addresses(node, "vxlan.calico") == ["10.244.1.0/32"]
    again = await devices.ensure_vxlan(spec_v4())
    assert (again.index, again.created) == (report.index, False)


async def test_vxlan_v6_device(node: str, devices: TunnelDevices) -> None:
    spec = vxlan_device_spec(LOCAL, 6, host_mtu=1500)
    assert spec is not None
    await devices.ensure_vxlan(spec)
    link = link_details(node, "vxlan-v6.calico")
    assert link["linkinfo"]["info_data"]["local6"] == "fd00:1::10"
    assert link["mtu"] == 1430
    assert link["address"] == spec.mac
    assert addresses(node, "vxlan-v6.calico", 6) == ["fd00:10::1/128"]


@pytest.mark.parametrize(
    ("precreate", "reason"),
    [
        (
            (
                "type",
                "vxlan",
                "id",
                "5000",
                "dstport",
                "4789",
                "local",
                "192.168.1.10",
                "dev",
                "eth0",
            ),
            "vni",
        ),
        (
            (
                "type",
                "vxlan",
                "id",
                "4096",
                "dstport",
                "8472",
                "local",
                "192.168.1.10",
                "dev",
                "eth0",
            ),
            "port",
        ),
        (
            (
                "type",
                "vxlan",
                "id",
                "4096",
                "dstport",
                "4789",
                "local",
                "192.168.1.10",
                "dev",
                "eth0",
                "learning",
            ),
            "learning",
        ),
        (("type", "veth", "peer", "name", "junk0"), "not a vxlan device"),
    ],
)
async def test_incompatible_device_is_recreated(
    node: str, devices: TunnelDevices, precreate: tuple[str, ...], reason: str
) -> None:
    ip_in(node, "link", "add", "vxlan.calico", *precreate)
    report = await devices.ensure_vxlan(spec_v4())
    assert report.created
    assert any(r.startswith(reason) for r in report.recreated_because), report
    data = link_details(node, "vxlan.calico")["linkinfo"]["info_data"]
    assert (data["id"], data["port"], data["learning"]) == (4096, 4789, False)


async def test_mtu_and_addresses_repaired_in_place(node: str, devices: TunnelDevices) -> None:
    first = await devices.ensure_vxlan(spec_v4())
    ip_in(node, "link", "set", "vxlan.calico", "mtu", "1300", "down")
    ip_in(node, "addr", "add", "10.9.9.9/24", "dev", "vxlan.calico")
    ip_in(node, "addr", "del", "10.244.1.0/32", "dev", "vxlan.calico")
    again = await devices.ensure_vxlan(spec_v4())
    assert (again.index, again.created) == (first.index, False)
    link = link_details(node, "vxlan.calico")
    assert link["mtu"] == 1450 and "UP" in link["flags"]
    assert addresses(node, "vxlan.calico") == ["10.244.1.0/32"]


async def test_missing_parent_address_is_an_error(devices: TunnelDevices) -> None:
    other = NodeTunnelInfo("x", ipv4_address=ipaddress.IPv4Interface("172.31.0.1/24"))
    spec = vxlan_device_spec(other, 4, 1500)
    assert spec is not None
    with pytest.raises(DeviceError, match="172.31.0.1"):
        await devices.ensure_vxlan(spec)


def neighbours(namespace: str) -> set[tuple[str, str, str]]:
    return {
        (n["dst"], n["lladdr"], ",".join(n["state"]))
        for n in ip_json(namespace, "neigh", "show", "dev", "vxlan.calico")
    }


def fdb(namespace: str) -> set[tuple[str, str]]:
    out = sh("ip", "netns", "exec", namespace, "bridge", "-j", "fdb", "show", "dev", "vxlan.calico")
    return {(e["mac"], e["dst"]) for e in json.loads(out.stdout or "[]") if "dst" in e}


async def test_neighbour_and_fdb_reconcile(node: str, devices: TunnelDevices) -> None:
    await devices.ensure_vxlan(spec_v4())
    ip_in(
        node,
        "neigh",
        "add",
        "10.244.9.0",
        "lladdr",
        "66:00:00:00:00:09",
        "dev",
        "vxlan.calico",
        "nud",
        "permanent",
    )
    sh(
        "ip",
        "netns",
        "exec",
        node,
        "bridge",
        "fdb",
        "add",
        "66:00:00:00:00:09",
        "dev",
        "vxlan.calico",
        "dst",
        "192.168.9.9",
    )
    vteps = [
        RemoteVtep("node-b", ip("10.244.2.0"), "66:00:00:00:00:02", ip("192.168.2.20")),
        RemoteVtep("node-c", ip("10.244.3.0"), "66:00:00:00:00:03", ip("192.168.1.30")),
        RemoteVtep("node-a", ip("10.244.1.0"), "66:00:00:00:00:01", ip("192.168.1.10")),
    ]
    desired = desired_l2(vteps, local_node="node-a")
    report = await devices.reconcile_l2("vxlan.calico", desired)
    assert len(report.added) == 4 and len(report.removed) == 2
    assert neighbours(node) == {
        ("10.244.2.0", "66:00:00:00:00:02", "PERMANENT"),
        ("10.244.3.0", "66:00:00:00:00:03", "PERMANENT"),
    }
    assert fdb(node) == {
        ("66:00:00:00:00:02", "192.168.2.20"),
        ("66:00:00:00:00:03", "192.168.1.30"),
    }
    # a VTEP moves to another node IP: the FDB entry follows, nothing else changes
    moved = desired_l2(
        [vteps[0], RemoteVtep("node-c", ip("10.244.3.0"), "66:00:00:00:00:03", ip("192.168.1.31"))],
        local_node="node-a",
    )
    report = await devices.reconcile_l2("vxlan.calico", moved)
    assert report.added == (FdbEntry("66:00:00:00:00:03", ip("192.168.1.31")),)
    assert report.removed == (FdbEntry("66:00:00:00:00:03", ip("192.168.1.30")),)
    assert ("66:00:00:00:00:03", "192.168.1.31") in fdb(node)
    # converged: nothing to do
    assert await devices.reconcile_l2("vxlan.calico", moved) == type(report)()
    current_neigh, current_fdb = await devices.l2_entries("vxlan.calico")
    assert current_neigh == moved.neighbours and current_fdb == moved.fdb
    assert NeighbourEntry(ip("10.244.2.0"), "66:00:00:00:00:02") in current_neigh


async def test_ipip_unsupported_names_the_pools(node: str, devices: TunnelDevices) -> None:
    supported, reason = ipip_supported()
    if supported:
        report = await devices.ensure_ipip(ipip_device_spec(LOCAL, 1500), ["ipip-pool"])
        link = link_details(node, "tunl0")
        assert link["mtu"] == 1480 and addresses(node, "tunl0") == ["10.244.1.1/32"]
        assert report.index > 0
        return
    with pytest.raises(EncapUnsupported) as caught:
        await devices.ensure_ipip(ipip_device_spec(LOCAL, 1500), ["ipip-pool", "other-pool"])
    assert caught.value.pools == ("ipip-pool", "other-pool")
    assert "ipip-pool" in str(caught.value) and "IP-in-IP" in str(caught.value)
    # the failure leaves VXLAN working in the same namespace
    assert (await devices.ensure_vxlan(spec_v4())).created
    assert reason
