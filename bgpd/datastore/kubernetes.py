"""Kubernetes API datastore adapter: list Calico's resources, then watch them, across any failure.

Role: the IO edge between the API server and the datastore cache. It yields the same batches as
the etcd adapter (``etcd.Resync`` and ``etcd.Changes`` of etcd-shaped pairs, made by the pure
``kdd`` module), so ``source`` follows both datastores with one loop.

Rules:
1. The Calico group is ``CALICO_API_GROUP`` or discovered from ``GET /apis``: the native
   ``projectcalico.org/v3`` CRDs only when ``crd.projectcalico.org`` is not served (Calico's
   ``discovery.go``). Nodes are core/v1.
2. Every resource is LISTed in pages (``limit``/``continue``; a resource the server answers 404
   for is empty and not watched: an older Calico without it); when all are listed one
   ``Resync`` of every pair is yielded. Then each resource is WATCHed from its list's
   ``resourceVersion`` with ``allowWatchBookmarks=true``; ADDED/MODIFIED/DELETED become
   ``Changes``; BOOKMARK moves the resume point; a watch that ends is re-opened from it.
3. 410 Gone (a status or an ERROR event with code 410) lists everything again at once; any
   other failure closes the watches, sleeps a capped exponential backoff and lists again.
   Nothing is yielded meanwhile: the consumer keeps its last snapshot, nothing is withdrawn.
4. Batch revisions are this adapter's own counter (Kubernetes resourceVersions are opaque).
5. An object whose identity cannot be read is logged once per resourceVersion, reported to
   ``on_rejected`` and treated as deleted; a value that does not decode is the cache's business.
6. HTTP goes through the maintained asyncio client kubernetes_asyncio (its ``ApiClient`` over
   aiohttp: kept-alive connections, TLS and client certificates from the settings, the bearer
   token read again from its file before each request); this module only builds paths and
   queries and reads JSON and watch lines. The choice against lightkube and kr8s is in the
   README's Kubernetes section.
7. The cluster objects (``service_collections``: Services and EndpointSlices;
   ``secret_collections``: the named Secrets) are
   optional collections, narrowed by their ``query``: a 401 or 403 on one is one log line (not
   repeated while the refusal lasts) and an ``on_access`` report (a Secret's refusal is that
   peer's status); the others are listed and watched, and the refused ones are asked again
   every ``reconnect_max`` seconds; a successful listing reports access again
   (``on_access(collection, None)``, and a log line if it had been refused).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import client as kube_client
from kubernetes_asyncio.client.exceptions import ApiException

from bgpd.datastore.etcd import Backoff, Batch, Changes, Event, EventKind, Resync
from bgpd.datastore.kdd import (
    CLUSTER_RESOURCES,
    ENDPOINTSLICES,
    SECRETS,
    SERVICES,
    V1_GROUP,
    V1_RESOURCES,
    V3_GROUP,
    V3_RESOURCES,
    CalicoResource,
    KddPair,
    calico_pair,
    cluster_pair,
    node_pair,
    object_id,
)
from bgpd.datastore.kube_settings import KubeSettings
from bgpd.datastore.schema import RecordError

log = structlog.get_logger(__name__)
NODES = CalicoResource("nodes", "Node")
REFUSALS = {401: "Unauthorized", 403: "Forbidden"}


class ApiError(Exception):
    """A request failed: ``status`` is the HTTP status (0 for a connection failure)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}" if status else reason)
        self.status = status


class _Gone(Exception):
    """A resourceVersion is too old (410): list again."""


@dataclass(frozen=True, slots=True)
class Collection:
    """Where one resource is listed and watched; ``query`` narrows it (a field selector); an
    ``optional`` one the API refuses (401, 403) or does not serve (404) is reported and left
    unwatched until the next listing, and the others go on (rule 7)."""

    resource: CalicoResource
    path: str
    query: tuple[tuple[str, str], ...] = ()
    optional: bool = False


def service_collections() -> tuple[Collection, ...]:
    """Services and EndpointSlices of every namespace (``kdd``: confd's route generator)."""
    return (
        Collection(SERVICES, "/api/v1/services", optional=True),
        Collection(ENDPOINTSLICES, "/apis/discovery.k8s.io/v1/endpointslices", optional=True),
    )


def secret_collections(namespace: str, secrets: Iterable[str]) -> tuple[Collection, ...]:
    """Each named Secret of ``namespace`` by itself (``kdd``: confd's secret watcher)."""
    return tuple(
        Collection(
            SECRETS,
            f"/api/v1/namespaces/{namespace}/secrets",
            (("fieldSelector", f"metadata.name={name}"),),
            optional=True,
        )
        for name in sorted(set(secrets))
    )


class ApiClient:
    """GET requests and watch streams against one API server, through kubernetes_asyncio's
    ``ApiClient`` (rule 6): it owns the connections (aiohttp, kept alive), TLS and the bearer
    token; this class speaks paths, queries and JSON, and maps failures to ``ApiError``."""

    def __init__(self, settings: KubeSettings) -> None:
        self._settings = settings
        configuration = kube_client.Configuration()
        scheme = "https" if settings.tls else "http"
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        configuration.host = f"{scheme}://{host}:{settings.port}"
        configuration.verify_ssl = not settings.insecure
        token = settings.token
        if settings.token_file is not None or token:
            configuration.api_key = {"BearerToken": token or ""}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
            configuration.refresh_api_key_hook = self._refresh_token
        with tempfile.TemporaryDirectory() as directory:  # the library reads files, once
            for name, data in (
                ("ssl_ca_cert", settings.ca_data),
                ("cert_file", settings.cert_data),
                ("key_file", settings.key_data),
            ):
                if data is not None:
                    path = os.path.join(directory, name)
                    with open(path, "wb") as handle:
                        handle.write(data)
                    setattr(configuration, name, path)
            self._api = kube_client.ApiClient(configuration)

    def _refresh_token(self, configuration: Any) -> None:
        """The bearer token, read again from its file when it has one (kube_settings rule 4)."""
        path = self._settings.token_file
        if path is not None:
            with suppress(OSError):
                with open(path, encoding="utf-8") as handle:
                    configuration.api_key["BearerToken"] = handle.read().strip()

    async def close(self) -> None:
        await self._api.close()

    async def _open(self, path: str, query: dict[str, Any], timeout: Any) -> Any:
        """The response to ``GET path?query`` once its status is 200; 410 raises ``_Gone``."""
        try:
            response = await self._api.call_api(
                path,
                "GET",
                query_params=[(k, str(v)) for k, v in query.items()],
                header_params={"Accept": "application/json", "User-Agent": "bgpd"},
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (OSError, TimeoutError, aiohttp.ClientError, ApiException) as exc:
            where = f"{self._settings.host}:{self._settings.port}"
            raise ApiError(0, f"{where}: {exc!r}") from None
        if response.status == 200:
            return response
        try:
            body = await response.read()
        except (OSError, TimeoutError, aiohttp.ClientError):
            body = b""
        finally:
            response.release()
        if response.status == 410:
            raise _Gone(path)
        raise ApiError(response.status, body[:200].decode("utf-8", "replace"))

    async def get(self, path: str, query: dict[str, Any] | None = None) -> Any:
        response = await self._open(path, query or {}, self._settings.request_timeout)
        try:
            async with asyncio.timeout(self._settings.request_timeout):
                return json.loads(await response.read())
        except (OSError, TimeoutError, ValueError, aiohttp.ClientError) as exc:
            raise ApiError(0, f"GET {path}: {exc!r}") from None
        finally:
            response.release()

    async def watch(self, path: str, query: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Watch events, one JSON object per line of the body, until the server ends it."""
        settings = self._settings
        timeout = aiohttp.ClientTimeout(
            connect=settings.request_timeout, sock_read=settings.watch_timeout + 30
        )
        response = await self._open(path, query, timeout)
        try:
            while line := await response.content.readline():
                if line.strip():
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event
        except (OSError, TimeoutError, ValueError, aiohttp.ClientError) as exc:
            raise ApiError(0, f"watch {path}: {exc!r}") from None
        finally:
            response.release()


async def collections(client: ApiClient, group: str) -> tuple[Collection, ...]:
    """Where Calico's resources are served (rule 1)."""
    if not group:
        served = await client.get("/apis")
        names = {g.get("name") for g in served.get("groups", ()) if isinstance(g, dict)}
        group = V3_GROUP if V3_GROUP in names and V1_GROUP not in names else V1_GROUP
    resources, version = (V3_RESOURCES, "v3") if group == V3_GROUP else (V1_RESOURCES, "v1")
    calico = tuple(Collection(r, f"/apis/{group}/{version}/{r.plural}") for r in resources)
    return (Collection(NODES, "/api/v1/nodes"), *calico)


class KubernetesWatcher:
    """Async iterator of ``Resync``/``Changes`` batches (see the rules): Calico's resources,
    or the ``collections`` given (``service_collections``, ``secret_collections``)."""

    def __init__(
        self,
        settings: KubeSettings,
        node: str,
        on_rejected: Callable[[str, RecordError], None] = lambda kind, error: None,
        collections: tuple[Collection, ...] = (),
        on_access: Callable[[Collection, str | None], None] = lambda collection, refusal: None,
        refusals: dict[Collection, str] | None = None,
    ) -> None:
        self._settings = settings
        self._node = node
        self._on_rejected = on_rejected
        self._collections = collections
        self._on_access = on_access
        self._backoff = Backoff(settings.reconnect_initial, settings.reconnect_max)
        self._revision = 0
        self._keys: dict[tuple[str, str], str] = {}  # (plural, name) -> etcd key
        self._logged: dict[tuple[str, str], str] = {}  # (plural, name) -> resourceVersion
        self._refused = 0  # optional collections refused at the last listing
        # the refusal last logged, per collection: shared by the watchers that follow one
        # another over the same collections, so a restart does not log it again (rule 7)
        self._refusals = refusals if refusals is not None else {}
        self.resyncs = 0
        self.failures = 0

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self._batches()

    async def __aenter__(self) -> KubernetesWatcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def _pair(self, resource: CalicoResource, obj: Any) -> KddPair | None:
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        where = (resource.plural, object_id(obj))
        try:
            if resource is NODES:
                pair: KddPair | None = node_pair(obj, self._settings.use_pod_cidr)
            elif resource in CLUSTER_RESOURCES:
                pair = cluster_pair(resource, obj)
            else:
                pair = calico_pair(resource, obj, self._node)
        except RecordError as error:
            if self._logged.get(where) != version:
                self._logged[where] = version
                log.warning(
                    "datastore.kubernetes.rejected",
                    resource=resource.plural,
                    name=where[1],
                    reason=error.reason,
                    field=error.key,
                    resource_version=version,
                )
                self._on_rejected(resource.kind, error)
            return None
        if pair is not None and pair.ignored and self._logged.get(where) != version:
            self._logged[where] = version
            for annotation, reason in pair.ignored:
                log.warning(
                    "datastore.kubernetes.annotation_ignored",
                    node=where[1],
                    annotation=annotation,
                    reason=reason,
                    resource_version=version,
                )
        return pair

    async def _list(self, collection: Collection) -> tuple[list[tuple[str, bytes]], str]:
        """Every object of ``collection`` and the version to watch from; ``""`` when the
        server does not serve the resource (an older Calico without it): nothing to watch."""
        pairs: list[tuple[str, bytes]] = []
        query: dict[str, Any] = {**dict(collection.query), "limit": self._settings.list_page_size}
        while True:
            try:
                page = await self._client.get(collection.path, query)
            except ApiError as error:
                if error.status in (401, 403) and collection.optional:
                    refusal = f"{error.status} {REFUSALS[error.status]}"
                    if self._refusals.get(collection) != refusal:  # rule 7: once per refusal
                        self._refusals[collection] = refusal
                        log.warning(
                            "datastore.kubernetes.refused",
                            path=collection.path,
                            query=dict(collection.query) or None,
                            reason=refusal,
                            detail=str(error),
                        )
                    self._on_access(collection, refusal)
                    self._refused += 1
                    return [], ""
                if error.status != 404:
                    raise
                log.warning("datastore.kubernetes.not_served", path=collection.path)
                return [], ""
            for obj in page.get("items") or ():
                if isinstance(obj, dict):
                    pair = self._pair(collection.resource, obj)
                    if pair is not None:
                        self._keys[(collection.resource.plural, object_id(obj))] = pair.key
                        pairs.append((pair.key, pair.value))
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                if self._refusals.pop(collection, None) is not None:
                    log.info("datastore.kubernetes.allowed", path=collection.path)
                self._on_access(collection, None)
                return pairs, str(meta.get("resourceVersion", ""))
            query = {
                **dict(collection.query),
                "limit": self._settings.list_page_size,
                "continue": meta["continue"],
            }

    def _events(self, resource: CalicoResource, kind: str, obj: Any) -> list[Event]:
        where = (resource.plural, object_id(obj))
        old = self._keys.pop(where, None)
        pair = None if kind == "DELETED" else self._pair(resource, obj)
        self._revision += 1
        events = []
        if old is not None and (pair is None or pair.key != old):
            events.append(Event(EventKind.DELETE, old, None, None, self._revision))
        if pair is not None:
            self._keys[where] = pair.key
            events.append(Event(EventKind.PUT, pair.key, pair.value, None, self._revision))
        if kind == "DELETED":
            self._logged.pop(where, None)
        return events

    async def _watch(
        self, collection: Collection, version: str, queue: asyncio.Queue[list[Event]]
    ) -> None:
        while True:
            query = {
                **dict(collection.query),
                "watch": "true",
                "allowWatchBookmarks": "true",
                "resourceVersion": version,
                "timeoutSeconds": self._settings.watch_timeout,
            }
            async for event in self._client.watch(collection.path, query):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone(collection.path)
                    raise ApiError(int(obj.get("code") or 0), str(obj.get("message", "")))
                version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    events = self._events(collection.resource, kind, obj)
                    if events:
                        await queue.put(events)

    async def _batches(self) -> AsyncGenerator[Batch, None]:
        self._client = ApiClient(self._settings)  # made here: its session needs the loop
        try:
            async for batch in self._follow():
                yield batch
        finally:
            await self._client.close()

    async def _follow(self) -> AsyncGenerator[Batch, None]:
        found: tuple[Collection, ...] = ()
        while True:
            tasks: list[asyncio.Task[None]] = []
            try:
                found = (
                    found
                    or self._collections
                    or await collections(self._client, self._settings.api_group)
                )
                self._keys.clear()
                self._refused = 0
                pairs: list[tuple[str, bytes]] = []
                versions = []
                for collection in found:
                    listed, version = await self._list(collection)
                    pairs.extend(listed)
                    versions.append(version)
                self._revision += 1
                self.resyncs += 1
                self._backoff.reset()
                log.info("datastore.kubernetes.listed", objects=len(pairs), resyncs=self.resyncs)
                yield Resync(tuple(pairs), self._revision)
                queue: asyncio.Queue[list[Event]] = asyncio.Queue()
                tasks = [
                    asyncio.create_task(self._watch(collection, version, queue))
                    for collection, version in zip(found, versions, strict=True)
                    if version
                ]
                if self._refused:  # rule 7: ask again later
                    retry = asyncio.create_task(asyncio.sleep(self._settings.reconnect_max))
                    tasks.append(retry)
                while True:
                    getter = asyncio.create_task(queue.get())
                    done, _ = await asyncio.wait(
                        [getter, *tasks], return_when=asyncio.FIRST_COMPLETED
                    )
                    if getter not in done:
                        getter.cancel()
                        if self._refused and retry in done:
                            raise _Gone("refused collections, asked again")
                        for task in done:
                            task.result()
                        raise ApiError(0, "a watch ended")
                    events = getter.result()
                    while not queue.empty():
                        events.extend(queue.get_nowait())
                    yield Changes(tuple(events), self._revision)
            except _Gone as gone:
                log.info("datastore.kubernetes.gone", path=str(gone))
            except ApiError as error:
                self.failures += 1
                log.warning("datastore.kubernetes.disconnected", reason=str(error))
                await asyncio.sleep(self._backoff.next_delay())
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with suppress(asyncio.CancelledError, Exception):
                        await task
