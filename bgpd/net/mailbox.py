"""A one-value mailbox where the newest value wins, between asyncio tasks (IO).

Rules:
1. ``put`` never waits and replaces a value not yet taken: desired states are levels, so a
   reader that falls behind skips to the newest (the daemon's desired sessions and tunnel plans).
2. ``get`` waits for a value and takes it.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

_T = TypeVar("_T")


class Latest(Generic[_T]):
    """Rules 1-2."""

    def __init__(self) -> None:
        self._value: _T | None = None
        self._ready = asyncio.Event()

    def put(self, value: _T) -> None:
        self._value = value
        self._ready.set()

    async def get(self) -> _T | None:
        await self._ready.wait()
        self._ready.clear()
        value, self._value = self._value, None
        return value
