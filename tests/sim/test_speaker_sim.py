"""N speaker cores wired in memory with one fake clock (style-anchors.md §9.5): iBGP mesh, route
reflection, node removal, hold expiry, graceful restart, policy change without reset."""

from __future__ import annotations

import ipaddress
from collections import Counter

from speaker_net import SpeakerNet

from bgpd.rib.graceful_restart import SelectionDeferral
from bgpd.rib.policy import Match, Policy, PolicyContext, PrefixMatch, Rule, RuleSet, Verdict
from bgpd.session import DownReason, State
from bgpd.wire.constants import ErrorCode
from bgpd.wire.types import (
    IPV4_UNICAST,
    Family,
    PathAttributes,
    Prefix,
    prefix_from_str,
    prefix_to_str,
)


def _mesh3() -> SpeakerNet:
    net = SpeakerNet()
    for i, name in enumerate("abc", start=1):
        net.add(name, f"10.0.0.{i}")
    net.connect("a", "b")
    net.connect("a", "c")
    net.connect("b", "c")
    return net


def test_three_node_ibgp_mesh_converges() -> None:
    net = _mesh3()
    for i, name in enumerate("abc", start=1):
        net.nodes[name].originate(f"192.168.{i}.0/26", origin=0)
    net.run()
    for i, owner in enumerate("abc", start=1):
        prefix = f"192.168.{i}.0/26"
        for name, node in net.nodes.items():
            best = node.best(prefix)
            assert best is not None, (name, prefix)
            if name == owner:
                assert best.source.local
            else:
                # iBGP, learned directly from the owner: next hop is the owner's address.
                assert best.source.peer_id == owner
                assert best.attrs.next_hop == net.nodes[owner].address.packed
                assert node.installed(prefix)[0].source.peer_id == owner


def test_ibgp_split_horizon_does_not_relay_in_a_partial_mesh() -> None:
    net = SpeakerNet()
    for i, name in enumerate("abc", start=1):
        net.add(name, f"10.0.0.{i}")
    net.connect("a", "b")
    net.connect("b", "c")
    net.nodes["a"].originate("192.168.1.0/26")
    net.run()
    assert net.nodes["b"].best("192.168.1.0/26") is not None
    assert net.nodes["c"].best("192.168.1.0/26") is None  # RFC 4271 §9.2.1


def _rr_topology() -> SpeakerNet:
    """rr1, rr2 share cluster id 1.1.1.1; clients c1..c4 each peer with both RRs."""
    net = SpeakerNet()
    cluster = int(ipaddress.IPv4Address("1.1.1.1"))
    net.add("rr1", "10.0.1.1", cluster_id=cluster)
    net.add("rr2", "10.0.1.2", cluster_id=cluster)
    for i in range(1, 5):
        net.add(f"c{i}", f"10.0.2.{i}")
        net.connect("rr1", f"c{i}", client_of="rr1")
        net.connect("rr2", f"c{i}", client_of="rr2")
    net.connect("rr1", "rr2")  # same cluster: non-clients of each other
    return net


def test_route_reflectors_clients_learn_each_others_routes() -> None:
    net = _rr_topology()
    for i in range(1, 5):
        net.nodes[f"c{i}"].originate(f"192.168.{i}.0/26")
    net.run()
    cluster = ipaddress.IPv4Address("1.1.1.1").packed
    for i in range(1, 5):
        prefix = f"192.168.{i}.0/26"
        origin = net.nodes[f"c{i}"]
        for j in range(1, 5):
            if j == i:
                continue
            best = net.nodes[f"c{j}"].best(prefix)
            assert best is not None, (j, prefix)
            assert best.attrs.originator_id == origin.address.packed  # RFC 4456 §8
            assert best.attrs.cluster_list == (cluster,)
            assert best.attrs.next_hop == origin.address.packed
            # Both reflectors deliver it: ECMP set of two, ties broken by router id.
            assert {p.source.peer_id for p in net.nodes[f"c{j}"].installed(prefix)} == {
                "rr1",
                "rr2",
            }


def test_cluster_list_loop_is_dropped_between_reflectors_of_one_cluster() -> None:
    net = _rr_topology()
    net.nodes["c1"].originate("192.168.1.0/26")
    net.run()
    rr2 = net.nodes["rr2"]
    # rr2 learned c1's route from c1 directly; rr1's reflected copy carries cluster 1.1.1.1.
    candidates = rr2.speaker.loc_rib(IPV4_UNICAST).candidates(prefix_from_str("192.168.1.0/26"))
    assert [c.source.peer_id for c in candidates] == ["c1"]
    assert rr2.speaker.statistics.get("cluster-list-loop", 0) >= 1


def test_non_client_routes_reach_clients_but_not_other_non_clients() -> None:
    net = SpeakerNet()
    net.add("rr", "10.0.1.1")
    net.add("client", "10.0.2.1")
    net.add("n1", "10.0.3.1")
    net.add("n2", "10.0.3.2")
    net.connect("rr", "client", client_of="rr")
    net.connect("rr", "n1")
    net.connect("rr", "n2")
    net.nodes["n1"].originate("192.168.9.0/24")
    net.run()
    assert net.nodes["client"].best("192.168.9.0/24") is not None  # RFC 4456 §6 (b)
    assert net.nodes["n2"].best("192.168.9.0/24") is None


def test_node_removal_withdraws_everywhere() -> None:
    net = _rr_topology()
    for i in range(1, 5):
        net.nodes[f"c{i}"].originate(f"192.168.{i}.0/26")
    net.run()
    net.nodes["c3"].originate()  # the node's blocks are gone from the datastore
    net.run()
    for name, node in net.nodes.items():
        assert node.best("192.168.3.0/26") is None, name
        assert not node.installed("192.168.3.0/26"), name
        assert node.best("192.168.1.0/26") is not None


def _wired_mesh3(hold_time: int) -> SpeakerNet:
    """The 3-node mesh over real session FSMs (speaker_net rule 2), each node originating one
    prefix."""
    net = SpeakerNet()
    for i, name in enumerate("abc", start=1):
        net.add(name, f"10.0.0.{i}")
    for a, b in (("a", "b"), ("a", "c"), ("b", "c")):
        net.wire(a, b, hold_time)
    for i, name in enumerate("abc", start=1):
        net.nodes[name].originate(f"192.168.{i}.0/26")
    net.run()
    return net


def test_hold_timer_expiry_on_the_fake_clock_flushes_routes_everywhere() -> None:
    """RFC 4271 §8.2.2 (Established, HoldTimer_Expires): c is partitioned silently; each side's
    hold timer runs out, a Hold Timer Expired NOTIFICATION is sent (§6.5) and every route over
    the lost sessions is deleted. Having sent a NOTIFICATION, the session did not end
    gracefully, so the graceful-restart capability keeps nothing (RFC 4724 §4.2)."""
    hold = 9
    net = _wired_mesh3(hold)
    sessions = {key: wire.sessions for key, wire in net.wires.items()}
    ac, bc, ab = (frozenset(pair) for pair in ("ac", "bc", "ab"))
    for name, node in net.nodes.items():
        for i in range(1, 4):
            assert node.installed(f"192.168.{i}.0/26"), (name, i)
    net.advance(10 * hold)  # keepalives keep every session up
    assert all(s.state is State.ESTABLISHED for pair in sessions.values() for s in pair.values())

    net.cut("c")
    net.advance(hold - 4)  # the last keepalive came at most a keepalive interval (3 s) ago
    assert net.nodes["a"].installed("192.168.3.0/26")
    assert net.nodes["c"].installed("192.168.1.0/26")
    net.advance(4)
    for key in (ac, bc):
        for session in sessions[key].values():
            assert session.state is State.IDLE, key
            down = session.statistics().last_down
            assert down is not None and down.reason is DownReason.HOLD_TIMER_EXPIRED
            assert down.notification_sent and down.notification is not None
            assert down.notification.code == ErrorCode.HOLD_TIMER_EXPIRED
    for name in "ab":
        node = net.nodes[name]
        assert node.best("192.168.3.0/26") is None, name
        assert not node.installed("192.168.3.0/26"), name
        assert not node.speaker.graceful_restart.is_retaining("c")
    for prefix in ("192.168.1.0/26", "192.168.2.0/26"):
        assert net.nodes["c"].best(prefix) is None
        assert not net.nodes["c"].installed(prefix)
    # The a-b session was never cut: it and its routes stay.
    assert all(s.state is State.ESTABLISHED for s in sessions[ab].values())
    assert net.nodes["a"].installed("192.168.2.0/26")
    assert net.nodes["b"].installed("192.168.1.0/26")


def test_graceful_restart_helper_keeps_routes_then_sweeps_stale_after_eor() -> None:
    net = _mesh3()
    net.nodes["c"].originate("192.168.3.0/26", "192.168.33.0/26")
    net.run()
    net.crash("c")
    net.run()
    net.advance(30)  # within c's restart time (120 s)
    for name in "ab":
        assert net.nodes[name].installed("192.168.3.0/26"), name  # kept, stale
    restarted = net.restart("c", SelectionDeferral(deadline=net.now + 60, expected=frozenset("ab")))
    restarted.originate("192.168.3.0/26")  # 192.168.33.0/26 is gone after the restart
    net.connect("c", "a")
    net.connect("c", "b")
    net.run()
    for name in "ab":
        node = net.nodes[name]
        assert node.installed("192.168.3.0/26"), name
        assert node.best("192.168.3.0/26").source.peer_id == "c"  # type: ignore[union-attr]
        assert node.best("192.168.33.0/26") is None, name  # swept at c's End-of-RIB
        assert not node.installed("192.168.33.0/26"), name
    assert restarted.converged == 1
    assert restarted.installed("192.168.3.0/26")


def test_graceful_restart_helper_sweeps_when_the_peer_does_not_come_back() -> None:
    net = _mesh3()
    net.nodes["c"].originate("192.168.3.0/26")
    net.run()
    net.crash("c")
    net.advance(119)
    assert net.nodes["a"].installed("192.168.3.0/26")
    net.advance(2)  # past c's restart time (RFC 4724 §4.2)
    assert not net.nodes["a"].installed("192.168.3.0/26")
    assert net.nodes["a"].speaker.next_deadline() is None


def test_restarting_speaker_defers_kernel_and_updates_until_end_of_rib() -> None:
    net = _mesh3()
    net.nodes["a"].originate("192.168.1.0/26")
    net.nodes["b"].originate("192.168.2.0/26")
    net.run()
    net.crash("c")
    restarted = net.restart("c", SelectionDeferral(deadline=net.now + 60, expected=frozenset("ab")))
    restarted.kernel.clear()
    net.connect("c", "a")
    # Only a has come up: c defers selection results; the kernel sees nothing yet.
    net.run()
    assert restarted.best("192.168.1.0/26") is not None
    assert not restarted.installed("192.168.1.0/26")
    assert restarted.converged == 0
    net.connect("c", "b")
    net.run()
    assert restarted.converged == 1
    assert restarted.installed("192.168.1.0/26") and restarted.installed("192.168.2.0/26")


def test_import_policy_change_refreshes_without_reset() -> None:
    net = _mesh3()
    net.nodes["c"].originate("192.168.3.0/26", "10.9.0.0/16")
    net.run()
    assert net.nodes["a"].best("10.9.0.0/16") is not None
    network = ipaddress.IPv4Network("10.0.0.0/8")
    deny = RuleSet("deny-10", (Rule(Match(prefix=PrefixMatch(network)), Verdict.REJECT),))
    net.nodes["a"].speaker.set_policy("c", Policy(filters=(deny,)), Policy(), net.now)
    delivered = net.run()
    assert delivered > 0  # ROUTE-REFRESH out, the answer (BoRR, routes, EoRR) back
    assert net.nodes["a"].best("10.9.0.0/16") is None
    assert net.nodes["a"].best("192.168.3.0/26") is not None
    assert "c" in net.nodes["a"].speaker.peers()


def test_a_reflector_evaluates_a_prefix_dependent_export_policy_once_per_route() -> None:
    """Speaker rule 4: clients that share an export policy and its context share one evaluation
    per route, where a per-client evaluation would cost one per client."""
    net = _rr_topology()
    evaluated: Counter[tuple[str, PolicyContext]] = Counter()

    def counting_hook(
        family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> PathAttributes:
        evaluated[prefix_to_str(prefix, family), ctx] += 1
        return attrs

    assert not Policy(hook=counting_hook).prefix_independent  # a hook may look at the prefix
    for i in range(1, 5):  # equal values, separate objects, as each session's are
        net.nodes["rr1"].speaker.set_policy(f"c{i}", Policy(), Policy(hook=counting_hook), 0.0)
    for i in range(1, 5):
        net.nodes[f"c{i}"].originate(f"192.168.{i}.0/26")
    net.run()
    for i in range(1, 5):
        prefix = f"192.168.{i}.0/26"
        for j in range(1, 5):
            if j != i:
                assert net.nodes[f"c{j}"].best(prefix) is not None, (j, prefix)
        # three clients received it through rr1 in one context: one evaluation
        assert [count for (network, _), count in evaluated.items() if network == prefix] == [1]
