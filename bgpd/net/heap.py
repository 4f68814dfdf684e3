"""Giving freed memory back (IO: the young garbage collection, glibc's ``malloc_trim`` and
``mallopt``).

Route churn frees and reallocates many buffers larger than CPython's small-object allocator
handles (UPDATE bodies, netlink batches, dict and list tables); glibc keeps the freed pages
inside its heaps, so RSS drifts up to a high-water mark that the live data no longer needs. The
30-minute soak under a load average of 7, sampled each minute: glibc's bytes in use flat at
19.4 MiB, CPython's live blocks flat, while the ``[heap]`` mapping's RSS swung between 17.5 and
24 MiB with the time since the last trim (trimmed once a minute then). glibc's dynamic mmap
threshold adds to it: it rises past the largest mapped buffer freed, up to 32 MiB, and every
later buffer of that size then comes from the heap (mallopt(3)).

Rules:
1. At start (``heap_trimmer``), ``mallopt`` fixes the mmap threshold at ``MMAP_THRESHOLD`` and
   the trim threshold at ``TRIM_THRESHOLD``: fixing them turns off glibc's dynamic adjustment,
   so a large buffer is always its own mapping, unmapped when freed, and the heap's top is
   given back past a megabyte, under any load.
2. Every ``TRIM_EVERY`` seconds the young generations are collected (``gc.collect(1)``), then
   ``malloc_trim(0)`` returns the free pages of every glibc heap (``madvise`` inside the heap,
   not only its top). The collection is needed because ``bgpd.cli`` sets the first
   generation's threshold to 200,000 allocations (so a full table is not rescanned every 700):
   under steady churn the final code's routing allocates few containers, that threshold was
   reached only after more than an hour, and the cyclic garbage of flaps, re-plans and clients
   (futures, contexts, netlink filter objects) piled up meanwhile: the soak's live blocks rose
   2,000 a minute with no collection at all. A young collection costs time in proportion to
   the young objects only; the trim about a millisecond per 100 MiB of heap. Both run between
   event-loop callbacks, never during a routing step.
3. Where the C library has no ``malloc_trim`` (musl, another platform) the task only collects;
   this is said once at debug level.
4. ``heap_usage`` tells where the process's memory is, read on demand (a metrics scrape): the
   bytes glibc's allocator hands out and the free bytes it holds (``mallinfo2``, walked over
   every arena, under a millisecond at these sizes) and the blocks CPython's small-object
   allocator has in use (``sys.getallocatedblocks``). RSS that grows while these stay flat is
   allocator retention, not live data. Without ``mallinfo2`` the glibc figures are None.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import gc
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

TRIM_EVERY = 10.0
MMAP_THRESHOLD = 256 * 1024  # rule 1: glibc's default start is 128 KiB, its dynamic cap 32 MiB
TRIM_THRESHOLD = 1024 * 1024
_M_TRIM_THRESHOLD = -1  # glibc malloc.h
_M_MMAP_THRESHOLD = -3


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _malloc_trim() -> Callable[[int], int] | None:
    libc = _libc()
    try:
        trim = libc.malloc_trim if libc is not None else None
    except AttributeError:
        return None
    if trim is None:
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


def _fix_thresholds() -> None:
    """Rule 1."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def heap_trimmer(every: float = TRIM_EVERY) -> Coroutine[None, None, None]:
    """Rule 2's task (rule 1 applied first; rule 3 without ``malloc_trim``)."""
    trim = _malloc_trim()
    if trim is None:
        log.debug("no malloc_trim in this C library; heap memory is not trimmed")
    else:
        _fix_thresholds()
    return _trim_periodically(trim, every)


async def _trim_periodically(trim: Callable[[int], int] | None, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        gc.collect(1)
        if trim is not None:
            trim(0)


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc 2.33 and later): every field a ``size_t``."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@dataclass(frozen=True, slots=True)
class HeapUsage:
    """Rule 4's reading. ``malloc_in_use`` counts mmapped chunks too; ``malloc_free`` is what
    glibc holds free inside its heaps (trimmed pages included: they are free but not resident).
    """

    malloc_in_use: int | None
    malloc_free: int | None
    python_blocks: int


def heap_usage() -> HeapUsage:
    """Rule 4."""
    libc = _libc()
    mallinfo2 = getattr(libc, "mallinfo2", None) if libc is not None else None
    if mallinfo2 is None:
        return HeapUsage(None, None, sys.getallocatedblocks())
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return HeapUsage(info.uordblks + info.hblkhd, info.fordblks, sys.getallocatedblocks())
