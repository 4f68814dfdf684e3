"""The YAML file datastore against a real file: initial load, reload on change, bad documents
counted and skipped, unreadable YAML keeping the previous snapshot."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from pathlib import Path

from bgpd.datastore.file import FileDatastore, secret_dir_lookup
from peers.model import Snapshot

NODE = """apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: {name}}}
spec:
  bgp: {{ipv4Address: {ip}/24}}
"""
BAD_POOL = """apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: broken}
spec: {cidr: not-a-cidr}
"""


def write(path: Path, *documents: str) -> None:
    """Replace the file atomically (a new inode, as editors and ConfigMap updates do)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("---\n".join(documents))
    os.replace(tmp, path)


async def next_snapshot(stream: AsyncGenerator[Snapshot, None]) -> Snapshot:
    return await asyncio.wait_for(anext(stream), timeout=10)


async def test_load_then_reload_on_change(tmp_path: Path) -> None:
    path = tmp_path / "datastore.yaml"
    write(path, NODE.format(name="node1", ip="10.0.0.1"), BAD_POOL)
    store = FileDatastore(path, poll_interval=0.02)
    stream = store.watch()
    first = await next_snapshot(stream)
    assert list(first.nodes) == ["node1"]
    assert first.pools == {}
    assert store.rejected == 1
    assert "spec.cidr" in store.last_errors[0].key
    assert store.cache.in_sync

    write(path, NODE.format(name="node1", ip="10.0.0.1"), NODE.format(name="node2", ip="10.0.0.2"))
    second = await next_snapshot(stream)
    assert sorted(second.nodes) == ["node1", "node2"]
    assert second.revision > first.revision
    assert store.rejected == 1  # the bad pool is gone, nothing new rejected
    await stream.aclose()


async def test_unreadable_yaml_keeps_the_previous_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "datastore.yaml"
    write(path, NODE.format(name="node1", ip="10.0.0.1"))
    store = FileDatastore(path, poll_interval=0.02)
    first = store.reload()
    assert first is not None and list(first.nodes) == ["node1"]
    write(path, "kind: [unclosed\n")
    assert store.changed_on_disk()
    assert store.reload() is None
    assert store.rejected == 1 and "unreadable" in store.last_errors[-1].reason
    assert list(store.cache.snapshot().nodes) == ["node1"]
    write(path, NODE.format(name="node1", ip="10.0.0.1"))
    assert store.reload() is None  # same content as the last good load: no new snapshot


async def test_missing_file_then_created(tmp_path: Path) -> None:
    path = tmp_path / "later.yaml"
    store = FileDatastore(path, poll_interval=0.02)
    stream = store.watch()
    waiter = asyncio.ensure_future(next_snapshot(stream))
    await asyncio.sleep(0.05)
    assert not waiter.done() and store.rejected >= 1  # not there yet: counted, nothing yielded
    write(path, NODE.format(name="node9", ip="10.0.0.9"))
    snapshot = await waiter
    assert list(snapshot.nodes) == ["node9"]
    await stream.aclose()


def test_secret_dir_lookup(tmp_path: Path) -> None:
    (tmp_path / "bgp-secrets").mkdir()
    (tmp_path / "bgp-secrets" / "peer-password").write_text("hunter2\n")
    lookup = secret_dir_lookup(tmp_path)
    assert lookup("bgp-secrets", "peer-password") == "hunter2"
    assert lookup("bgp-secrets", "missing") is None
    assert lookup("..", "etc") is None
