"""Adj-RIB-Out of one peer and family as a desired-state diff against what the peer was sent
(RFC 4271 §3.2, §9.2; BIRD's TX buckets).

Rules:
1. ``sent`` is what the peer holds from us. Callers ``stage`` the desired state of a prefix
   (attributes, or None for "must not have it"); staging again before ``take`` replaces the
   earlier wish, so pending changes for a prefix coalesce.
2. ``take`` diffs the staged wishes against ``sent``: a prefix whose desired state is None but was
   sent is withdrawn (so "the new best may not be exported" needs no special case), a changed one
   is announced, an unchanged one produces nothing. Then ``sent`` equals the desired view for
   every prefix taken. ``take(limit=N)`` takes the N oldest wishes and leaves the rest staged,
   so a peer is handed only what its socket can take and the rest keeps coalescing (BIRD's
   ``bgp_fire_tx``).
3. Announcements are grouped by attribute set (identity, as attributes are interned) and each
   group is packed into as few UPDATEs as the negotiated size allows (``encode_updates``);
   withdrawals go first, packed the same way.
4. With ADD-PATH transmit (RFC 7911) a prefix's state is a tuple of (path id, attributes); each
   identifier is announced or withdrawn on its own.
5. ``diff_views``/``apply_diff`` are the pure form of rule 2, for tests and documentation:
   ``apply_diff(view, diff_views(view, desired)) == desired``.
6. Pure: no IO, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import islice
from typing import NamedTuple, TypeVar

from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import Family, PathAttributes, Prefix
from bgpd.wire.update import encode_updates, encode_withdrawals

AddPathState = tuple[tuple[int, PathAttributes], ...]
OutState = PathAttributes | AddPathState
EncodeCache = dict[tuple[object, ...], list[bytes]]
WishT = TypeVar("WishT")


class RibDiff(NamedTuple):
    """Announcements grouped by attributes, and withdrawn prefixes."""

    announce: dict[PathAttributes, list[Prefix]]
    withdraw: list[Prefix]


def diff_views(
    sent: Mapping[Prefix, PathAttributes], desired: Mapping[Prefix, PathAttributes]
) -> RibDiff:
    """Rule 5: what to send so a peer holding ``sent`` ends up holding ``desired``."""
    announce: dict[PathAttributes, list[Prefix]] = {}
    for prefix, attrs in desired.items():
        have = sent.get(prefix)
        if have is not attrs and have != attrs:
            announce.setdefault(attrs, []).append(prefix)
    withdraw = [prefix for prefix in sent if prefix not in desired]
    return RibDiff(announce, withdraw)


def apply_diff(
    sent: Mapping[Prefix, PathAttributes], diff: RibDiff
) -> dict[Prefix, PathAttributes]:
    """The peer's view after receiving ``diff``."""
    view = dict(sent)
    for prefix in diff.withdraw:
        view.pop(prefix, None)
    for attrs, prefixes in diff.announce.items():
        for prefix in prefixes:
            view[prefix] = attrs
    return view


class AdjRibOut:
    """What one peer was sent in one family, and what is pending for it."""

    __slots__ = ("family", "add_path", "sent", "pending")

    def __init__(self, family: Family, add_path: bool = False) -> None:
        self.family = family
        self.add_path = add_path
        self.sent: dict[Prefix, OutState] = {}
        self.pending: dict[Prefix, OutState | None] = {}

    def __len__(self) -> int:
        return len(self.sent)

    def stage(self, prefix: Prefix, desired: OutState | None) -> None:
        """Rule 1."""
        self.pending[prefix] = desired

    def resend_all(self) -> None:
        """Forget what was sent and stage it again (answering a route refresh, RFC 2918 §4)."""
        pending = self.pending
        for prefix, state in self.sent.items():
            pending.setdefault(prefix, state)
        self.sent = {}

    def take(
        self, negotiated: Negotiated, cache: EncodeCache | None = None, limit: int | None = None
    ) -> list[bytes]:
        """Rules 2 and 3: UPDATE messages for the pending wishes, the ``limit`` oldest of them
        when given; ``sent`` follows."""
        if not self.pending:
            return []
        batch, self.pending = take_oldest(self.pending, limit)
        if self.add_path:
            return self._take_add_path(negotiated, batch)
        sent = self.sent
        get = sent.get
        buckets: dict[PathAttributes, list[Prefix]] = {}
        withdrawn: list[Prefix] = []
        for prefix, want in batch:
            have = get(prefix)
            if want is have:
                continue
            if want is None:
                del sent[prefix]
                withdrawn.append(prefix)
            elif have is None or have != want:
                sent[prefix] = want
                bucket = buckets.get(want)  # type: ignore[arg-type]
                if bucket is None:
                    buckets[want] = [prefix]  # type: ignore[index]
                else:
                    bucket.append(prefix)
        return encode_groups(self.family, negotiated, buckets, withdrawn, cache)

    def _take_add_path(
        self, negotiated: Negotiated, batch: Iterable[tuple[Prefix, OutState | None]]
    ) -> list[bytes]:
        sent = self.sent
        buckets: dict[PathAttributes, tuple[list[Prefix], list[int]]] = {}
        withdrawn: tuple[list[Prefix], list[int]] = ([], [])
        for prefix, want in batch:
            have: AddPathState = sent.get(prefix, ())  # type: ignore[assignment]
            wanted: AddPathState = want or ()  # type: ignore[assignment]
            if have == wanted:
                continue
            had = dict(have)
            for path_id, attrs in wanted:
                if had.get(path_id) != attrs:
                    group = buckets.setdefault(attrs, ([], []))
                    group[0].append(prefix)
                    group[1].append(path_id)
            keep = {path_id for path_id, _ in wanted}
            for path_id in had:
                if path_id not in keep:
                    withdrawn[0].append(prefix)
                    withdrawn[1].append(path_id)
            if wanted:
                sent[prefix] = wanted
            else:
                del sent[prefix]
        family = self.family
        out: list[bytes] = []
        if withdrawn[0]:
            out += encode_withdrawals(family, withdrawn[0], negotiated, withdrawn[1])
        for attrs, (prefixes, ids) in buckets.items():
            out += encode_updates(family, attrs, prefixes, negotiated, ids)
        return out


def take_oldest(
    pending: dict[Prefix, WishT], limit: int | None
) -> tuple[Iterable[tuple[Prefix, WishT]], dict[Prefix, WishT]]:
    """Rule 2's batch: the ``limit`` oldest wishes (all without a limit) and the wishes left."""
    if limit is None or len(pending) <= limit:
        return pending.items(), {}
    if len(pending) <= 2 * limit:  # the rest, in order, is copied: at most ``limit``
        return islice(pending.items(), limit), dict(islice(pending.items(), limit, None))
    oldest = dict(islice(pending.items(), limit))  # moved out: O(limit), not O(pending)
    for prefix in oldest:
        del pending[prefix]
    return oldest.items(), pending


def encode_groups(
    family: Family,
    negotiated: Negotiated,
    buckets: Mapping[PathAttributes, list[Prefix]],
    withdrawn: list[Prefix],
    cache: EncodeCache | None,
) -> list[bytes]:
    """Rule 3: withdrawals, then each group of announcements, in as few UPDATEs as fit."""
    out: list[bytes] = []
    context = (family, negotiated.asn4, negotiated.max_message_len)
    if withdrawn:
        out += _cached(
            cache,
            (context, None, tuple(withdrawn)),
            lambda: encode_withdrawals(family, withdrawn, negotiated),
        )
    for attrs, prefixes in buckets.items():
        out += _cached(
            cache,
            (context, attrs, tuple(prefixes)),
            lambda a=attrs, p=prefixes: encode_updates(family, a, p, negotiated),
        )
    return out


def _cached(cache: EncodeCache | None, key: tuple[object, ...], encode: object) -> list[bytes]:
    """Equal groups for peers in the same encoding context encode once per flush."""
    if cache is None:
        return encode()  # type: ignore[operator,no-any-return]
    found = cache.get(key)
    if found is None:
        found = encode()  # type: ignore[operator]
        cache[key] = found
    return found
