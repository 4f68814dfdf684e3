"""The Loc-RIB of one address family: every candidate per prefix, best first (RFC 4271 §3.2,
§9.1.2), maintained incrementally.

Rules:
1. An entry is a single ``Path`` (the common one-candidate case: no container at all) or a tuple
   of candidates ordered best first by ``best_path.order``; so memory per route is one dict slot.
2. A candidate is identified by (source peer id, path id); an announcement with the same identity
   replaces it (RFC 4271 §9.1.4 implicit withdraw).
3. The entry depends only on the set of candidates, never on arrival order (best_path rule 3).
4. A change is reported when the best or the ECMP set changes: ``BestChange`` for single
   operations, the list of changed prefixes for batches (the speaker reads the new state).
5. Pure: no IO, no clock.
6. Withdrawals without re-ranking where the order is known: the best's withdrawal always
   changes the selection, and when the others each have a neighbour AS of their own they are
   already in the new order (the best of several groups is the first by cross rank,
   ``best_path`` rule 3); a candidate that is not in the ECMP set and alone in its neighbour AS
   (or with ``always_compare_med``) changes neither the best nor the ECMP set (the best beat
   that group's winner, and no other group changes), so it is removed in place. So is an
   announcement among candidates that each have a neighbour AS of their own (without
   ``always_compare_med``): it goes first if it wins, else in its place among the rest. A table
   from several peers, announced or withdrawn one peer at a time, re-ranks nothing.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from bgpd.rib.best_path import cross_rank, ecmp_key, ecmp_set, order
from bgpd.rib.route import Path
from bgpd.wire.types import Prefix

Entry = Path | tuple[Path, ...]


class BestChange(NamedTuple):
    """The selected route of ``prefix`` changed: new best (None if unreachable), new ECMP set,
    previous best. A NamedTuple: millions are made during a full-table load."""

    prefix: Prefix
    best: Path | None
    ecmp: tuple[Path, ...]
    old: Path | None


class LocRib:
    """Candidates and best path per prefix of one family."""

    __slots__ = ("routes", "always_compare_med")

    def __init__(self, always_compare_med: bool = False) -> None:
        self.routes: dict[Prefix, Entry] = {}
        self.always_compare_med = always_compare_med

    def __len__(self) -> int:
        return len(self.routes)

    def __contains__(self, prefix: Prefix) -> bool:
        return prefix in self.routes

    def prefixes(self) -> Iterator[Prefix]:
        return iter(self.routes)

    def best(self, prefix: Prefix) -> Path | None:
        entry = self.routes.get(prefix)
        if entry is None or entry.__class__ is Path:
            return entry
        return entry[0]  # type: ignore[index]

    def candidates(self, prefix: Prefix) -> tuple[Path, ...]:
        entry = self.routes.get(prefix)
        if entry is None:
            return ()
        return (entry,) if entry.__class__ is Path else entry  # type: ignore[return-value]

    def ecmp(self, prefix: Prefix) -> tuple[Path, ...]:
        entry = self.routes.get(prefix)
        if entry is None:
            return ()
        if entry.__class__ is Path:
            return (entry,)
        return ecmp_set(entry, self.always_compare_med)  # type: ignore[arg-type]

    # -- single operations (return the change) -----------------------------------------------

    def update(self, prefix: Prefix, path: Path) -> BestChange | None:
        """Add or replace ``path``'s candidate for ``prefix``."""
        return self._change(prefix, path, path.source.peer_id, path.path_id)

    def withdraw(self, prefix: Prefix, peer_id: str, path_id: int = 0) -> BestChange | None:
        """Remove the candidate of (``peer_id``, ``path_id``) for ``prefix``."""
        return self._change(prefix, None, peer_id, path_id)

    def _change(
        self, prefix: Prefix, path: Path | None, peer_id: str, path_id: int
    ) -> BestChange | None:
        old_best = self.best(prefix)
        old_ecmp = self.ecmp(prefix)
        if not self._set(prefix, path, peer_id, path_id):
            return None
        new_ecmp = self.ecmp(prefix)
        if new_ecmp == old_ecmp:
            return None
        return BestChange(prefix, self.best(prefix), new_ecmp, old_best)

    def _set(self, prefix: Prefix, path: Path | None, peer_id: str, path_id: int) -> bool:
        """Apply one candidate change; False when nothing changed."""
        routes = self.routes
        entry = routes.get(prefix)
        if entry is None:
            if path is None:
                return False
            routes[prefix] = path
            return True
        if entry is path:
            return False
        cands = (entry,) if entry.__class__ is Path else entry
        kept = tuple(
            c
            for c in cands  # type: ignore[union-attr]
            if c.path_id != path_id or c.source.peer_id != peer_id
        )
        if path is None and len(kept) == len(cands):  # type: ignore[arg-type]
            return False
        if path is not None:
            kept += (path,)
        if not kept:
            del routes[prefix]
        elif len(kept) == 1:
            routes[prefix] = kept[0]
        else:
            routes[prefix] = order(kept, self.always_compare_med)
        return True

    # -- batches (the hot path) ----------------------------------------------------------------

    def announce_many(self, prefixes: Iterable[Prefix], path: Path) -> list[Prefix]:
        """Announce ``path`` for every prefix; returns the prefixes whose selection changed."""
        routes = self.routes
        if not isinstance(prefixes, list):
            prefixes = list(prefixes)
        if not any(prefix in routes for prefix in prefixes):
            routes.update(dict.fromkeys(prefixes, path))  # all new: the full-table load
            return prefixes
        get = routes.get
        changed: list[Prefix] = []
        append = changed.append
        peer_id = path.source.peer_id
        path_id = path.path_id
        for prefix in prefixes:
            entry = get(prefix)
            if entry is None:
                routes[prefix] = path
                append(prefix)
            elif entry is path:
                continue
            elif (
                entry.__class__ is Path
                and entry.path_id == path_id
                and entry.source.peer_id == peer_id
            ):
                routes[prefix] = path
                append(prefix)
            else:
                known = self._announce_ranked(prefix, entry, path)
                if known is None:
                    known = self._set_changed(prefix, entry, path, peer_id, path_id)
                if known:
                    append(prefix)
        return changed

    def _announce_ranked(self, prefix: Prefix, entry: Entry, path: Path) -> bool | None:
        """Rule 6: among candidates that each have a neighbour AS of their own, a new one is
        placed by its cross rank: first (the selection changed) or, outside the ECMP set,
        among the rest (it did not); None when the full path must decide (a replacement, a
        shared neighbour AS, ``always_compare_med``, a tie on the ECMP key)."""
        if self.always_compare_med:
            return None
        held: tuple[Path, ...] = (entry,) if entry.__class__ is Path else entry  # type: ignore[assignment]
        source, path_id = path.source, path.path_id
        groups = {path.neighbor_as}
        for candidate in held:
            if candidate.neighbor_as in groups or (
                candidate.path_id == path_id and candidate.source == source
            ):
                return None  # each candidate alone in its group: the order is by cross rank
            groups.add(candidate.neighbor_as)
        best = held[0]
        if ecmp_key(path) == ecmp_key(best):
            return None
        rank = cross_rank(path)
        if rank < cross_rank(best):
            self.routes[prefix] = (path, *held)
            return True
        at = bisect_left(held, rank, 1, key=cross_rank)
        self.routes[prefix] = (*held[:at], path, *held[at:])
        return False

    def withdraw_many(
        self, prefixes: Iterable[Prefix], peer_id: str, path_id: int = 0
    ) -> list[Prefix]:
        """Withdraw (``peer_id``, ``path_id``) for every prefix; returns the changed ones."""
        routes = self.routes
        get = routes.get
        changed: list[Prefix] = []
        for prefix in prefixes:
            entry = get(prefix)
            if entry is None:
                continue
            if entry.__class__ is Path:
                if entry.path_id == path_id and entry.source.peer_id == peer_id:
                    del routes[prefix]
                    changed.append(prefix)
            else:
                held: tuple[Path, ...] = entry  # type: ignore[assignment]
                first = held[0]
                if first.path_id == path_id and first.source.peer_id == peer_id:
                    self._withdraw_best(prefix, held)
                    changed.append(prefix)
                elif self._withdraw_loser(prefix, held, peer_id, path_id):
                    continue
                elif self._set_changed(prefix, held, None, peer_id, path_id):
                    changed.append(prefix)
        return changed

    def _withdraw_best(self, prefix: Prefix, entry: tuple[Path, ...]) -> None:
        """Rule 6: the best goes, so the selection changes; the rest is already in cross-rank
        order, which is the new order when each has a neighbour AS of its own."""
        rest = entry[1:]
        if len(rest) == 1:
            self.routes[prefix] = rest[0]
        elif not self.always_compare_med and len({p.neighbor_as for p in rest}) == len(rest):
            self.routes[prefix] = rest
        else:
            self.routes[prefix] = order(rest, self.always_compare_med)

    def _withdraw_loser(
        self, prefix: Prefix, entry: tuple[Path, ...], peer_id: str, path_id: int
    ) -> bool:
        """Rule 6: withdraw a candidate that neither is nor can make the selection, without
        re-ranking; False when the full path must decide."""
        best = entry[0]
        for index in range(1, len(entry)):
            gone = entry[index]
            if gone.path_id == path_id and gone.source.peer_id == peer_id:
                break
        else:
            return best.path_id != path_id or best.source.peer_id != peer_id  # not held
        if ecmp_key(gone) == ecmp_key(best):
            return False  # it may be in the ECMP set
        if not self.always_compare_med:
            group = gone.neighbor_as
            if any(p is not gone and p.neighbor_as == group for p in entry):
                return False  # its MED group's next winner might beat the best
        kept = entry[:index] + entry[index + 1 :]
        self.routes[prefix] = kept if len(kept) > 1 else kept[0]
        return True

    def _set_changed(
        self, prefix: Prefix, entry: Entry, path: Path | None, peer_id: str, path_id: int
    ) -> bool:
        before = self._selected(entry)
        if not self._set(prefix, path, peer_id, path_id):
            return False
        after = self.routes.get(prefix)
        return after is None or self._selected(after) != before

    def _selected(self, entry: Entry) -> tuple[Path, ...]:
        if entry.__class__ is Path:
            return (entry,)
        return ecmp_set(entry, self.always_compare_med)  # type: ignore[arg-type]
