"""Per-session import/export policy: ordered rules with first-match-terminates semantics, plus a
plain callable hook, so the Calico layer can express BGPFilters and its own export function
(calico-bgp.md §2.8 items 5-6, §2.9, §2.12b).

Rules:
1. A ``Policy`` runs, in order: ``prepare`` (a transform, e.g. Calico's priority normalisation),
   each ``RuleSet`` (one per BGPFilter: the first matching rule's action terminates the whole
   policy, a BIRD ``accept``/``reject`` inside a function ends the filter), then ``hook``
   (terminal: its result is the verdict), else ``default``.
2. A ``Rule`` matches when every condition it sets holds (BIRD ``&&``); no condition matches all.
   Operations run only on ``accept`` (Calico allows operations only with Accept).
3. Prefix conditions follow Calico: Equal ``net = cidr``, NotEqual ``net != cidr``, In
   ``net ~ cidr`` (inside, including equal), NotIn ``net !~ cidr``; a length range turns the CIDR
   into ``[cidr{min,max}]`` (min defaults to the CIDR length, max to the family maximum).
4. Priority ``p`` is LOCAL_PREF ``2147483647 - p`` (calico-bgp.md §2.10).
5. A policy whose conditions do not look at the prefix or interface (``prefix_independent``)
   lets the speaker evaluate it once per attribute set instead of once per prefix.
6. Pure: no IO, no clock. Attribute sets produced here are plain values; the caller interns.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from bgpd.rib.route import PeerKind
from bgpd.wire.constants import SegmentType
from bgpd.wire.types import (
    Family,
    IPNetwork,
    LargeCommunity,
    PathAttributes,
    Prefix,
    as_path_prepend,
    prefix_from_network,
)

PRIORITY_BASE = 2_147_483_647  # calico-bgp.md §2.10: priority = 2147483647 - local_pref


class Verdict(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


class MatchOperator(StrEnum):
    """Calico BGPFilter ``matchOperator`` (calico-bgp.md §1.2.5)."""

    EQUAL = "Equal"
    NOT_EQUAL = "NotEqual"
    IN = "In"
    NOT_IN = "NotIn"


class SourceKind(StrEnum):
    """Where the route being filtered came from (Calico ``source``: RemotePeers = BGP)."""

    LOCAL = "local"
    REMOTE_PEERS = "RemotePeers"


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What a rule may look at besides the route: the session and the route's source.

    ``peer_kind`` is the session's peer kind (import: the sender; export: the receiver);
    ``same_as`` is Calico's ``is_same_as`` (peer AS == the session's local AS).
    """

    peer_kind: PeerKind
    same_as: bool
    source: SourceKind
    peer_as: int = 0
    local_as: int = 0
    interface: str | None = None


@dataclass(frozen=True, slots=True)
class PrefixMatch:
    """Rule 3. ``network`` is the CIDR; ``min_len``/``max_len`` the optional length range."""

    network: IPNetwork
    operator: MatchOperator = MatchOperator.IN
    min_len: int | None = None
    max_len: int | None = None

    @classmethod
    def exact(cls, network: IPNetwork) -> PrefixMatch:
        return cls(network, MatchOperator.EQUAL)

    @classmethod
    def longer(cls, network: IPNetwork) -> PrefixMatch:
        """Strictly more specific than ``network``."""
        return cls(network, MatchOperator.IN, min_len=network.prefixlen + 1)

    def matches(self, prefix: Prefix) -> bool:
        key = prefix_from_network(self.network)
        if self.operator is MatchOperator.EQUAL:
            return prefix == key
        if self.operator is MatchOperator.NOT_EQUAL:
            return prefix != key
        inside = self._inside(prefix)
        return inside if self.operator is MatchOperator.IN else not inside

    def _inside(self, prefix: Prefix) -> bool:
        plen = prefix[0]
        low = self.network.prefixlen if self.min_len is None else self.min_len
        high = self.network.max_prefixlen if self.max_len is None else self.max_len
        base = self.network.prefixlen
        if not (low <= plen <= high) or plen < base:
            return False
        size = self.network.max_prefixlen // 8
        address = int.from_bytes(prefix[1:].ljust(size, b"\0"), "big")
        return address >> (self.network.max_prefixlen - base) == int(
            self.network.network_address
        ) >> (self.network.max_prefixlen - base)


@dataclass(frozen=True, slots=True)
class Match:
    """Conditions of a rule (rule 2); ``None``/empty means "don't care"."""

    prefix: PrefixMatch | None = None
    communities: tuple[int, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    as_path_prefix: tuple[int, ...] = ()
    peer_kinds: frozenset[PeerKind] | None = None
    same_as: bool | None = None
    source: SourceKind | None = None
    interface: str | None = None

    @property
    def looks_at_prefix(self) -> bool:
        return self.prefix is not None or self.interface is not None

    def matches(self, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext) -> bool:
        if self.prefix is not None and not self.prefix.matches(prefix):
            return False
        if self.communities and not all(c in attrs.communities for c in self.communities):
            return False
        if self.large_communities and not all(
            c in attrs.large_communities for c in self.large_communities
        ):
            return False
        if self.as_path_prefix and not _path_starts_with(attrs, self.as_path_prefix):
            return False
        if self.peer_kinds is not None and ctx.peer_kind not in self.peer_kinds:
            return False
        if self.same_as is not None and ctx.same_as != self.same_as:
            return False
        if self.source is not None and ctx.source is not self.source:
            return False
        if self.interface is not None and (
            ctx.interface is None or not fnmatch.fnmatchcase(ctx.interface, self.interface)
        ):
            return False
        return True


def _path_starts_with(attrs: PathAttributes, asns: tuple[int, ...]) -> bool:
    """BIRD ``bgp_path ~ [= a b * =]``: the path's leading ASes are ``asns``."""
    flat: list[int] = []
    for seg in attrs.as_path:
        if seg.type != SegmentType.AS_SEQUENCE:
            break
        flat.extend(seg.asns)
        if len(flat) >= len(asns):
            break
    return tuple(flat[: len(asns)]) == asns


@dataclass(frozen=True, slots=True)
class AddCommunity:
    value: int


@dataclass(frozen=True, slots=True)
class AddLargeCommunity:
    value: LargeCommunity


@dataclass(frozen=True, slots=True)
class PrependAsPath:
    """Prepend ``asns`` so the result reads ``asns`` then the old path (Calico prependASPath)."""

    asns: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SetLocalPref:
    value: int


@dataclass(frozen=True, slots=True)
class SetPriority:
    """Rule 4: LOCAL_PREF = 2147483647 - priority."""

    value: int


@dataclass(frozen=True, slots=True)
class SetMed:
    value: int


Operation = AddCommunity | AddLargeCommunity | PrependAsPath | SetLocalPref | SetPriority | SetMed


def apply_operation(attrs: PathAttributes, op: Operation) -> PathAttributes:
    if isinstance(op, AddCommunity):
        if op.value in attrs.communities:
            return attrs
        return replace(attrs, communities=(*attrs.communities, op.value))
    if isinstance(op, AddLargeCommunity):
        if op.value in attrs.large_communities:
            return attrs
        return replace(attrs, large_communities=(*attrs.large_communities, op.value))
    if isinstance(op, PrependAsPath):
        path = attrs.as_path
        for asn in reversed(op.asns):
            path = as_path_prepend(path, asn)
        return replace(attrs, as_path=path)
    if isinstance(op, SetLocalPref):
        return replace(attrs, local_pref=op.value)
    if isinstance(op, SetPriority):
        return replace(attrs, local_pref=PRIORITY_BASE - op.value)
    return replace(attrs, med=op.value)


@dataclass(frozen=True, slots=True)
class Rule:
    match: Match = Match()
    action: Verdict = Verdict.ACCEPT
    operations: tuple[Operation, ...] = ()


@dataclass(frozen=True, slots=True)
class RuleSet:
    """One filter (e.g. one BGPFilter's rules for a direction and family)."""

    name: str
    rules: tuple[Rule, ...]
    families: frozenset[Family] | None = None

    def decide(
        self, family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> tuple[Verdict, PathAttributes] | None:
        """The first matching rule's verdict and resulting attributes; None if none matches."""
        if self.families is not None and family not in self.families:
            return None
        for rule in self.rules:
            if rule.match.matches(prefix, attrs, ctx):
                if rule.action is Verdict.REJECT:
                    return Verdict.REJECT, attrs
                for op in rule.operations:
                    attrs = apply_operation(attrs, op)
                return Verdict.ACCEPT, attrs
        return None


Hook = Callable[[Family, Prefix, PathAttributes, PolicyContext], PathAttributes | None]
Transform = Callable[[Family, Prefix, PathAttributes, PolicyContext], PathAttributes]


@dataclass(frozen=True, slots=True)
class Policy:
    """Rule 1. ``Policy()`` accepts everything unchanged."""

    filters: tuple[RuleSet, ...] = ()
    hook: Hook | None = None
    prepare: Transform | None = None
    default: Verdict = Verdict.ACCEPT

    @property
    def prefix_independent(self) -> bool:
        return (
            self.hook is None
            and self.prepare is None
            and not any(r.match.looks_at_prefix for f in self.filters for r in f.rules)
        )

    def evaluate(
        self, family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> PathAttributes | None:
        """The attributes to use, or None to reject."""
        if self.prepare is not None:
            attrs = self.prepare(family, prefix, attrs, ctx)
        for ruleset in self.filters:
            decided = ruleset.decide(family, prefix, attrs, ctx)
            if decided is not None:
                verdict, attrs = decided
                return attrs if verdict is Verdict.ACCEPT else None
        if self.hook is not None:
            return self.hook(family, prefix, attrs, ctx)
        return attrs if self.default is Verdict.ACCEPT else None


ACCEPT_ALL = Policy()
REJECT_ALL = Policy(default=Verdict.REJECT)

__all__ = [
    "ACCEPT_ALL",
    "REJECT_ALL",
    "AddCommunity",
    "AddLargeCommunity",
    "Hook",
    "Match",
    "MatchOperator",
    "Operation",
    "Policy",
    "PolicyContext",
    "PrefixMatch",
    "PrependAsPath",
    "Rule",
    "RuleSet",
    "SetLocalPref",
    "SetMed",
    "SetPriority",
    "SourceKind",
    "Transform",
    "Verdict",
]
