"""Rejected etcd records are logged with key and reason once per revision, not once per resync
(bgpd/datastore/source.py rule 4; issue 20 point 9)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import pytest
from structlog.testing import capture_logs

import bgpd.datastore.source as source_module
from bgpd.config import DaemonConfig, EtcdSource
from bgpd.datastore.cache import RejectedRecord
from bgpd.datastore.etcd import Changes, Event, EventKind, Resync
from bgpd.datastore.etcd_settings import EtcdSettings
from bgpd.datastore.source import DatastoreSource, RejectedKeys, etcd_key_of
from bgpd.metrics import Metrics

PEERS = "/calico/resources/v3/projectcalico.org/bgppeers/"
BAD_IP = b'{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","metadata":{"name":"p.1"},'
BAD_IP += b'"spec":{"peerIP":"10.99.0.300","asNumber":65001}}'
GOOD = b'{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","metadata":{"name":"p.1"},'
GOOD += b'"spec":{"peerIP":"10.99.0.3","asNumber":65001}}'


def test_etcd_key_of_a_field_path_with_dots_in_the_name() -> None:
    keys = {PEERS + "p", PEERS + "p.1"}
    assert etcd_key_of(PEERS + "p.1.spec.peerIP", keys) == PEERS + "p.1"
    assert etcd_key_of(PEERS + "p.1", keys) == PEERS + "p.1"
    assert etcd_key_of(PEERS + "q.spec.x", keys) == PEERS + "q.spec.x"  # not listed: as given


def test_rejected_keys_log_a_resync_only_what_changed() -> None:
    rejected = RejectedKeys()
    error = RejectedRecord(PEERS + "p.1.spec.peerIP", "bad peer address", 5)
    keys = {PEERS + "p.1"}
    assert rejected.resynced([error], keys) == [(PEERS + "p.1", error)]
    assert rejected.resynced([error], keys) == []  # the same bad value, listed again
    other = RejectedRecord(PEERS + "p.1.spec.asNumber", "out of range", 9)
    assert rejected.resynced([other], keys) == [(PEERS + "p.1", other)]
    rejected.changed(PEERS + "p.1", None)  # written good
    assert len(rejected) == 0
    assert rejected.resynced([other], keys) == [(PEERS + "p.1", other)]
    assert rejected.resynced([], keys) == [] and len(rejected) == 0


class FakeWatcher:
    batches: Sequence[Resync | Changes] = ()

    def __init__(self, *_: Any) -> None:
        pass

    async def __aenter__(self) -> AsyncIterator[Resync | Changes]:
        return self._iterate()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def _iterate(self) -> AsyncIterator[Resync | Changes]:
        for batch in self.batches:
            yield batch


async def test_source_logs_each_bad_revision_once(monkeypatch: pytest.MonkeyPatch) -> None:
    key = PEERS + "p.1"
    FakeWatcher.batches = (
        Resync(((key, BAD_IP), (PEERS + "junk", b"{")), 10),
        Resync(((key, BAD_IP), (PEERS + "junk", b"{")), 11),  # a reconnect: nothing new
        Changes((Event(EventKind.PUT, key, BAD_IP, GOOD, 12),), 12),  # the same bytes rewritten
        Changes((Event(EventKind.PUT, key, GOOD, BAD_IP, 13),), 13),
        Resync(((key, BAD_IP), (PEERS + "junk", b"{")), 14),  # bad again after being good
    )
    monkeypatch.setattr(source_module, "EtcdWatcher", FakeWatcher)
    settings = EtcdSettings.from_url("etcd://127.0.0.1:1")
    config = DaemonConfig(node="n1", datastore=EtcdSource(settings))
    source = DatastoreSource(config, Metrics())
    with capture_logs() as logs:
        snapshots = [snapshot async for snapshot in source.snapshots()]
    assert len(snapshots) == 5
    lines = [(e["key"], e.get("field"), e["revision"]) for e in logs if "key" in e]
    assert lines == [
        (key, "spec.peerIP", 10),
        (PEERS + "junk", None, 10),
        (key, "spec.peerIP", 12),
        (key, "spec.peerIP", 14),
    ]
    assert all(e["event"] == "datastore.etcd.rejected" and e["reason"] for e in logs)
