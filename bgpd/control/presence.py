"""Being found as BIRD by Calico's tools (IO).

``calicoctl node status`` decides whether to read ``/var/run/calico/bird.ctl`` and ``bird6.ctl``
by looking for a process whose first command-line word is exactly ``bird`` (IPv4) or ``bird6``
(IPv6) (projectcalico/calico ``calicoctl/calicoctl/commands/node/status.go``, ``psContains``
over gopsutil's ``CmdlineSlice``, revision 87c15906). One process has one argv[0], so bgpd keeps
two placeholders that carry those names.

Rules:
1. Each placeholder is ``cat`` started with argv[0] set to ``bird`` or ``bird6``, reading a pipe
   whose writing end only bgpd holds. It does nothing else: no socket, no file, no signal
   handling of its own.
2. However bgpd ends (a clean stop, SIGKILL, a crash), its end of the pipe closes, so the
   placeholder reads end-of-file and exits; a clean stop also waits for it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator

BIRD_NAMES = ("bird", "bird6")


@contextlib.contextmanager
def bird_placeholders(names: tuple[str, ...] = BIRD_NAMES) -> Iterator[list[int]]:
    """Rules 1-2: the placeholders' pids while the block runs."""
    cat = shutil.which("cat") or "/bin/cat"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in names:
            procs.append(
                subprocess.Popen(
                    [name],
                    executable=cat,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    close_fds=True,
                )
            )
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in procs:
            proc.wait(timeout=10)
