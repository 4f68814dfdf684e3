"""The datastore as a stream of complete snapshots, whichever kind it is (IO).

Rules:
1. A YAML file is read once at start (``open``): a file that does not read is bad configuration,
   a ``ConfigError`` naming ``--datastore``; then ``snapshots`` yields one snapshot per content
   change (``FileDatastore.watch``), and ``reload`` reads it again on request (SIGHUP).
2. etcd is listed and watched (``EtcdWatcher``): a resync replaces the cache, events update it,
   and every batch yields the cache's new snapshot; an outage keeps the last one (the watcher
   reconnects). ``reload`` has nothing to read again: the caller re-applies its last snapshot.
   The Kubernetes API (``KubernetesWatcher``) yields the same batches of etcd-shaped pairs and
   is followed by the same loop.
3. Every record the datastore rejects is counted once in the metrics, by resource.
4. A rejected etcd record is logged with its key and reason once per revision of the key: a
   watch event's bad value always (it is a new revision), a resync's only when that key was not
   already rejected for the same reason (a resync re-lists the same bad values; logging them
   again every reconnect would be noise). A key written good or deleted is forgotten.
5. A rejected key keeps its last good value (``bgpd.datastore.cache`` rule 2); the log line says
   whether one was kept, and ``rejected_keys`` lists every currently rejected key with its
   reason for ``bgpd status``.
6. With Kubernetes API access (``bgpd.config`` rule 6), on either datastore, the Services and
   EndpointSlices (once a service range is configured, ``bgpd.calico.services`` rule 7) and
   the Secrets the snapshot's BGP passwords name are listed and watched
   beside the datastore (``kubernetes.service_collections``, ``secret_collections``: two
   watchers, so a new Secret name re-lists only Secrets), and every snapshot carries them
   (``Snapshot.services``, ``endpoint_slices``, ``secrets``); a change of either side yields a
   snapshot. The first snapshot waits at most ``CLUSTER_SYNC_WAIT`` seconds for their first
   listing (as confd waits for its route generator and secret watches), so a session does not
   start without its password only to reset when the Secret arrives. When the set of Secret
   names changes, the Secrets' watch starts again with the new set, and the snapshot that
   named the new Secret waits at most ``SECRET_SYNC_WAIT`` for it (confd's 0.5 s). An API
   outage keeps the last objects (nothing is withdrawn).
7. The Kubernetes client library (``bgpd.datastore.kubernetes``, kubernetes_asyncio: about
   45 MiB of resident memory and 0.3 s of start-up for its generated API) is imported only when
   Kubernetes API access is configured, never on an etcd or file datastore without it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Collection, Sequence
from contextlib import suppress
from types import MappingProxyType
from typing import TYPE_CHECKING

import structlog

from bgpd.calico.services import watch_services
from bgpd.config import ConfigError, DaemonConfig, EtcdSource, FileSource, KubernetesSource
from bgpd.datastore.cache import Cache, RejectedRecord
from bgpd.datastore.etcd import Batch, Changes, EtcdWatcher, EventKind, Resync
from bgpd.datastore.etcd_settings import calico_watch_keys
from bgpd.datastore.file import FileDatastore
from bgpd.datastore.kdd import CLUSTER_RESOURCES, SECRETS, ClusterObjects
from bgpd.datastore.schema import RecordError, resource_of_key
from bgpd.metrics import Metrics
from peers.model import Snapshot

if TYPE_CHECKING:
    from bgpd.datastore.kubernetes import Collection as ApiCollection

log = structlog.get_logger("bgpd.datastore")
CLUSTER_SYNC_WAIT = 2.0
CLUSTER_KINDS = {resource.plural: resource.kind for resource in CLUSTER_RESOURCES}
SECRET_SYNC_WAIT = 0.5


def secret_names(snapshot: Snapshot) -> frozenset[str]:
    """The Secrets the snapshot's BGP passwords name (BGPPeers, the mesh password)."""
    names = {p.password.name for p in snapshot.peers.values() if p.password is not None}
    config = snapshot.global_config
    if config is not None and config.node_mesh_password is not None:
        names.add(config.node_mesh_password.name)
    return frozenset(names)


class RejectedKeys:
    """The etcd keys whose current value was rejected, and which rejections to log (rule 4)."""

    def __init__(self) -> None:
        self._bad: dict[str, tuple[str, str]] = {}  # etcd key -> (where, reason)

    def __len__(self) -> int:
        return len(self._bad)

    def resynced(
        self, errors: Sequence[RejectedRecord], keys: Collection[str]
    ) -> list[tuple[str, RejectedRecord]]:
        """A complete listing of ``keys`` rejected ``errors``: those not already known, each
        with its etcd key. The listing replaces what was known."""
        bad: dict[str, tuple[str, str]] = {}
        fresh: list[tuple[str, RejectedRecord]] = []
        for error in errors:
            key = etcd_key_of(error.key, keys)
            bad[key] = (error.key, error.reason)
            if self._bad.get(key) != bad[key]:
                fresh.append((key, error))
        self._bad = bad
        return fresh

    def listing(self) -> tuple[str, ...]:
        """Rule 5: ``key: reason`` of every key whose current value is rejected, sorted."""
        return tuple(f"{key}: {reason}" for key, (_, reason) in sorted(self._bad.items()))

    def changed(self, key: str, error: RejectedRecord | None) -> None:
        """A watch event wrote ``key``: rejected with ``error``, or good or deleted (None)."""
        if error is None:
            self._bad.pop(key, None)
        else:
            self._bad[key] = (error.key, error.reason)


def etcd_key_of(where: str, keys: Collection[str]) -> str:
    """The etcd key a rejection names: ``where`` is the key, or the key and a field path after
    a dot (``.../bgppeers/p1.spec.peerIP``); keys may hold dots too, so the longest listed key
    that ``where`` starts with wins."""
    if where in keys:
        return where
    end = where.rfind(".")
    while end > 0:
        if where[:end] in keys:
            return where[:end]
        end = where.rfind(".", 0, end)
    return where


def _log_rejected(key: str, error: RejectedRecord, revision: int) -> None:
    fields = {"field": error.key[len(key) + 1 :]} if error.key != key else {}
    log.warning(
        "datastore.etcd.rejected",
        key=key,
        reason=error.reason,
        revision=revision,
        kept="last good value" if error.kept else "none",
        **fields,
    )


class DatastoreSource:
    """Snapshots from the configured datastore (rules 1-3)."""

    def __init__(self, config: DaemonConfig, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self._file: FileDatastore | None = None
        self._rejected = 0
        self._rejected_keys = RejectedKeys()
        self._base: Snapshot | None = None  # the datastore's last snapshot (rule 6)
        self._cluster = ClusterObjects(config.namespace) if config.kubernetes else None
        self._refusals: dict[ApiCollection, str] = {}  # logged API refusals (rule 6)

    def rejected_keys(self) -> tuple[str, ...]:
        """Rule 5: the etcd keys whose current value is rejected, with their reasons."""
        return self._rejected_keys.listing()

    def open(self) -> Snapshot | None:
        """The first snapshot of a file datastore, read now (rule 1); None for etcd, and for a
        file when the Kubernetes API is configured: ``snapshots`` then yields it once the
        cluster objects are read (rule 6)."""
        source = self._config.datastore
        if not isinstance(source, FileSource):
            return None
        datastore = self._file = FileDatastore(source.path)
        snapshot = datastore.reload()
        self._count_rejected(datastore.rejected, datastore.last_errors)
        if snapshot is None:
            errors = datastore.last_errors
            reason = errors[-1].reason if errors else "unreadable"
            raise ConfigError("--datastore", f"file:{source.path}", " ".join(reason.split()))
        self._metrics.datastore_event("load")
        self._base = snapshot
        return None if self._cluster is not None else snapshot

    def reload(self) -> Snapshot | None:
        """Read a file datastore again now; None when it did not change or for etcd."""
        if self._file is None:
            return None
        snapshot = self._file.reload()
        self._count_rejected(self._file.rejected, self._file.last_errors)
        if snapshot is None:
            return None
        self._base = snapshot
        return self._with_cluster(snapshot)

    def _with_cluster(self, snapshot: Snapshot) -> Snapshot:
        """Rule 6: ``snapshot`` with the cluster objects read so far."""
        cluster = self._cluster
        if cluster is None:
            return snapshot
        return dataclasses.replace(
            snapshot,
            services=MappingProxyType(cluster.services()),
            endpoint_slices=MappingProxyType(cluster.endpoint_slices()),
            secrets=cluster.secrets(),
        )

    async def snapshots(self) -> AsyncIterator[Snapshot]:
        """Every new snapshot after ``open``'s (rules 1, 2, 6)."""
        if self._cluster is None:
            async for snapshot in self._datastore_snapshots():
                yield snapshot
            return
        async for snapshot in self._merged(self._datastore_snapshots(), self._cluster):
            yield snapshot

    async def _merged(
        self, datastore: AsyncIterator[Snapshot], cluster: ClusterObjects
    ) -> AsyncIterator[Snapshot]:
        """Rule 6: the datastore's snapshots and the cluster objects' changes, as one stream."""
        changes: asyncio.Queue[Snapshot | None] = asyncio.Queue()  # None: the cluster changed
        services_synced, secrets_synced = asyncio.Event(), asyncio.Event()

        async def follow_datastore() -> None:
            async for snapshot in datastore:
                await changes.put(snapshot)

        async def follow_cluster(
            collections: tuple[ApiCollection, ...], synced: asyncio.Event
        ) -> None:
            from bgpd.datastore.kubernetes import KubernetesWatcher  # rule 7

            settings = self._config.kubernetes
            assert settings is not None
            if not collections:  # no Secret named: nothing to watch
                synced.set()
                return
            watcher = KubernetesWatcher(
                settings,
                self._config.node,
                self._kdd_rejected,
                collections,
                self._cluster_access,
                self._refusals,
            )
            async for batch in watcher:
                errors: list[str] = []
                if isinstance(batch, Resync):
                    errors = cluster.load(batch.pairs, (c.resource for c in collections))
                    synced.set()
                else:
                    assert isinstance(batch, Changes)
                    for event in batch.events:
                        if event.kind == EventKind.DELETE:
                            cluster.delete(event.key)
                        elif event.value is not None and (
                            error := cluster.put(event.key, event.value)
                        ):
                            errors.append(error)
                for error in errors:  # the API server validates these: rare, logged each time
                    kind = CLUSTER_KINDS.get(error.split(" ", 1)[0], "")
                    self._metrics.datastore_rejected(kind, "invalid")
                    log.warning("datastore.kubernetes.rejected", reason=error)
                await changes.put(None)

        def watch_secrets(names: frozenset[str]) -> asyncio.Task[None]:
            from bgpd.datastore.kubernetes import secret_collections  # rule 7

            secrets_synced.clear()
            collections = secret_collections(cluster.namespace, names)
            return asyncio.create_task(follow_cluster(collections, secrets_synced))

        async def wait_synced(limit: float) -> None:
            with suppress(TimeoutError):
                async with asyncio.timeout(limit):
                    await services_synced.wait()
                    await secrets_synced.wait()

        def start_services(snapshot: Snapshot) -> None:
            """Services are watched from the first snapshot with a service range (rule 6)."""
            if "services" not in tasks and watch_services(snapshot):
                from bgpd.datastore.kubernetes import service_collections  # rule 7

                services_synced.clear()
                collections = service_collections()
                tasks["services"] = asyncio.create_task(
                    follow_cluster(collections, services_synced)
                )

        names = secret_names(self._base) if self._base is not None else frozenset()
        services_synced.set()  # until they are wanted
        tasks = {
            "datastore": asyncio.create_task(follow_datastore()),
            "secrets": watch_secrets(names),
        }
        if self._base is not None:
            start_services(self._base)
        getter: asyncio.Task[Snapshot | None] | None = None
        try:
            if self._base is not None:  # a file's first snapshot, read by ``open``
                await wait_synced(CLUSTER_SYNC_WAIT)
                yield self._with_cluster(self._base)
            while True:
                getter = asyncio.create_task(changes.get())
                done, _ = await asyncio.wait(
                    [getter, tasks["datastore"]], return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    tasks["datastore"].result()  # a failure ends the stream as it would alone
                    return
                change = getter.result()
                if change is not None:
                    first = self._base is None
                    self._base = change
                    start_services(change)
                    if secret_names(change) != names:  # only the Secrets' watch starts again
                        names = secret_names(change)
                        tasks["secrets"].cancel()
                        with suppress(asyncio.CancelledError):
                            await tasks["secrets"]
                        tasks["secrets"] = watch_secrets(names)
                    await wait_synced(CLUSTER_SYNC_WAIT if first else SECRET_SYNC_WAIT)
                if self._base is not None:
                    yield self._with_cluster(self._base)
        finally:
            if getter is not None:
                getter.cancel()
            for task in tasks.values():
                task.cancel()
            for task in tasks.values():
                with suppress(asyncio.CancelledError, Exception):
                    await task

    def _cluster_access(self, collection: ApiCollection, refusal: str | None) -> None:
        """``kubernetes`` rule 7: a Secret the API refused (or allowed again) is that peer's
        status (``SecretTable.reason``)."""
        if self._cluster is not None and collection.resource is SECRETS:
            selector = dict(collection.query).get("fieldSelector", "")
            self._cluster.access(selector.removeprefix("metadata.name="), refusal)

    async def _datastore_snapshots(self) -> AsyncIterator[Snapshot]:
        """Rules 1-2."""
        if self._file is not None:
            async for snapshot in self._file.watch():
                self._count_rejected(self._file.rejected, self._file.last_errors)
                self._metrics.datastore_event("load")
                yield snapshot
        source = self._config.datastore
        if isinstance(source, KubernetesSource):
            from bgpd.datastore.kubernetes import KubernetesWatcher  # rule 7

            kubernetes = KubernetesWatcher(source.settings, self._config.node, self._kdd_rejected)
            async for snapshot in self._follow(kubernetes):
                yield snapshot
        assert isinstance(source, EtcdSource)
        keys = calico_watch_keys(self._config.node)
        async with EtcdWatcher(source.settings, keys) as watcher:
            async for snapshot in self._follow(watcher):
                yield snapshot

    def _kdd_rejected(self, kind: str, error: RecordError) -> None:
        """Rule 3 for a Kubernetes object whose identity did not read (``kubernetes`` rule 5)."""
        self._metrics.datastore_rejected(kind, "invalid")

    async def _follow(self, batches: AsyncIterable[Batch]) -> AsyncIterator[Snapshot]:
        """A snapshot per batch of a listing and watching datastore (rules 2-4)."""
        cache = Cache()
        rejected = self._rejected_keys
        async for batch in batches:
            if isinstance(batch, Resync):
                self._metrics.datastore_event("resync")
                before = cache.rejected
                snapshot = cache.load(batch.pairs, batch.revision)
                self._log_resync(rejected, cache, cache.rejected - before, batch)
            else:
                assert isinstance(batch, Changes)
                for event in batch.events:
                    self._metrics.datastore_event(event.kind.name.lower())
                    before = cache.rejected
                    if event.kind == EventKind.DELETE:
                        cache.delete(event.key, event.mod_revision)
                    elif event.value is not None:
                        cache.put(event.key, event.value, event.mod_revision)
                    error = cache.last_errors[-1] if cache.rejected > before else None
                    rejected.changed(event.key, error)
                    if error is not None:
                        _log_rejected(event.key, error, event.mod_revision)
                snapshot = cache.snapshot()
            self._count_rejected(cache.rejected, tuple(cache.last_errors))
            yield snapshot

    @staticmethod
    def _log_resync(rejected: RejectedKeys, cache: Cache, count: int, batch: Resync) -> None:
        """Rule 4 for a listing that rejected ``count`` records (the newest kept errors)."""
        errors = tuple(cache.last_errors)[-count:] if count > 0 else ()
        keys = {key for key, _ in batch.pairs} if errors else set()
        for key, error in rejected.resynced(errors, keys):
            _log_rejected(key, error, batch.revision)
        if count > len(errors):
            log.warning(
                "datastore.etcd.rejected_unlisted",
                count=count - len(errors),
                reason="more rejected records than are remembered",
                revision=batch.revision,
            )

    def _count_rejected(self, total: int, last_errors: tuple[RejectedRecord, ...]) -> None:
        """Rule 3: records rejected since the last count, by resource (the key's kind)."""
        fresh = total - self._rejected
        self._rejected = total
        for record in last_errors[-fresh:] if fresh > 0 else ():
            self._metrics.datastore_rejected(resource_of_key(record.key), "invalid")
