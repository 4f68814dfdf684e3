"""bgpd/net/heap.py: the heap task runs until cancelled and collects cyclic garbage that the
daemon's high first-generation threshold would keep; the heap reading tells glibc's bytes in use
and CPython's live blocks apart."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from bgpd.net.heap import heap_trimmer, heap_usage


def test_trimmer_runs_on_glibc_until_cancelled() -> None:
    trimmer = heap_trimmer(every=0.001)

    async def run_briefly() -> None:
        task = asyncio.ensure_future(trimmer)
        await asyncio.sleep(0.02)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_briefly())


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_the_task_collects_cycles_the_daemons_threshold_would_keep() -> None:
    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(200_000, 50, 100)  # bgpd.cli's
    try:
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle, as a closed connection's future and callback make
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # no collection at this threshold

        async def run_briefly() -> None:
            task = asyncio.ensure_future(heap_trimmer(every=0.001))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(run_briefly())
        assert gone() is None
    finally:
        gc.set_threshold(*thresholds)


def test_heap_usage_follows_live_data() -> None:
    before = heap_usage()
    if before.malloc_in_use is None:
        pytest.skip("this C library has no mallinfo2")
    small = [object() for _ in range(100_000)]  # pymalloc blocks
    large = [bytearray(1 << 16) for _ in range(64)]  # glibc chunks: 4 MiB
    during = heap_usage()
    assert during.python_blocks >= before.python_blocks + 100_000
    assert during.malloc_in_use is not None
    assert during.malloc_in_use >= before.malloc_in_use + 4 * 1024 * 1024
    del small, large
    after = heap_usage()
    assert after.python_blocks < during.python_blocks - 90_000
    assert after.malloc_free is not None
