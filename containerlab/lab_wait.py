"""Waiting for a lab to reach a state, with a progress display.

Rules:
1. A probe returns ``Progress``: how many of how many things are done and a short line on
   what is missing; the wait ends when ``done == total`` or at the deadline.
2. On a terminal the display is one line redrawn in place (a bar, the count, the elapsed
   time); elsewhere (CI logs) a line is printed only when the count changes.
3. A timeout raises ``WaitTimeout`` carrying the last progress, so failures say what was
   missing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True, slots=True)
class Progress:
    done: int
    total: int
    missing: str = ""

    @property
    def complete(self) -> bool:
        return self.done >= self.total


class WaitTimeout(TimeoutError):
    def __init__(self, label: str, timeout: float, last: Progress) -> None:
        super().__init__(
            f"{label}: not reached after {timeout:.0f} s ({last.done}/{last.total}); "
            f"missing: {last.missing or '?'}"
        )
        self.last = last


def _bar(progress: Progress, width: int = 24) -> str:
    filled = width * progress.done // max(progress.total, 1)
    return "#" * filled + "." * (width - filled)


def wait(
    label: str,
    probe: Callable[[], Progress],
    timeout: float,
    interval: float = 0.5,
    stream: TextIO | None = None,
    quiet: bool = False,
) -> Progress:
    """Poll ``probe`` until complete (rule 1); display per rule 2; raise per rule 3."""
    out = stream or sys.stdout
    tty = out.isatty() and not quiet
    start = time.monotonic()
    last_done = -1
    while True:
        progress = probe()
        elapsed = time.monotonic() - start
        if tty:
            out.write(
                f"\r  {label:<28} [{_bar(progress)}] {progress.done}/{progress.total} "
                f"{elapsed:5.1f}s \x1b[K"
            )
            out.flush()
        elif not quiet and progress.done != last_done:
            out.write(f"  {label}: {progress.done}/{progress.total} after {elapsed:.1f}s\n")
            out.flush()
        last_done = progress.done
        if progress.complete:
            if tty:
                out.write("\n")
            return progress
        if elapsed > timeout:
            if tty:
                out.write("\n")
            raise WaitTimeout(label, timeout, progress)
        time.sleep(interval)
