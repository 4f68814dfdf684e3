"""Which rtnetlink notifications wake the kernel programmer (bgpd.kernel.linkwatch rule 2)."""

from __future__ import annotations

import struct

from bgpd.kernel.linkwatch import (
    IFF_LOWER_UP,
    IFF_UP,
    RTM_NEWADDR,
    RTM_NEWLINK,
    operational_changes,
)

RTM_DELLINK = 17


def message(kind: int, index: int = 3, flags: int = 0) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, flags, 0xFFFFFFFF)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


UP = IFF_UP | IFF_LOWER_UP


def test_a_link_becoming_operational_is_a_change_once() -> None:
    seen: dict[int, bool] = {}
    assert operational_changes(message(RTM_NEWLINK, 3, UP), seen)
    assert not operational_changes(message(RTM_NEWLINK, 3, UP), seen)


def test_down_and_administratively_up_without_carrier_are_not_changes() -> None:
    seen: dict[int, bool] = {3: True}
    assert not operational_changes(message(RTM_NEWLINK, 3, IFF_UP), seen)
    assert seen[3] is False
    assert not operational_changes(message(RTM_DELLINK, 3), seen)
    assert operational_changes(message(RTM_NEWLINK, 3, UP), seen)


def test_an_added_address_is_a_change_and_messages_are_walked_in_one_datagram() -> None:
    seen: dict[int, bool] = {}
    datagram = message(RTM_NEWLINK, 4, IFF_UP) + message(RTM_NEWADDR)
    assert operational_changes(datagram, seen)
    assert seen == {4: False}


def test_a_truncated_datagram_is_not_misread() -> None:
    assert not operational_changes(message(RTM_NEWLINK, 3, UP)[:20], {})
