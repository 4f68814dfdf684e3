"""Adj-RIB-Out as a desired-state diff (style-anchors.md §9.4): apply(view, diff) == desired,
withdraw on no-longer-exportable, coalescing, packing, ADD-PATH, End-of-RIB."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bgpd.rib.adj_rib_out import AdjRibOut, apply_diff, diff_views
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.codec import decode_message
from bgpd.wire.framer import Framer
from bgpd.wire.messages import Update
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import IPV4_UNICAST, IPV6_UNICAST, PathAttributes, Prefix
from bgpd.wire.update import encode_end_of_rib

NEGOTIATED = Negotiated()
ATTRS = [PathAttributes(next_hop=bytes((10, 0, 0, i)), med=i) for i in range(1, 5)]
PREFIXES = [bytes((24, 10, i // 256, i % 256)) for i in range(64)]

views = st.dictionaries(st.sampled_from(PREFIXES), st.sampled_from(ATTRS), max_size=40)


def _decode(messages: list[bytes], negotiated: Negotiated = NEGOTIATED) -> list[Update]:
    cache = AttributeCache()
    out: list[Update] = []
    for msg_type, body in Framer(negotiated.max_message_len).feed(b"".join(messages)):
        message = decode_message(msg_type, body, negotiated, cache)
        assert isinstance(message, Update)
        out.append(message)
    return out


def _replay(view: dict[Prefix, PathAttributes], messages: list[bytes]) -> dict[Prefix, object]:
    """What a peer holding ``view`` holds after receiving ``messages``."""
    held: dict[Prefix, object] = dict(view)
    for update in _decode(messages):
        for withdrawal in update.withdrawn:
            for prefix in withdrawal.prefixes:
                held.pop(prefix, None)
        for announcement in update.announced:
            for prefix in announcement.prefixes:
                held[prefix] = announcement.attributes
    return held


@given(views, views)
def test_apply_of_diff_is_the_desired_view(
    sent: dict[Prefix, PathAttributes], desired: dict[Prefix, PathAttributes]
) -> None:
    assert apply_diff(sent, diff_views(sent, desired)) == desired


@given(views, views)
def test_take_sends_exactly_what_turns_sent_into_desired(
    sent: dict[Prefix, PathAttributes], desired: dict[Prefix, PathAttributes]
) -> None:
    out = AdjRibOut(IPV4_UNICAST)
    out.sent = dict(sent)
    for prefix in set(sent) | set(desired):
        out.stage(prefix, desired.get(prefix))
    messages = out.take(NEGOTIATED)
    assert out.sent == desired
    assert _replay(sent, messages) == desired
    if sent == desired:
        assert messages == []


@given(views, views, st.integers(min_value=1, max_value=16))
def test_taking_a_budget_at_a_time_ends_in_the_same_view(
    sent: dict[Prefix, PathAttributes], desired: dict[Prefix, PathAttributes], budget: int
) -> None:
    out = AdjRibOut(IPV4_UNICAST)
    out.sent = dict(sent)
    for prefix in set(sent) | set(desired):
        out.stage(prefix, desired.get(prefix))
    held: dict[Prefix, object] = dict(sent)
    while out.pending:
        before = len(out.pending)
        held = _replay(held, out.take(NEGOTIATED, limit=budget))  # type: ignore[arg-type]
        assert len(out.pending) == max(0, before - budget)
    assert out.sent == desired and held == desired


def test_what_a_budget_leaves_staged_keeps_coalescing() -> None:
    out = AdjRibOut(IPV4_UNICAST)
    out.stage(PREFIXES[0], ATTRS[0])
    out.stage(PREFIXES[1], ATTRS[0])
    (first,) = _decode(out.take(NEGOTIATED, limit=1))
    assert first.announced[0].prefixes == [PREFIXES[0]]
    out.stage(PREFIXES[1], ATTRS[3])  # changed again before the peer could take it
    (second,) = _decode(out.take(NEGOTIATED, limit=1))
    assert second.announced[0].prefixes == [PREFIXES[1]]
    assert second.announced[0].attributes.med == ATTRS[3].med


def test_a_prefix_that_may_no_longer_be_exported_is_withdrawn() -> None:
    out = AdjRibOut(IPV4_UNICAST)
    out.stage(PREFIXES[0], ATTRS[0])
    out.take(NEGOTIATED)
    out.stage(PREFIXES[0], None)  # new best is not exportable to this peer
    (update,) = _decode(out.take(NEGOTIATED))
    assert update.withdrawn[0].prefixes == [PREFIXES[0]] and not update.announced
    assert out.sent == {}


def test_withdrawing_what_was_never_sent_sends_nothing() -> None:
    out = AdjRibOut(IPV4_UNICAST)
    out.stage(PREFIXES[0], None)
    assert out.take(NEGOTIATED) == []


def test_pending_changes_for_a_prefix_coalesce() -> None:
    out = AdjRibOut(IPV4_UNICAST)
    out.stage(PREFIXES[0], ATTRS[0])
    out.stage(PREFIXES[0], ATTRS[1])
    out.stage(PREFIXES[0], ATTRS[2])
    (update,) = _decode(out.take(NEGOTIATED))
    assert [a.prefixes for a in update.announced] == [[PREFIXES[0]]]
    assert update.announced[0].attributes.med == ATTRS[2].med


def test_prefixes_sharing_attributes_are_packed_together() -> None:
    out = AdjRibOut(IPV4_UNICAST)
    for i, prefix in enumerate(PREFIXES):
        out.stage(prefix, ATTRS[i % 2])
    updates = _decode(out.take(NEGOTIATED))
    assert len(updates) == 2  # one UPDATE per attribute set
    assert sorted(len(u.announced[0].prefixes) for u in updates) == [32, 32]


def test_packing_respects_the_message_size() -> None:
    out = AdjRibOut(IPV4_UNICAST)
    many = [bytes((32,)) + i.to_bytes(4, "big") for i in range(1, 3001)]
    for prefix in many:
        out.stage(prefix, ATTRS[0])
    messages = out.take(NEGOTIATED)
    assert len(messages) > 1 and all(len(m) <= 4096 for m in messages)
    assert sum(len(u.announced[0].prefixes) for u in _decode(messages)) == 3000


def test_resend_all_re_announces_the_same_view() -> None:
    out = AdjRibOut(IPV4_UNICAST)
    for prefix in PREFIXES[:5]:
        out.stage(prefix, ATTRS[0])
    out.take(NEGOTIATED)
    out.resend_all()
    again = _decode(out.take(NEGOTIATED))
    assert sorted(p for u in again for a in u.announced for p in a.prefixes) == PREFIXES[:5]


def test_add_path_announces_and_withdraws_per_path_id() -> None:
    negotiated = Negotiated(
        add_path_tx=frozenset({IPV4_UNICAST}), add_path_rx=frozenset({IPV4_UNICAST})
    )
    out = AdjRibOut(IPV4_UNICAST, add_path=True)
    out.stage(PREFIXES[0], ((1, ATTRS[0]), (2, ATTRS[1])))
    first = _decode(out.take(negotiated), negotiated)
    assert sorted(a.path_ids[0] for u in first for a in u.announced if a.path_ids) == [1, 2]
    out.stage(PREFIXES[0], ((2, ATTRS[1]),))
    (update,) = _decode(out.take(negotiated), negotiated)
    assert update.withdrawn[0].path_ids == [1] and not update.announced


def test_end_of_rib_marker_per_family() -> None:
    assert _decode([encode_end_of_rib(IPV4_UNICAST)])[0].end_of_rib == IPV4_UNICAST
    v6 = Negotiated(families=frozenset({IPV6_UNICAST}))
    assert _decode([encode_end_of_rib(IPV6_UNICAST)], v6)[0].end_of_rib == IPV6_UNICAST
