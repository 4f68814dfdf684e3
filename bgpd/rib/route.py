"""Where a route came from (``RouteSource``) and a candidate route (``Path``): the values the RIBs,
best path, export rules and the kernel plan share.

Rules:
1. A ``RouteSource`` is one peer session (or local origination) as the RIB sees it: frozen, one
   object per session, compared by identity in the hot path.
2. A ``Path`` is a (source, attributes, ADD-PATH identifier) triple plus its precomputed decision
   rank (one tuple; ``best_path`` derives the rest from it). Paths are interned (``PathTable``):
   every prefix a peer announced with the same attributes holds the same ``Path`` object, so a
   route costs one dict slot, not an object.
3. Identity of a candidate inside a Loc-RIB entry is (source, path id): a new announcement with
   the same identity replaces the old one (RFC 4271 §9.1.4 implicit withdraw; RFC 7911 §5).
4. Pure: imports only ``bgpd.wire`` value types; never ``bgpd.session``, ``bgpd.calico`` or
   ``peers`` (Calico's ``nextHopMode`` is mapped onto ``NextHopMode`` in ``bgpd.calico.sessions``).
"""

from __future__ import annotations

import ipaddress
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from bgpd.wire.types import IPAddress, PathAttributes

DEFAULT_LOCAL_PREF = 100  # RFC 4271 §5.1.5: the default is local policy; 100 is universal.


class NextHopMode(StrEnum):
    """A session's next-hop rule on export (BIRD ``next hop self`` / ``next hop keep``,
    RFC 4271 §5.1.3): ``Auto`` keeps the next hop towards iBGP peers for learned routes and sets
    our own towards eBGP peers; ``Self`` always sets ours; ``Keep`` never does."""

    AUTO = "Auto"
    SELF = "Self"
    KEEP = "Keep"


class PeerKind(StrEnum):
    """How the RIB classifies the other end of a session (RFC 4456 §6 terms)."""

    LOCAL = "local"
    EBGP = "ebgp"
    IBGP = "ibgp"
    RR_CLIENT = "rr-client"


@dataclass(frozen=True, slots=True)
class RouteSource:
    """One origin of routes: a BGP session, or this speaker's own (local) routes.

    ``peer_id`` is the supervisor's name for the session; ``index`` is a small integer the
    speaker allocates (unique per source) and uses as ADD-PATH transmit identifier base.
    A ``learned`` source is local: routes the node learned from its kernel or interfaces (BIRD's
    ``protocol kernel { learn; }`` and ``protocol direct``), one source per ``interface`` and
    ``gateway`` flag, so export policies can match them.
    """

    peer_id: str
    address: IPAddress = ipaddress.IPv4Address(0)
    router_id: int = 0
    peer_as: int = 0
    local_as: int = 0
    rr_client: bool = False
    local: bool = False
    index: int = 0
    learned: bool = False
    interface: str | None = None
    gateway: bool = False

    @property
    def ibgp(self) -> bool:
        """RFC 4271 §3: an internal peer is in our (session's local) AS."""
        return not self.local and self.peer_as == self.local_as

    @property
    def kind(self) -> PeerKind:
        if self.local:
            return PeerKind.LOCAL
        if not self.ibgp:
            return PeerKind.EBGP
        return PeerKind.RR_CLIENT if self.rr_client else PeerKind.IBGP

    @property
    def address_key(self) -> bytes:
        """The peer address as comparable bytes (IPv4 sorts before IPv6)."""
        return bytes((self.address.version,)) + self.address.packed


LOCAL_SOURCE = RouteSource(peer_id="local", local=True)


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Path:
    """A candidate route's source and attributes, shared by every prefix that has both.

    ``rank`` orders candidates inside one MED group (same neighbour AS), computed once by
    ``best_path.rank_path``, which also derives from it the order across groups (MED not
    compared) and the ECMP key when a prefix has several candidates: a full table holds one
    ``Path`` per attribute set, so it keeps one tuple, not three. Equality is identity (paths
    are interned).
    """

    source: RouteSource
    attrs: PathAttributes
    path_id: int = 0
    rank: tuple[object, ...] = field(default=())
    neighbor_as: int | None = None

    @property
    def local_pref(self) -> int:
        lp = self.attrs.local_pref
        return DEFAULT_LOCAL_PREF if lp is None else lp


PathFactory = Callable[[RouteSource, PathAttributes, int], Path]


class PathTable:
    """Interns ``Path`` objects by (source, attributes, path id) (rule 2).

    Entries live as long as some RIB holds the path (weak values), so churned attribute sets do
    not accumulate.
    """

    def __init__(self, make: PathFactory) -> None:
        self._make = make
        self._paths: weakref.WeakValueDictionary[tuple[RouteSource, PathAttributes, int], Path] = (
            weakref.WeakValueDictionary()
        )

    def get(self, source: RouteSource, attrs: PathAttributes, path_id: int = 0) -> Path:
        key = (source, attrs, path_id)
        found = self._paths.get(key)
        if found is None:
            found = self._make(source, attrs, path_id)
            self._paths[key] = found
        return found

    def __len__(self) -> int:
        return len(self._paths)
