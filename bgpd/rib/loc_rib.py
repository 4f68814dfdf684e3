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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from bgpd.rib.best_path import ecmp_set, order
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
            elif self._set_changed(prefix, entry, path, peer_id, path_id):
                append(prefix)
        return changed

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
            elif self._set_changed(prefix, entry, None, peer_id, path_id):
                changed.append(prefix)
        return changed

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
