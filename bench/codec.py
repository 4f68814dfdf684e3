"""Benchmark: UPDATE decode and encode throughput of ``bgpd.wire``, next to exabgp 5.0.15 on the
same bytes in the same run (issue 2, point 7).

Rules:
1. The workload is what a full-table peer sends: IPv4 /24s (1M by default) under about 1,000
   distinct attribute sets (Zipf-distributed sizes; AS paths of 1-6 4-octet ASNs, some
   communities and MEDs, next hops from a pool), packed into 4096-octet UPDATEs per attribute
   set; and IPv6 /48s (100k) in MP_REACH_NLRI, some with global + link-local next hops. The
   stream is built once by our encoder, outside the timing; the seed is fixed.
2. Decode goes through our real receive path: ``Framer.feed`` on 64 KiB reads, then
   ``decode_message`` with one ``AttributeCache``, and touches every prefix (counts them). exabgp
   decodes the same messages with ``Message.unpack`` into ``Update`` objects with NLRI objects
   and its count of NLRI is taken the same way.
3. Encode starts from each codec's in-memory routes: ours from ``PathAttributes`` and prefix
   keys (``encode_updates``), exabgp from prebuilt ``Update(nlris, attributes)`` objects
   (``.messages(negotiated)``; building its NLRI objects is not timed, which favours exabgp).
4. exabgp is slow, so on a large run it is timed on an evenly spread subset (every k-th
   message / every k-th prefix of each set, about ``--exabgp-prefixes``); the table says so.
5. Each figure is the best of ``--repeat`` runs (the machine is shared); load averages before
   and after are printed. ``--profile`` prints cProfile's top entries of our IPv4 decode.

Usage: python3 bench/codec.py [--quick] [--ipv4 1000000] [--ipv6 100000] [--repeat 3]
       [--exabgp-prefixes 100000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import ipaddress
import os
import platform
import pstats
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "property"))

from exabgp_oracle import (  # noqa: E402
    Session,
    address_str,
    attributes_form,
    exabgp_announcement,
    exabgp_forget,
    exabgp_messages,
    exabgp_negotiated,
)

from bgpd.wire.attributes import AttributeCache  # noqa: E402
from bgpd.wire.codec import decode_message  # noqa: E402
from bgpd.wire.constants import SegmentType  # noqa: E402
from bgpd.wire.framer import Framer  # noqa: E402
from bgpd.wire.messages import Update  # noqa: E402
from bgpd.wire.negotiated import Negotiated  # noqa: E402
from bgpd.wire.types import (  # noqa: E402
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    Family,
    PathAttributes,
    Prefix,
    prefix_to_str,
)
from bgpd.wire.update import encode_updates  # noqa: E402

SEED = 20240179
READ_SIZE = 65536  # one TCP read
SESSION = Session(asn4=True, add_path=False)
NEGOTIATED = Negotiated(
    asn4=True, families=frozenset({IPV4_UNICAST, IPV6_UNICAST}), local_as=64512, peer_as=64512
)
TARGET_RATE = 2_000_000
TARGET_RATIO = 10.0


@dataclass
class Table:
    """One family's routes grouped by attribute set, and the UPDATE stream a peer sends."""

    family: Family
    groups: list[tuple[PathAttributes, list[Prefix]]]
    messages: list[bytes]

    @property
    def prefixes(self) -> int:
        return sum(len(p) for _, p in self.groups)

    @property
    def stream(self) -> bytes:
        return b"".join(self.messages)


def zipf_sizes(total: int, sets: int) -> list[int]:
    """``total`` split over ``sets`` groups with Zipf (s = 1) weights, every group non-empty."""
    weights = [1.0 / rank for rank in range(1, sets + 1)]
    scale = (total - sets) / sum(weights)
    sizes = [1 + int(w * scale) for w in weights]
    sizes[0] += total - sum(sizes)
    return sizes


def attribute_sets(rng: random.Random, count: int, next_hops: list[bytes]) -> list[PathAttributes]:
    """Distinct, realistic attribute sets: 4-octet AS paths of 1-6, some MED and communities."""
    out: dict[PathAttributes, None] = {}
    while len(out) < count:
        path = tuple(rng.randrange(64512, 4_200_000_000) for _ in range(rng.randint(1, 6)))
        communities: tuple[int, ...] = ()
        if rng.random() < 0.4:
            communities = tuple(
                sorted(
                    {
                        (rng.randrange(1, 65535) << 16) | rng.randrange(0, 1000)
                        for _ in range(rng.randint(1, 4))
                    }
                )
            )
        attrs = PathAttributes(
            origin=rng.choice((0, 0, 0, 2)),
            as_path=(AsPathSegment(SegmentType.AS_SEQUENCE, path),),
            next_hop=rng.choice(next_hops),
            med=rng.randrange(0, 1000) if rng.random() < 0.3 else None,
            local_pref=100,
            communities=communities,
        )
        out[attrs] = None
    return list(out)


def build_table(family: Family, total: int, sets: int, rng: random.Random) -> Table:
    if family == IPV4_UNICAST:
        hops = [ipaddress.IPv4Address(f"192.0.2.{i}").packed for i in range(1, 17)]
        plen, first = 24, int(ipaddress.IPv4Address("1.0.0.0")) >> 8
        width = 3
    else:
        hops = [ipaddress.IPv6Address(f"2001:db8::{i:x}").packed for i in range(1, 9)]
        hops += [h + ipaddress.IPv6Address(f"fe80::{i:x}").packed for i, h in enumerate(hops, 1)]
        plen, first = 48, int(ipaddress.IPv6Address("2400::")) >> 80
        width = 6
    keys = [bytes((plen,)) + (first + i).to_bytes(width, "big") for i in range(total)]
    rng.shuffle(keys)
    groups = []
    start = 0
    for attrs, size in zip(attribute_sets(rng, sets, hops), zipf_sizes(total, sets), strict=True):
        groups.append((attrs, sorted(keys[start : start + size])))
        start += size
    rng.shuffle(groups)
    messages = [m for attrs, p in groups for m in encode_updates(family, attrs, p, NEGOTIATED)]
    return Table(family, groups, messages)


# ---------------------------------------------------------------- the timed work


def ours_decode(stream: bytes) -> int:
    """Rule 2: 64 KiB reads through the framer, ``decode_message``, every prefix touched."""
    framer = Framer(4096)
    cache = AttributeCache()
    count = 0
    for offset in range(0, len(stream), READ_SIZE):
        for msg_type, body in framer.feed(stream[offset : offset + READ_SIZE]):
            message = decode_message(msg_type, body, NEGOTIATED, cache)
            assert isinstance(message, Update)
            for announcement in message.announced:
                for _prefix in announcement.prefixes:
                    count += 1
    return count


def exabgp_decode(stream: bytes) -> int:
    """exabgp decodes a global + link-local next hop into two NLRI objects per prefix (oracle
    rule 4): such pairs count as one prefix."""
    exabgp_forget(SESSION)
    count = 0
    for message in exabgp_messages(stream, SESSION):
        nlris = message.nlris
        seen = 0
        for _nlri in nlris:
            seen += 1
        if seen > 1 and nlris[0].cidr.prefix() == nlris[1].cidr.prefix():
            seen //= 2
        count += seen
    return count


def ours_encode(groups: list[tuple[PathAttributes, list[Prefix]]], family: Family) -> int:
    count = 0
    for attrs, prefixes in groups:
        encode_updates(family, attrs, prefixes, NEGOTIATED)
        count += len(prefixes)
    return count


def exabgp_encode(updates: list[tuple[Any, int]]) -> int:
    negotiated = exabgp_negotiated(SESSION)
    count = 0
    for update, size in updates:
        for _ in update.messages(negotiated):
            pass
        count += size
    return count


def best_rate(run: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Prefixes per second of the fastest of ``repeat`` runs, and the prefix count."""
    best = float("inf")
    count = 0
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        count = run()
        best = min(best, time.perf_counter() - started)
    return count / best, count


# ---------------------------------------------------------------- subsets and exabgp input


def exabgp_updates(table: Table, step: int) -> list[tuple[Any, int]]:
    """Prebuilt exabgp ``Update`` objects for every ``step``-th prefix of each set (rule 3)."""
    name = "ipv4" if table.family == IPV4_UNICAST else "ipv6"
    out = []
    for attrs, prefixes in table.groups:
        chosen = prefixes[::step]
        texts = [prefix_to_str(p, table.family) for p in chosen]
        form = attributes_form(attrs)
        out.append(
            (exabgp_announcement(name, form, address_str(attrs.next_hop), texts), len(texts))
        )
    return out


# ---------------------------------------------------------------- report


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Row:
    what: str
    ours: float
    ours_count: int
    theirs: float
    theirs_count: int

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs


def count_label(ours: int, theirs: int) -> str:
    if ours == theirs:
        return f"{ours:,}"
    return f"{ours:,} (exabgp {theirs:,})"


def print_table(rows: Iterable[Row]) -> None:
    header = ("workload", "prefixes", "bgpd prefixes/s", "exabgp prefixes/s", "ratio")
    lines = [
        (
            r.what,
            count_label(r.ours_count, r.theirs_count),
            f"{r.ours:,.0f}",
            f"{r.theirs:,.0f}",
            f"{r.ratio:.1f}x",
        )
        for r in rows
    ]
    widths = [max(len(c) for c in col) for col in zip(header, *lines, strict=True)]

    def fmt(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)])

    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print(fmt(line))


def profile_decode(stream: bytes) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    ours_decode(stream)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    print(out.getvalue())


def measure(
    table: Table, label: str, repeat: int, exabgp_prefixes: int
) -> tuple[list[Row], list[str]]:
    """Decode and encode rows for one table, and the notes on exabgp's subset (rule 4)."""
    stream = table.stream
    step = max(1, round(table.prefixes / exabgp_prefixes))
    sample_stream = b"".join(table.messages[::step])
    ours_rate, ours_count = best_rate(partial(ours_decode, stream), repeat)
    theirs_rate, theirs_count = best_rate(partial(exabgp_decode, sample_stream), repeat)
    assert ours_count == table.prefixes, (ours_count, table.prefixes)
    assert ours_decode(sample_stream) == theirs_count, "exabgp and bgpd count differently"
    rows = [Row(f"decode {label}", ours_rate, ours_count, theirs_rate, theirs_count)]

    updates = exabgp_updates(table, step)
    ours_rate, ours_count = best_rate(partial(ours_encode, table.groups, table.family), repeat)
    theirs_rate, theirs_count = best_rate(partial(exabgp_encode, updates), repeat)
    rows.append(Row(f"encode {label}", ours_rate, ours_count, theirs_rate, theirs_count))
    notes = []
    if step > 1:
        notes.append(
            f"decode {label}: exabgp on every {step}th of {len(table.messages):,} UPDATEs "
            f"({len(stream):,} octets in all); encode: on every {step}th prefix of each set"
        )
    return rows, notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k IPv4, 20k IPv6, 1 repeat")
    parser.add_argument("--ipv4", type=int, default=1_000_000)
    parser.add_argument("--ipv6", type=int, default=100_000)
    parser.add_argument("--sets", type=int, default=1000, help="distinct IPv4 attribute sets")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--exabgp-prefixes", type=int, default=100_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.ipv4, args.ipv6, args.repeat, args.exabgp_prefixes = 100_000, 20_000, 1, 20_000

    print(f"cpu: {cpu_model()} ({os.cpu_count()} cores), python {platform.python_version()}")
    print(f"load average before: {load()}")
    rng = random.Random(SEED)
    v4 = build_table(IPV4_UNICAST, args.ipv4, args.sets, rng)
    v6_sets = max(1, args.sets * args.ipv6 // max(1, args.ipv4))  # as many prefixes per set
    v6 = build_table(IPV6_UNICAST, args.ipv6, v6_sets, rng)
    rows: list[Row] = []
    notes: list[str] = []
    for table, label in ((v4, "IPv4 /24"), (v6, "IPv6 /48 MP_REACH")):
        table_rows, table_notes = measure(table, label, args.repeat, args.exabgp_prefixes)
        rows += table_rows
        notes += table_notes
    print(
        f"IPv4: {len(v4.groups):,} attribute sets, {len(v4.messages):,} UPDATEs; "
        f"IPv6: {len(v6.groups):,} sets, {len(v6.messages):,} UPDATEs; best of {args.repeat}"
    )
    print()
    print_table(rows)
    print()
    for note in notes:
        print(f"note: {note}")
    print(f"load average after: {load()}")
    decode_v4 = rows[0]
    met = decode_v4.ours >= TARGET_RATE and decode_v4.ratio >= TARGET_RATIO
    print(
        f"target (IPv4 decode >= {TARGET_RATE / 1e6:.0f}M prefixes/s and >= "
        f"{TARGET_RATIO:.0f}x exabgp): {'met' if met else 'MISSED'}"
    )
    if args.profile:
        profile_decode(v4.stream)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
