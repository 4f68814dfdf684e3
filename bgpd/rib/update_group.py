"""Update groups: one Adj-RIB-Out shared by the route-reflector clients that are sent the same
UPDATEs, so a reflector's memory and encoding work grow with its routes, not with routes times
clients (FRR's update-groups; BIRD keeps no Adj-RIB-Out at all). A thousand clients of 120
routes each would otherwise be sent, and remembered, 120 million times.

A group keeps the view every member is to hold (``sent``: what the export rules give a member
that did not send the route), the peer each of those routes came from (``origin``), and the
staged wishes (``pending``, coalescing per prefix as an ``AdjRibOut``'s do: its rules 1-3).

Rules:
1. Members share everything the export rules read (the speaker's group key: family, export
   policy, the session's kind, AS numbers, reflector role, next-hop settings and encoding
   context), so ``bgpd.rib.export`` rules 2-4 give every member the same result, except "never
   back to the session it came from", which rule 3 applies per member.
2. Rounds, in lockstep: when a member asks (``take``) and every member has taken the last
   round, the staged wishes are diffed against ``sent`` and encoded once, into a new round; each
   member takes each round once. So a member that took the last round holds ``sent`` (less rule
   3), and a round's bytes are shared by all. A slow member holds the others back for at most
   ``LAG_LIMIT`` seconds (rule 5); meanwhile wishes coalesce.
3. Never back to the sender (RFC 4271 §9.2, BIRD and GoBGP alike): a member does not hold the
   routes whose origin is itself. A round's announcements and withdrawals of a member's own
   routes go to the others; that member gets a withdrawal instead when it may hold another path
   for the prefix (the previous origin was someone else), else nothing.
4. Joining: a new member takes every round made after it joined and catches up on the buckets
   of ``sent`` (its prefixes by attributes and origin) there were when it joined, each read
   whole from ``sent`` when the member takes it (never its own routes), so members that catch
   up while a bucket is unchanged share its encoding. It takes a waiting round before any
   bucket, so a bucket never carries a state older than one the member has, and every prefix
   ends at ``sent``'s state (a prefix that moved to a bucket not yet read may come twice). A
   route refresh request restarts the catch-up (RFC 2918 §4); End-of-RIB waits for its end
   (the speaker's).
5. A member that has not taken a round ``LAG_LIMIT`` seconds after it was made is split off,
   with the others that have not, into a group of their own (``split_laggards``) that holds
   exactly what they hold (``sent`` before that round), with that round's prefixes and the
   staged wishes pending; the rest go on. A group merges into another of its key (``merge``)
   when both are idle and hold equal views: then its members hold what the other's hold.
6. Pure: no IO; time only as arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain

from bgpd.rib.adj_rib_out import EncodeCache, encode_groups, take_oldest
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import Family, PathAttributes, Prefix

LAG_LIMIT = 3.0  # rule 5: seconds a member may hold the others back
Bucket = tuple[PathAttributes, str | None]  # attributes and origin: what a prefix is sent as
_NOTHING: list[Bucket] = []


class _Member:
    """One member's progress: the last round it took, and its catch-up (rule 4)."""

    __slots__ = ("taken", "snapshot", "position", "fresh")

    def __init__(
        self, taken: int, snapshot: list[Bucket], position: int = 0, fresh: bool = False
    ) -> None:
        self.taken = taken
        self.snapshot = snapshot  # shared by the members that joined at one round
        self.position = position
        self.fresh = fresh  # it has taken nothing since it joined

    @property
    def catching_up(self) -> bool:
        return self.position < len(self.snapshot)


class _Round:
    """One round's messages, by the origin member they concern (None: no member's routes), and
    what it changed (rule 5's undo)."""

    __slots__ = ("number", "made", "parts", "own", "undo", "_everyone")

    def __init__(
        self,
        number: int,
        made: float,
        parts: dict[str | None, list[bytes]],
        own: dict[str, list[bytes]],
        undo: dict[Prefix, tuple[PathAttributes | None, str | None]],
    ) -> None:
        self.number = number
        self.made = made
        self.parts = parts  # origin -> announcements and withdrawals of its routes
        self.own = own  # member -> withdrawals of what it may hold where its own route won
        self.undo = undo  # prefix -> (attributes, origin) before the round
        self._everyone: list[bytes] | None = None

    def messages_for(self, member_id: str) -> list[bytes]:
        """Rule 3: everything but the parts about the member's own routes, plus its own
        withdrawals."""
        if member_id not in self.parts and member_id not in self.own:
            if self._everyone is None:
                self._everyone = list(chain.from_iterable(self.parts.values()))
            return self._everyone
        others = (messages for origin, messages in self.parts.items() if origin != member_id)
        return [*chain.from_iterable(others), *self.own.get(member_id, ())]


_NO_ROUND = _Round(0, 0.0, {}, {}, {})


class UpdateGroup:
    """The shared Adj-RIB-Out of one key's members (rules 1-6)."""

    __slots__ = (
        "key",
        "family",
        "sent",
        "origin",
        "origin_counts",
        "buckets",
        "pending",
        "pending_origin",
        "members",
        "round",
        "untaken",
        "merge_tried",
        "full_sync",
        "_snapshot",
    )

    def __init__(self, key: tuple[object, ...], family: Family) -> None:
        self.key = key
        self.family = family
        self.sent: dict[Prefix, PathAttributes] = {}
        self.origin: dict[Prefix, str] = {}  # sent prefix -> the peer its route came from
        self.origin_counts: dict[str, int] = {}
        self.buckets: dict[Bucket, dict[Prefix, None]] = {}  # rule 4: ``sent`` by bucket
        self.pending: dict[Prefix, PathAttributes | None] = {}
        self.pending_origin: dict[Prefix, str] = {}
        self.members: dict[str, _Member] = {}
        self.round = _NO_ROUND
        self.untaken = 0  # members that have not taken ``round``
        self.merge_tried: tuple[object, ...] | None = None
        self.full_sync = False  # the speaker's: stage every prefix once (a new export policy)
        self._snapshot: tuple[int, list[Bucket]] | None = None

    def __len__(self) -> int:
        return len(self.members)

    # -- membership (rules 4, 5) ---------------------------------------------------------------

    def join(self, member_id: str) -> None:
        """Rule 4: the member takes the rounds after this one and catches up on ``sent``."""
        self.members[member_id] = _Member(self.round.number, self._current_snapshot(), fresh=True)

    def leave(self, member_id: str) -> None:
        member = self.members.pop(member_id, None)
        if member is not None and member.taken < self.round.number:
            self.untaken -= 1

    def restart_catch_up(self, member_id: str) -> None:
        """Rule 4: send everything again (a route refresh request)."""
        member = self.members[member_id]
        member.snapshot, member.position = self._current_snapshot(), 0

    def _current_snapshot(self) -> list[Bucket]:
        found = self._snapshot
        if found is None or found[0] != self.round.number:
            found = self._snapshot = (self.round.number, list(self.buckets))
        return found[1]

    def catching_up(self, member_id: str) -> bool:
        return self.members[member_id].catching_up

    def fresh(self, member_id: str) -> bool:
        """Whether the member has taken nothing yet: it holds nothing from the group."""
        return self.members[member_id].fresh

    # -- what a member holds (rule 3) ------------------------------------------------------------

    def holds(self, member_id: str, prefix: Prefix) -> PathAttributes | None:
        if self.origin.get(prefix) == member_id:
            return None
        return self.sent.get(prefix)

    def held(self, member_id: str) -> Iterator[tuple[Prefix, PathAttributes]]:
        origin = self.origin.get
        return ((p, a) for p, a in self.sent.items() if origin(p) != member_id)

    def held_count(self, member_id: str) -> int:
        return len(self.sent) - self.origin_counts.get(member_id, 0)

    # -- rounds (rules 2-4) ----------------------------------------------------------------------

    def has_output(self, member_id: str) -> bool:
        member = self.members[member_id]
        return (
            member.taken < self.round.number
            or (self.untaken == 0 and bool(self.pending))
            or member.catching_up
        )

    def take(
        self,
        member_id: str,
        negotiated: Negotiated,
        budget: int | None,
        now: float,
        cache: EncodeCache | None,
    ) -> tuple[list[bytes], int]:
        """Rules 2-4: the round the member has not taken, a new round if everyone has taken
        the last, then a chunk of its catch-up; at most ``budget`` prefixes of new work, and
        how many prefixes that was."""
        member = self.members[member_id]
        member.fresh = False
        out: list[bytes] = []
        if member.taken < self.round.number:
            out += self.round.messages_for(member_id)
            member.taken = self.round.number
            self.untaken -= 1
        room = budget
        used = 0
        if self.untaken == 0 and self.pending and (room is None or room > 0):
            staged = len(self.pending) if room is None else min(room, len(self.pending))
            if self._make_round(negotiated, room, now, cache):
                out += self.round.messages_for(member_id)
                member.taken = self.round.number
                self.untaken = len(self.members) - 1
            used += staged
            if room is not None:
                room -= staged
        if member.catching_up and (room is None or room > 0):
            messages, count = self._chunk(member_id, member, negotiated, room, cache)
            out += messages
            used += count
        return out, used

    def _make_round(
        self, negotiated: Negotiated, limit: int | None, now: float, cache: EncodeCache | None
    ) -> bool:
        """Rules 2 and 3: diff the oldest wishes against ``sent``; False if nothing changed."""
        batch, self.pending = take_oldest(self.pending, limit)
        wished_origin = self.pending_origin
        sent, origin, counts, members = self.sent, self.origin, self.origin_counts, self.members
        buckets = self.buckets
        undo: dict[Prefix, tuple[PathAttributes | None, str | None]] = {}
        announce: dict[tuple[PathAttributes, str | None], list[Prefix]] = {}
        withdraw: dict[str | None, list[Prefix]] = {}
        own: dict[str, list[Prefix]] = {}
        for prefix, want in batch:
            want_origin = wished_origin.pop(prefix, None)
            have = sent.get(prefix)
            have_origin = origin.get(prefix)
            if want is have and want_origin == have_origin:
                continue
            if want is not None and want == have and want_origin == have_origin:
                continue
            undo[prefix] = (have, have_origin)
            if have is not None:
                left = buckets[have, have_origin]
                del left[prefix]
                if not left:
                    del buckets[have, have_origin]
            if have_origin is not None:
                counts[have_origin] -= 1
                del origin[prefix]
            if want is None:
                del sent[prefix]
                tag = have_origin if have_origin in members else None
                withdraw.setdefault(tag, []).append(prefix)
                continue
            sent[prefix] = want
            if want_origin is not None:
                origin[prefix] = want_origin
                counts[want_origin] = counts.get(want_origin, 0) + 1
            bucket = buckets.get((want, want_origin))
            if bucket is None:
                buckets[want, want_origin] = {prefix: None}
            else:
                bucket[prefix] = None
            tag = want_origin if want_origin in members else None
            announce.setdefault((want, tag), []).append(prefix)
            if tag is not None and have is not None and have_origin != tag:
                own.setdefault(tag, []).append(prefix)
        if not undo:
            return False
        family = self.family
        parts: dict[str | None, list[bytes]] = {}
        for tag, prefixes in withdraw.items():
            parts[tag] = encode_groups(family, negotiated, {}, prefixes, cache)
        by_tag: dict[str | None, dict[PathAttributes, list[Prefix]]] = {}
        for (attrs, tag), prefixes in announce.items():
            by_tag.setdefault(tag, {})[attrs] = prefixes
        for tag, grouped in by_tag.items():
            parts.setdefault(tag, []).extend(encode_groups(family, negotiated, grouped, [], cache))
        own_messages = {
            tag: encode_groups(family, negotiated, {}, prefixes, cache)
            for tag, prefixes in own.items()
        }
        self.round = _Round(self.round.number + 1, now, parts, own_messages, undo)
        return True

    def _chunk(
        self,
        member_id: str,
        member: _Member,
        negotiated: Negotiated,
        room: int | None,
        cache: EncodeCache | None,
    ) -> tuple[list[bytes], int]:
        """Rule 4: the member's next buckets of its catch-up, as ``sent`` has them now, about
        ``room`` prefixes, and how many. A bucket's prefixes are read whole, so members that
        catch up while it is unchanged share its encoding (the encode cache)."""
        snapshot, position = member.snapshot, member.position
        found = self.buckets.get
        chosen: dict[PathAttributes, list[Prefix]] = {}
        count = 0
        while position < len(snapshot) and (room is None or count < room):
            key = snapshot[position]
            position += 1
            if key[1] == member_id:
                continue
            prefixes = found(key)
            if prefixes:
                chosen.setdefault(key[0], []).extend(prefixes)
                count += len(prefixes)
        if position >= len(snapshot):
            member.snapshot, member.position = _NOTHING, 0
        else:
            member.position = position
        return encode_groups(self.family, negotiated, chosen, [], cache), count

    # -- laggards and merging (rule 5) -----------------------------------------------------------

    def lag_deadline(self) -> float | None:
        """When the members that have not taken the last round are split off."""
        return self.round.made + LAG_LIMIT if self.untaken else None

    def split_laggards(self, now: float) -> UpdateGroup | None:
        """Rule 5: a new group of the members that have not taken the last round in time."""
        deadline = self.lag_deadline()
        if deadline is None or now < deadline:
            return None
        number = self.round.number
        return self.detach([m for m, member in self.members.items() if member.taken < number])

    def detach(self, member_ids: list[str]) -> UpdateGroup:
        """Rule 5: a new group of ``member_ids``, all of which took the same round, holding
        exactly what they hold, with what they have not been sent pending."""
        last = self.round
        behind = self.members[member_ids[0]].taken < last.number
        split = UpdateGroup(self.key, self.family)
        sent, origin = dict(self.sent), dict(self.origin)
        if behind:  # undo the round they did not take: it is pending for them
            for prefix, (attrs, was_from) in last.undo.items():
                split.pending[prefix] = sent.pop(prefix, None)
                now_from = origin.pop(prefix, None)
                if now_from is not None:
                    split.pending_origin[prefix] = now_from
                if attrs is not None:
                    sent[prefix] = attrs
                if was_from is not None:
                    origin[prefix] = was_from
        for prefix, want in self.pending.items():
            split.pending[prefix] = want
            split.pending_origin.pop(prefix, None)
        split.pending_origin.update(self.pending_origin)
        split.sent, split.origin = sent, origin
        for was_from in origin.values():
            split.origin_counts[was_from] = split.origin_counts.get(was_from, 0) + 1
        from_peer = origin.get
        for prefix, attrs in sent.items():
            split.buckets.setdefault((attrs, from_peer(prefix)), {})[prefix] = None
        for member_id in member_ids:
            member = self.members.pop(member_id)
            split.members[member_id] = _Member(0, member.snapshot, member.position)
            if behind:
                self.untaken -= 1
        return split

    def idle(self) -> bool:
        return not self.pending and self.untaken == 0

    def merge(self, other: UpdateGroup) -> bool:
        """Rule 5: take ``other``'s members if both are idle and hold the same view."""
        if not (self.idle() and other.idle()) or self.key != other.key:
            return False
        tried = (id(self), self.round.number, other.round.number)
        if other.merge_tried == tried:
            return False  # nothing changed since the views last differed
        other.merge_tried = tried
        if self.sent != other.sent or self.origin != other.origin:
            return False
        for member_id, member in other.members.items():
            self.members[member_id] = _Member(self.round.number, member.snapshot, member.position)
        other.members.clear()
        return True
