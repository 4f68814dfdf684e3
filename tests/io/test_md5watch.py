"""TCP-MD5 mismatches on the listening side: the kernel drops the peer's SYNs silently, the
supervisor finds them in the TcpExt counters and logs them (over loopback, no namespace)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress

import structlog

from bgpd.net import Supervisor
from bgpd.net.md5watch import Md5Counters, Md5Watch, PeerMd5, parse_netstat, read_counters
from bgpd.session import PeerKey, SessionConfig

A = ipaddress.IPv4Address("127.0.0.1")
B = ipaddress.IPv4Address("127.0.0.2")
C = ipaddress.IPv4Address("127.0.0.3")

NETSTAT = """TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TWRecycled
TcpExt: 0 3 5 7 1
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 0
"""


def test_parse_netstat_reads_the_tcpext_md5_counters() -> None:
    assert parse_netstat(NETSTAT) == Md5Counters(failure=7, unexpected=5, not_found=3)
    assert parse_netstat("IpExt: InNoRoutes\nIpExt: 4\n") == Md5Counters()


def test_the_kernel_exposes_the_counters() -> None:
    assert read_counters() is not None


def test_watch_names_the_peers_that_may_be_affected() -> None:
    readings = iter(
        [Md5Counters(), Md5Counters(), Md5Counters(failure=2), Md5Counters(failure=2, unexpected=1)]
    )
    watch = Md5Watch(lambda: next(readings))
    keyed, plain, up = PeerKey(B), PeerKey(C), PeerKey(A)
    peers = [PeerMd5(keyed, True, False), PeerMd5(plain, False, False), PeerMd5(up, True, True)]
    assert watch.check(peers) is None  # nothing dropped
    found = watch.check(peers)
    assert found is not None
    assert found.dropped == Md5Counters(failure=2) and found.suspects == (keyed,)
    found = watch.check(peers)
    assert found is not None
    assert found.dropped == Md5Counters(unexpected=1) and found.suspects == (plain,)


async def test_unsigned_syn_to_a_keyed_listener_is_logged() -> None:
    """We listen with a key for B; B connects without one: the connection never arrives, but
    TCPMD5NotFound grows and the warning names B (RFC 2385, md5watch rule 1)."""
    config = SessionConfig(
        local_as=65000,
        peer_as=65000,
        router_id=A,
        peer_address=B,
        passive=True,
        md5_password="calico-secret",
    )
    with structlog.testing.capture_logs() as logs:
        async with Supervisor(
            _NoCore(), listen_addresses=(str(A),), listen_port=0, md5_check_interval=0.1
        ) as sup:
            assert sup.listener
            await sup.apply({config.key: config})
            connect = asyncio.create_task(
                asyncio.open_connection(str(A), sup.listener.port, local_addr=(str(B), 0))
            )
            try:
                loop = asyncio.get_running_loop()
                end = loop.time() + 10
                while not [e for e in logs if e.get("reason") == "tcp-md5-mismatch"]:
                    assert loop.time() < end, logs
                    await asyncio.sleep(0.05)
                assert not connect.done()  # the SYN was dropped: no connection
            finally:
                connect.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await connect
    warning = next(e for e in logs if e.get("reason") == "tcp-md5-mismatch")
    assert warning["unsigned"] > 0, warning
    assert str(B) in warning["peers"]
    assert "check the password" in warning["event"]


class _NoCore:
    async def peer_event(self, peer: PeerKey, event: object) -> None:
        raise AssertionError(f"no session should come up: {event!r}")
