"""Per-session import/export policy: ordered rules with first-match-terminates semantics, plus a
terminal hook, the one policy engine of the speaker. Calico's BGPFilters are compiled into it
(``bgpd.calico.filters``) and Calico's export function is its hook (``bgpd.calico.export``);
BIRD's filter language at the channel boundary is the model (calico-bgp.md §2.8 items 5-6, §2.9).

Rules:
1. A ``Policy`` runs, in order: ``prepare`` (a transform, e.g. Calico's priority normalisation),
   each ``RuleSet`` (one per filter: the first matching rule's action terminates the whole
   policy, as a BIRD ``accept``/``reject`` inside a function ends the filter; a ``RuleSet`` of
   other families is skipped), then ``hook`` (terminal: its result is the verdict), else
   ``default``.
2. A ``Rule`` matches when every condition it sets holds (BIRD ``&&``); no condition matches all.
   Operations run only on ``accept`` (Calico allows operations only with Accept).
3. Prefix conditions follow BIRD as Calico renders them (calico-bgp.md §2.9): Equal
   ``net = cidr``, NotEqual ``net != cidr``, In ``net ~ cidr`` (inside, including equal), NotIn
   ``net !~ cidr``. A length range turns the CIDR into the set ``[cidr{min,max}]`` (min defaults
   to the CIDR length and is never below it, max to the family maximum): Equal and In then mean
   membership of the set, NotEqual and NotIn its negation. Prefixes are compared packed, as
   integers.
4. A policy whose conditions do not look at the prefix or interface (``prefix_independent``)
   lets the speaker evaluate it once per attribute set instead of once per prefix.
5. Pure: no IO, no clock. Attribute sets produced here are plain values; the caller interns.
6. ``Policy.trace`` is ``evaluate`` that also says what decided (a filter's rule by index, the
   hook, or the default); a hook may offer ``explain(family, prefix, attrs, ctx) -> str``, its
   reason in words. It is computed on demand, so the hot path carries no bookkeeping.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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


class Verdict(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


class MatchOperator(StrEnum):
    """How a prefix condition compares (rule 3), spelled as Calico's ``matchOperator``."""

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
    ``same_as`` is Calico's ``is_same_as`` (peer AS == the session's local AS). A local route
    learned from the kernel or an interface (``RouteSource.learned``) carries its
    ``interface`` and whether it has a ``gateway``. Nothing else of the session (not its AS
    numbers): sessions with equal contexts and policies share one evaluation per route (the
    speaker's rule 4), so four external peers cost one, not four.
    """

    peer_kind: PeerKind
    same_as: bool
    source: SourceKind
    interface: str | None = None
    learned: bool = False
    gateway: bool = False


@dataclass(frozen=True, slots=True)
class PrefixMatch:
    """Rule 3. ``network`` is the CIDR; ``min_len``/``max_len`` the optional length range."""

    network: IPNetwork
    operator: MatchOperator = MatchOperator.IN
    min_len: int | None = None
    max_len: int | None = None
    # Derived once (a filter runs once per prefix): the CIDR as a packed prefix, the accepted
    # lengths, the address size in octets, the CIDR's significant bits as an integer and the
    # shift that leaves only those bits of an address.
    _key: Prefix = field(init=False, repr=False, compare=False)
    _lengths: range = field(init=False, repr=False, compare=False)
    _size: int = field(init=False, repr=False, compare=False)
    _top: int = field(init=False, repr=False, compare=False)
    _shift: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        network = self.network
        base, most = network.prefixlen, network.max_prefixlen
        low = base if self.min_len is None else max(base, self.min_len)
        high = most if self.max_len is None else min(most, self.max_len)
        object.__setattr__(self, "_key", prefix_from_network(network))
        object.__setattr__(self, "_lengths", range(low, high + 1))
        object.__setattr__(self, "_size", most // 8)
        object.__setattr__(self, "_top", int(network.network_address) >> (most - base))
        object.__setattr__(self, "_shift", most - base)

    @classmethod
    def exact(cls, network: IPNetwork) -> PrefixMatch:
        return cls(network, MatchOperator.EQUAL)

    @classmethod
    def longer(cls, network: IPNetwork) -> PrefixMatch:
        """Strictly more specific than ``network``."""
        return cls(network, MatchOperator.IN, min_len=network.prefixlen + 1)

    @property
    def ranged(self) -> bool:
        return self.min_len is not None or self.max_len is not None

    def matches(self, prefix: Prefix) -> bool:
        operator = self.operator
        if not self.ranged:
            if operator is MatchOperator.EQUAL:
                return prefix == self._key
            if operator is MatchOperator.NOT_EQUAL:
                return prefix != self._key
        inside = self._inside(prefix)
        return inside if operator in (MatchOperator.EQUAL, MatchOperator.IN) else not inside

    def _inside(self, prefix: Prefix) -> bool:
        """The prefix is in the set: its length is in range and it lies within the CIDR."""
        if prefix[0] not in self._lengths:
            return False
        size = self._size
        address = int.from_bytes(prefix[1:], "big") << (8 * (size + 1 - len(prefix)))
        return address >> self._shift == self._top


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
    local_pref: int | None = None  # LOCAL_PREF equals (Calico's ``priority``, §2.9)

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
        if self.local_pref is not None and attrs.local_pref != self.local_pref:
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
class SetMed:
    value: int


Operation = AddCommunity | AddLargeCommunity | PrependAsPath | SetLocalPref | SetMed


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
    return replace(attrs, med=op.value)


@dataclass(frozen=True, slots=True)
class Rule:
    match: Match = Match()
    action: Verdict = Verdict.ACCEPT
    operations: tuple[Operation, ...] = ()

    def apply(self, attrs: PathAttributes) -> tuple[Verdict, PathAttributes]:
        """The verdict on a matching route and its attributes after the operations."""
        if self.action is Verdict.REJECT:
            return Verdict.REJECT, attrs
        for op in self.operations:
            attrs = apply_operation(attrs, op)
        return Verdict.ACCEPT, attrs


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
        index = self.first_match(family, prefix, attrs, ctx)
        return None if index is None else self.rules[index].apply(attrs)

    def first_match(
        self, family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> int | None:
        """The index of the first rule matching the route; None if none does."""
        if self.families is not None and family not in self.families:
            return None
        for index, rule in enumerate(self.rules):
            if rule.match.matches(prefix, attrs, ctx):
                return index
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

    def trace(
        self, family: Family, prefix: Prefix, attrs: PathAttributes, ctx: PolicyContext
    ) -> PolicyTrace:
        """``evaluate`` with the step that decided (rule 6): for ``bgpd explain``, never the
        hot path."""
        if self.prepare is not None:
            attrs = self.prepare(family, prefix, attrs, ctx)
        for ruleset in self.filters:
            index = ruleset.first_match(family, prefix, attrs, ctx)
            if index is not None:
                verdict, attrs = ruleset.rules[index].apply(attrs)
                accepted = attrs if verdict is Verdict.ACCEPT else None
                return PolicyTrace(
                    accepted, f"filter {ruleset.name} rule {index}", ruleset.name, index
                )
        if self.hook is not None:
            explain = getattr(self.hook, "explain", None)
            reason = explain(family, prefix, attrs, ctx) if explain is not None else ""
            return PolicyTrace(self.hook(family, prefix, attrs, ctx), reason or "hook")
        accepted = attrs if self.default is Verdict.ACCEPT else None
        return PolicyTrace(accepted, f"the default, {self.default} (no filter rule matched)")


@dataclass(frozen=True, slots=True)
class PolicyTrace:
    """How a policy decided one route: the attributes it yields (None: rejected), what decided
    (``filter NAME rule I``, the hook's own reason, or ``default accept|reject``), and the
    deciding filter's name and rule index when a filter rule did."""

    result: PathAttributes | None
    decided_by: str
    filter: str | None = None
    rule: int | None = None

    @property
    def accepted(self) -> bool:
        return self.result is not None


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
    "PolicyTrace",
    "PrefixMatch",
    "PrependAsPath",
    "Rule",
    "RuleSet",
    "SetLocalPref",
    "SetMed",
    "SourceKind",
    "Transform",
    "Verdict",
]
