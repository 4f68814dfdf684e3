"""Giving freed heap memory back to the system (IO: glibc's ``malloc_trim``).

Route churn frees and reallocates many buffers larger than CPython's small-object allocator
handles (UPDATE bodies, dict and list tables); glibc keeps the freed pages inside its heaps, so
RSS drifts up to a high-water mark that the live data no longer needs (the 30-minute soak:
no growth in traced Python objects while RSS rose 7 %).

Rules:
1. Every ``TRIM_EVERY`` seconds, ``malloc_trim(0)`` returns the free pages of every glibc heap
   (``madvise`` inside the heap, not only its top). It costs about a millisecond per 100 MiB
   of heap and runs between event-loop callbacks, never during a routing step.
2. Where the C library has no ``malloc_trim`` (musl, another platform) there is no task; this
   is said once at debug level.
3. ``heap_usage`` tells where the process's memory is, read on demand (a metrics scrape): the
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
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

TRIM_EVERY = 60.0


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


def heap_trimmer(every: float = TRIM_EVERY) -> Coroutine[None, None, None] | None:
    """Rule 1's task, or None under rule 2."""
    trim = _malloc_trim()
    if trim is None:
        log.debug("no malloc_trim in this C library; heap memory is not trimmed")
        return None
    return _trim_periodically(trim, every)


async def _trim_periodically(trim: Callable[[int], int], every: float) -> None:
    while True:
        await asyncio.sleep(every)
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
    """Rule 3's reading. ``malloc_in_use`` counts mmapped chunks too; ``malloc_free`` is what
    glibc holds free inside its heaps (trimmed pages included: they are free but not resident).
    """

    malloc_in_use: int | None
    malloc_free: int | None
    python_blocks: int


def heap_usage() -> HeapUsage:
    """Rule 3."""
    libc = _libc()
    mallinfo2 = getattr(libc, "mallinfo2", None) if libc is not None else None
    if mallinfo2 is None:
        return HeapUsage(None, None, sys.getallocatedblocks())
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return HeapUsage(info.uordblks + info.hblkhd, info.fordblks, sys.getallocatedblocks())
