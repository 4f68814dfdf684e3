"""Supervision of the daemons a lab runs: start in a namespace, pid files, liveness, stop.

Rules:
1. Each daemon runs in its own session (process group) through ``ip netns exec`` (which execs,
   so the child's pid is the daemon's), with stdout and stderr appended to its log file.
2. A pid file records the pid and the process start time (``/proc/<pid>/stat`` field 22), so a
   recycled pid is never mistaken for our daemon and never signalled.
3. Stopping sends SIGTERM to the process group, waits, then SIGKILLs; stopping a daemon that
   is not running is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Daemon:
    """One supervised process: its name within the node and where its files are."""

    name: str
    pid_file: Path
    log_file: Path


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[19]


def read_pid(daemon: Daemon) -> int | None:
    """The daemon's pid if it is alive and is the process we started (rule 2)."""
    try:
        record = json.loads(daemon.pid_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    pid = int(record["pid"])
    started = _start_time(pid)
    if started is None or started != record["start"]:
        return None
    if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
        return None
    return pid


def alive(daemon: Daemon) -> bool:
    return read_pid(daemon) is not None


def start(
    daemon: Daemon,
    namespace: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` inside ``namespace`` unless it already runs (rule 1); returns the pid."""
    running = read_pid(daemon)
    if running is not None:
        return running
    daemon.log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(daemon.log_file, "ab") as log:
        log.write(f"--- {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    started = None
    for _ in range(100):
        started = _start_time(proc.pid)
        if started is not None:
            break
        time.sleep(0.01)
    daemon.pid_file.write_text(json.dumps({"pid": proc.pid, "start": started, "argv": argv}))
    return proc.pid


def stop(daemon: Daemon, grace: float = 5.0, sig: int = signal.SIGTERM) -> bool:
    """Stop the daemon (rule 3); False when it was not running."""
    pid = read_pid(daemon)
    if pid is None:
        daemon.pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    end = time.monotonic() + grace
    while read_pid(daemon) is not None and time.monotonic() < end:
        _reap(pid)
        time.sleep(0.05)
    if read_pid(daemon) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while read_pid(daemon) is not None and time.monotonic() < end + 3:
            _reap(pid)
            time.sleep(0.05)
    _reap(pid)
    daemon.pid_file.unlink(missing_ok=True)
    return True


def kill(daemon: Daemon) -> bool:
    """Kill the daemon abruptly (SIGKILL, no clean-up by the daemon): a crash."""
    return stop(daemon, grace=3.0, sig=signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect the exit status when the daemon is our own child (a zombie otherwise)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def log_tail(daemon: Daemon, chars: int = 2000) -> str:
    try:
        return daemon.log_file.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""
