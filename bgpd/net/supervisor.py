"""The set of BGP sessions, kept equal to the desired set of peers.

Rules:
1. ``apply(desired)`` diffs the desired configs against the running ones: new peers start, gone
   peers stop with Cease/Peer De-configured, changed peers reset with Cease/Other Configuration
   Change (RFC 4486 §4). Equal configs are left alone. ``shutdown`` ends every session with
   Cease/Administrative Shutdown and its shutdown communication (``bgpd stop --withdraw``).
   ``listen`` changes the listening addresses and port at run time (listener rule 6).
   Peers in ``bfd_down`` are stopped, or reset when still desired, with Cease/BFD Down
   (RFC 9384): BFD found their forwarding path gone (``bgpd.router`` rule 10).
2. The routing core sees peers only through ``RoutingCore`` (events in) and ``send`` (encoded
   UPDATEs out, pulled: one bounded batch at a time per peer, returning once the socket can
   take more, transport.py rule 4); it never touches a session or a socket.
3. Each peer runs in its own task of the supervisor's TaskGroup; a peer task does not end on a
   peer's error (the runner resets itself), so one peer never takes down another. An exception
   raised by the routing core's ``peer_event`` is not a peer's error: it ends that peer task
   and so the TaskGroup, and leaving the context raises it (in an ExceptionGroup).
4. TCP-MD5 mismatches (RFC 2385) that the kernel drops without a trace are found in its
   counters every ``md5_check_interval`` seconds and logged as a warning naming the suspect
   peers (md5watch.py); the active side also logs its failed connects (transport.py).
5. Leaving the context stops the listener and every session. By default each peer gets a
   Cease/Peer De-configured NOTIFICATION (``apply({})``). After ``abort()`` no NOTIFICATION is
   sent: every connection is closed at the TCP level only, so peers that negotiated graceful
   restart keep our routes as stale while we restart (RFC 4724 §4.2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Protocol

import structlog

from bgpd.net.listener import Listeners
from bgpd.net.md5watch import Md5Watch, PeerMd5
from bgpd.net.transport import PeerEvent, PeerRunner, PeerStatistics
from bgpd.session import AutomaticStop, State
from bgpd.session.config import BGP_PORT, IPAddress, PeerKey, SessionConfig
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.constants import CeaseSubcode

log = structlog.get_logger("bgpd.net")

MD5_CHECK_INTERVAL = 5.0


class RoutingCore(Protocol):
    """What the supervisor needs from the speaker: one coroutine that takes peer events
    (Established, Down, UpdateReceived, RouteRefreshReceived), in order per peer."""

    async def peer_event(self, peer: PeerKey, event: PeerEvent) -> None: ...


class Supervisor:
    """Use as ``async with Supervisor(core, listen_port=...) as peers: await peers.apply(...)``."""

    def __init__(
        self,
        core: RoutingCore,
        *,
        listen_addresses: Sequence[str] = (),
        listen_port: int | None = BGP_PORT,
        cache: AttributeCache | None = None,
        md5_check_interval: float | None = MD5_CHECK_INTERVAL,
    ) -> None:
        self._core = core
        self._md5_check_interval = md5_check_interval
        self._cache = cache if cache is not None else AttributeCache()
        self._listener = (
            Listeners(self._handoff, listen_addresses, listen_port)
            if listen_port is not None
            else None
        )
        self._runners: dict[PeerKey, PeerRunner] = {}
        self._tasks: dict[PeerKey, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._watch: asyncio.Task[None] | None = None
        self._aborted = False  # rule 5: leave without NOTIFICATIONs

    @property
    def listener(self) -> Listeners | None:
        return self._listener

    async def listen(self, addresses: Sequence[str], port: int) -> list[str]:
        """Listen on ``addresses`` (every address when empty) and ``port`` from now on; the
        addresses that could not be bound (listener rule 6)."""
        assert self._listener is not None, "a supervisor made without a listener"
        return await self._listener.listen(addresses, port)

    async def __aenter__(self) -> Supervisor:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        if self._listener is not None:
            await self._listener.start()
        if self._md5_check_interval is not None:
            self._watch = self._group.create_task(
                self._watch_md5(self._md5_check_interval), name="tcp-md5 watch"
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._listener is not None:
                await self._listener.close()
            if not self._aborted:
                await asyncio.shield(self.apply({}))
        finally:
            assert self._group is not None
            for task in self._tasks.values():
                task.cancel()
            if self._watch is not None:
                self._watch.cancel()
            await self._group.__aexit__(exc_type, exc, tb)

    def abort(self) -> None:
        """Leave without a NOTIFICATION (rule 5): on exit, every connection is closed at the TCP
        level only (a graceful restart, RFC 4724 §4.2; or a failed routing core)."""
        self._aborted = True

    # ---- desired state ----

    async def apply(
        self, desired: Mapping[PeerKey, SessionConfig], bfd_down: frozenset[PeerKey] = frozenset()
    ) -> None:
        """Start, stop or reset sessions so that exactly ``desired`` runs."""
        for key in [k for k in self._runners if k not in desired]:
            why = CeaseSubcode.BFD_DOWN if key in bfd_down else CeaseSubcode.PEER_DECONFIGURED
            await self._remove(key, why)
        for key, config in desired.items():
            running = self._runners.get(key)
            if running is not None and running.config == config:
                if key in bfd_down:
                    await running.reset(CeaseSubcode.BFD_DOWN)
                continue
            if running is not None:
                await self._remove(key, CeaseSubcode.OTHER_CONFIGURATION_CHANGE)
            self._add(config)

    async def shutdown(self, message: str = "") -> None:
        """End every session for good: Cease/Administrative Shutdown (RFC 4486 §3, subcode 2)
        with ``message`` as the shutdown communication (RFC 9003)."""
        await asyncio.gather(
            *(
                self._remove(key, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, message)
                for key in list(self._runners)
            )
        )

    def _add(self, config: SessionConfig) -> None:
        assert self._group is not None, "use the supervisor as an async context manager"
        runner = PeerRunner(config, self._core.peer_event, cache=self._cache)
        self._runners[config.key] = runner
        if self._listener is not None:
            self._listener.set_password(config.peer_address, config.md5_password)
        self._tasks[config.key] = self._group.create_task(runner.run(), name=f"peer {config.key}")
        log.info("peer added", peer=str(config.key), name=config.name or None)

    async def _remove(self, key: PeerKey, subcode: int, message: str = "") -> None:
        runner = self._runners.pop(key)
        task = self._tasks.pop(key)
        try:
            await asyncio.wait_for(runner.stop(subcode, message), 5.0)
        except TimeoutError:
            log.warning("peer did not stop in time", peer=str(key))
        task.cancel()
        if self._listener is not None and not any(
            r.config.peer_address == key.address for r in self._runners.values()
        ):
            self._listener.set_password(key.address, None)
        log.info("peer removed", peer=str(key))

    # ---- for the routing core and show commands ----

    async def send(self, peer: PeerKey, messages: list[bytes], prefixes: int = 0) -> bool:
        """Send encoded UPDATEs to ``peer``; returns once they are written and the socket is
        below its high-water mark again, False when it is not Established (or unknown)."""
        runner = self._runners.get(peer)
        if runner is None:
            return False
        return await runner.send(messages, prefixes)

    async def reset(self, peer: PeerKey, message: str = "") -> None:
        """Administrative reset (Cease/Administrative Reset, RFC 4486; RFC 9003 text)."""
        await self._runners[peer].reset(CeaseSubcode.ADMINISTRATIVE_RESET, message)

    async def stop_automatically(self, peer: PeerKey, stop: AutomaticStop) -> None:
        """A session the routing core stops, to restart after the stop's idle time."""
        runner = self._runners.get(peer)
        if runner is not None:
            await runner.stop_automatically(stop)

    def statistics(self) -> dict[PeerKey, PeerStatistics]:
        return {key: runner.statistics() for key, runner in self._runners.items()}

    async def _watch_md5(self, interval: float) -> None:
        watch = Md5Watch()
        if not watch.available:
            log.info("TCP-MD5 drop counters unavailable; mismatches show only as failed connects")
            return
        while True:
            await asyncio.sleep(interval)
            peers = [
                PeerMd5(key, bool(r.config.md5_password), r.primary.state is State.ESTABLISHED)
                for key, r in self._runners.items()
            ]
            found = watch.check(peers)
            if found is None:
                continue
            log.warning(
                "TCP-MD5 mismatch: the kernel dropped segments with a wrong or missing "
                "signature; check the password on both sides",
                reason="tcp-md5-mismatch",
                wrong_signature=found.dropped.failure,
                unsigned=found.dropped.not_found,
                signed_without_key=found.dropped.unexpected,
                peers=[str(p) for p in found.suspects],
            )

    def _handoff(
        self, address: IPAddress, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        for runner in self._runners.values():
            if runner.config.peer_address == address:
                runner.accept(reader, writer)
                return True
        return False
