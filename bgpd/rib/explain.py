"""Why a prefix is (not) in the Loc-RIB and who it is sent to, as values computed on demand from
the RIBs (``bgpd explain``). Nothing here runs in the hot path: the RIBs keep no bookkeeping for
explanations; every answer is recomputed from their state when asked.

Rules:
1. ``Received``: every route a peer holds in its Adj-RIB-In for the prefix, with the import rule
   that refused it (``bgpd.rib.export`` rule 1) or the import policy's trace (the filter and
   rule index that accepted, changed or rejected it, ``bgpd.rib.policy`` rule 6).
2. ``Candidate``: every Loc-RIB candidate, best first; for each one that lost, the first step of
   the decision table (``bgpd.rib.best_path.DECISION_STEPS``, RFC 4271 §9.1.2.2) where the best
   beat it, with both values; the ECMP set is marked.
3. ``Advertisement``: per established session, whether the peer holds the prefix from us, what
   it holds, and what decided: the export rule that refused it (``bgpd.rib.export`` rule 2) or
   the export policy's trace. With ADD-PATH send the best path's decision is shown.
4. Pure: values in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass

from bgpd.rib.best_path import DECISION_STEPS, decisive_index, ecmp_set, step_value
from bgpd.rib.policy import PolicyTrace
from bgpd.rib.route import Path
from bgpd.wire.types import Family, PathAttributes, Prefix


@dataclass(frozen=True, slots=True)
class Received:
    """Rule 1: one route of one peer for the prefix, as received."""

    peer_id: str
    path_id: int
    attrs: PathAttributes
    stale: bool
    refused: str | None  # an import rule of the protocol refused it (before any policy)
    policy: PolicyTrace | None  # the import policy's decision (None: refused, or session down)
    in_loc_rib: bool


@dataclass(frozen=True, slots=True)
class Candidate:
    """Rule 2: one Loc-RIB candidate; ``lost_at`` is None for the best."""

    path: Path
    best: bool
    ecmp: bool
    lost_at: str | None = None  # the BestPathReason of the deciding step
    rule: str = ""  # that step's rule, with its RFC section
    best_value: str = ""  # the best's value at that step
    own_value: str = ""  # this candidate's value at that step


@dataclass(frozen=True, slots=True)
class Advertisement:
    """Rule 3: one established session's view of the prefix."""

    peer_id: str
    advertised: bool  # the peer holds the prefix from us
    sent: PathAttributes | None  # what it holds (None with ADD-PATH or when not advertised)
    pending: bool  # a change for the prefix is staged and not yet taken by the peer's sender
    refused: str | None  # an export rule of the protocol refused the best path
    policy: PolicyTrace | None  # the export policy's decision on the best path
    add_path: bool = False


@dataclass(frozen=True, slots=True)
class RibExplanation:
    family: Family
    prefix: Prefix
    received: tuple[Received, ...]
    candidates: tuple[Candidate, ...]
    advertisements: tuple[Advertisement, ...]

    @property
    def best(self) -> Path | None:
        return self.candidates[0].path if self.candidates else None


def explain_candidates(
    candidates: tuple[Path, ...], always_compare_med: bool = False
) -> tuple[Candidate, ...]:
    """Rule 2 for a Loc-RIB entry's candidates (best first, as ``LocRib.candidates`` holds them)."""
    if not candidates:
        return ()
    best = candidates[0]
    ecmp = ecmp_set(candidates, always_compare_med)
    out = [Candidate(best, True, True)]
    for path in candidates[1:]:
        index = decisive_index(best, path)
        in_ecmp = any(p is path for p in ecmp)
        if index is None:
            out.append(
                Candidate(
                    path,
                    False,
                    in_ecmp,
                    "path-id",
                    "RFC 7911 §5: lowest path identifier",
                    str(best.path_id),
                    str(path.path_id),
                )
            )
            continue
        step = DECISION_STEPS[index]
        out.append(
            Candidate(
                path,
                False,
                in_ecmp,
                str(step.reason),
                step.rule,
                step_value(index, best),
                step_value(index, path),
            )
        )
    return tuple(out)
