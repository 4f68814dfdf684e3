"""Shared pieces of the real-process benchmarks: kernel route watching, process accounting, tables.

Rules:
1. Importing this module puts the repository root, ``tests/netns`` (the namespace, peer and
   bgpd drivers), ``tests/io`` (the Kubernetes API double) and ``containerlab`` on
   ``sys.path``, so every benchmark reuses those helpers instead of copying them.
2. ``KernelWatch`` learns a namespace's routes the way ``ip monitor route`` does: it subscribes
   to RTNLGRP_IPV4_ROUTE first, then dumps, so no route is missed between the two; it keeps one
   bit per prefix of a watched range and length (a bitmap, so 1M routes cost 128 KiB), and
   parses each message only as far as its destination (``bgpd.kernel.netlink``'s framing
   helpers). If the kernel drops notifications (ENOBUFS), it dumps again into a fresh bitmap
   (notifications meanwhile go to both) that replaces the old one at the dump's end, so a
   route deleted while notifications were lost does not stay counted. IPv4 or IPv6 by the
   watched range (RTNLGRP_IPV6_ROUTE and an AF_INET6 dump for IPv6). With ``gateway``, each
   prefix's slot also says whether its route's single next hop (RTA_GATEWAY, no RTA_MULTIPATH)
   is that address, and ``best`` counts those: a route replaced towards another next hop moves
   between the two counts.
3. Times are ``time.monotonic()`` taken when the datagram that completed a wait arrived;
   with ``trace_step`` set, ``trace`` records (time, count) each time the count (``best`` when
   a gateway is watched) passes a multiple of it.
4. Process figures come from ``/proc``: peak RSS is ``VmHWM``, CPU is ``utime + stime``.
5. ``Table`` prints fixed-width rows as they are measured, so a long run shows progress.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import platform
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
for _path in (
    REPO_ROOT,
    REPO_ROOT / "tests" / "netns",
    REPO_ROOT / "tests" / "io",
    REPO_ROOT / "containerlab",
):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from pyroute2.netns import create_socket  # noqa: E402

from bgpd.kernel.netlink import (  # noqa: E402
    NETLINK_ROUTE,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTM_DELROUTE,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    _attributes,
    _messages,
)

RTNLGRP_IPV4_ROUTE = 7
RTNLGRP_IPV6_ROUTE = 11
RTPROT_BIRD = 12
RTPROT_BGP = 186
_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_HEADER = _NLMSGHDR.size + _RTMSG.size
_RCVBUF = 512 << 20


class KernelWatch:
    """Routes of ``protocols`` inside ``network`` with length ``prefixlen`` in one namespace;
    with ``gateway``, also those whose single next hop is that address (rule 2)."""

    ABSENT, OTHER, VIA = 0, 1, 2  # a slot's states; without a gateway, present is OTHER

    def __init__(
        self,
        namespace: str,
        network: str,
        prefixlen: int,
        protocols: Iterable[int] = (RTPROT_BIRD, RTPROT_BGP),
        gateway: str | None = None,
    ) -> None:
        net = ipaddress.ip_network(network)
        self.family = socket.AF_INET if net.version == 4 else socket.AF_INET6
        self.base = int(net.network_address)
        self.prefixlen = prefixlen
        self.shift = net.max_prefixlen - prefixlen
        self.size = 1 << (prefixlen - net.prefixlen)
        self.protocols = frozenset(protocols)
        self.gateway = ipaddress.ip_address(gateway).packed if gateway else None
        self.bits = bytearray(self.size)
        self.fresh: bytearray | None = None  # the bitmap a resync's dump fills (rule 2)
        self.count = 0
        self.best = 0  # routes via ``gateway``
        self.resyncs = 0
        self.trace: list[tuple[float, int]] = []
        self.trace_step = 0  # when set: record (time, count) each time count passes a multiple
        self.sock = create_socket(
            namespace, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE, flags=0
        )
        self.sock.setsockopt(socket.SOL_SOCKET, 33, _RCVBUF)  # SO_RCVBUFFORCE
        group = RTNLGRP_IPV4_ROUTE if self.family == socket.AF_INET else RTNLGRP_IPV6_ROUTE
        self.sock.bind((0, 1 << (group - 1)))
        self._seq = 0
        self._dump()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> KernelWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def index(self, prefix: str) -> int:
        net = ipaddress.ip_network(prefix)
        return (int(net.network_address) - self.base) >> self.shift

    def present(self, prefix: str) -> bool:
        return bool(self.bits[self.index(prefix)])

    def _dump(self) -> None:
        self._seq += 1
        request = _NLMSGHDR.pack(
            _HEADER, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0
        ) + _RTMSG.pack(self.family, 0, 0, 0, 0, 0, 0, 0, 0)
        self.sock.send(request)

    def _state(self, attributes: dict[int, bytes]) -> int:
        """A present route's slot state (rule 2)."""
        if self.gateway is None or RTA_MULTIPATH in attributes:
            return self.OTHER
        return self.VIA if attributes.get(RTA_GATEWAY) == self.gateway else self.OTHER

    def _handle(self, data: bytes) -> None:
        view = memoryview(data)
        bits, base, shift, size = self.bits, self.base, self.shift, self.size
        fresh = self.fresh
        for msg_type, _seq, msg in _messages(view):
            if msg_type == NLMSG_DONE and fresh is not None:
                self.bits, self.fresh = fresh, None  # rule 2: the resync's dump is complete
                self.count = size - fresh.count(self.ABSENT)
                self.best = fresh.count(self.VIA)
                bits, fresh = self.bits, None
                continue
            if msg_type not in (RTM_NEWROUTE, RTM_DELROUTE) or len(msg) < _HEADER:
                continue
            family, dst_len, _s, _t, _table, protocol, _sc, _ty, _f = _RTMSG.unpack_from(msg, 16)
            if family != self.family or dst_len != self.prefixlen:
                continue
            if protocol not in self.protocols:
                continue
            attributes = _attributes(msg, _HEADER, len(msg))
            dst = attributes.get(RTA_DST)
            if dst is None:
                continue
            slot = (int.from_bytes(dst, "big") - base) >> shift
            if not 0 <= slot < size:
                continue
            state = self._state(attributes) if msg_type == RTM_NEWROUTE else self.ABSENT
            if fresh is not None:
                fresh[slot] = state
            old = bits[slot]
            if old != state:
                bits[slot] = state
                self.count += (state != self.ABSENT) - (old != self.ABSENT)
                self.best += (state == self.VIA) - (old == self.VIA)

    def receive(self) -> None:
        """One datagram (blocking per the socket's timeout); on ENOBUFS dump again (rule 2)."""
        try:
            data = self.sock.recv(1 << 20)
        except OSError as error:
            if error.errno != errno.ENOBUFS:
                raise
            self.resyncs += 1
            self.fresh = bytearray(self.size)
            self._dump()
            return
        self._handle(data)
        step, now = self.trace_step, time.monotonic()
        counted = self.count if self.gateway is None else self.best
        while step and counted >= (len(self.trace) + 1) * step:
            self.trace.append((now, counted))

    def wait(self, done: Callable[[KernelWatch], bool], timeout: float) -> float:
        """Read notifications until ``done(self)``; the arrival time of the deciding datagram.
        Raises TimeoutError with the count on timeout."""
        return wait_each([self], done, timeout)[0]


def wait_each(
    watches: Sequence[KernelWatch], done: Callable[[KernelWatch], bool], timeout: float
) -> list[float]:
    """Read every watch's notifications as they come (one ``select``) until ``done`` holds for
    each; per watch, the arrival time of its deciding datagram (rule 3)."""
    deadline = time.monotonic() + timeout
    times: dict[int, float] = {}
    for index, watch in enumerate(watches):
        if done(watch):
            times[index] = time.monotonic()
    while len(times) < len(watches):
        left = deadline - time.monotonic()
        if left <= 0:
            counts = [w.count for w in watches]
            raise TimeoutError(f"kernels hold {counts} of the watched routes")
        pending = {w.sock.fileno(): i for i, w in enumerate(watches) if i not in times}
        ready, _, _ = select.select(list(pending), [], [], min(left, 1.0))
        arrived = time.monotonic()
        for fd in ready:
            index = pending[fd]
            watches[index].sock.settimeout(0)
            try:
                watches[index].receive()
            except BlockingIOError:
                continue
            finally:
                watches[index].sock.settimeout(None)
            if done(watches[index]):
                times[index] = arrived
    return [times[i] for i in range(len(watches))]


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def peak_rss_mib(pids: Iterable[int]) -> float:
    """Sum of the processes' peak resident sets (VmHWM), MiB."""
    return sum(_status_kib(pid, "VmHWM") for pid in pids) / 1024


def rss_mib(pids: Iterable[int]) -> float:
    return sum(_status_kib(pid, "VmRSS") for pid in pids) / 1024


def cpu_seconds(pids: Iterable[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


PY_SPY = REPO_ROOT / ".venv" / "bin" / "py-spy"


def py_spy(pid: int, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` into ``out`` as collapsed stacks, until ``stop_py_spy``."""
    if not PY_SPY.exists():
        raise SystemExit(f"{PY_SPY} missing: .venv/bin/pip install py-spy")
    argv = [str(PY_SPY), "record", "--pid", str(pid), "--rate", str(rate)]
    argv += ["--format", "raw", "--output", str(out), "--nonblocking"]
    if os.environ.get("BENCH_PROFILE_IDLE"):
        argv.append("--idle")  # where the process waits, too
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_py_spy(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT makes py-spy write its output and exit."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def frame_function(frame: str) -> str:
    """``file:function`` of a py-spy frame ``function (file:line)``."""
    name, _, where = frame.rpartition(" (")
    if not name:
        return frame
    return f"{where.rstrip(')').rsplit(':', 1)[0]}:{name}"


def hot_functions(
    collapsed: Path, top: int = 25, *, by_line: bool = False
) -> list[tuple[str, float, float]]:
    """(function, self share, inclusive share) from a collapsed-stack profile, by self time;
    frames are merged per ``file:function`` unless ``by_line``."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if not by_line:
            frames = [frame_function(frame) for frame in frames]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    ranked = sorted(own, key=own.__getitem__, reverse=True)[:top]
    return [(f, own[f] / total, inclusive[f] / total) for f in ranked] if total else []


def top_inclusive(collapsed: Path, top: int = 25) -> list[tuple[str, float]]:
    """(``file:function``, inclusive share) by inclusive time: where the time goes below."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        for frame in {frame_function(frame) for frame in stack.split(";")}:
            inclusive[frame] = inclusive.get(frame, 0) + count
    ranked = sorted(inclusive, key=inclusive.__getitem__, reverse=True)[:top]
    return [(f, inclusive[f] / total) for f in ranked] if total else []


def print_profile(collapsed: Path) -> None:
    """The top of a py-spy profile of bgpd's last run: by self time, then by inclusive time."""
    print(f"\n# py-spy of bgpd, last run ({collapsed}), by self time: self %, inclusive %")
    for function, own, inclusive in hot_functions(collapsed, 20):
        print(f"{own * 100:6.1f} {inclusive * 100:6.1f}  {function}")
    print("\n# by inclusive time: inclusive %")
    for function, inclusive in top_inclusive(collapsed, 40):
        print(f"{inclusive * 100:6.1f}  {function}")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def lab_runner(lab_file: Path, lab_name: str, prefix: str) -> Any:
    """A netns ``LabRunner`` for ``lab_file`` with its state in a fresh temporary directory,
    after checking for root and printing the machine line every benchmark starts with."""
    import tempfile

    from lab_topology import load_lab
    from netlab import LabRunner

    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    print(f"# machine: {machine()}", flush=True)
    state = Path(tempfile.mkdtemp(prefix=prefix))
    return LabRunner(load_lab(lab_file, lab_name), state_dir=state, out=sys.stderr)


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"{os.cpu_count()} x {model}; Python {platform.python_version()}; "
        f"kernel {platform.release()}"
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


class Table:
    """Fixed-width rows printed as they come (rule 5)."""

    def __init__(self, columns: Sequence[tuple[str, int]]) -> None:
        self.columns = columns
        print("  ".join(f"{name:>{width}}" for name, width in columns), flush=True)

    def row(self, *cells: object) -> None:
        print(
            "  ".join(
                f"{str(cell):>{width}}"
                for cell, (_n, width) in zip(cells, self.columns, strict=True)
            ),
            flush=True,
        )


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"
