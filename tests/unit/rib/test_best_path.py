"""One test per decision step (``DECISION_STEPS``), each named for the ``BestPathReason`` it
proves (GoBGP ``TestMedTieBreaker`` style), plus the ECMP set and deterministic MED."""

from __future__ import annotations

import ipaddress

from bgpd.rib.best_path import (
    DECISION_STEPS,
    BestPathReason,
    best_of,
    decisive_step,
    ecmp_set,
    rank_path,
)
from bgpd.rib.best_path import order as order_paths
from bgpd.rib.explain import explain_candidates
from bgpd.rib.route import LOCAL_SOURCE, Path, RouteSource
from bgpd.wire.constants import SegmentType
from bgpd.wire.types import AsPathSegment, PathAttributes

LOCAL_AS = 64512


def _source(n: int, peer_as: int = LOCAL_AS, router_id: int | None = None) -> RouteSource:
    return RouteSource(
        peer_id=f"p{n}",
        address=ipaddress.IPv4Address(f"10.0.0.{n}"),
        router_id=router_id if router_id is not None else n,
        peer_as=peer_as,
        local_as=LOCAL_AS,
    )


def _seq(*asns: int) -> tuple[AsPathSegment, ...]:
    return (AsPathSegment(SegmentType.AS_SEQUENCE, asns),) if asns else ()


def _path(n: int = 1, peer_as: int = LOCAL_AS, **attrs: object) -> Path:
    attrs.setdefault("as_path", _seq(65001))
    attrs.setdefault("next_hop", bytes((10, 0, 0, n)))
    return rank_path(_source(n, peer_as), PathAttributes(**attrs))  # type: ignore[arg-type]


def _assert_wins(winner: Path, loser: Path, reason: BestPathReason) -> None:
    assert best_of([winner, loser]) is winner
    assert best_of([loser, winner]) is winner
    assert decisive_step(winner, loser) is reason


def test_every_step_cites_its_rule_and_steps_are_in_rfc_order() -> None:
    assert all("RFC" in step.rule for step in DECISION_STEPS)
    reasons = [step.reason for step in DECISION_STEPS]
    assert reasons.index(BestPathReason.LOCAL_PREF) < reasons.index(BestPathReason.AS_PATH)
    assert reasons.index(BestPathReason.MED) < reasons.index(BestPathReason.EBGP)
    assert reasons.index(BestPathReason.ROUTER_ID) < reasons.index(BestPathReason.PEER_ADDRESS)


def test_local_origin() -> None:
    own = rank_path(LOCAL_SOURCE, PathAttributes())
    learned = _path(1, local_pref=1000)
    _assert_wins(own, learned, BestPathReason.LOCAL_ORIGIN)


def test_local_pref() -> None:
    _assert_wins(_path(2, local_pref=200), _path(1, local_pref=150), BestPathReason.LOCAL_PREF)


def test_local_pref_missing_counts_as_100() -> None:
    _assert_wins(_path(2), _path(1, local_pref=99), BestPathReason.LOCAL_PREF)
    assert decisive_step(_path(2), _path(1, local_pref=100)) is not BestPathReason.LOCAL_PREF


def test_as_path_length() -> None:
    _assert_wins(
        _path(2, as_path=_seq(65001)), _path(1, as_path=_seq(65001, 65002)), BestPathReason.AS_PATH
    )


def test_as_path_length_as_set_counts_one_and_confederation_zero() -> None:
    with_set = (
        AsPathSegment(SegmentType.AS_SEQUENCE, (65001,)),
        AsPathSegment(SegmentType.AS_SET, (1, 2, 3, 4)),
    )
    with_confed = (
        AsPathSegment(SegmentType.AS_CONFED_SEQUENCE, (7, 8, 9)),
        AsPathSegment(SegmentType.AS_SEQUENCE, (65001,)),
    )
    three = _path(1, as_path=_seq(65001, 65002, 65003))
    _assert_wins(_path(2, as_path=with_set), three, BestPathReason.AS_PATH)
    _assert_wins(_path(3, as_path=with_confed), _path(4, as_path=with_set), BestPathReason.AS_PATH)


def test_origin() -> None:
    _assert_wins(_path(2, origin=0), _path(1, origin=1), BestPathReason.ORIGIN)
    _assert_wins(_path(2, origin=1), _path(1, origin=2), BestPathReason.ORIGIN)


def test_med() -> None:
    _assert_wins(_path(2, med=10), _path(1, med=20), BestPathReason.MED)


def test_med_missing_counts_as_zero() -> None:
    _assert_wins(_path(2), _path(1, med=1), BestPathReason.MED)


def test_med_not_compared_across_neighbour_ases() -> None:
    low_med = _path(2, as_path=_seq(65002), med=0)
    high_med = _path(1, as_path=_seq(65001), med=500)
    # Different neighbour AS: MED skipped, router id (1 < 2) decides.
    assert best_of([low_med, high_med]) is high_med
    assert decisive_step(high_med, low_med) is BestPathReason.ROUTER_ID
    assert best_of([low_med, high_med], always_compare_med=True) is low_med


def test_med_deterministic_grouping_is_order_independent() -> None:
    # a and c share neighbour AS 65001 (c has the better MED); b is from 65002.
    a = _path(1, as_path=_seq(65001), med=50)
    b = _path(2, as_path=_seq(65002), med=0)
    c = _path(3, as_path=_seq(65001), med=10)
    winners = {best_of(p) for p in ([a, b, c], [c, b, a], [b, a, c], [b, c, a])}
    assert winners == {b}  # c beats a by MED, then b beats c by router id 2 < 3


def test_ebgp_over_ibgp() -> None:
    _assert_wins(_path(2, peer_as=65001), _path(1), BestPathReason.EBGP)


def test_igp_cost() -> None:
    costs = {bytes((10, 0, 0, 1)): 20, bytes((10, 0, 0, 2)): 10}
    near = rank_path(_source(2), PathAttributes(next_hop=bytes((10, 0, 0, 2))), 0, costs.get)
    far = rank_path(_source(1), PathAttributes(next_hop=bytes((10, 0, 0, 1))), 0, costs.get)
    _assert_wins(near, far, BestPathReason.IGP_COST)


def test_router_id() -> None:
    _assert_wins(_path(1), _path(2), BestPathReason.ROUTER_ID)


def test_router_id_uses_originator_id_when_reflected() -> None:
    # RFC 4456 §9: the ORIGINATOR_ID stands in for the router id.
    reflected = _path(9, originator_id=bytes((0, 0, 0, 1)))
    direct = _path(5)
    _assert_wins(reflected, direct, BestPathReason.ROUTER_ID)


def test_cluster_list_length() -> None:
    one = _path(1, originator_id=b"\0\0\0\7", cluster_list=(b"\1\1\1\1",))
    two = _path(2, originator_id=b"\0\0\0\7", cluster_list=(b"\1\1\1\1", b"\2\2\2\2"))
    _assert_wins(one, two, BestPathReason.CLUSTER_LIST)


def test_peer_address() -> None:
    low = rank_path(
        RouteSource("x", ipaddress.IPv4Address("10.0.0.1"), 7, LOCAL_AS, LOCAL_AS),
        PathAttributes(originator_id=b"\0\0\0\7"),
    )
    high = rank_path(
        RouteSource("y", ipaddress.IPv4Address("10.0.0.9"), 7, LOCAL_AS, LOCAL_AS),
        PathAttributes(originator_id=b"\0\0\0\7"),
    )
    _assert_wins(low, high, BestPathReason.PEER_ADDRESS)


def test_path_id_breaks_the_last_tie_between_add_path_routes() -> None:
    source = _source(1)
    first = rank_path(source, PathAttributes(), 1)
    second = rank_path(source, PathAttributes(), 2)
    _assert_wins(first, second, BestPathReason.PATH_ID)


def test_ecmp_set_is_equal_down_to_igp_cost() -> None:
    a = _path(1, as_path=_seq(65001))
    b = _path(2, as_path=_seq(65002))
    worse = _path(3, as_path=_seq(65001, 65005))
    ordered = order_paths([worse, b, a])
    assert ordered[0] is a
    assert set(ecmp_set(ordered)) == {a, b}


def test_ecmp_set_excludes_a_worse_med_from_the_same_neighbour() -> None:
    a = _path(1, med=5)
    b = _path(2, med=9)
    assert ecmp_set(order_paths([a, b])) == (a,)


def test_ecmp_set_mixes_ebgp_and_ibgp_never() -> None:
    external = _path(1, peer_as=65001)
    internal = _path(2)
    assert ecmp_set(order_paths([external, internal])) == (external,)


def _explained(winner: Path, loser: Path) -> tuple[str | None, str, str]:
    best, lost = explain_candidates(order_paths([loser, winner]))
    assert best.path is winner and best.best and not lost.best
    return lost.lost_at, lost.best_value, lost.own_value


def test_each_step_explains_itself_with_both_values() -> None:
    """``bgpd.rib.explain`` rule 2: the deciding step and the values it compared, in words."""
    local = rank_path(LOCAL_SOURCE, PathAttributes())
    assert _explained(local, _path(1)) == ("local-origin", "local", "learned")
    assert _explained(_path(2, local_pref=200), _path(1)) == ("local-pref", "200", "100")
    assert _explained(_path(2), _path(1, as_path=_seq(65001, 65002))) == (
        "as-path-length",
        "1",
        "2",
    )
    assert _explained(_path(2), _path(1, origin=2)) == ("origin", "igp", "incomplete")
    assert _explained(_path(2, med=5), _path(1, med=9)) == ("med", "5", "9")
    assert _explained(_path(2, peer_as=65001), _path(1)) == ("ebgp-over-ibgp", "ebgp", "ibgp")
    assert _explained(_path(1), _path(2)) == ("router-id", "0.0.0.1", "0.0.0.2")
    one = _path(1, originator_id=b"\0\0\0\7", cluster_list=(b"\1\1\1\1",))
    two = _path(2, originator_id=b"\0\0\0\7", cluster_list=(b"\1\1\1\1", b"\2\2\2\2"))
    assert _explained(one, two) == ("cluster-list-length", "1", "2")
    first, second = (
        rank_path(_source(1), PathAttributes(), 1),
        rank_path(_source(1), PathAttributes(), 2),
    )
    assert _explained(first, second) == ("path-id", "1", "2")


def test_explained_ecmp_members_are_marked() -> None:
    a, b = _path(1), _path(2)  # equal down to the IGP step: both in the ECMP set
    best, other = explain_candidates(order_paths([a, b]))
    assert best.ecmp and other.ecmp and other.lost_at == "router-id"
