"""Value types shared by the codec, the RIB and everything above: address families, compact
prefix keys, and the interned path-attribute set.

Rules:
1. A prefix in the hot path is a ``Prefix``: ``bytes`` holding the prefix length octet followed
   by the significant address octets, trailing bits zero (the RFC 4271 §4.3 NLRI encoding,
   canonicalised). It carries no family; tables are kept per ``Family``.
2. ``ipaddress`` objects belong at the edges: use ``prefix_from_network``/``prefix_to_network``.
3. ``PathAttributes`` is frozen and hashable, with its hash computed once; ``next_hop`` is the
   family-specific next hop as raw bytes (4, 16, or 32 octets = IPv6 global + link-local).
4. Nothing here allocates per route beyond the ``Prefix`` bytes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from mypy_extensions import mypyc_attr

from bgpd.wire.constants import Afi, Origin, Safi, SegmentType

Prefix = bytes
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Family(NamedTuple):
    """An AFI/SAFI pair (RFC 4760 §3)."""

    afi: int
    safi: int

    @property
    def address_bytes(self) -> int:
        return 4 if self.afi == Afi.IPV4 else 16

    @property
    def max_prefix_len(self) -> int:
        return 32 if self.afi == Afi.IPV4 else 128

    def __str__(self) -> str:
        afi_names: dict[int, str] = {Afi.IPV4: "ipv4", Afi.IPV6: "ipv6"}
        safi_names: dict[int, str] = {Safi.UNICAST: "unicast", Safi.MULTICAST: "multicast"}
        afi = afi_names.get(self.afi, f"afi{self.afi}")
        safi = safi_names.get(self.safi, f"safi{self.safi}")
        return f"{afi}-{safi}"

    @classmethod
    def parse(cls, text: str) -> Family:
        """``ipv4-unicast``, ``ipv6`` (unicast implied), ``ipv4/unicast``..."""
        parts = text.lower().replace("/", "-").replace(" ", "-").split("-")
        afi = {"ipv4": Afi.IPV4, "ipv6": Afi.IPV6}.get(parts[0])
        safi = {"unicast": Safi.UNICAST, "multicast": Safi.MULTICAST}.get(
            parts[1] if len(parts) > 1 else "unicast"
        )
        if afi is None or safi is None:
            raise ValueError(f"unknown address family {text!r}")
        return cls(afi, safi)


IPV4_UNICAST: Final = Family(Afi.IPV4, Safi.UNICAST)
IPV6_UNICAST: Final = Family(Afi.IPV6, Safi.UNICAST)

_TRAILING_MASK: Final = (0xFF, 0x80, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE)


def canonical_prefix(plen: int, octets: bytes) -> Prefix:
    """The ``Prefix`` key for ``plen`` and its significant octets, trailing bits cleared."""
    rem = plen & 7
    if rem and octets and octets[-1] & ~_TRAILING_MASK[rem] & 0xFF:
        octets = octets[:-1] + bytes((octets[-1] & _TRAILING_MASK[rem],))
    return bytes((plen,)) + octets


def prefix_from_network(network: IPNetwork) -> Prefix:
    plen = network.prefixlen
    return bytes((plen,)) + network.network_address.packed[: (plen + 7) >> 3]


def prefix_from_str(text: str) -> Prefix:
    return prefix_from_network(ipaddress.ip_network(text, strict=False))


def prefix_to_network(prefix: Prefix, family: Family) -> IPNetwork:
    size = family.address_bytes
    raw = prefix[1:].ljust(size, b"\0")
    if size == 4:
        return ipaddress.IPv4Network((raw, prefix[0]))
    return ipaddress.IPv6Network((raw, prefix[0]))


def prefix_to_str(prefix: Prefix, family: Family) -> str:
    return str(prefix_to_network(prefix, family))


def prefix_family_of(text: str) -> Family:
    return IPV4_UNICAST if ipaddress.ip_network(text, strict=False).version == 4 else IPV6_UNICAST


def next_hop_to_str(next_hop: bytes) -> str:
    """Render a raw next hop: IPv4, IPv6, or IPv6 global plus link-local (RFC 4760 §3)."""
    if len(next_hop) == 4:
        return str(ipaddress.IPv4Address(next_hop))
    if len(next_hop) == 16:
        return str(ipaddress.IPv6Address(next_hop))
    if len(next_hop) == 32:
        return f"{ipaddress.IPv6Address(next_hop[:16])} {ipaddress.IPv6Address(next_hop[16:])}"
    return next_hop.hex()


def next_hop_from_str(text: str) -> bytes:
    return b"".join(ipaddress.ip_address(part).packed for part in text.split())


class AsPathSegment(NamedTuple):
    """One AS_PATH segment (RFC 4271 §4.3, RFC 5065 §3)."""

    type: int
    asns: tuple[int, ...]


AsPath = tuple[AsPathSegment, ...]
LargeCommunity = tuple[int, int, int]


def as_path_length(path: AsPath) -> int:
    """RFC 4271 §9.1.2.2 (a): an AS_SET counts 1; RFC 5065 §5.3: confederation segments 0."""
    total = 0
    for seg in path:
        if seg.type == SegmentType.AS_SEQUENCE:
            total += len(seg.asns)
        elif seg.type == SegmentType.AS_SET:
            total += 1
    return total


def as_path_neighbor(path: AsPath) -> int | None:
    """The first AS of the first AS_SEQUENCE: the neighbour AS for MED comparison (RFC 4271
    §9.1.2.2 (c)); None for an empty path or one starting with a set or confederation."""
    if path and path[0].type == SegmentType.AS_SEQUENCE and path[0].asns:
        return path[0].asns[0]
    return None


def as_path_contains(path: AsPath, asn: int) -> int:
    """How many times ``asn`` occurs in the path (loop detection, RFC 4271 §9.1.2)."""
    return sum(seg.asns.count(asn) for seg in path)


def as_path_prepend(path: AsPath, asn: int, count: int = 1) -> AsPath:
    """Prepend ``asn`` ``count`` times as RFC 4271 §5.1.2 describes (a new leading
    AS_SEQUENCE when the path starts with a set or the sequence would exceed 255)."""
    if count <= 0:
        return path
    if path and path[0].type == SegmentType.AS_SEQUENCE and len(path[0].asns) + count <= 255:
        return (AsPathSegment(SegmentType.AS_SEQUENCE, (asn,) * count + path[0].asns),) + path[1:]
    return (AsPathSegment(SegmentType.AS_SEQUENCE, (asn,) * count),) + path


def as_path_to_str(path: AsPath) -> str:
    out: list[str] = []
    for seg in path:
        body = " ".join(str(a) for a in seg.asns)
        if seg.type == SegmentType.AS_SEQUENCE:
            out.append(body)
        elif seg.type == SegmentType.AS_SET:
            out.append("{" + body + "}")
        elif seg.type == SegmentType.AS_CONFED_SEQUENCE:
            out.append("(" + body + ")")
        else:
            out.append("[" + body + "]")
    return " ".join(x for x in out if x)


@dataclass(frozen=True, slots=True)
class UnknownAttribute:
    """An attribute we do not interpret, carried opaquely (RFC 4271 §5)."""

    flags: int
    code: int
    value: bytes


# A Python class even where mypyc compiles this module: the interning cache holds it by weak
# reference, and a mypyc native class cannot have one.
@mypyc_attr(native_class=False)
@dataclass(frozen=True, slots=True, weakref_slot=True)
class PathAttributes:
    """The path attributes of a route, decoded once per UPDATE and shared by all its prefixes.

    Equal sets share one object through the codec's ``AttributeCache``; the hash is computed once.
    """

    origin: int = Origin.IGP
    as_path: AsPath = ()
    next_hop: bytes = b""
    med: int | None = None
    local_pref: int | None = None
    atomic_aggregate: bool = False
    aggregator: tuple[int, bytes] | None = None  # (AS, router address); AS is 4-octet reconciled
    communities: tuple[int, ...] = ()
    originator_id: bytes | None = None
    cluster_list: tuple[bytes, ...] = ()
    extended_communities: tuple[bytes, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    unknown: tuple[UnknownAttribute, ...] = ()
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "_hash",
            hash(
                (
                    self.origin,
                    self.as_path,
                    self.next_hop,
                    self.med,
                    self.local_pref,
                    self.atomic_aggregate,
                    self.aggregator,
                    self.communities,
                    self.originator_id,
                    self.cluster_list,
                    self.extended_communities,
                    self.large_communities,
                    self.unknown,
                )
            ),
        )

    def __hash__(self) -> int:
        return self._hash
