"""The placeholders calicoctl finds (bgpd/control/presence.py rules 1-2): named ``bird`` and
``bird6`` while bgpd runs, and gone however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bgpd.control.presence import bird_placeholders


def _first_word(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]


def _named(pids: list[int]) -> bool:
    """The exec has shown in /proc (right after it, a command line can read empty)."""
    return [_first_word(pid) for pid in pids] == [b"bird", b"bird6"]


def _ended(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever inherited it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _wait(condition: object, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_placeholders_carry_the_names_and_end_with_the_block() -> None:
    with bird_placeholders() as pids:
        assert _wait(lambda: _named(pids)), [_first_word(pid) for pid in pids]
    assert all(_ended(pid) for pid in pids)


def test_placeholders_end_when_bgpd_is_killed() -> None:
    code = (
        "import time\n"
        "from bgpd.control.presence import bird_placeholders\n"
        "with bird_placeholders() as pids:\n"
        "    print(*pids, flush=True)\n"
        "    time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(word) for word in parent.stdout.readline().split()]
        assert _wait(lambda: _named(pids)), [_first_word(pid) for pid in pids]
        os.kill(parent.pid, signal.SIGKILL)
        assert _wait(lambda: all(_ended(pid) for pid in pids)), "a placeholder outlived bgpd"
    finally:
        parent.kill()
        parent.wait()
