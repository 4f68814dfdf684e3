"""TCP-MD5 mismatches the kernel drops silently, found in its counters for a clear log line.

Rules:
1. Linux drops a segment whose RFC 2385 signature is wrong or missing without telling any
   socket: a listener never sees the connection. It only counts the drop in the network
   namespace's TcpExt counters (``/proc/net/netstat``): TCPMD5Failure (wrong signature),
   TCPMD5NotFound (a key is set for the address, the segment carries no signature) and
   TCPMD5Unexpected (the segment is signed, no key is set). Missing counters read as zero.
2. The file is read through ``/proc/thread-self`` so the counters are those of the calling
   thread's namespace (tests move one thread into a namespace).
3. The counters are per namespace, not per peer, so a warning names the suspects: the peers
   not Established that have a key (for failures and unsigned segments) or have none (for
   signed segments without a key).
4. Pure except ``read_counters``; the supervisor polls and logs (supervisor rule 4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bgpd.session.config import PeerKey

NETSTAT = Path("/proc/thread-self/net/netstat")


@dataclass(frozen=True, slots=True)
class Md5Counters:
    failure: int = 0  # TCPMD5Failure: wrong signature
    unexpected: int = 0  # TCPMD5Unexpected: signed, but we have no key for the address
    not_found: int = 0  # TCPMD5NotFound: we have a key for the address, the segment is unsigned

    def __sub__(self, other: Md5Counters) -> Md5Counters:
        return Md5Counters(
            self.failure - other.failure,
            self.unexpected - other.unexpected,
            self.not_found - other.not_found,
        )

    def __bool__(self) -> bool:
        return any((self.failure, self.unexpected, self.not_found))


def parse_netstat(text: str) -> Md5Counters:
    """The MD5 counters from ``/proc/net/netstat`` (pairs of name and value lines)."""
    values: dict[str, int] = {}
    lines = text.splitlines()
    for names, numbers in zip(lines[::2], lines[1::2], strict=False):
        prefix, _, fields = names.partition(":")
        if prefix != "TcpExt" or not numbers.startswith("TcpExt:"):
            continue
        values.update(
            zip(fields.split(), map(int, numbers.partition(":")[2].split()), strict=False)
        )
    return Md5Counters(
        values.get("TCPMD5Failure", 0),
        values.get("TCPMD5Unexpected", 0),
        values.get("TCPMD5NotFound", 0),
    )


def read_counters(path: Path = NETSTAT) -> Md5Counters | None:
    """This namespace's counters, or None where the kernel does not expose them."""
    try:
        return parse_netstat(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class PeerMd5:
    """What the watch needs to know about one configured peer."""

    peer: PeerKey
    keyed: bool  # a TCP-MD5 password is configured
    established: bool


@dataclass(frozen=True, slots=True)
class Md5Mismatch:
    """Drops since the last check, and the peers they may belong to (rule 3)."""

    dropped: Md5Counters
    suspects: tuple[PeerKey, ...]


class Md5Watch:
    """Remembers the last reading; ``check`` reports what grew since."""

    def __init__(self, read: Callable[[], Md5Counters | None] = read_counters) -> None:
        self._read = read
        self._last = read()

    @property
    def available(self) -> bool:
        return self._last is not None

    def check(self, peers: Iterable[PeerMd5]) -> Md5Mismatch | None:
        now = self._read()
        if now is None or self._last is None:
            return None
        dropped, self._last = now - self._last, now
        if not dropped:
            return None
        waiting = [p for p in peers if not p.established]
        suspects = [
            p.peer
            for p in waiting
            if (p.keyed and (dropped.failure or dropped.not_found))
            or (not p.keyed and dropped.unexpected)
        ]
        return Md5Mismatch(dropped, tuple(suspects))
