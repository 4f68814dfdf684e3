"""The datastore as a stream of complete snapshots, whichever kind it is (IO).

Rules:
1. A YAML file is read once at start (``open``): a file that does not read is bad configuration,
   a ``ConfigError`` naming ``--datastore``; then ``snapshots`` yields one snapshot per content
   change (``FileDatastore.watch``), and ``reload`` reads it again on request (SIGHUP).
2. etcd is listed and watched (``EtcdWatcher``): a resync replaces the cache, events update it,
   and every batch yields the cache's new snapshot; an outage keeps the last one (the watcher
   reconnects). ``reload`` has nothing to read again: the caller re-applies its last snapshot.
3. Every record the datastore rejects is counted once in the metrics, by resource.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from bgpd.config import ConfigError, DaemonConfig, EtcdSource, FileSource
from bgpd.datastore.cache import Cache, RejectedRecord
from bgpd.datastore.etcd import Changes, EtcdWatcher, EventKind, Resync
from bgpd.datastore.etcd_settings import calico_watch_keys
from bgpd.datastore.file import FileDatastore
from bgpd.datastore.schema import resource_of_key
from bgpd.metrics import Metrics
from peers.model import Snapshot


class DatastoreSource:
    """Snapshots from the configured datastore (rules 1-3)."""

    def __init__(self, config: DaemonConfig, metrics: Metrics) -> None:
        self._config = config
        self._metrics = metrics
        self._file: FileDatastore | None = None
        self._rejected = 0

    def open(self) -> Snapshot | None:
        """The first snapshot of a file datastore, read now (rule 1); None for etcd."""
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
        return snapshot

    def reload(self) -> Snapshot | None:
        """Read a file datastore again now; None when it did not change or for etcd."""
        if self._file is None:
            return None
        snapshot = self._file.reload()
        self._count_rejected(self._file.rejected, self._file.last_errors)
        return snapshot

    async def snapshots(self) -> AsyncIterator[Snapshot]:
        """Every new snapshot after ``open``'s (rules 1-2)."""
        if self._file is not None:
            async for snapshot in self._file.watch():
                self._count_rejected(self._file.rejected, self._file.last_errors)
                self._metrics.datastore_event("load")
                yield snapshot
        source = self._config.datastore
        assert isinstance(source, EtcdSource)
        cache = Cache()
        keys = calico_watch_keys(self._config.node)
        async with EtcdWatcher(source.settings, keys) as watcher:
            async for batch in watcher:
                if isinstance(batch, Resync):
                    self._metrics.datastore_event("resync")
                    snapshot = cache.load(batch.pairs, batch.revision)
                else:
                    assert isinstance(batch, Changes)
                    for event in batch.events:
                        self._metrics.datastore_event(event.kind.name.lower())
                        if event.kind == EventKind.DELETE:
                            cache.delete(event.key, event.mod_revision)
                        elif event.value is not None:
                            cache.put(event.key, event.value, event.mod_revision)
                    snapshot = cache.snapshot()
                self._count_rejected(cache.rejected, tuple(cache.last_errors))
                yield snapshot

    def _count_rejected(self, total: int, last_errors: tuple[RejectedRecord, ...]) -> None:
        """Rule 3: records rejected since the last count, by resource (the key's kind)."""
        fresh = total - self._rejected
        self._rejected = total
        for record in last_errors[-fresh:] if fresh > 0 else ():
            self._metrics.datastore_rejected(resource_of_key(record.key), "invalid")
