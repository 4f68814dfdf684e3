"""Benchmark tables: N prefixes over P attribute sets, pre-encoded as UPDATEs by bgpd's codec.

Rules:
1. A ``TableSpec`` (shape, family, size, attribute sets, seed, next hop, sender AS, prepends)
   fixes the bytes: every draw comes from ``random.Random(seed)``, so a table is the same on every
   run and machine; tables that differ only in sender AS, next hop or prepends make the same draws
   (no drawn AS is a private one, RFC 6996), so they group the same prefixes into sets that differ
   only in those.
2. Prefixes are distinct and of one length, so a kernel watch can count them: IPv4 /24s from
   16.0.0.0 (room for 1,048,576 in 16.0.0.0/4), IPv6 /48s from 2a00::/12.
3. ``single``: one attribute set for every prefix (ORIGIN IGP, AS_PATH [sender, 65100], NEXT_HOP),
   what GoBGP sends after an MRT injection. ``full``: ``sets`` attribute sets (default size / 5,
   200k at 1M as in a DFZ table from one transit) shaped like a real table: AS-path length 1-6
   hops weighted as ``PATH_LENGTH_WEIGHTS`` (mean 3.7), the sender's AS first (eBGP, RFC 4271
   §6.3), 15 % of the other hops 4-octet ASes (RFC 6793); ORIGIN INCOMPLETE on 12 %; MED on 30 %;
   0-4 communities (``COMMUNITY_COUNT_WEIGHTS``); 1-2 large communities (RFC 8092) on 10 %. Every
   set holds at least one prefix; the rest are spread with a heavy tail (Pareto weights, as a few
   origins announce hundreds of prefixes and most one or two); a set's prefixes are adjacent.
   ``prepend`` puts the sender's AS that many more times in front of every path (both shapes), so
   several senders of one table differ in AS-path length alone, the first criterion after
   LOCAL_PREF (RFC 4271 §9.1.2.2 a).
4. Encoding is bgpd's own (``encode_updates``, ``encode_withdrawals``), 4-octet AS, no extended
   messages: as many prefixes per UPDATE as 4096 octets hold (RFC 4271 §4.1), one attribute set
   per UPDATE; IPv6 in MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760). The announcement sends the sets
   in a shuffled order (as a table arrives from a peer); the withdrawal lists every prefix.
5. ``load`` encodes once and caches the two byte streams in ``cache_dir`` (written to a temporary
   name, then renamed), so a 1M table is encoded once and every receiver gets the same bytes.

Usage: python3 bench/tables.py [--shape single|full] [--size N] [--family ipv4|ipv6] [--sets P]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import benchlib  # noqa: F401  (puts the repository on sys.path)

from bgpd.wire.constants import Origin, SegmentType
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    Family,
    PathAttributes,
    Prefix,
    as_path_length,
)
from bgpd.wire.update import encode_updates, encode_withdrawals

SHAPES = ("single", "full")
FAMILIES = {"ipv4": IPV4_UNICAST, "ipv6": IPV6_UNICAST}
FIRST_V4 = int(ipaddress.IPv4Address("16.0.0.0"))
FIRST_V6 = int(ipaddress.IPv6Address("2a00::"))
PREFIX_LEN = {"ipv4": 24, "ipv6": 48}
SENDER_AS = 65001
SINGLE_ORIGIN_AS = 65100
PATH_LENGTH_WEIGHTS = {1: 2, 2: 12, 3: 33, 4: 29, 5: 15, 6: 9}  # % of attribute sets
COMMUNITY_COUNT_WEIGHTS = {0: 35, 1: 20, 2: 20, 3: 15, 4: 10}
FOUR_OCTET_SHARE = 0.15
INCOMPLETE_SHARE = 0.12
MED_SHARE = 0.30
LARGE_COMMUNITY_SHARE = 0.10
PARETO_ALPHA = 1.2
RESERVED_AS = frozenset({0, 23456, 64512})  # AS_TRANS and the receivers' AS (loop check)
NEGOTIATED = Negotiated(asn4=True, families=frozenset(FAMILIES.values()))
FORMAT = 1  # bump when the encoding rules change, so old cache files are not reused


@dataclass(frozen=True, slots=True)
class TableSpec:
    shape: str = "single"
    family: str = "ipv4"
    size: int = 100_000
    sets: int = 0  # full shape: 0 means size // 5
    seed: int = 1
    next_hop: str = "10.97.0.1"
    sender_as: int = SENDER_AS
    prepend: int = 0  # rule 3: the sender's AS this many more times in front of every path

    @property
    def attribute_sets(self) -> int:
        if self.shape == "single":
            return 1
        return max(1, min(self.size, self.sets or self.size // 5))

    @property
    def name(self) -> str:
        return (
            f"{self.family}-{self.shape}-{self.size}-{self.attribute_sets}-s{self.seed}"
            f"-as{self.sender_as}-p{self.prepend}-{self.next_hop.replace(':', '_')}-f{FORMAT}"
        )


@dataclass(frozen=True, slots=True)
class Table:
    spec: TableSpec
    announce: bytes  # UPDATEs announcing every prefix
    withdraw: bytes  # UPDATEs withdrawing every prefix
    announce_messages: int
    withdraw_messages: int
    path_lengths: dict[int, int]  # AS-path length: attribute sets


def prefixes(spec: TableSpec) -> list[Prefix]:
    """Rule 2: ``spec.size`` distinct prefixes of one length, in address order."""
    plen = PREFIX_LEN[spec.family]
    octets = plen // 8
    if spec.family == "ipv4":
        if spec.size > 1 << 20:
            raise ValueError("at most 1,048,576 IPv4 /24s (16.0.0.0/4)")
        first, width = FIRST_V4 >> 8, 3
    else:
        first, width = FIRST_V6 >> 80, 6
    head = bytes((plen,))
    return [head + (first + i).to_bytes(width, "big")[:octets] for i in range(spec.size)]


def _asn(rng: random.Random, taken: set[int]) -> int:
    while True:
        if rng.random() < FOUR_OCTET_SHARE:
            asn = rng.randint(131072, 401308)
        else:
            asn = rng.randint(1, 64495)
        if asn not in RESERVED_AS and asn not in taken:
            taken.add(asn)
            return asn


def attribute_sets(spec: TableSpec, next_hop: bytes) -> list[PathAttributes]:
    """Rule 3: the table's distinct attribute sets."""
    head = (spec.sender_as,) * (1 + spec.prepend)
    if spec.shape == "single":
        path = (AsPathSegment(SegmentType.AS_SEQUENCE, (*head, SINGLE_ORIGIN_AS)),)
        return [PathAttributes(origin=Origin.IGP, as_path=path, next_hop=next_hop)]
    rng = random.Random(spec.seed)
    lengths = rng.choices(
        list(PATH_LENGTH_WEIGHTS), list(PATH_LENGTH_WEIGHTS.values()), k=spec.attribute_sets
    )
    out: list[PathAttributes] = []
    seen: set[PathAttributes] = set()
    for length in lengths:
        while True:
            taken = {spec.sender_as}
            hops = (*head, *(_asn(rng, taken) for _ in range(length - 1)))
            count = rng.choices(
                list(COMMUNITY_COUNT_WEIGHTS), list(COMMUNITY_COUNT_WEIGHTS.values())
            )[0]
            tagger = next((a for a in reversed(hops) if a <= 0xFFFF), spec.sender_as)
            communities = tuple(
                sorted({(tagger << 16) | rng.randint(1, 65535) for _ in range(count)})
            )
            large = ()
            if rng.random() < LARGE_COMMUNITY_SHARE:
                large = tuple(
                    sorted(
                        {
                            (spec.sender_as, rng.randint(1, 9999), rng.randint(0, 2**32 - 1))
                            for _ in range(rng.randint(1, 2))
                        }
                    )
                )
            attrs = PathAttributes(
                origin=Origin.INCOMPLETE if rng.random() < INCOMPLETE_SHARE else Origin.IGP,
                as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, hops),),
                next_hop=next_hop,
                med=rng.choice((0, 10, 100, rng.randint(0, 1000)))
                if rng.random() < MED_SHARE
                else None,
                communities=communities,
                large_communities=large,
            )
            if attrs not in seen:
                seen.add(attrs)
                out.append(attrs)
                break
    return out


def spread(spec: TableSpec) -> list[int]:
    """Rule 3: prefixes per attribute set, at least one each, the rest with a heavy tail."""
    sets = spec.attribute_sets
    if sets == 1:
        return [spec.size]
    rng = random.Random(spec.seed + 1)
    weights = [rng.paretovariate(PARETO_ALPHA) for _ in range(sets)]
    counts = Counter(rng.choices(range(sets), weights, k=spec.size - sets))
    return [1 + counts.get(i, 0) for i in range(sets)]


def encode(spec: TableSpec) -> Table:
    """Rules 3 and 4."""
    family: Family = FAMILIES[spec.family]
    next_hop = ipaddress.ip_address(spec.next_hop).packed
    if len(next_hop) != family.address_bytes:
        raise ValueError(f"next hop {spec.next_hop} does not fit {spec.family}")
    every = prefixes(spec)
    sets = attribute_sets(spec, next_hop)
    groups: list[tuple[PathAttributes, list[Prefix]]] = []
    start = 0
    for attrs, count in zip(sets, spread(spec), strict=True):
        groups.append((attrs, every[start : start + count]))
        start += count
    random.Random(spec.seed + 2).shuffle(groups)
    announce: list[bytes] = []
    for attrs, members in groups:
        announce += encode_updates(family, attrs, members, NEGOTIATED)
    withdraw = encode_withdrawals(family, every, NEGOTIATED)
    lengths = Counter(as_path_length(a.as_path) for a in sets)
    return Table(
        spec,
        b"".join(announce),
        b"".join(withdraw),
        len(announce),
        len(withdraw),
        dict(sorted(lengths.items())),
    )


def default_cache() -> Path:
    return Path(tempfile.gettempdir()) / "bgpd-bench-tables"


def load(spec: TableSpec, cache_dir: Path | None = None) -> Table:
    """Rule 5: the encoded table, from the cache when it is there."""
    cache = cache_dir or default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    files = {part: cache / f"{spec.name}.{part}" for part in ("announce", "withdraw", "meta")}
    if all(path.exists() for path in files.values()):
        meta = [int(x) for x in files["meta"].read_text().split()]
        announce_messages, withdraw_messages, *flat = meta
        return Table(
            spec,
            files["announce"].read_bytes(),
            files["withdraw"].read_bytes(),
            announce_messages,
            withdraw_messages,
            dict(zip(flat[::2], flat[1::2], strict=True)),
        )
    table = encode(spec)
    flat = [x for item in table.path_lengths.items() for x in item]
    meta = [table.announce_messages, table.withdraw_messages, *flat]
    contents = {
        "announce": table.announce,
        "withdraw": table.withdraw,
        "meta": " ".join(map(str, meta)).encode(),
    }
    for part, path in files.items():
        temporary = path.with_suffix(f".{part}.{os.getpid()}")
        temporary.write_bytes(contents[part])
        temporary.replace(path)
    return table


def describe(table: Table) -> str:
    spec = table.spec
    lengths = " ".join(f"{k}:{v}" for k, v in table.path_lengths.items())
    return (
        f"{spec.size:,} {spec.family} prefixes, {spec.shape} shape, {spec.attribute_sets:,} "
        f"attribute sets (AS-path length: sets {lengths}); announce {table.announce_messages:,} "
        f"UPDATEs, {len(table.announce) / 1e6:.1f} MB; withdraw {table.withdraw_messages:,} "
        f"UPDATEs, {len(table.withdraw) / 1e6:.1f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=SHAPES, default="full")
    parser.add_argument("--family", choices=sorted(FAMILIES), default="ipv4")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--sets", type=int, default=0, help="full shape; default size / 5")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--next-hop", default="")
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    next_hop = args.next_hop or ("10.97.0.1" if args.family == "ipv4" else "fd00:97::1")
    spec = TableSpec(args.shape, args.family, args.size, args.sets, args.seed, next_hop)
    started = time.perf_counter()
    table = load(spec, args.cache)
    print(f"{describe(table)}; {time.perf_counter() - started:.1f} s", file=sys.stdout)


if __name__ == "__main__":
    main()
