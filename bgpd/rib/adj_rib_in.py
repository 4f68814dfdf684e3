"""Adj-RIB-In of one peer and family: the unprocessed routes the peer announced (RFC 4271 §3.2),
ADD-PATH aware, with stale marking for graceful restart and enhanced route refresh.

Rules:
1. A key is the ``Prefix`` itself, or ``(Prefix, path id)`` when ADD-PATH receive is negotiated
   for the family (RFC 7911 §3: the path identifier is part of the route's identity).
2. Values are the received, interned ``PathAttributes`` before import policy, so a policy change
   can be re-applied without asking the peer (RFC 4271 §9: policy runs on Adj-RIB-In).
3. ``mark_stale`` moves every route to the stale set in O(1) (RFC 4724 §4.2, RFC 7313 §4); a
   re-announcement or withdrawal takes the key out of it; ``sweep_stale`` returns what was never
   refreshed, for the caller to withdraw.
4. With ADD-PATH, ``path_ids`` remembers every path identifier the peer used (a set updated per
   UPDATE, never shrunk), so the routes of one prefix are found by probing each identifier
   (``keys_for``) instead of scanning the table; peers number their paths with small integers.
   Past ``PATH_ID_PROBE_LIMIT`` distinct identifiers ``keys_for`` scans.
5. Pure: no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from bgpd.wire.types import PathAttributes, Prefix

RouteKey = Prefix | tuple[Prefix, int]
PATH_ID_PROBE_LIMIT = 1024  # rule 4


def split_key(key: RouteKey) -> tuple[Prefix, int]:
    """(prefix, path id) of a key; path id 0 without ADD-PATH."""
    if key.__class__ is tuple:
        return key
    return key, 0  # type: ignore[return-value]


class AdjRibIn:
    """Received routes of one peer in one family."""

    __slots__ = ("routes", "stale", "add_path", "path_ids")

    def __init__(self, add_path: bool = False) -> None:
        self.routes: dict[RouteKey, PathAttributes] = {}
        self.stale: dict[RouteKey, PathAttributes] | None = None
        self.add_path = add_path
        self.path_ids: set[int] = set()

    def __len__(self) -> int:
        return len(self.routes) + (len(self.stale) if self.stale else 0)

    def get(self, key: RouteKey) -> PathAttributes | None:
        found = self.routes.get(key)
        if found is None and self.stale:
            found = self.stale.get(key)
        return found

    def items(self) -> Iterator[tuple[RouteKey, PathAttributes]]:
        """Every route held, fresh and stale."""
        yield from self.routes.items()
        if self.stale:
            yield from self.stale.items()

    def keys_of(self, prefixes: list[Prefix], path_ids: list[int] | None) -> list[RouteKey]:
        """Keys for decoded NLRI (rule 1)."""
        if not self.add_path:
            return prefixes  # type: ignore[return-value]
        ids = path_ids if path_ids is not None else [0] * len(prefixes)
        if len(self.path_ids) <= PATH_ID_PROBE_LIMIT:
            self.path_ids.update(ids)
        return list(zip(prefixes, ids, strict=True))

    def keys_for(self, prefix: Prefix) -> list[RouteKey]:
        """Every key held (fresh or stale) for ``prefix`` (rule 4)."""
        if not self.add_path:
            return [prefix] if self.get(prefix) is not None else []
        if len(self.path_ids) <= PATH_ID_PROBE_LIMIT:
            probes: list[RouteKey] = [(prefix, path_id) for path_id in sorted(self.path_ids)]
            return [key for key in probes if self.get(key) is not None]
        found: list[RouteKey] = [k for k in self.routes if k[0] == prefix]
        return found + [k for k in self.stale or () if k[0] == prefix]

    def announce(self, keys: Iterable[RouteKey], attrs: PathAttributes) -> None:
        routes = self.routes
        stale = self.stale
        if stale:
            pop = stale.pop
            for key in keys:
                routes[key] = attrs
                pop(key, None)
        else:
            routes.update(dict.fromkeys(keys, attrs))

    def withdraw(self, keys: Iterable[RouteKey]) -> list[RouteKey]:
        """Remove ``keys``; returns those that were held (fresh or stale)."""
        routes = self.routes
        stale = self.stale
        pop = routes.pop
        held: list[RouteKey] = []
        for key in keys:
            if pop(key, None) is not None or (stale and stale.pop(key, None) is not None):
                held.append(key)
        return held

    def mark_stale(self) -> None:
        """Rule 3: everything held becomes stale (a second restart keeps earlier stale routes)."""
        if self.stale:
            self.stale.update(self.routes)
        else:
            self.stale = self.routes
        self.routes = {}

    def sweep_stale(self) -> list[RouteKey]:
        """Forget the stale routes that were not refreshed; returns their keys."""
        swept = list(self.stale) if self.stale else []
        self.stale = None
        return swept

    def clear(self) -> list[RouteKey]:
        """Forget everything; returns every key that was held."""
        keys = list(self.routes)
        if self.stale:
            keys.extend(self.stale)
        self.routes = {}
        self.stale = None
        return keys
