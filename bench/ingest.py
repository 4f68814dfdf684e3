"""Benchmark: a full table into the Loc-RIB through the Speaker, and route-reflector fan-out.

1. Ingest: one peer sends N IPv4 prefixes (default 1M) in a realistic mix (~1,000 distinct
   attribute sets; lengths weighted like the Internet table, mostly /24), packed as a real peer
   would (the codec's ``encode_updates``). We time framing + decode + ``update_received`` until
   every prefix is in the Loc-RIB, then the ``drain`` that reports them (kernel view), and
   measure RSS per route from /proc/self/status.
2. Fan-out: one client sends M prefixes to our route reflector with 100 iBGP clients; we time
   the ``drain`` that produces every client's UPDATE bytes.

Targets (design/architecture.md §4): >= 500k prefixes/s into the Loc-RIB, <= 200 bytes RSS per
route at 1M routes. Run: ``python3 bench/ingest.py [--prefixes N] [--fanout-prefixes M]``;
``--profile`` prints the top of a cProfile of the ingest.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import ipaddress
import pstats
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bgpd.rib.route import NextHopMode
from bgpd.router import TAKE_BUDGET
from bgpd.speaker import BestChanged, PeerHasOutput, PeerSettings, Speaker, SpeakerConfig
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.codec import decode_message
from bgpd.wire.framer import Framer
from bgpd.wire.messages import Update
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, AsPathSegment, PathAttributes, Prefix
from bgpd.wire.update import encode_updates

LENGTH_MIX = ((24, 60), (23, 8), (22, 10), (21, 5), (20, 5), (19, 4), (18, 2), (17, 1), (16, 5))


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def make_prefixes(count: int, rng: random.Random) -> list[Prefix]:
    lengths = [plen for plen, weight in LENGTH_MIX for _ in range(weight)]
    seen: set[Prefix] = set()
    out: list[Prefix] = []
    while len(out) < count:
        plen = rng.choice(lengths)
        address = rng.randrange(1 << 24, 224 << 24) & ~((1 << (32 - plen)) - 1)
        prefix = bytes((plen,)) + address.to_bytes(4, "big")[: (plen + 7) // 8]
        if prefix not in seen:
            seen.add(prefix)
            out.append(prefix)
    return out


def make_attribute_sets(count: int, peer_as: int, rng: random.Random) -> list[PathAttributes]:
    sets: list[PathAttributes] = []
    for i in range(count):
        path = (peer_as,) + tuple(rng.randrange(1, 400_000) for _ in range(rng.randrange(0, 6)))
        communities = tuple(sorted({(peer_as << 16 | rng.randrange(1, 200)) & 0xFFFFFFFF}))
        sets.append(
            PathAttributes(
                origin=rng.choice((0, 0, 0, 2)),
                as_path=(AsPathSegment(2, path),),
                next_hop=ipaddress.IPv4Address("192.0.2.1").packed,
                med=rng.choice((None, 0, 10, 100 + i)),
                communities=communities if i % 3 else (),
            )
        )
    return sets


def wire_table(
    prefixes: list[Prefix], attribute_sets: list[PathAttributes], negotiated: Negotiated
) -> bytes:
    groups: dict[int, list[Prefix]] = {}
    for i, prefix in enumerate(prefixes):
        groups.setdefault(i % len(attribute_sets), []).append(prefix)
    out: list[bytes] = []
    for index, group in groups.items():
        out += encode_updates(IPV4_UNICAST, attribute_sets[index], group, negotiated)
    return b"".join(out)


def feed(speaker: Speaker, peer_id: str, data: bytes, negotiated: Negotiated) -> None:
    framer = Framer(max_length=negotiated.max_message_len)
    cache = speaker.attributes
    chunk = 1 << 16
    for start in range(0, len(data), chunk):
        for msg_type, body in framer.feed(data[start : start + chunk]):
            message = decode_message(msg_type, body, negotiated, cache)
            assert isinstance(message, Update)
            speaker.update_received(peer_id, message, 0.0)


def bench_ingest(count: int, profile: bool) -> list[tuple[str, str]]:
    rng = random.Random(4)
    peer_as, local_as = 65001, 64512
    negotiated = Negotiated(local_as=local_as, peer_as=peer_as, peer_id=0x0A000002, external=True)
    data = wire_table(
        make_prefixes(count, rng), make_attribute_sets(1000, peer_as, rng), negotiated
    )
    speaker = Speaker(SpeakerConfig(router_id=0x0A000001, local_as=local_as), AttributeCache())
    settings = PeerSettings(address=ipaddress.IPv4Address("10.0.0.2"), peer_as=peer_as)
    speaker.peer_up("tor", settings, negotiated, 0.0)
    speaker.drain()
    gc.collect()
    gc.disable()
    before = rss_bytes()
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    feed(speaker, "tor", data, negotiated)
    if profiler is not None:
        profiler.disable()
    ingest = time.perf_counter() - start
    in_rib = len(speaker.loc_rib(IPV4_UNICAST))
    after_ingest = rss_bytes()
    start = time.perf_counter()
    outputs = speaker.drain()
    drain = time.perf_counter() - start
    reported = sum(1 for o in outputs if isinstance(o, BestChanged))
    del outputs
    gc.enable()
    gc.collect()
    after = rss_bytes()
    assert in_rib == count and reported == count, (in_rib, reported)
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    return [
        ("ingest prefixes", f"{count:,}"),
        ("wire size", f"{len(data) / 1e6:.1f} MB in UPDATEs"),
        ("decode + Loc-RIB", f"{ingest:.2f} s = {count / ingest / 1e3:,.0f} k prefixes/s"),
        ("drain (kernel view)", f"{drain:.2f} s = {count / drain / 1e3:,.0f} k prefixes/s"),
        ("end to end", f"{count / (ingest + drain) / 1e3:,.0f} k prefixes/s"),
        (
            "RSS per route",
            f"{(after_ingest - before) / count:.0f} B after ingest, "
            f"{(after - before) / count:.0f} B after drain",
        ),
    ]


def bench_fanout(count: int, clients: int) -> list[tuple[str, str]]:
    rng = random.Random(5)
    local_as = 64512
    negotiated = Negotiated(local_as=local_as, peer_as=local_as, peer_id=0x0A000100)
    source_attrs = [
        PathAttributes(
            origin=0,
            as_path=(),
            next_hop=ipaddress.IPv4Address("10.0.1.0").packed,
            local_pref=100,
            communities=(i,) if i % 2 else (),
        )
        for i in range(1000)
    ]
    data = wire_table(make_prefixes(count, rng), source_attrs, negotiated)
    speaker = Speaker(SpeakerConfig(router_id=0x0A000001, local_as=local_as), AttributeCache())
    own = {IPV4_UNICAST: ipaddress.IPv4Address("10.0.0.1").packed}
    for i in range(clients + 1):
        address = ipaddress.IPv4Address(0x0A000100 + i)
        settings = PeerSettings(
            address=address,
            peer_as=local_as,
            rr_client=True,
            next_hop_mode=NextHopMode.AUTO,
            next_hop_self=own,
        )
        speaker.peer_up(f"client{i}", settings, negotiated, 0.0)
    for output in speaker.drain():
        if isinstance(output, PeerHasOutput):
            speaker.take(output.peer_id)  # the End-of-RIB of the empty initial table
    feed(speaker, "client0", data, negotiated)
    start = time.perf_counter()
    waiting = [o.peer_id for o in speaker.drain() if isinstance(o, PeerHasOutput)]
    sent: dict[str, list[bytes]] = {peer: [] for peer in waiting}
    while waiting:  # each peer pulls a budget at a time, as the daemon's senders do
        for peer in waiting:
            sent[peer] += speaker.take(peer, TAKE_BUDGET)
        waiting = [peer for peer in waiting if speaker.has_output(peer)]
    elapsed = time.perf_counter() - start
    volume = sum(len(m) for messages in sent.values() for m in messages)
    assert len(sent) >= clients  # the sender takes its group's rounds too (nothing for it)
    exports = count * clients
    return [
        ("fan-out", f"{count:,} prefixes x {clients} iBGP clients via our RR"),
        ("UPDATE bytes", f"{volume / 1e6:.1f} MB in {sum(map(len, sent.values())):,} msgs"),
        ("produce all", f"{elapsed:.2f} s = {exports / elapsed / 1e6:.2f} M prefix-exports/s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=1_000_000)
    parser.add_argument("--fanout-prefixes", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    rows = bench_ingest(args.prefixes, args.profile)
    rows += bench_fanout(args.fanout_prefixes, args.clients)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
