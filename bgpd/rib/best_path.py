"""The BGP decision process (RFC 4271 §9.1.2) as one ordered table, and best/ECMP selection.

Rules:
1. ``DECISION_STEPS`` is the only statement of the tie-break order: each row names its
   ``BestPathReason``, cites its rule and gives a key function (lower wins). Ranks, selection,
   the ECMP set and the docs all read this table.
2. A ``Path``'s rank is computed once (``rank_path``) when the path is interned, so comparing
   two candidates is a tuple comparison; the rank across neighbour-AS groups (MED skipped) and
   the ECMP key are slices of it, taken only for prefixes with several candidates.
3. MED is compared only between routes from the same neighbour AS (RFC 4271 §9.1.2.2 (c)) unless
   ``always_compare_med``. To stay independent of arrival order, MED is applied in groups
   (deterministic MED): the best of each neighbour-AS group, then the best of the group winners
   with MED skipped.
4. The ECMP set is every candidate equal to the best down to and including the IGP-cost step
   (``ecmp`` rows); MED counts only within the best's neighbour-AS group unless always-compare.
5. Pure: no IO, no clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from bgpd.rib.route import DEFAULT_LOCAL_PREF, Path, RouteSource
from bgpd.wire.types import PathAttributes, as_path_length, as_path_neighbor

IgpCost = Callable[[bytes], int | None]


class BestPathReason(StrEnum):
    """Why a path won: the decision step that separated it (GoBGP ``BestPathReason``)."""

    ONLY_PATH = "only-path"
    LOCAL_ORIGIN = "local-origin"
    LOCAL_PREF = "local-pref"
    AS_PATH = "as-path-length"
    ORIGIN = "origin"
    MED = "med"
    EBGP = "ebgp-over-ibgp"
    IGP_COST = "igp-cost"
    ROUTER_ID = "router-id"
    CLUSTER_LIST = "cluster-list-length"
    PEER_ADDRESS = "peer-address"
    PATH_ID = "path-id"


StepKey = Callable[[RouteSource, PathAttributes, int | None], object]


@dataclass(frozen=True, slots=True)
class DecisionStep:
    """One row: lower ``key`` wins; ``ecmp`` rows must tie for multipath."""

    reason: BestPathReason
    rule: str
    key: StepKey
    ecmp: bool


def _router_id(source: RouteSource, attrs: PathAttributes) -> int:
    if attrs.originator_id is not None:
        return int.from_bytes(attrs.originator_id, "big")
    return source.router_id


DECISION_STEPS: tuple[DecisionStep, ...] = (
    DecisionStep(
        BestPathReason.LOCAL_ORIGIN,
        "RFC 4271 §9.1.1 (degree of preference is local policy): own routes beat learned ones,"
        " as BIRD's static preference 200 beats BGP's 100, and routes learned from the kernel"
        " come last, as BIRD's kernel preference 10",
        lambda s, a, igp: (2 if s.learned else 0) if s.local else 1,
        True,
    ),
    DecisionStep(
        BestPathReason.LOCAL_PREF,
        "RFC 4271 §9.1.1, §5.1.5: highest LOCAL_PREF (missing = 100)",
        lambda s, a, igp: -(DEFAULT_LOCAL_PREF if a.local_pref is None else a.local_pref),
        True,
    ),
    DecisionStep(
        BestPathReason.AS_PATH,
        "RFC 4271 §9.1.2.2 (a): shortest AS_PATH, AS_SET counts 1; RFC 5065 §5.3: confed 0",
        lambda s, a, igp: as_path_length(a.as_path),
        True,
    ),
    DecisionStep(
        BestPathReason.ORIGIN,
        "RFC 4271 §9.1.2.2 (b): lowest ORIGIN (IGP < EGP < INCOMPLETE)",
        lambda s, a, igp: a.origin,
        True,
    ),
    DecisionStep(
        BestPathReason.MED,
        "RFC 4271 §9.1.2.2 (c): lowest MED among routes from the same neighbour AS (missing = 0)",
        lambda s, a, igp: 0 if a.med is None else a.med,
        True,
    ),
    DecisionStep(
        BestPathReason.EBGP,
        "RFC 4271 §9.1.2.2 (d): routes learned by eBGP over those learned by iBGP",
        lambda s, a, igp: 1 if s.ibgp else 0,
        True,
    ),
    DecisionStep(
        BestPathReason.IGP_COST,
        "RFC 4271 §9.1.2.2 (e): lowest interior cost to the NEXT_HOP, when known",
        lambda s, a, igp: 0 if igp is None else igp,
        True,
    ),
    DecisionStep(
        BestPathReason.ROUTER_ID,
        "RFC 4271 §9.1.2.2 (f); RFC 4456 §9: lowest BGP Identifier, ORIGINATOR_ID if present",
        lambda s, a, igp: _router_id(s, a),
        False,
    ),
    DecisionStep(
        BestPathReason.CLUSTER_LIST,
        "RFC 4456 §9: shortest CLUSTER_LIST",
        lambda s, a, igp: len(a.cluster_list),
        False,
    ),
    DecisionStep(
        BestPathReason.PEER_ADDRESS,
        "RFC 4271 §9.1.2.2 (g): lowest peer address",
        lambda s, a, igp: s.address_key,
        False,
    ),
)

MED_STEP = next(i for i, s in enumerate(DECISION_STEPS) if s.reason is BestPathReason.MED)
ECMP_DEPTH = max(i for i, s in enumerate(DECISION_STEPS) if s.ecmp) + 1


def rank_path(
    source: RouteSource, attrs: PathAttributes, path_id: int = 0, igp_cost: IgpCost | None = None
) -> Path:
    """A ``Path`` with its ranks (rule 2). The ADD-PATH identifier breaks the last tie between
    two paths of one peer (RFC 7911 §5: they are distinct routes)."""
    igp = igp_cost(attrs.next_hop) if igp_cost is not None else None
    rank = tuple(step.key(source, attrs, igp) for step in DECISION_STEPS) + (path_id,)
    return Path(
        source=source,
        attrs=attrs,
        path_id=path_id,
        rank=rank,
        neighbor_as=as_path_neighbor(attrs.as_path),
    )


def best_of(candidates: Iterable[Path], always_compare_med: bool = False) -> Path:
    """The best candidate (rule 3). ``candidates`` must not be empty."""
    cands = list(candidates)
    if always_compare_med:
        return min(cands, key=_rank)
    winners: dict[int | None, Path] = {}
    for path in cands:
        held = winners.get(path.neighbor_as)
        if held is None or path.rank < held.rank:
            winners[path.neighbor_as] = path
    return min(winners.values(), key=cross_rank)


def order(candidates: Iterable[Path], always_compare_med: bool = False) -> tuple[Path, ...]:
    """Candidates best first; the rest in rank order (deterministic, so equal inputs give equal
    entries whatever the arrival order)."""
    cands = list(candidates)
    best = best_of(cands, always_compare_med)
    rest = sorted((p for p in cands if p is not best), key=cross_rank)
    return (best, *rest)


def ecmp_set(ordered: tuple[Path, ...], always_compare_med: bool = False) -> tuple[Path, ...]:
    """The best and every candidate equal to it down to the IGP step (rule 4)."""
    best = ordered[0]
    if len(ordered) == 1:
        return ordered
    key = ecmp_key(best)
    med = best.rank[MED_STEP]
    return tuple(
        p
        for p in ordered
        if ecmp_key(p) == key
        and (
            p.rank[MED_STEP] == med
            or (not always_compare_med and p.neighbor_as != best.neighbor_as)
        )
    )


def decisive_step(winner: Path, loser: Path) -> BestPathReason:
    """The first step where ``winner`` beats ``loser`` (for logs, ``show route`` and tests)."""
    index = decisive_index(winner, loser)
    return BestPathReason.PATH_ID if index is None else DECISION_STEPS[index].reason


def decisive_index(winner: Path, loser: Path) -> int | None:
    """The row of ``DECISION_STEPS`` where ``winner`` and ``loser`` first differ (MED only
    within one neighbour AS, rule 3); None when only the ADD-PATH identifier separates them."""
    same_group = winner.neighbor_as == loser.neighbor_as
    for i in range(len(DECISION_STEPS)):
        if i == MED_STEP and not same_group:
            continue
        if winner.rank[i] != loser.rank[i]:
            return i
    return None


def step_value(index: int, path: Path) -> str:
    """The value ``path`` has at decision step ``index``, in words (``bgpd explain``)."""
    key = path.rank[index]
    reason = DECISION_STEPS[index].reason
    if reason is BestPathReason.LOCAL_ORIGIN:
        return "local" if key == 0 else "learned"
    if reason is BestPathReason.LOCAL_PREF:
        return str(-key)  # type: ignore[operator]
    if reason is BestPathReason.ORIGIN:
        names = {0: "igp", 1: "egp", 2: "incomplete"}
        return names.get(key, str(key)) if isinstance(key, int) else str(key)
    if reason is BestPathReason.EBGP:
        return "ibgp" if key else "ebgp"
    if reason is BestPathReason.ROUTER_ID:
        return str(ipaddress.IPv4Address(key))
    if reason is BestPathReason.PEER_ADDRESS:
        return str(ipaddress.ip_address(key[1:]))  # type: ignore[index]
    return str(key)


def _rank(path: Path) -> tuple[object, ...]:
    return path.rank


def cross_rank(path: Path) -> tuple[object, ...]:
    """The rank with MED skipped: the order across neighbour-AS groups (rule 3)."""
    rank = path.rank
    return rank[:MED_STEP] + (0,) + rank[MED_STEP + 1 :]


def ecmp_key(path: Path) -> tuple[object, ...]:
    """The rank down to the IGP step, MED skipped (rule 4 compares MED apart)."""
    rank = path.rank
    return rank[:MED_STEP] + rank[MED_STEP + 1 : ECMP_DEPTH]
