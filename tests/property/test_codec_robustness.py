"""Hostile bytes: the framer and decoder either decode or raise ``MessageError`` — nothing else —
on random and mutated input, fed whole and byte by byte.

``BGPD_LONGRUN=N`` runs the mutation fuzzer for N iterations (run 1,000,000 before releasing).
"""

from __future__ import annotations

import os
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_strategies import (
    large_opens,
    mirrored,
    negotiated,
    notifications,
    opens,
    route_refreshes,
    updates,
)

from bgpd.wire.attributes import AttributeCache
from bgpd.wire.capabilities import (
    AddPath,
    FourOctetAs,
    Fqdn,
    GracefulRestart,
    Multiprotocol,
    UnknownCapability,
)
from bgpd.wire.codec import decode_message, encode_message
from bgpd.wire.constants import SUBCODES, ErrorCode
from bgpd.wire.errors import MessageError
from bgpd.wire.framer import Framer
from bgpd.wire.messages import Keepalive, Notification, Open, RouteRefresh
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.render import message_to_json
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    PathAttributes,
    UnknownAttribute,
    prefix_from_str,
)
from bgpd.wire.update import encode_end_of_rib, encode_updates, encode_withdrawals

pytestmark = pytest.mark.property

CONTEXTS = [
    Negotiated(asn4=True, families=frozenset({IPV4_UNICAST, IPV6_UNICAST})),
    Negotiated(asn4=False, external=True),
    Negotiated(
        asn4=True,
        add_path_rx=frozenset({IPV4_UNICAST, IPV6_UNICAST}),
        add_path_tx=frozenset({IPV4_UNICAST, IPV6_UNICAST}),
        extended_message=True,
        enhanced_route_refresh=True,
    ),
    Negotiated(
        external=True,
        peer_as=64512,
        enforce_first_as=True,
        extended_next_hop=frozenset({IPV4_UNICAST}),
    ),
]


def _valid_error(exc: MessageError) -> bool:
    if exc.code not in tuple(ErrorCode):
        return False
    table = SUBCODES.get(exc.code)
    return exc.subcode == 0 or table is None or exc.subcode in tuple(table)


def decode_all(data: bytes, neg: Negotiated, chunk: int | None = None) -> int:
    """Frame and decode ``data``; return how many messages decoded. Raises only MessageError."""
    framer = Framer(neg.max_message_len)
    cache = AttributeCache()
    decoded = 0
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        for msg_type, body in framer.feed(piece):
            message = decode_message(msg_type, body, neg, cache)
            message_to_json(message)
            decoded += 1
    return decoded


def check(data: bytes, neg: Negotiated, chunk: int | None = None) -> None:
    try:
        decode_all(data, neg, chunk)
    except MessageError as exc:
        assert _valid_error(exc), exc


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600), st.sampled_from(CONTEXTS))
def test_random_bytes(data: bytes, neg: Negotiated) -> None:
    check(data, neg)
    check(b"\xff" * 16 + data, neg)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), st.binary(max_size=400), st.sampled_from(CONTEXTS))
def test_random_bodies(msg_type: int, body: bytes, neg: Negotiated) -> None:
    try:
        message_to_json(decode_message(msg_type, body, neg, AttributeCache()))
    except MessageError as exc:
        assert _valid_error(exc)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_messages_whole_and_byte_by_byte(data: st.DataObject) -> None:
    neg = data.draw(negotiated())
    message = data.draw(st.one_of(updates(neg), opens, large_opens, notifications, route_refreshes))
    wire = bytearray(encode_message(message, neg))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(wire) - 1))
        wire[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    mutated = bytes(wire[:cut]) + data.draw(st.binary(max_size=8))
    check(mutated, mirrored(neg))
    check(mutated, mirrored(neg), chunk=1)


def test_byte_by_byte_equals_whole() -> None:
    neg = CONTEXTS[2]
    stream = b"".join(corpus(random.Random(7), neg))
    whole = decode_all(stream, neg)
    assert whole == decode_all(stream, neg, chunk=1) == decode_all(stream, neg, chunk=13)
    assert whole == stream.count(b"\xff" * 16)


def _random_attributes(rng: random.Random, asn4: bool) -> PathAttributes:
    wide = 0xFFFFFFFF if asn4 else 0xFFFF
    return PathAttributes(
        origin=rng.randrange(3),
        as_path=tuple(
            AsPathSegment(rng.choice((1, 2, 3, 4)), tuple(rng.randint(1, wide) for _ in range(3)))
            for _ in range(rng.randrange(3))
        ),
        next_hop=bytes((rng.randint(1, 223), 0, 0, rng.randint(1, 254))),
        med=rng.choice((None, rng.randrange(1 << 32))),
        local_pref=rng.choice((None, 100, rng.randrange(1 << 32))),
        atomic_aggregate=rng.random() < 0.2,
        aggregator=rng.choice((None, (rng.randint(1, wide), b"\x0a\x00\x00\x01"))),
        communities=tuple(rng.randrange(1 << 32) for _ in range(rng.randrange(4))),
        originator_id=rng.choice((None, b"\x0a\x00\x00\x02")),
        cluster_list=tuple(rng.randbytes(4) for _ in range(rng.randrange(3))),
        extended_communities=tuple(rng.randbytes(8) for _ in range(rng.randrange(2))),
        large_communities=tuple((1, 2, rng.randrange(1 << 32)) for _ in range(rng.randrange(3))),
        unknown=tuple(
            UnknownAttribute(0xE0, 200 + k, rng.randbytes(3)) for k in range(rng.randrange(2))
        ),
    )


def corpus(rng: random.Random, neg: Negotiated) -> list[bytes]:
    """Valid messages of every type for ``neg``: the seeds the mutation fuzzer starts from."""
    out: list[bytes] = []
    for _ in range(12):
        attrs = _random_attributes(rng, neg.asn4)
        v4 = [
            prefix_from_str(f"10.{rng.randrange(256)}.{rng.randrange(256)}.0/{rng.randint(8, 32)}")
            for _ in range(rng.randint(1, 30))
        ]
        v6 = [
            prefix_from_str(f"fd00:{rng.randrange(65536):x}::/{rng.randint(16, 128)}")
            for _ in range(rng.randint(1, 10))
        ]
        out += encode_updates(IPV4_UNICAST, attrs, v4, neg)
        out += encode_updates(
            IPV6_UNICAST, replace(attrs, next_hop=rng.randbytes(rng.choice((16, 32)))), v6, neg
        )
        out += encode_withdrawals(IPV4_UNICAST, v4, neg) + encode_withdrawals(IPV6_UNICAST, v6, neg)
    out.append(encode_end_of_rib(IPV4_UNICAST))
    out.append(encode_end_of_rib(IPV6_UNICAST))
    out.append(
        encode_message(
            Open(
                64512,
                90,
                0x0A000001,
                (
                    Multiprotocol(IPV4_UNICAST),
                    Multiprotocol(IPV6_UNICAST),
                    FourOctetAs(4200000001),
                    GracefulRestart(8, 120, ((IPV4_UNICAST, 0x80),)),
                    AddPath(((IPV4_UNICAST, 3),)),
                    Fqdn("node1", "cluster.local"),
                    UnknownCapability(200, b"xyz"),
                ),
            )
        )
    )
    out.append(encode_message(Notification.shutdown(2, "maintenance window")))
    out.append(encode_message(Keepalive()))
    out.append(encode_message(RouteRefresh(IPV6_UNICAST, 1)))
    return out


def mutation_fuzz(iterations: int, seed: int = 1) -> int:
    """Deterministic mutation fuzzing over a corpus of valid messages; returns cases run."""
    rng = random.Random(seed)
    seeds = [(wire, neg) for neg in CONTEXTS for wire in corpus(rng, neg)]
    for i in range(iterations):
        wire, neg = seeds[rng.randrange(len(seeds))]
        buf = bytearray(wire)
        for _ in range(rng.randint(1, 6)):
            op = rng.randrange(4)
            if op == 0 and buf:
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            elif op == 1 and buf:
                del buf[rng.randrange(len(buf)) :]
            elif op == 2:
                pos = rng.randrange(len(buf) + 1)
                buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
            elif len(buf) > 19:
                # Keep the header plausible so the body decoders are exercised.
                buf[16:18] = len(buf).to_bytes(2, "big")
        check(bytes(buf), neg, chunk=rng.choice([None, None, 1, 7]))
        if i and i % 100_000 == 0:
            print(f"mutation fuzz: {i} cases")
    return iterations


def test_mutation_fuzz_quick() -> None:
    assert mutation_fuzz(20_000) == 20_000


@pytest.mark.longrun
@pytest.mark.skipif(not os.environ.get("BGPD_LONGRUN"), reason="set BGPD_LONGRUN=N to run N cases")
def test_mutation_fuzz_longrun() -> None:
    count = int(os.environ["BGPD_LONGRUN"])
    assert mutation_fuzz(count, seed=int(os.environ.get("BGPD_LONGRUN_SEED", "1"))) == count
