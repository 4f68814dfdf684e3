"""etcd v3 datastore adapter: list Calico's keys once, then watch them, across any failure.

Role: the IO edge between etcd and the datastore cache. It reads raw key/value pairs and raw
events; it never parses JSON (a malformed value is delivered as the bytes etcd holds, and the
schema layer decides what to do with it). It yields batches, one at a time:

* ``Resync(pairs, revision)``: every watched key and its value, all read at one revision;
* ``Changes(events, revision)``: the events of one or more whole revisions, in revision order.

Rules:

1. The watched keys follow Calico's list semantics (calico-bgp.md §1.1, E3
   ``calculateListKeyAndOptions``): an entry ending in ``/`` is a prefix (so
   ``/calico/ipam/v2/host/node1/`` never matches ``node10``), any other entry is one exact key
   (``/calico/ipam/v2/config``). ``etcd_settings.calico_watch_keys`` gives the set confd's
   BGP syncer uses (calico-bgp.md §1.4), plus the IPAM config and allocation blocks (§1.3).
2. A list is consistent: the first range read fixes revision R and every further read (other
   prefixes, further pages) is pinned to ``revision=R``. A pinned read that hits a compaction
   restarts the whole list.
3. The watch starts at R + 1 with ``prev_kv`` (calico-bgp.md §1.1, E3 ``watcher.go``). Progress
   notifications are not requested: etcd 3.4 can send one ahead of its events (etcd-io/etcd
   #15220), and a resume point taken from it would skip them. An idle watcher that reconnects
   after a compaction therefore lists again (rule 6) instead of resuming.
4. One watch stream covers the smallest key range holding every watched key and is filtered
   here, so events of all prefixes arrive in one revision order. (Separate watches per prefix
   replay history independently after a resume and would interleave out of order.)
5. No event is lost and none is delivered twice: after any failure the watch resumes at the
   last delivered revision + 1, and an event at or below that revision is dropped. Batch
   revisions strictly increase; a revision is never split across batches (etcd sends a
   revision's events in one response when ``fragment`` is off).
6. If the resume revision was compacted (``compact_revision`` in a watch response), the adapter
   lists again and yields a new ``Resync`` at the current revision.
7. While etcd is unreachable nothing is yielded: the consumer keeps its last snapshot.
   Reconnection tries the endpoints in order; after a whole round fails it sleeps a capped
   exponential backoff with jitter. TLS (per endpoint: ``https`` or, without a scheme, when a
   certificate file is set) and user/password auth come from Calico's variables
   (``libcalico-go/lib/apiconfig/apiconfig.go``). An expired auth token is a reconnect.
8. Only this module talks to etcd; it imports ``aetcd`` for the generated etcd v3 gRPC API and
   builds the channel itself, because ``aetcd.Client`` 1.0.0 has no TLS.

Glue for the daemon (``bgpd.daemon``)::

    async with EtcdWatcher(settings, calico_watch_keys(node_name)) as watcher:
        async for batch in watcher:
            if isinstance(batch, Resync):
                cache.load(batch.pairs, batch.revision)        # replaces everything
            else:
                for event in batch.events:
                    if event.kind is EventKind.PUT:
                        cache.put(event.key, event.value, event.mod_revision)
                    else:
                        cache.delete(event.key, event.mod_revision)
            publish(cache.snapshot())                           # one snapshot per batch

Nothing is advertised or withdrawn before the first ``Resync`` (confd's in-sync rule,
calico-bgp.md §1.4); after it every batch leaves the cache complete and consistent.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Self

import grpc  # type: ignore[import-untyped]
import structlog
from aetcd import rpc

from bgpd.datastore.etcd_settings import Endpoint, EtcdSettings

log = structlog.get_logger(__name__)


class EventKind(enum.StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    """One key change. ``value`` is None for a delete; ``prev_value`` is None for a create
    (or when etcd no longer holds the previous version)."""

    kind: EventKind
    key: str
    value: bytes | None
    prev_value: bytes | None
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Resync:
    """The full content of the watched keys at ``revision``; replaces all earlier state."""

    pairs: tuple[tuple[str, bytes], ...]
    revision: int


@dataclass(frozen=True, slots=True)
class Changes:
    """Events of whole revisions, ordered. ``revision`` is how far the watch has read: at least
    the last event's revision (more when later events of the range were filtered out)."""

    events: tuple[Event, ...]
    revision: int


Batch = Resync | Changes


@dataclass(frozen=True, slots=True)
class EtcdStatistics:
    """``connected``: a list or watch is established now; ``revision``: the last revision
    delivered (the resume point); ``resyncs``: lists delivered; ``reconnects``: connections
    re-established after a loss; ``failures``: failed attempts or lost connections;
    ``events``: events delivered in ``Changes``; ``endpoint``: the last endpoint that worked."""

    connected: bool
    revision: int
    resyncs: int
    reconnects: int
    failures: int
    events: int
    endpoint: str | None


class KeySet:
    """The watched keys (rule 1) and the one key range that covers them all (rule 4)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = tuple(keys)
        if not self.keys or not all(key.startswith("/") for key in self.keys):
            raise ValueError(f"watched keys must be absolute etcd keys, got {self.keys!r}")
        encoded = [key.encode() for key in self.keys]
        self._prefixes = tuple(key for key in encoded if key.endswith(b"/"))
        self._exact = frozenset(key for key in encoded if not key.endswith(b"/"))
        self.ranges = tuple((key, _range_end(key)) for key in encoded)
        self.cover = (min(start for start, _ in self.ranges), max(end for _, end in self.ranges))

    def matches(self, key: bytes) -> bool:
        return key in self._exact or key.startswith(self._prefixes)


def _range_end(key: bytes) -> bytes:
    """Range end of a prefix (last byte + 1) or of one exact key (the key + NUL)."""
    if not key.endswith(b"/"):
        return key + b"\0"
    return key[:-1] + bytes([key[-1] + 1])


def _decode_key(key: bytes) -> str:
    return key.decode("utf-8", errors="surrogateescape")


class _Disconnected(Exception):
    """The endpoint failed (unreachable, closed stream, auth); try the next one."""


class _Compacted(Exception):
    """The revision we asked for is gone; list again (rule 6)."""


_COMPACTED_CODES = {grpc.StatusCode.OUT_OF_RANGE}


def _translate(error: grpc.aio.AioRpcError) -> Exception:
    if error.code() in _COMPACTED_CODES:
        return _Compacted(error.details())
    return _Disconnected(f"{error.code().name}: {error.details()}")


class _Session:
    """One gRPC channel to one endpoint, authenticated when credentials are set."""

    def __init__(self, settings: EtcdSettings, endpoint: Endpoint) -> None:
        self.settings = settings
        self.endpoint = endpoint
        options = [
            ("grpc.max_receive_message_length", -1),
            ("grpc.keepalive_time_ms", int(settings.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout * 1000)),
            ("grpc.http2.ping_timeout_ms", int(settings.keepalive_timeout * 1000)),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if endpoint.tls:
            self.channel = grpc.aio.secure_channel(endpoint.target, self._credentials(), options)
        else:
            self.channel = grpc.aio.insecure_channel(endpoint.target, options)
        self.metadata: tuple[tuple[str, str], ...] | None = None
        self.kv = rpc.KVStub(self.channel)
        self.watch_stub = rpc.WatchStub(self.channel)

    def _credentials(self) -> Any:
        def read(path: str | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as handle:
                return handle.read()

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.settings.ca_cert_file),
            private_key=read(self.settings.key_file),
            certificate_chain=read(self.settings.cert_file),
        )

    async def authenticate(self) -> None:
        if self.settings.username is None:
            return
        request = rpc.AuthenticateRequest(
            name=self.settings.username, password=self.settings.password
        )
        try:
            response = await rpc.AuthStub(self.channel).Authenticate(
                request, timeout=self.settings.request_timeout
            )
        except grpc.aio.AioRpcError as error:
            raise _Disconnected(
                f"authentication: {error.code().name}: {error.details()}"
            ) from error
        self.metadata = (("token", response.token),)

    async def range_page(self, start: bytes, end: bytes, revision: int) -> Any:
        request = rpc.RangeRequest(
            key=start, range_end=end, revision=revision, limit=self.settings.list_page_size
        )
        try:
            return await self.kv.Range(
                request, timeout=self.settings.request_timeout, metadata=self.metadata
            )
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from error

    async def close(self) -> None:
        await self.channel.close()


class Backoff:
    """Capped exponential delay with +-20% jitter (rule 7)."""

    def __init__(self, initial: float, ceiling: float) -> None:
        self._initial = initial
        self._ceiling = ceiling
        self._next = initial

    def reset(self) -> None:
        self._next = self._initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self._ceiling)
        return delay * random.uniform(0.8, 1.2)


class EtcdWatcher:
    """Async iterator of ``Resync`` / ``Changes`` batches for the watched keys (see the rules).

    Use as ``async with EtcdWatcher(settings, keys) as watcher: async for batch in watcher``.
    Iterate it once; the iteration never ends by itself.
    """

    def __init__(self, settings: EtcdSettings, keys: Iterable[str]) -> None:
        if not settings.endpoints:
            raise ValueError("no etcd endpoint configured")
        self._settings = settings
        self._keys = KeySet(keys)
        self._backoff = Backoff(settings.reconnect_initial, settings.reconnect_max)
        self._revision = 0
        self._connected = False
        self._ever_connected = False
        self._resyncs = 0
        self._reconnects = 0
        self._failures = 0
        self._events = 0
        self._endpoint: Endpoint | None = None
        self._iterator: AsyncGenerator[Batch, None] | None = None

    def statistics(self) -> EtcdStatistics:
        return EtcdStatistics(
            connected=self._connected,
            revision=self._revision,
            resyncs=self._resyncs,
            reconnects=self._reconnects,
            failures=self._failures,
            events=self._events,
            endpoint=self._endpoint.target if self._endpoint else None,
        )

    def __aiter__(self) -> AsyncIterator[Batch]:
        if self._iterator is None:
            self._iterator = self._batches()
        return self._iterator

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop iterating and close the connection. Call it from the iterating task, or cancel
        that task first (an async generator cannot be closed while another task awaits it)."""
        iterator, self._iterator = self._iterator, None
        if iterator is not None:
            await iterator.aclose()

    async def _batches(self) -> AsyncGenerator[Batch, None]:
        endpoints = self._settings.endpoints
        index = 0
        failures_in_round = 0
        need_list = True
        while True:
            session = _Session(self._settings, endpoints[index])
            try:
                await session.authenticate()
                if need_list:
                    yield await self._list(session)
                    need_list = False
                async with aclosing(self._watch(session)) as changes_stream:
                    async for changes in changes_stream:
                        yield changes
            except _Compacted as compacted:
                log.info("etcd_compacted", revision=self._revision, detail=str(compacted))
                need_list = True
            except _Disconnected as lost:
                log.warning("etcd_disconnected", endpoint=session.endpoint.target, reason=str(lost))
                if self._connected:
                    failures_in_round = 0
                self._connected = False
                self._failures += 1
                index = (index + 1) % len(endpoints)
                failures_in_round += 1
                if failures_in_round >= len(endpoints):
                    failures_in_round = 0
                    await asyncio.sleep(self._backoff.next_delay())
            finally:
                await session.close()

    def _mark_connected(self, endpoint: Endpoint) -> None:
        if not self._connected:
            if self._ever_connected:
                self._reconnects += 1
            log.info("etcd_connected", endpoint=endpoint.target, revision=self._revision)
        self._connected = True
        self._ever_connected = True
        self._endpoint = endpoint
        self._backoff.reset()

    async def _list(self, session: _Session) -> Resync:
        """Read every watched key at one revision (rule 2)."""
        while True:
            try:
                pairs: list[tuple[str, bytes]] = []
                revision = 0
                for start, end in self._keys.ranges:
                    page_start = start
                    while True:
                        response = await session.range_page(page_start, end, revision)
                        revision = revision or response.header.revision
                        pairs.extend((_decode_key(kv.key), kv.value) for kv in response.kvs)
                        if not response.more:
                            break
                        page_start = response.kvs[-1].key + b"\0"
                break
            except _Compacted:
                log.info("etcd_list_compacted", revision=revision)
        self._revision = revision
        self._resyncs += 1
        self._mark_connected(session.endpoint)
        return Resync(pairs=tuple(pairs), revision=revision)

    async def _watch(self, session: _Session) -> AsyncGenerator[Changes, None]:
        """Watch the covering range from the last delivered revision + 1 (rules 3-5)."""
        start, end = self._keys.cover
        create = rpc.WatchCreateRequest(
            key=start,
            range_end=end,
            start_revision=self._revision + 1,
            prev_kv=True,
        )
        call = session.watch_stub.Watch(metadata=session.metadata)
        try:
            await call.write(rpc.WatchRequest(create_request=create))
            async with asyncio.timeout(self._settings.request_timeout):
                response = await call.read()
            while response is not grpc.aio.EOF:
                changes = self._on_response(session, response)
                if changes is not None:
                    yield changes
                response = await call.read()
            raise _Disconnected("watch stream closed by the server")
        except grpc.aio.AioRpcError as error:
            raise _translate(error) from error
        except TimeoutError as error:
            raise _Disconnected("no answer to the watch request") from error
        finally:
            call.cancel()

    def _on_response(self, session: _Session, response: Any) -> Changes | None:
        if response.compact_revision:
            raise _Compacted(f"compacted at {response.compact_revision}")
        if response.canceled:
            raise _Disconnected(f"watch canceled: {response.cancel_reason or 'no reason'}")
        if response.created:
            self._mark_connected(session.endpoint)
        if not response.events:
            return None
        events = tuple(
            self._event(raw)
            for raw in response.events
            if raw.kv.mod_revision > self._revision and self._keys.matches(raw.kv.key)
        )
        self._revision = max(self._revision, response.events[-1].kv.mod_revision)
        if not events:
            return None
        self._events += len(events)
        return Changes(events=events, revision=self._revision)

    @staticmethod
    def _event(raw: Any) -> Event:
        prev_value = raw.prev_kv.value if raw.HasField("prev_kv") else None
        if raw.type == rpc.Event.DELETE:
            return Event(
                EventKind.DELETE, _decode_key(raw.kv.key), None, prev_value, raw.kv.mod_revision
            )
        return Event(
            EventKind.PUT, _decode_key(raw.kv.key), raw.kv.value, prev_value, raw.kv.mod_revision
        )


async def put_pairs(settings: EtcdSettings, pairs: Iterable[tuple[str, bytes]]) -> int:
    """Write key/value pairs to the first endpoint that answers (``bgpd datastore load``)."""
    last_error = "no endpoint"
    for endpoint in settings.endpoints:
        session = _Session(settings, endpoint)
        try:
            await session.authenticate()
            written = 0
            for key, value in pairs:
                await session.kv.Put(
                    rpc.PutRequest(key=key.encode(), value=value),
                    timeout=settings.request_timeout,
                    metadata=session.metadata,
                )
                written += 1
            return written
        except (grpc.aio.AioRpcError, _Disconnected) as error:
            last_error = f"{endpoint.target}: {error}"
        finally:
            await session.close()
    raise ConnectionError(last_error)
