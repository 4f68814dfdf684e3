"""LinkWatch against the real kernel: an interface coming up wakes us, going down does not."""

from __future__ import annotations

import asyncio

import pytest
from netns import Namespace, have_root

from bgpd.kernel.linkwatch import LinkWatch

pytestmark = pytest.mark.netns


async def wait_changes(watch: LinkWatch, at_least: int) -> int:
    for _ in range(200):
        if watch.changes >= at_least:
            break
        await asyncio.sleep(0.025)
    return watch.changes


async def test_link_up_and_new_address_are_reported() -> None:
    if not have_root():
        pytest.skip("needs root and iproute2")
    ns = Namespace.create("hW-")
    try:
        ns.ip("link", "add", "w0", "type", "veth", "peer", "name", "w1")
        woken: list[bool] = []
        async with LinkWatch(lambda: woken.append(True), netns=ns.name) as watch:
            ns.ip("link", "set", "w0", "up")  # no carrier yet: the peer end is down
            ns.ip("link", "set", "w1", "up")
            assert await wait_changes(watch, 1) >= 1
            await asyncio.sleep(0.5)  # both ends' notifications arrive
            settled = watch.changes
            ns.ip("link", "set", "w0", "down")
            await asyncio.sleep(0.3)
            assert watch.changes == settled, "a link going down is not a change"
            ns.ip("addr", "add", "10.99.0.1/24", "dev", "w1")
            assert await wait_changes(watch, settled + 1) == settled + 1
        assert len(woken) == watch.changes
    finally:
        ns.delete()
