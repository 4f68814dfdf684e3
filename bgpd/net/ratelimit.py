"""Which rejected connections get a log line: a flood must not become a log flood.

Role: the pure half of the listener's rejection log (``listener`` schedules and writes the lines);
time is passed in, so tests drive it without a clock.

Rules:
1. A source's first rejection gets its own line, at most ``first_lines`` sources per window;
   every other rejection is counted for the window's summary.
2. A window opens at the first rejection after the last one closed and lasts ``interval``
   seconds; the caller closes it when due (``due``) or before counting a later rejection
   (``close``). When it closes with counted rejections, one summary tells how many connections
   from how many sources, with the busiest sources and their counts. At most one summary per
   interval.
3. A source rejected in the window just closed is not new in the next one (a steady flood from
   one address is one line per interval, the summary); a source quiet for a whole window is new
   again.
4. Memory is bounded: at most ``max_sources`` addresses are tracked per window; rejections from
   further sources are counted in the totals without their own entry.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

DEFAULT_INTERVAL = 60.0
DEFAULT_FIRST_LINES = 10
DEFAULT_MAX_SOURCES = 4096
TOP_SOURCES = 5


@dataclass(frozen=True, slots=True)
class RejectionSummary:
    """The rejections of one window that got no line of their own (rule 2)."""

    connections: int
    sources: int  # distinct tracked sources among them
    top: tuple[tuple[str, int], ...]  # busiest sources first, with their counts
    untracked: int = 0  # connections from sources past ``max_sources`` (rule 4)


@dataclass(slots=True)
class RejectionLog:
    """Counts rejected connections per source and says which get a line (module rules)."""

    interval: float = DEFAULT_INTERVAL
    first_lines: int = DEFAULT_FIRST_LINES
    max_sources: int = DEFAULT_MAX_SOURCES
    _opened: float | None = None  # when the current window opened; None: no window
    _closed: float = float("-inf")  # when the last window ended (opened + interval)
    _seen: set[str] = field(default_factory=set)  # sources rejected in this window
    _previous: set[str] = field(default_factory=set)  # sources rejected in the last window
    _counted: dict[str, int] = field(default_factory=dict)  # rejections without a line, by source
    _untracked: int = 0
    _lines: int = 0

    def reject(self, source: str, now: float) -> bool:
        """Count one rejection from ``source``; True when it gets its own line (rule 1)."""
        if self._opened is None:
            self._opened = now
            if now - self._closed >= self.interval:
                self._previous = set()  # rule 3: quiet for a whole window
        new = source not in self._seen and source not in self._previous
        if source not in self._seen and len(self._seen) < self.max_sources:
            self._seen.add(source)
        if new and self._lines < self.first_lines and source in self._seen:
            self._lines += 1
            return True
        if source in self._seen:
            self._counted[source] = self._counted.get(source, 0) + 1
        else:
            self._untracked += 1
        return False

    def due(self) -> float | None:
        """When the current window's summary is due; None when nothing waits for one."""
        if self._opened is None or not (self._counted or self._untracked):
            return None
        return self._opened + self.interval

    def close(self, now: float) -> RejectionSummary | None:
        """Close the window once ``interval`` has passed since it opened (rule 2): its summary,
        or None when it is still open or had no rejection without a line."""
        opened = self._opened
        if opened is None or now - opened < self.interval:
            return None
        counted, untracked = self._counted, self._untracked
        self._previous, self._seen = self._seen, set()
        self._counted, self._untracked, self._lines = {}, 0, 0
        self._opened, self._closed = None, opened + self.interval
        if not counted and not untracked:
            return None
        top = heapq.nlargest(TOP_SOURCES, counted.items(), key=lambda item: (item[1], item[0]))
        return RejectionSummary(
            connections=sum(counted.values()) + untracked,
            sources=len(counted),
            top=tuple(top),
            untracked=untracked,
        )
