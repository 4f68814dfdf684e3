"""Export and receipt rules over the (source kind x peer kind) table, RFC 4271 §9.2 / RFC 4456
(style-anchors.md §9.4)."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.rib.best_path import rank_path
from bgpd.rib.export import (
    NO_ADVERTISE,
    NO_EXPORT,
    ExportReject,
    ExportTarget,
    ImportReject,
    export_check,
    export_rewrite,
    import_check,
    import_normalise,
)
from bgpd.rib.route import LOCAL_SOURCE, NextHopMode, Path, PeerKind, RouteSource
from bgpd.wire.constants import SegmentType
from bgpd.wire.types import IPV4_UNICAST, AsPathSegment, PathAttributes

LOCAL_AS = 64512
ROUTER_ID = 0x0A000001
CLUSTER_ID = 0x01010101
OUR_NH = bytes((10, 0, 0, 1))
THEIR_NH = bytes((192, 0, 2, 7))


def _peer(kind: PeerKind, n: int) -> RouteSource:
    if kind is PeerKind.LOCAL:
        return LOCAL_SOURCE
    return RouteSource(
        peer_id=f"{kind}-{n}",
        address=ipaddress.IPv4Address(f"10.0.{n}.2"),
        router_id=0x0A000000 + n,
        peer_as=65001 if kind is PeerKind.EBGP else LOCAL_AS,
        local_as=LOCAL_AS,
        rr_client=kind is PeerKind.RR_CLIENT,
    )


def _route(kind: PeerKind) -> Path:
    source = _peer(kind, 1)
    if kind is PeerKind.LOCAL:
        attrs = PathAttributes()
    elif kind is PeerKind.EBGP:
        attrs = PathAttributes(
            as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, (65001,)),), next_hop=THEIR_NH, med=7
        )
    else:
        attrs = PathAttributes(next_hop=THEIR_NH, local_pref=300)
    return rank_path(source, attrs)


def _target(kind: PeerKind, mode: NextHopMode = NextHopMode.AUTO) -> ExportTarget:
    return ExportTarget(
        peer=_peer(kind, 2),
        router_id=ROUTER_ID,
        cluster_id=CLUSTER_ID,
        next_hop_mode=mode,
        next_hop_self={IPV4_UNICAST: OUR_NH},
    )


def _export(path: Path, target: ExportTarget) -> PathAttributes | None:
    if export_check(path, target) is not None:
        return None
    return export_rewrite(IPV4_UNICAST, path, path.attrs, target)


SOURCES = (PeerKind.LOCAL, PeerKind.EBGP, PeerKind.IBGP, PeerKind.RR_CLIENT)
TARGETS = (PeerKind.EBGP, PeerKind.IBGP, PeerKind.RR_CLIENT)
# RFC 4271 §9.2.1 split horizon; RFC 4456 §6: client routes go everywhere, non-client routes only
# to clients.
EXPORTED = {
    (PeerKind.LOCAL, PeerKind.EBGP): True,
    (PeerKind.LOCAL, PeerKind.IBGP): True,
    (PeerKind.LOCAL, PeerKind.RR_CLIENT): True,
    (PeerKind.EBGP, PeerKind.EBGP): True,
    (PeerKind.EBGP, PeerKind.IBGP): True,
    (PeerKind.EBGP, PeerKind.RR_CLIENT): True,
    (PeerKind.IBGP, PeerKind.EBGP): True,
    (PeerKind.IBGP, PeerKind.IBGP): False,
    (PeerKind.IBGP, PeerKind.RR_CLIENT): True,
    (PeerKind.RR_CLIENT, PeerKind.EBGP): True,
    (PeerKind.RR_CLIENT, PeerKind.IBGP): True,
    (PeerKind.RR_CLIENT, PeerKind.RR_CLIENT): True,
}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("target", TARGETS)
def test_export_table(source: PeerKind, target: PeerKind) -> None:
    path = _route(source)
    out = _export(path, _target(target))
    assert (out is not None) == EXPORTED[(source, target)]
    if out is None:
        assert export_check(path, _target(target)) is ExportReject.SPLIT_HORIZON
        return
    reflected = source in (PeerKind.IBGP, PeerKind.RR_CLIENT) and target is not PeerKind.EBGP
    if target is PeerKind.EBGP:
        # RFC 4271 §5.1.2 prepend, §5.1.5 no LOCAL_PREF, RFC 4456 §8 no RR attributes, §5.1.3 self.
        assert out.as_path[0].asns[0] == LOCAL_AS
        assert out.local_pref is None
        assert out.originator_id is None and out.cluster_list == ()
        assert out.next_hop == OUR_NH
        assert out.med is None  # a learned MED does not leave its AS (RFC 4271 §5.1.4)
    else:
        assert out.as_path == path.attrs.as_path  # no prepend inside the AS
        assert out.local_pref == (path.attrs.local_pref or 100)  # always present over iBGP
        expected_nh = OUR_NH if source is PeerKind.LOCAL else THEIR_NH
        assert out.next_hop == expected_nh  # self for our own routes, unchanged otherwise
    if reflected:
        assert out.originator_id == path.source.router_id.to_bytes(4, "big")
        assert out.cluster_list == (CLUSTER_ID.to_bytes(4, "big"),)
    elif target is not PeerKind.EBGP:
        assert out.originator_id is None and out.cluster_list == ()


def test_reflection_keeps_an_existing_originator_and_prepends_the_cluster() -> None:
    source = _peer(PeerKind.RR_CLIENT, 1)
    path = rank_path(
        source,
        PathAttributes(next_hop=THEIR_NH, originator_id=b"\7\7\7\7", cluster_list=(b"\2\2\2\2",)),
    )
    out = _export(path, _target(PeerKind.RR_CLIENT))
    assert out is not None
    assert out.originator_id == b"\7\7\7\7"
    assert out.cluster_list == (CLUSTER_ID.to_bytes(4, "big"), b"\2\2\2\2")


def test_never_back_to_the_sender() -> None:
    path = _route(PeerKind.RR_CLIENT)
    target = ExportTarget(peer=path.source, router_id=ROUTER_ID, cluster_id=CLUSTER_ID)
    assert export_check(path, target) is ExportReject.SENDER


def test_well_known_communities() -> None:
    no_export = rank_path(_peer(PeerKind.EBGP, 1), PathAttributes(communities=(NO_EXPORT,)))
    no_advertise = rank_path(_peer(PeerKind.EBGP, 1), PathAttributes(communities=(NO_ADVERTISE,)))
    assert export_check(no_export, _target(PeerKind.EBGP)) is ExportReject.NO_EXPORT
    assert export_check(no_export, _target(PeerKind.IBGP)) is None
    assert export_check(no_advertise, _target(PeerKind.IBGP)) is ExportReject.NO_ADVERTISE


@pytest.mark.parametrize(
    ("mode", "target", "expected"),
    [
        (NextHopMode.SELF, PeerKind.IBGP, OUR_NH),
        (NextHopMode.KEEP, PeerKind.EBGP, THEIR_NH),
        (NextHopMode.AUTO, PeerKind.EBGP, OUR_NH),
        (NextHopMode.AUTO, PeerKind.IBGP, THEIR_NH),
    ],
)
def test_next_hop_modes(mode: NextHopMode, target: PeerKind, expected: bytes) -> None:
    out = _export(_route(PeerKind.EBGP), _target(target, mode))
    assert out is not None and out.next_hop == expected


def test_next_hop_keep_still_uses_ours_for_local_routes_without_one() -> None:
    out = _export(_route(PeerKind.LOCAL), _target(PeerKind.EBGP, NextHopMode.KEEP))
    assert out is not None and out.next_hop == OUR_NH


def test_no_next_hop_for_the_family_means_no_export() -> None:
    target = ExportTarget(peer=_peer(PeerKind.EBGP, 2), router_id=ROUTER_ID, cluster_id=CLUSTER_ID)
    assert export_rewrite(IPV4_UNICAST, _route(PeerKind.LOCAL), PathAttributes(), target) is None


def test_per_session_local_as_is_prepended() -> None:
    peer = RouteSource("x", ipaddress.IPv4Address("10.9.0.2"), 9, peer_as=65009, local_as=65100)
    target = ExportTarget(peer, ROUTER_ID, CLUSTER_ID, next_hop_self={IPV4_UNICAST: OUR_NH})
    out = _export(_route(PeerKind.LOCAL), target)
    assert out is not None
    assert out.as_path == (AsPathSegment(SegmentType.AS_SEQUENCE, (65100,)),)


def test_import_own_as_loop_and_allow_own_as() -> None:
    source = _peer(PeerKind.EBGP, 1)
    looped = PathAttributes(as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, (65001, LOCAL_AS)),))
    assert import_check(looped, source, ROUTER_ID, CLUSTER_ID, 0) is ImportReject.AS_LOOP
    assert import_check(looped, source, ROUTER_ID, CLUSTER_ID, 1) is None
    twice = PathAttributes(
        as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, (65001, LOCAL_AS, LOCAL_AS)),)
    )
    assert import_check(twice, source, ROUTER_ID, CLUSTER_ID, 1) is ImportReject.AS_LOOP


def test_import_rejects_our_originator_id_and_our_cluster_id() -> None:
    source = _peer(PeerKind.IBGP, 1)
    ours = PathAttributes(originator_id=ROUTER_ID.to_bytes(4, "big"))
    looped = PathAttributes(originator_id=b"\7\7\7\7", cluster_list=(b"\2\2\2\2", b"\1\1\1\1"))
    assert import_check(ours, source, ROUTER_ID, CLUSTER_ID, 0) is ImportReject.ORIGINATOR_LOOP
    assert import_check(looped, source, ROUTER_ID, CLUSTER_ID, 0) is ImportReject.CLUSTER_LOOP
    fine = PathAttributes(originator_id=b"\7\7\7\7", cluster_list=(b"\2\2\2\2",))
    assert import_check(fine, source, ROUTER_ID, CLUSTER_ID, 0) is None


def test_local_pref_from_an_external_peer_is_ignored() -> None:
    attrs = PathAttributes(local_pref=500)
    assert import_normalise(attrs, _peer(PeerKind.EBGP, 1)).local_pref is None
    assert import_normalise(attrs, _peer(PeerKind.IBGP, 1)).local_pref == 500
