"""bgpd/net/heap.py: the heap trimmer exists on glibc and runs until cancelled."""

from __future__ import annotations

import asyncio

import pytest

from bgpd.net.heap import heap_trimmer


def test_trimmer_runs_on_glibc_until_cancelled() -> None:
    trimmer = heap_trimmer(every=0.001)
    if trimmer is None:
        pytest.skip("this C library has no malloc_trim")

    async def run_briefly() -> None:
        task = asyncio.ensure_future(trimmer)
        await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_briefly())
