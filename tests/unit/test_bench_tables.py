"""``bench/tables.py``: the benchmark tables are deterministic, decode with bgpd's own codec to
exactly the prefixes asked for, and have the full table's shape (issue 18, Deliver 1)."""

from __future__ import annotations

import struct
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import tables  # noqa: E402

from bgpd.wire.attributes import AttributeCache  # noqa: E402
from bgpd.wire.constants import HEADER_LEN, MAX_MESSAGE_LEN  # noqa: E402
from bgpd.wire.types import PathAttributes, Prefix, as_path_length  # noqa: E402
from bgpd.wire.update import decode_update  # noqa: E402


def decode_stream(data: bytes) -> tuple[list[tuple[PathAttributes, list[Prefix]]], set[Prefix]]:
    """Every UPDATE in ``data``: (attributes, announced prefixes) per message, and withdrawn."""
    cache = AttributeCache()
    announced: list[tuple[PathAttributes, list[Prefix]]] = []
    withdrawn: set[Prefix] = set()
    at = 0
    while at < len(data):
        (length,) = struct.unpack_from("!H", data, at + 16)
        assert length <= MAX_MESSAGE_LEN
        update = decode_update(data[at + HEADER_LEN : at + length], tables.NEGOTIATED, cache)
        assert not update.issues
        for announcement in update.announced:
            announced.append((announcement.attributes, list(announcement.prefixes)))
        for withdrawal in update.withdrawn:
            withdrawn.update(withdrawal.prefixes)
        at += length
    assert at == len(data)
    return announced, withdrawn


@pytest.mark.parametrize(("family", "next_hop"), [("ipv4", "10.97.0.1"), ("ipv6", "fd00:97::1")])
def test_full_table_decodes_to_its_prefixes_and_shape(family: str, next_hop: str) -> None:
    spec = tables.TableSpec("full", family, 20_000, next_hop=next_hop)
    table = tables.encode(spec)
    announced, withdrawn = decode_stream(table.announce)
    prefixes = [p for _attrs, members in announced for p in members]
    assert len(prefixes) == len(set(prefixes)) == 20_000
    assert set(prefixes) == set(tables.prefixes(spec))
    assert decode_stream(table.withdraw)[1] == set(prefixes)
    sets = {attrs for attrs, _members in announced}
    assert len(sets) == spec.attribute_sets == 4_000
    assert table.announce_messages == len(announced)
    lengths = Counter(as_path_length(a.as_path) for a in sets)
    assert set(lengths) == set(tables.PATH_LENGTH_WEIGHTS)
    assert lengths.most_common(1)[0][0] == 3
    assert all(a.as_path[0].asns[0] == tables.SENDER_AS for a in sets)
    assert all(64512 not in a.as_path[0].asns for a in sets)
    assert {len(a.communities) for a in sets} == {0, 1, 2, 3, 4}
    assert 0.2 < sum(a.med is not None for a in sets) / len(sets) < 0.4
    assert 0.05 < sum(bool(a.large_communities) for a in sets) / len(sets) < 0.15
    assert {a.next_hop for a in sets} == {tables.ipaddress.ip_address(next_hop).packed}


def test_single_table_is_one_attribute_set_packed_full() -> None:
    spec = tables.TableSpec("single", "ipv4", 10_000)
    announced, _withdrawn = decode_stream(tables.encode(spec).announce)
    assert len({attrs for attrs, _members in announced}) == 1
    assert len(announced) == 10  # about 1000 /24s (4 octets each) per 4096-octet UPDATE


def test_same_spec_same_bytes_and_the_cache_returns_them(tmp_path: Path) -> None:
    spec = tables.TableSpec("full", "ipv4", 5_000, seed=7)
    first = tables.load(spec, tmp_path)
    again = tables.load(spec, tmp_path)  # from the cache files
    fresh = tables.encode(spec)
    assert first == again
    assert (fresh.announce, fresh.withdraw) == (first.announce, first.withdraw)
    assert tables.encode(tables.TableSpec("full", "ipv4", 5_000, seed=8)).announce != (
        fresh.announce
    )


@pytest.mark.parametrize("shape", tables.SHAPES)
def test_prepended_table_is_the_same_prefixes_with_paths_longer_by_the_prepends(
    shape: str,
) -> None:
    """Rules 1 and 3: a second sender's table (another AS and next hop, prepended twice) holds
    the same prefixes, each on a path whose only difference is the sender's AS three times in
    front: what ``e2e_ingest --peers`` relies on for one best path per prefix."""
    first = tables.TableSpec(shape, "ipv4", 5_000, next_hop="10.97.0.1")
    third = tables.TableSpec(shape, "ipv4", 5_000, next_hop="10.97.0.4", sender_as=65003, prepend=2)

    def paths(spec: tables.TableSpec) -> dict[Prefix, tuple[int, ...]]:
        announced, _withdrawn = decode_stream(tables.encode(spec).announce)
        return {p: attrs.as_path[0].asns for attrs, members in announced for p in members}

    best, longer = paths(first), paths(third)
    assert set(best) == set(longer) == set(tables.prefixes(first))
    for prefix, hops in best.items():
        assert hops[0] == tables.SENDER_AS
        assert longer[prefix] == (65003, 65003, 65003, *hops[1:])
