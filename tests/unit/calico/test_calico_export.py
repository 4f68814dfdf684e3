"""A session's import and export policies (bgpd.calico.export, calico-bgp.md §2.8 items 5-6):
priority normalisation, the compiled BGPFilters, then Calico's export function."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from bgpd.calico.advertise import (
    ExportPolicy,
    PoolPolicy,
    RejectSet,
    RouteContext,
    SourceProtocol,
    calico_export,
)
from bgpd.calico.export import export_policy, import_policy
from bgpd.calico.origin import Origination, originate
from bgpd.calico.priority import local_pref_for_metric
from bgpd.datastore import DEFAULT_DATASTORE
from bgpd.datastore.file import FileDatastore
from bgpd.kernel.plan import destination_of
from bgpd.rib.policy import ACCEPT_ALL, PolicyContext, SourceKind
from bgpd.rib.route import PeerKind
from bgpd.wire.constants import SegmentType
from bgpd.wire.types import IPV4_UNICAST, AsPathSegment, PathAttributes, prefix_from_str
from peers.model import (
    BGPFilter,
    BGPFilterRule,
    FilterAction,
    FilterMatchOperator,
    FilterPrependASPath,
    FilterSetPriority,
    Snapshot,
)
from peers.resolve import Environment, resolve_node
from peers.spec import SessionKind, SessionSpec

net = ipaddress.ip_network

POLICY = ExportPolicy(
    version=4,
    normal_priority=1024,
    pools=(
        PoolPolicy(net("10.244.0.0/16"), False, True),
        PoolPolicy(net("10.247.0.0/16"), True, True),
    ),
    aggregated_blocks=(net("10.244.1.0/26"), net("10.247.1.0/26")),
    static_routes=(net("10.96.0.0/12"),),
    reject=RejectSet((net("10.96.0.0/12"),)),
)
ORIGINATION = Origination(4, (), POLICY.reject, (), POLICY)
SESSION = SessionSpec(
    name="Global_192_0_2_1",
    kind=SessionKind.GLOBAL,
    family=4,
    peer_ip=ipaddress.ip_address("192.0.2.1"),
    port=179,
    peer_as=65001,
    local_as=64512,
    filters=("missing", "f"),
)
EBGP_LOCAL = PolicyContext(PeerKind.EBGP, False, SourceKind.LOCAL)
EBGP_LEARNED = PolicyContext(PeerKind.EBGP, False, SourceKind.REMOTE_PEERS)
LOCAL_ROUTE = PathAttributes(local_pref=local_pref_for_metric(1024))


def rule(action: str = "Accept", **kw: object) -> BGPFilterRule:
    return BGPFilterRule(FilterAction(action), **kw)  # type: ignore[arg-type]


def test_session_export_runs_filters_before_calico_logic() -> None:
    filters = {
        "f": BGPFilter(
            "f",
            export_v4=(
                rule("Reject", cidr=net("10.244.2.0/24"), match_operator=FilterMatchOperator.IN),
                rule(
                    cidr=net("10.247.0.0/16"),
                    match_operator=FilterMatchOperator.IN,
                    operations=(FilterPrependASPath((64512,)), FilterSetPriority(100)),
                ),
                rule(peer_type="iBGP", action="Reject"),
            ),
        )
    }
    policy = export_policy(SESSION, ORIGINATION, filters)
    learned = PathAttributes(local_pref=2147482623)
    blocked = policy.evaluate(IPV4_UNICAST, prefix_from_str("10.244.2.0/26"), learned, EBGP_LEARNED)
    assert blocked is None
    # An Accept ends the filter: even a disableBGPExport pool route goes out (as in BIRD).
    forced = policy.evaluate(
        IPV4_UNICAST, prefix_from_str("10.247.1.0/26"), PathAttributes(), EBGP_LOCAL
    )
    assert forced is not None
    assert forced.as_path == (AsPathSegment(SegmentType.AS_SEQUENCE, (64512,)),)
    assert forced.local_pref == local_pref_for_metric(100)
    # No verdict (the iBGP-only rule is skipped on this eBGP session): Calico's logic decides.
    service = prefix_from_str("10.96.0.0/12")
    fallthrough = policy.evaluate(IPV4_UNICAST, service, LOCAL_ROUTE, EBGP_LOCAL)
    assert fallthrough == LOCAL_ROUTE
    decision = calico_export(
        destination_of(net("10.96.0.0/12")), POLICY, RouteContext(SourceProtocol.STATIC, False)
    )
    assert "service range" in decision.reason


def test_export_normalises_the_priority_first() -> None:
    policy = export_policy(SESSION, ORIGINATION, {})
    block = prefix_from_str("10.244.1.0/26")
    out = policy.evaluate(IPV4_UNICAST, block, PathAttributes(local_pref=100), EBGP_LOCAL)
    assert out is not None and out.local_pref == local_pref_for_metric(1024)
    elevated = PathAttributes(local_pref=local_pref_for_metric(512))
    inside = prefix_from_str("10.244.1.5/32")
    assert policy.evaluate(IPV4_UNICAST, inside, elevated, EBGP_LEARNED) == elevated
    assert policy.evaluate(IPV4_UNICAST, inside, LOCAL_ROUTE, EBGP_LEARNED) is None


def test_session_import() -> None:
    filters = {
        "f": BGPFilter(
            "f",
            import_v4=(
                rule(
                    cidr=net("10.1.0.0/16"),
                    match_operator=FilterMatchOperator.IN,
                    operations=(FilterSetPriority(512),),
                ),
                rule("Reject", cidr=net("10.2.0.0/16"), match_operator=FilterMatchOperator.IN),
            ),
        )
    }
    policy = import_policy(SESSION, filters)
    attrs = PathAttributes(local_pref=100)
    elevated = policy.evaluate(IPV4_UNICAST, prefix_from_str("10.1.0.0/24"), attrs, EBGP_LEARNED)
    assert elevated is not None and elevated.local_pref is not None
    assert elevated.local_pref > local_pref_for_metric(1024)  # beats a local workload route
    assert (
        policy.evaluate(IPV4_UNICAST, prefix_from_str("10.2.0.0/24"), attrs, EBGP_LEARNED) is None
    )
    normal = PathAttributes(local_pref=local_pref_for_metric(1024))
    assert policy.evaluate(IPV4_UNICAST, prefix_from_str("10.3.0.0/24"), normal, EBGP_LEARNED) is (
        normal
    )


def test_import_filters_on_attributes_only_are_prefix_independent() -> None:
    on_communities = {"f": BGPFilter("f", import_v4=(rule("Reject", community=7),))}
    assert import_policy(SESSION, on_communities).prefix_independent
    on_prefix = {
        "f": BGPFilter(
            "f", import_v4=(rule(cidr=net("10.0.0.0/8"), match_operator=FilterMatchOperator.IN),)
        )
    }
    assert not import_policy(SESSION, on_prefix).prefix_independent
    assert import_policy(SESSION, {}) is ACCEPT_ALL


def test_policies_from_equal_inputs_are_equal() -> None:
    filters = {"f": BGPFilter("f", export_v4=(rule(priority=512),), import_v4=(rule(),))}
    assert export_policy(SESSION, ORIGINATION, filters) == export_policy(
        SESSION, ORIGINATION, dict(filters)
    )
    assert import_policy(SESSION, filters) == import_policy(SESSION, dict(filters))
    assert export_policy(SESSION, ORIGINATION, filters) != export_policy(SESSION, ORIGINATION, {})


def test_remembered_results_match_fresh_ones_and_leave_equality_alone() -> None:
    """Rule 5: a policy that has answered many questions equals a fresh one and answers the same
    for every peer context."""
    used = export_policy(SESSION, ORIGINATION, {})
    block = prefix_from_str("10.244.1.0/26")
    inside = prefix_from_str("10.244.1.5/32")
    attrs = (PathAttributes(local_pref=100), PathAttributes(), LOCAL_ROUTE)
    contexts = (EBGP_LOCAL, EBGP_LEARNED, replace(EBGP_LEARNED, interface="eth0"))
    first = [
        used.evaluate(IPV4_UNICAST, prefix, a, ctx)
        for prefix in (block, inside)
        for a in attrs
        for ctx in contexts
    ]
    again = [
        used.evaluate(IPV4_UNICAST, prefix, a, ctx)
        for prefix in (block, inside)
        for a in attrs
        for ctx in contexts
    ]
    fresh = export_policy(SESSION, ORIGINATION, {})
    assert used == fresh and hash(used) == hash(fresh)
    assert (
        first
        == again
        == [
            fresh.evaluate(IPV4_UNICAST, prefix, a, ctx)
            for prefix in (block, inside)
            for a in attrs
            for ctx in contexts
        ]
    )


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    snap = FileDatastore(DEFAULT_DATASTORE).reload()
    assert snap is not None
    return snap


def test_export_policy_is_calicos_export_function(snapshot: Snapshot) -> None:
    peering = resolve_node("node1", snapshot, Environment())
    spec = peering.sessions["Mesh_10_0_0_2"]
    origination = originate("node1", snapshot, 4)
    policy = export_policy(spec, origination, snapshot.filters)
    assert policy.hook is not None
    ctx = PolicyContext(PeerKind.IBGP, same_as=True, source=SourceKind.LOCAL)
    attrs = PathAttributes(next_hop=bytes([10, 0, 0, 1]), local_pref=2147482623)
    assert policy.hook(IPV4_UNICAST, prefix_from_str("10.244.1.0/26"), attrs, ctx) is not None
    # §2.12b: outside every pool nothing is exported; beneath an own block it is aggregated.
    assert policy.hook(IPV4_UNICAST, prefix_from_str("192.168.0.0/24"), attrs, ctx) is None
    assert policy.hook(IPV4_UNICAST, prefix_from_str("10.244.1.5/32"), attrs, ctx) is None
    assert import_policy(spec, snapshot.filters) is ACCEPT_ALL
