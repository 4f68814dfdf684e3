"""Closed asyncio socket transports freed at once on Python 3.11 (IO: a backport of a CPython fix).

CPython 3.11's ``_SelectorSocketTransport`` keeps its read callback as a bound method of itself
(``_read_ready_cb``), a reference cycle that only the cyclic garbage collector frees (CPython
gh-100348, fixed in 3.12 by dropping the callback on close; not backported). bgpd runs the
collector's young generation every 200,000 allocations (``bgpd.cli``: the RIB is millions of
long-lived objects), so every closed connection waited for a rare older-generation collection: a
flood of 10,000 rejected connections left about 10 MiB of dead transports each time
(tests/netns/test_flood_memory.py).

Rules:
1. On Python before 3.12, ``install()`` makes every socket transport drop its read callback once
   its connection is lost (``_call_connection_lost``, the last step of every way a transport
   ends: ``close``, ``abort``, a reset, EOF), so reference counting frees it then.
2. On 3.12 and later it changes nothing: the interpreter does this itself.
3. It is idempotent, and touches only that one attribute after the original method has run.
"""

from __future__ import annotations

import asyncio.selector_events
import sys
from typing import Any

_MARK = "_bgpd_drops_read_callback"


def install() -> None:
    """Rules 1-3."""
    if sys.version_info >= (3, 12):
        return
    transport_class: Any = getattr(asyncio.selector_events, "_SelectorSocketTransport")  # noqa: B009
    original = transport_class._call_connection_lost
    if getattr(original, _MARK, False):
        return

    def call_connection_lost(self: Any, exc: BaseException | None) -> None:
        try:
            original(self, exc)
        finally:
            self._read_ready_cb = None

    setattr(call_connection_lost, _MARK, True)
    transport_class._call_connection_lost = call_connection_lost
