"""The incremental Loc-RIB against a naive "compare everything" reference over random
announce/withdraw runs (style-anchors.md §9.4): same best and ECMP set; arrival-order
independence; re-announcing changes nothing; withdrawing everything empties the table."""

from __future__ import annotations

import functools
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.rib.best_path import order, rank_path
from bgpd.rib.loc_rib import LocRib
from bgpd.rib.route import LOCAL_SOURCE, Path, RouteSource
from bgpd.wire.constants import SegmentType
from bgpd.wire.types import AsPathSegment, PathAttributes, Prefix

pytestmark = pytest.mark.property

LOCAL_AS = 64512
PREFIXES = [bytes((24, 10, 0, i)) for i in range(4)]
SOURCES = [LOCAL_SOURCE] + [
    RouteSource(
        peer_id=f"p{i}",
        address=ipaddress.IPv4Address(f"10.1.0.{10 - i}"),
        router_id=(i * 7) % 5,
        peer_as=LOCAL_AS if i % 2 else 65000 + i,
        local_as=LOCAL_AS,
    )
    for i in range(1, 6)
]

attributes = st.builds(
    PathAttributes,
    origin=st.sampled_from([0, 0, 0, 2]),
    as_path=st.lists(st.sampled_from([65001, 65002]), min_size=1, max_size=2).map(
        lambda asns: (AsPathSegment(SegmentType.AS_SEQUENCE, tuple(asns)),) if asns else ()
    ),
    med=st.sampled_from([None, 0, 5, 9]),
    local_pref=st.sampled_from([None, None, 100, 200]),
    originator_id=st.one_of(st.none(), st.sampled_from([b"\0\0\0\1", b"\0\0\0\3"])),
    cluster_list=st.sampled_from([(), (b"\1\1\1\1",), (b"\1\1\1\1", b"\2\2\2\2")]),
)
operations = st.lists(
    st.tuples(
        st.booleans(),  # announce?
        st.sampled_from(PREFIXES),
        st.integers(0, len(SOURCES) - 1),
        attributes,
        st.booleans(),  # batch API?
    ),
    max_size=60,
)


def _naive_cmp(a: Path, b: Path, compare_med: bool) -> int:
    """RFC 4271 §9.1.2.2 written out step by step, independent of the rank tuples."""

    def length(p: Path) -> int:
        total = 0
        for seg in p.attrs.as_path:
            total += len(seg.asns) if seg.type == SegmentType.AS_SEQUENCE else 1
        return total

    def rid(p: Path) -> int:
        oid = p.attrs.originator_id
        return int.from_bytes(oid, "big") if oid else p.source.router_id

    def lp(p: Path) -> int:
        return 100 if p.attrs.local_pref is None else p.attrs.local_pref

    steps = [
        (0 if a.source.local else 1, 0 if b.source.local else 1),
        (-lp(a), -lp(b)),
        (length(a), length(b)),
        (a.attrs.origin, b.attrs.origin),
        ((a.attrs.med or 0, b.attrs.med or 0) if compare_med else (0, 0)),
        (1 if a.source.ibgp else 0, 1 if b.source.ibgp else 0),
        (rid(a), rid(b)),
        (len(a.attrs.cluster_list), len(b.attrs.cluster_list)),
        (a.source.address_key, b.source.address_key),
        (a.path_id, b.path_id),
    ]
    for x, y in steps:
        if x != y:
            return -1 if x < y else 1
    return 0


def _neighbour(p: Path) -> int | None:
    path = p.attrs.as_path
    return path[0].asns[0] if path and path[0].asns else None


def _reference_best(cands: list[Path]) -> Path:
    groups: dict[int | None, list[Path]] = {}
    for p in cands:
        groups.setdefault(_neighbour(p), []).append(p)
    within = functools.cmp_to_key(lambda a, b: _naive_cmp(a, b, True))
    across = functools.cmp_to_key(lambda a, b: _naive_cmp(a, b, False))
    winners = [min(g, key=within) for g in groups.values()]
    return min(winners, key=across)


def _reference_ecmp(cands: list[Path], best: Path) -> set[Path]:
    def equal(p: Path) -> bool:
        same_group = _neighbour(p) == _neighbour(best)
        a, b = p.attrs, best.attrs
        return (
            p.source.local == best.source.local
            and (a.local_pref or 100) == (b.local_pref or 100)
            and sum(len(s.asns) for s in a.as_path) == sum(len(s.asns) for s in b.as_path)
            and a.origin == b.origin
            and (not same_group or (a.med or 0) == (b.med or 0))
            and p.source.ibgp == best.source.ibgp
        )

    return {p for p in cands if equal(p)}


def _run(
    ops: list[tuple[bool, Prefix, int, PathAttributes, bool]],
) -> tuple[LocRib, dict[Prefix, dict[str, Path]]]:
    rib = LocRib()
    model: dict[Prefix, dict[str, Path]] = {}
    for announce, prefix, index, attrs, batch in ops:
        source = SOURCES[index]
        if announce:
            path = rank_path(source, attrs)
            if batch:
                rib.announce_many([prefix], path)
            else:
                rib.update(prefix, path)
            model.setdefault(prefix, {})[source.peer_id] = path
        else:
            if batch:
                rib.withdraw_many([prefix], source.peer_id)
            else:
                rib.withdraw(prefix, source.peer_id)
            model.get(prefix, {}).pop(source.peer_id, None)
    return rib, model


@settings(max_examples=300, deadline=None)
@given(operations)
def test_incremental_matches_the_naive_reference(
    ops: list[tuple[bool, Prefix, int, PathAttributes, bool]],
) -> None:
    rib, model = _run(ops)
    for prefix in PREFIXES:
        cands = list(model.get(prefix, {}).values())
        if not cands:
            assert rib.best(prefix) is None and prefix not in rib
            continue
        best = _reference_best(cands)
        assert rib.best(prefix) is best
        assert set(rib.candidates(prefix)) == set(cands)
        assert set(rib.ecmp(prefix)) == _reference_ecmp(cands, best)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(PREFIXES), st.integers(0, len(SOURCES) - 1), attributes),
        max_size=25,
    ),
    st.randoms(use_true_random=False),
)
def test_final_state_is_independent_of_arrival_order(
    routes: list[tuple[Prefix, int, PathAttributes]], rng: object
) -> None:
    # Keep one route per (prefix, source), as the final state of a run.
    final = {(p, i): a for p, i, a in routes}
    paths = {(p, i): rank_path(SOURCES[i], a) for (p, i), a in final.items()}
    shuffled = list(paths.items())
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    first, second = LocRib(), LocRib()
    for (prefix, _), path in paths.items():
        first.update(prefix, path)
    for (prefix, _), path in shuffled:
        second.update(prefix, path)
    assert first.routes == second.routes


@settings(max_examples=150, deadline=None)
@given(operations)
def test_re_announcing_changes_nothing_and_withdrawing_all_empties(
    ops: list[tuple[bool, Prefix, int, PathAttributes, bool]],
) -> None:
    rib, model = _run(ops)
    before = dict(rib.routes)
    for prefix, by_source in model.items():
        for path in by_source.values():
            assert rib.update(prefix, path) is None
            assert rib.announce_many([prefix], path) == []
    assert rib.routes == before
    for prefix, by_source in model.items():
        for peer_id in list(by_source):
            rib.withdraw(prefix, peer_id)
    assert len(rib) == 0


wide_attributes = st.builds(
    PathAttributes,
    origin=st.sampled_from([0, 0, 2]),
    as_path=st.tuples(st.integers(65001, 65006), st.integers(0, 2)).map(
        lambda first_and_more: (
            AsPathSegment(
                SegmentType.AS_SEQUENCE, (first_and_more[0],) + (65100,) * first_and_more[1]
            ),
        )
    ),
    med=st.sampled_from([None, 0, 5]),
    local_pref=st.sampled_from([None, 100, 200]),
)
wide_operations = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from(PREFIXES[:2]),
        st.integers(0, len(SOURCES) - 1),
        wide_attributes,
        st.just(True),  # the batch API, where loc_rib rule 6's shortcuts are
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(wide_operations)
def test_each_entry_is_its_candidates_in_order(
    ops: list[tuple[bool, Prefix, int, PathAttributes, bool]],
) -> None:
    """Loc-RIB rules 1 and 6: whatever shortcut placed or removed a candidate, an entry is
    exactly ``order`` of its candidates, with neighbour ASes mostly distinct (the shortcuts'
    case) and sometimes shared (where they must step aside)."""
    rib, model = _run(ops)
    for prefix in PREFIXES[:2]:
        cands = list(model.get(prefix, {}).values())
        entry = rib.routes.get(prefix)
        if not cands:
            assert entry is None
        elif len(cands) == 1:
            assert entry is cands[0]
        else:
            assert entry == order(cands)
