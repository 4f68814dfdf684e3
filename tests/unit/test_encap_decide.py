"""encap.model / encap.decide / encap.vxlan: pool modes, the per-route decision, VTEP MACs,
device specs and desired L2 entries (calico-bgp.md §2.11, §3.2-§3.5)."""

from __future__ import annotations

import ipaddress

import pytest

from encap.decide import Direct, Ipip, Unresolved, Vxlan, decide, needs_tunnel
from encap.model import EncapMode, Encapsulation, NodeTunnelInfo, PoolSpec
from encap.vxlan import (
    FdbEntry,
    NeighbourEntry,
    RemoteVtep,
    VxlanLinkState,
    desired_l2,
    diff_entries,
    incompatibilities,
    ipip_device_spec,
    remote_vtep,
    vtep_mac,
    vxlan_device_spec,
)

ip = ipaddress.ip_address
net = ipaddress.ip_network

LOCAL_SUBNET = net("192.168.1.0/24")
SAME_SUBNET_NH = ip("192.168.1.20")
OTHER_SUBNET_NH = ip("192.168.2.20")
REMOTE_VTEP = ip("10.244.7.0")
BLOCK = net("10.244.7.0/26")


def pool(ipip: str = "Never", vxlan: str = "Never", cidr: str = "10.244.0.0/16") -> PoolSpec:
    return PoolSpec(net(cidr), EncapMode.parse(ipip), EncapMode.parse(vxlan), name="p")


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("Always", EncapMode.ALWAYS),
        ("CrossSubnet", EncapMode.CROSS_SUBNET),
        ("cross-subnet", EncapMode.CROSS_SUBNET),
        ("Never", EncapMode.NEVER),
        ("", EncapMode.NEVER),
        (None, EncapMode.NEVER),
        ("off", EncapMode.NEVER),
        ("always", EncapMode.ALWAYS),
    ],
)
def test_mode_parse(text: str | None, mode: EncapMode) -> None:
    assert EncapMode.parse(text) is mode


def test_mode_parse_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="unknown encapsulation mode"):
        EncapMode.parse("Sometimes")


def test_pool_from_spec_and_encapsulation() -> None:
    spec = PoolSpec.from_spec("default", {"cidr": "10.244.0.0/16", "vxlanMode": "CrossSubnet"})
    assert spec.cidr == net("10.244.0.0/16")
    assert spec.encapsulation is Encapsulation.VXLAN
    assert spec.mode is EncapMode.CROSS_SUBNET
    assert pool(ipip="Always").encapsulation is Encapsulation.IPIP
    assert pool().encapsulation is Encapsulation.NONE
    assert pool().mode is EncapMode.NEVER


def test_pool_with_both_encapsulations_is_invalid() -> None:
    with pytest.raises(ValueError, match="cannot both be enabled"):
        pool(ipip="Always", vxlan="Always")


def test_ipip_is_ipv4_only() -> None:
    v6 = pool(ipip="Always", cidr="fd00:10::/48")
    assert v6.encapsulation is Encapsulation.NONE
    assert decide(net("fd00:10::/122"), ip("fd00::2"), v6, None) == Direct(ip("fd00::2"))


@pytest.mark.parametrize(
    ("mode", "next_hop", "local", "tunnel"),
    [
        (EncapMode.ALWAYS, SAME_SUBNET_NH, LOCAL_SUBNET, True),
        (EncapMode.ALWAYS, OTHER_SUBNET_NH, LOCAL_SUBNET, True),
        (EncapMode.CROSS_SUBNET, SAME_SUBNET_NH, LOCAL_SUBNET, False),
        (EncapMode.CROSS_SUBNET, OTHER_SUBNET_NH, LOCAL_SUBNET, True),
        (EncapMode.CROSS_SUBNET, SAME_SUBNET_NH, None, True),
        (EncapMode.NEVER, OTHER_SUBNET_NH, LOCAL_SUBNET, False),
    ],
)
def test_needs_tunnel(
    mode: EncapMode,
    next_hop: ipaddress.IPv4Address,
    local: ipaddress.IPv4Network | None,
    tunnel: bool,
) -> None:
    assert needs_tunnel(mode, next_hop, local) is tunnel


def test_no_pool_goes_direct() -> None:
    assert decide(net("0.0.0.0/0"), OTHER_SUBNET_NH, None, LOCAL_SUBNET) == Direct(OTHER_SUBNET_NH)


@pytest.mark.parametrize("mode", ["Always", "CrossSubnet"])
def test_ipip_across_subnets(mode: str) -> None:
    decision = decide(BLOCK, OTHER_SUBNET_NH, pool(ipip=mode), LOCAL_SUBNET)
    assert decision == Ipip(OTHER_SUBNET_NH, "tunl0")


def test_ipip_cross_subnet_same_subnet_is_direct() -> None:
    decision = decide(BLOCK, SAME_SUBNET_NH, pool(ipip="CrossSubnet"), LOCAL_SUBNET)
    assert decision == Direct(SAME_SUBNET_NH)


def test_ipip_always_same_subnet_still_tunnels() -> None:
    assert decide(BLOCK, SAME_SUBNET_NH, pool(ipip="Always"), LOCAL_SUBNET) == Ipip(SAME_SUBNET_NH)


@pytest.mark.parametrize("mode", ["Always", "CrossSubnet"])
def test_vxlan_across_subnets_goes_via_vtep(mode: str) -> None:
    decision = decide(BLOCK, OTHER_SUBNET_NH, pool(vxlan=mode), LOCAL_SUBNET, REMOTE_VTEP)
    assert decision == Vxlan(REMOTE_VTEP, "vxlan.calico")


def test_vxlan_cross_subnet_same_subnet_is_direct_via_node() -> None:
    decision = decide(BLOCK, SAME_SUBNET_NH, pool(vxlan="CrossSubnet"), LOCAL_SUBNET, REMOTE_VTEP)
    assert decision == Direct(SAME_SUBNET_NH)


def test_vxlan_never_is_direct() -> None:
    assert decide(BLOCK, OTHER_SUBNET_NH, pool(), LOCAL_SUBNET, REMOTE_VTEP) == Direct(
        OTHER_SUBNET_NH
    )


def test_vxlan_without_vtep_is_unresolved() -> None:
    decision = decide(BLOCK, OTHER_SUBNET_NH, pool(vxlan="Always"), LOCAL_SUBNET, None)
    assert isinstance(decision, Unresolved)
    assert str(OTHER_SUBNET_NH) in decision.reason


def test_vxlan_v6_uses_v6_device() -> None:
    v6pool = pool(vxlan="Always", cidr="fd00:10::/48")
    decision = decide(
        net("fd00:10::/122"), ip("fd00:2::9"), v6pool, net("fd00:1::/64"), ip("fd00:10::1")
    )
    assert decision == Vxlan(ip("fd00:10::1"), "vxlan-v6.calico")


def test_vtep_mac_matches_calico_derivation() -> None:
    # printf node1 | sha1sum -> f937c37e94...; printf node1-v6 | sha1sum -> 0f35f260df...
    assert vtep_mac("node1") == "66:f9:37:c3:7e:94"
    assert vtep_mac("node1", 6) == "66:0f:35:f2:60:df"


def node(name: str = "node1", **extra: object) -> NodeTunnelInfo:
    fields: dict[str, object] = {
        "ipv4_address": ipaddress.IPv4Interface("192.168.1.10/24"),
        "ipv4_vxlan_tunnel_addr": ipaddress.IPv4Address("10.244.1.0"),
        "ipv6_address": ipaddress.IPv6Interface("fd00:1::10/64"),
        "ipv6_vxlan_tunnel_addr": ipaddress.IPv6Address("fd00:10::1"),
        "ipv4_ipip_tunnel_addr": ipaddress.IPv4Address("10.244.1.1"),
    }
    fields.update(extra)
    return NodeTunnelInfo(name, **fields)  # type: ignore[arg-type]


def test_vxlan_device_spec_v4() -> None:
    spec = vxlan_device_spec(node(), 4, host_mtu=1500)
    assert spec is not None
    assert (spec.name, spec.vni, spec.port, spec.learning) == ("vxlan.calico", 4096, 4789, False)
    assert spec.local_ip == ip("192.168.1.10")
    assert spec.mtu == 1450
    assert spec.address == ipaddress.ip_interface("10.244.1.0/32")
    assert spec.mac == "66:f9:37:c3:7e:94"


def test_vxlan_device_spec_v6_and_configured_mac() -> None:
    spec = vxlan_device_spec(node(vxlan_tunnel_mac_v6="AA-BB-CC-00-11-22"), 6, host_mtu=1500)
    assert spec is not None
    assert spec.name == "vxlan-v6.calico"
    assert spec.mtu == 1430
    assert spec.address == ipaddress.ip_interface("fd00:10::1/128")
    assert spec.mac == "aa:bb:cc:00:11:22"


def test_vxlan_device_spec_needs_node_ip() -> None:
    assert vxlan_device_spec(NodeTunnelInfo("bare"), 4, 1500) is None


def test_ipip_device_spec() -> None:
    spec = ipip_device_spec(node(), host_mtu=1500)
    assert (spec.name, spec.mtu) == ("tunl0", 1480)
    assert spec.address == ipaddress.IPv4Interface("10.244.1.1/32")


def test_incompatibilities() -> None:
    spec = vxlan_device_spec(node(), 4, host_mtu=1500)
    assert spec is not None
    good = VxlanLinkState(4096, 4789, ip("192.168.1.10"), "66:F9:37:C3:7E:94", False, 3)
    assert incompatibilities(good, spec, 3) == ()
    bad = VxlanLinkState(4097, 4789, ip("192.168.1.11"), "66:f9:37:c3:7e:94", True, 4)
    reasons = incompatibilities(bad, spec, 3)
    assert [r.split()[0] for r in reasons] == ["vni", "local", "learning", "parent"]


def test_desired_l2_entries_skip_self_and_conflicts() -> None:
    vteps = [
        remote_vtep(node("node1"), 4),
        remote_vtep(
            node(
                "node2",
                ipv4_address=ipaddress.IPv4Interface("192.168.2.10/24"),
                ipv4_vxlan_tunnel_addr=ipaddress.IPv4Address("10.244.2.0"),
            ),
            4,
        ),
        RemoteVtep("node3", ip("10.244.2.0"), "66:00:00:00:00:03", ip("192.168.3.10")),
    ]
    state = desired_l2([v for v in vteps if v is not None], local_node="node1")
    mac2 = vtep_mac("node2")
    assert state.neighbours == {NeighbourEntry(ip("10.244.2.0"), mac2)}
    assert state.fdb == {FdbEntry(mac2, ip("192.168.2.10"))}
    assert len(state.conflicts) == 1 and "node3" in state.conflicts[0]


def test_remote_vtep_needs_tunnel_address() -> None:
    assert (
        remote_vtep(NodeTunnelInfo("x", ipv4_address=ipaddress.IPv4Interface("1.1.1.1/24")), 4)
        is None
    )


def test_diff_entries() -> None:
    a = NeighbourEntry(ip("10.0.0.1"), "66:00:00:00:00:01")
    b = NeighbourEntry(ip("10.0.0.2"), "66:00:00:00:00:02")
    c = NeighbourEntry(ip("10.0.0.3"), "66:00:00:00:00:03")
    assert diff_entries([a, b], [b, c]) == ([c], [a])
