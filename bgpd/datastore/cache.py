"""The datastore cache: raw put/delete events in, an immutable ``Snapshot`` out.

Rules:
1. ``load`` replaces everything from a complete listing and marks the cache in sync; before
   the first complete listing ``in_sync`` is false and nothing may be advertised or withdrawn
   (confd's rule: partial config is never rendered, calico-bgp.md §1.4).
2. ``put``/``delete`` apply one watch event. Keys we do not read are ignored silently. A value
   that does not decode is counted in ``rejected`` and remembered in ``last_errors``, and the
   key keeps its last good value (``RejectedRecord.kept``), through a resync too: a malformed
   overwrite of a live BGPPeer must not tear its session down. This deliberately differs from
   libcalico's watcher cache, which treats such a value as a delete of the key; a key never
   good is absent either way, and a delete still deletes.
3. IPAM records carrying ``deleted: true`` are deletion markers (§1.3.1) and count as absent.
4. ``snapshot()`` is cheap when nothing changed and copies only the tables that did.
5. Pure: no IO, no clock. Revisions come from the caller (etcd ``mod_revision``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from bgpd.datastore.schema import Kind, Record, RecordError, RecordKey, decode_etcd, parse_key
from peers.model import AllocationBlock, BlockAffinity, IPAMConfig, Snapshot

MAX_REMEMBERED_ERRORS = 100


@dataclass(frozen=True, slots=True)
class DatastoreEvent:
    """One change as a datastore adapter reports it."""

    action: Literal["put", "delete"]
    key: str
    value: bytes = b""
    revision: int = 0


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    key: str
    reason: str
    revision: int
    kept: bool = False  # the key keeps its last good value (rule 2)


def record_identity(record_key: RecordKey) -> Hashable:
    """The key of a record inside its table (a ``Snapshot`` mapping key)."""
    if record_key.kind is Kind.BLOCK_AFFINITY:
        return (record_key.name, record_key.cidr)
    if record_key.kind is Kind.ALLOCATION_BLOCK:
        return record_key.cidr
    return record_key.name


def _is_deletion_marker(record: Record) -> bool:
    return isinstance(record, BlockAffinity | AllocationBlock) and record.deleted


class Cache:
    """Builds snapshots from a stream of datastore events (module rules 1-5)."""

    def __init__(self) -> None:
        self._tables: dict[Kind, dict[Hashable, Record]] = {kind: {} for kind in Kind}
        self._frozen: dict[Kind, Mapping[Any, Any]] = {}
        self._snapshot: Snapshot | None = None
        self.revision = 0
        self.in_sync = False
        self.rejected = 0
        self.last_errors: deque[RejectedRecord] = deque(maxlen=MAX_REMEMBERED_ERRORS)

    # -- input ------------------------------------------------------------------------------

    def load(self, pairs: Iterable[tuple[str, bytes]], revision: int) -> Snapshot:
        """Replace the whole content with a complete listing taken at ``revision``; a listed
        key whose value is rejected keeps the value it had before (rule 2)."""
        previous = self._tables
        self._tables = {kind: {} for kind in Kind}
        self._frozen.clear()
        self._snapshot = None
        for key, value in pairs:
            self._put(key, value, revision, previous)
        self.revision = revision
        self.in_sync = True
        return self.snapshot()

    def replace(self, records: Iterable[tuple[RecordKey, Record]], revision: int) -> Snapshot:
        """Like ``load`` for already decoded records (the YAML file datastore)."""
        for table in self._tables.values():
            table.clear()
        self._frozen.clear()
        self._snapshot = None
        for record_key, record in records:
            self._store(record_key, record)
        self.revision = revision
        self.in_sync = True
        return self.snapshot()

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> Cache:
        """A cache holding ``snapshot``'s records, in sync at its revision (``bgpd plan``
        applies a change to it)."""
        cache = cls()
        tables: dict[Kind, Mapping[Any, Record]] = {
            Kind.NODE: snapshot.nodes,
            Kind.IPPOOL: snapshot.pools,
            Kind.BGPPEER: snapshot.peers,
            Kind.BGPCONFIGURATION: snapshot.configs,
            Kind.BGPFILTER: snapshot.filters,
            Kind.BLOCK_AFFINITY: snapshot.affinities,
            Kind.ALLOCATION_BLOCK: snapshot.blocks,
        }
        for kind, records in tables.items():
            cache._tables[kind].update(records)
        if snapshot.ipam_config is not None:
            cache._tables[Kind.IPAM_CONFIG][""] = snapshot.ipam_config
        cache.revision = snapshot.revision
        cache.in_sync = True
        return cache

    def change(self, record_key: RecordKey, record: Record | None) -> bool:
        """Store a decoded record, or remove the key's (``record`` None); True when it changed."""
        self.revision += 1
        if record is None:
            return self._remove(record_key)
        return self._store(record_key, record)

    def put(self, key: str, value: bytes, revision: int) -> bool:
        """Apply a put; True when the snapshot may have changed."""
        changed = self._put(key, value, revision)
        self.revision = max(self.revision, revision)
        return changed

    def delete(self, key: str, revision: int) -> bool:
        """Apply a delete; True when a record went away."""
        self.revision = max(self.revision, revision)
        try:
            record_key = parse_key(key)
        except RecordError:
            return False
        return record_key is not None and self._remove(record_key)

    def apply(self, event: DatastoreEvent) -> bool:
        if event.action == "put":
            return self.put(event.key, event.value, event.revision)
        return self.delete(event.key, event.revision)

    def mark_out_of_sync(self) -> None:
        """The adapter lost its watch and is resyncing: hold changes until ``load``."""
        self.in_sync = False

    # -- output -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        if self._snapshot is None or self._snapshot.revision != self.revision:
            config = self._tables[Kind.IPAM_CONFIG].get("")
            self._snapshot = Snapshot(
                nodes=self._table(Kind.NODE),
                pools=self._table(Kind.IPPOOL),
                peers=self._table(Kind.BGPPEER),
                configs=self._table(Kind.BGPCONFIGURATION),
                filters=self._table(Kind.BGPFILTER),
                bfd_configs=self._table(Kind.BFDCONFIGURATION),
                affinities=self._table(Kind.BLOCK_AFFINITY),
                blocks=self._table(Kind.ALLOCATION_BLOCK),
                ipam_config=config if isinstance(config, IPAMConfig) else None,
                revision=self.revision,
            )
        return self._snapshot

    def __len__(self) -> int:
        return sum(len(table) for table in self._tables.values())

    # -- internals --------------------------------------------------------------------------

    def _table(self, kind: Kind) -> Mapping[Any, Any]:
        frozen = self._frozen.get(kind)
        if frozen is None:
            frozen = MappingProxyType(dict(self._tables[kind]))
            self._frozen[kind] = frozen
        return frozen

    def _touch(self, kind: Kind) -> None:
        self._frozen.pop(kind, None)
        self._snapshot = None

    def _put(
        self,
        key: str,
        value: bytes,
        revision: int,
        previous: Mapping[Kind, Mapping[Hashable, Record]] | None = None,
    ) -> bool:
        """One value; ``previous``: the tables before a ``load``, where a rejected key's last
        good value is found (else in the current tables, rule 2)."""
        try:
            decoded = decode_etcd(key, value)
        except RecordError as exc:
            kept = self._keep_last_good(key, previous)
            self.rejected += 1
            self.last_errors.append(RejectedRecord(exc.key, exc.reason, revision, kept))
            return False
        if decoded is None:
            return False
        return self._store(*decoded)

    def _keep_last_good(
        self, key: str, previous: Mapping[Kind, Mapping[Hashable, Record]] | None
    ) -> bool:
        """Rule 2: whether ``key`` has a good value to keep (restored after a ``load``)."""
        try:
            record_key = parse_key(key)
        except RecordError:
            return False
        if record_key is None:
            return False
        identity = record_identity(record_key)
        if previous is None:
            return identity in self._tables[record_key.kind]
        record = previous[record_key.kind].get(identity)
        if record is None:
            return False
        self._store(record_key, record)
        return True

    def _store(self, record_key: RecordKey, record: Record) -> bool:
        if _is_deletion_marker(record):
            return self._remove(record_key)
        table = self._tables[record_key.kind]
        identity = record_identity(record_key)
        if table.get(identity) == record:
            return False
        table[identity] = record
        self._touch(record_key.kind)
        return True

    def _remove(self, record_key: RecordKey) -> bool:
        table = self._tables[record_key.kind]
        if table.pop(record_identity(record_key), None) is None:
            return False
        self._touch(record_key.kind)
        return True
