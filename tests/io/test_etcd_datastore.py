"""The etcd v3 adapter against a real etcd (bgpd.datastore.etcd).

Every test watches Calico's keys (calico-bgp.md §1.2-§1.4) through ``EtcdWatcher`` and checks the
delivered batches against what etcd holds. A ``Recorder`` applies batches to a dict and checks
the delivery invariants on every batch: batch revisions strictly increase, every event of a
``Changes`` is newer than everything delivered before it, and a ``Resync`` never goes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import aetcd
import pytest
from etcd_server import TLS_ROOT_PASSWORD, EtcdServer, free_port
from structlog.testing import capture_logs

from bgpd.config import DaemonConfig, EtcdSource
from bgpd.datastore.etcd import Changes, EtcdWatcher, Event, EventKind, KeySet, Resync
from bgpd.datastore.etcd_settings import Endpoint, EtcdSettings, calico_watch_keys
from bgpd.datastore.source import DatastoreSource
from bgpd.errors import ConfigError
from bgpd.metrics import Metrics

NODES = "/calico/resources/v3/projectcalico.org/nodes/"
IPPOOLS = "/calico/resources/v3/projectcalico.org/ippools/"
BGPPEERS = "/calico/resources/v3/projectcalico.org/bgppeers/"
BGPCONFIGS = "/calico/resources/v3/projectcalico.org/bgpconfigurations/"
FELIXCONFIGS = "/calico/resources/v3/projectcalico.org/felixconfigurations/"
IPAM_CONFIG = "/calico/ipam/v2/config"
WAIT_LIMIT = 60.0  # a hang guard, not a timing assertion


def affinity_key(node: str, cidr: str) -> str:
    return f"/calico/ipam/v2/host/{node}/ipv4/block/{cidr.replace('/', '-')}"


def node_value(name: str, address: str) -> bytes:
    return (
        b'{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{"name":"'
        + name.encode()
        + b'"},"spec":{"bgp":{"ipv4Address":"'
        + address.encode()
        + b'"}}}'
    )


def settings_for(server: EtcdServer, **overrides: float) -> EtcdSettings:
    base = EtcdSettings.from_url(f"etcd://127.0.0.1:{server.client_port}")
    return replace(base, reconnect_initial=0.1, reconnect_max=0.5, **overrides)


class Recorder:
    """Consumes a watcher in a task, applies batches to ``state``, checks the invariants."""

    def __init__(self, watcher: EtcdWatcher) -> None:
        self.watcher = watcher
        self.batches: list[Resync | Changes] = []
        self.state: dict[str, bytes] = {}
        self.violations: list[str] = []
        self.seen: set[tuple[str, int]] = set()
        self._task: asyncio.Task[None] | None = None

    async def _consume(self) -> None:
        delivered = 0
        async for batch in self.watcher:
            if isinstance(batch, Resync):
                if batch.revision < delivered:
                    self.violations.append(f"resync at {batch.revision} after {delivered}")
                self.state = dict(batch.pairs)
            else:
                self._check_changes(batch, delivered)
                for event in batch.events:
                    if event.kind is EventKind.PUT:
                        assert event.value is not None
                        self.state[event.key] = event.value
                    else:
                        self.state.pop(event.key, None)
            delivered = batch.revision
            self.batches.append(batch)

    def _check_changes(self, batch: Changes, delivered: int) -> None:
        if batch.revision <= delivered or not batch.events:
            self.violations.append(f"changes at {batch.revision} after {delivered}")
        previous = delivered
        for event in batch.events:
            in_order = previous <= event.mod_revision <= batch.revision
            if not in_order or event.mod_revision <= delivered:
                self.violations.append(f"{event.key}@{event.mod_revision} out of order")
            if (event.key, event.mod_revision) in self.seen:
                self.violations.append(f"{event.key}@{event.mod_revision} delivered twice")
            self.seen.add((event.key, event.mod_revision))
            previous = event.mod_revision

    def start(self) -> None:
        self._task = asyncio.create_task(self._consume())

    async def stop(self) -> None:
        assert self._task is not None
        if self._task.done():
            self._task.result()  # surface a failure of the consumer
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self.watcher.aclose()

    @property
    def changes(self) -> list[Changes]:
        return [batch for batch in self.batches if isinstance(batch, Changes)]

    @property
    def events(self) -> list[Event]:
        return [event for batch in self.changes for event in batch.events]

    async def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        async with asyncio.timeout(WAIT_LIMIT):
            while not condition():
                if self._task is not None and self._task.done():
                    self._task.result()
                    raise AssertionError(f"watcher ended while waiting for {what}")
                await asyncio.sleep(0.02)


@asynccontextmanager
async def recording(settings: EtcdSettings, keys: tuple[str, ...]) -> AsyncIterator[Recorder]:
    recorder = Recorder(EtcdWatcher(settings, keys))
    recorder.start()
    try:
        yield recorder
    finally:
        await recorder.stop()
    assert recorder.violations == []


async def etcd_contents(client: aetcd.Client, keys: tuple[str, ...]) -> dict[str, bytes]:
    """What etcd holds under the watched keys, read independently of the adapter."""
    key_set = KeySet(keys)
    contents: dict[str, bytes] = {}
    for start, end in key_set.ranges:
        for kv in await client.get_range(start, end):
            contents[kv.key.decode()] = kv.value
    return contents


async def put_all(client: aetcd.Client, items: Mapping[str, bytes]) -> int:
    """Write ``items`` in transactions of 128 puts (etcd's --max-txn-ops); the last revision."""
    pairs = list(items.items())
    revision = 0
    for offset in range(0, len(pairs), 128):
        chunk = pairs[offset : offset + 128]
        puts = [client.transactions.put(key.encode(), value) for key, value in chunk]
        _, responses = await client.transaction(compare=[], success=puts, failure=[])
        revision = responses[-1].response_put.header.revision
    return revision


async def test_initial_list_is_one_consistent_resync(
    etcd_client: aetcd.Client, etcd_server: EtcdServer
) -> None:
    keys = calico_watch_keys("node1")
    watched = {
        NODES + "node1": node_value("node1", "10.0.0.1/24"),
        IPPOOLS + "default-ipv4-ippool": b'{"kind":"IPPool"}',
        BGPCONFIGS + "default": b'{"kind":"BGPConfiguration"}',
        "/calico/resources/v3/projectcalico.org/bfdconfigurations/default": b'{"spec":{}}',
        affinity_key("node1", "10.244.1.0/26"): b'{"state":"confirmed","deleted":false}',
        IPAM_CONFIG: b'{"strict_affinity":false}',
        "/calico/ipam/v2/assignment/ipv4/block/10.244.1.0-26": b'{"cidr":"10.244.1.0/26"}',
    }
    unwatched = {
        FELIXCONFIGS + "default": b"{}",
        "/calico/ipam/v2/handle/k8s-pod-network.abc": b"{}",
        "/calico/ipam/v2/configuration": b"{}",
        affinity_key("node2", "10.244.2.0/26"): b"{}",
    }
    revision = await put_all(etcd_client, {**watched, **unwatched})

    async with recording(settings_for(etcd_server), keys) as recorder:
        await recorder.wait_for(lambda: bool(recorder.batches), "the initial list")
        first = recorder.batches[0]
        assert isinstance(first, Resync)
        assert dict(first.pairs) == watched
        assert first.revision == revision
        assert recorder.watcher.statistics().resyncs == 1


async def test_live_changes_carry_values_and_previous_values(
    etcd_client: aetcd.Client, etcd_server: EtcdServer
) -> None:
    keys = calico_watch_keys("node1")
    await etcd_client.put((NODES + "node1").encode(), node_value("node1", "10.0.0.1/24"))
    await etcd_client.put((IPPOOLS + "pool").encode(), b'{"v":1}')

    async with recording(settings_for(etcd_server), keys) as recorder:
        await recorder.wait_for(lambda: bool(recorder.batches), "the initial list")
        await etcd_client.put((FELIXCONFIGS + "default").encode(), b"{}")  # not watched
        await etcd_client.put((NODES + "node1").encode(), node_value("node1", "10.0.0.9/24"))
        await etcd_client.delete((IPPOOLS + "pool").encode())
        created = await etcd_client.put((BGPPEERS + "tor").encode(), b'{"peerIP":"10.0.0.254"}')
        await recorder.wait_for(lambda: len(recorder.events) == 3, "three events")

        assert [(e.kind, e.key, e.value, e.prev_value) for e in recorder.events] == [
            (
                EventKind.PUT,
                NODES + "node1",
                node_value("node1", "10.0.0.9/24"),
                node_value("node1", "10.0.0.1/24"),
            ),
            (EventKind.DELETE, IPPOOLS + "pool", None, b'{"v":1}'),
            (EventKind.PUT, BGPPEERS + "tor", b'{"peerIP":"10.0.0.254"}', None),
        ]
        assert recorder.changes[-1].revision == created.header.revision
        assert recorder.state == await etcd_contents(etcd_client, keys)
        statistics = recorder.watcher.statistics()
        assert statistics.connected
        assert statistics.events == 3
        assert statistics.revision == created.header.revision


async def test_malformed_json_is_delivered_as_raw_bytes(
    etcd_client: aetcd.Client, etcd_server: EtcdServer
) -> None:
    keys = calico_watch_keys("node1")
    listed, watched = b'{"kind": "Node", "spec": ', b"\xff\xfe not json at all"
    await etcd_client.put((NODES + "broken").encode(), listed)

    async with recording(settings_for(etcd_server), keys) as recorder:
        await recorder.wait_for(lambda: bool(recorder.batches), "the initial list")
        await etcd_client.put((BGPPEERS + "broken").encode(), watched)
        await recorder.wait_for(lambda: bool(recorder.events), "the event")

        first = recorder.batches[0]
        assert isinstance(first, Resync)
        assert first.pairs == ((NODES + "broken", listed),)
        assert recorder.events[0].value == watched
        assert recorder.watcher.statistics().connected


async def test_node_name_prefix_of_another_sees_only_its_own_affinities(
    etcd_client: aetcd.Client, etcd_server: EtcdServer
) -> None:
    node1 = {affinity_key("node1", "10.244.1.0/26"): b'{"state":"confirmed"}'}
    node10 = {affinity_key("node10", "10.244.10.0/26"): b'{"state":"confirmed"}'}
    await put_all(etcd_client, {**node1, **node10})
    settings = settings_for(etcd_server)

    async with (
        recording(settings, calico_watch_keys("node1")) as one,
        recording(settings, calico_watch_keys("node10")) as ten,
    ):
        await one.wait_for(lambda: bool(one.batches), "node1's list")
        await ten.wait_for(lambda: bool(ten.batches), "node10's list")
        assert one.state == node1
        assert ten.state == node10

        live1 = {affinity_key("node1", "10.244.1.64/26"): b'{"state":"pending"}'}
        live10 = {affinity_key("node10", "10.244.10.64/26"): b'{"state":"pending"}'}
        await put_all(etcd_client, {**live10, **live1})
        await one.wait_for(lambda: len(one.state) == 2, "node1's new affinity")
        await ten.wait_for(lambda: len(ten.state) == 2, "node10's new affinity")
        assert one.state == {**node1, **live1}
        assert ten.state == {**node10, **live10}


async def test_ten_thousand_affinities_loaded_and_watched(
    etcd_client: aetcd.Client, etcd_server: EtcdServer
) -> None:
    keys = calico_watch_keys("node1")
    affinities = {
        affinity_key("node1", f"10.{i // 256}.{i % 256}.0/26"): b'{"state":"confirmed"}'
        for i in range(10_000)
    }
    settings = settings_for(etcd_server)

    async with recording(settings, keys) as watching:
        await watching.wait_for(lambda: bool(watching.batches), "the initial list")
        last_revision = await put_all(etcd_client, affinities)
        await watching.wait_for(lambda: len(watching.state) == 10_000, "10k affinities")

        assert watching.state == affinities
        assert len(watching.events) == 10_000
        # A transaction is one revision; its 128 puts are never split across batches.
        batches_of_revision: dict[int, set[int]] = {}
        for index, batch in enumerate(watching.changes):
            for event in batch.events:
                batches_of_revision.setdefault(event.mod_revision, set()).add(index)
        assert len(batches_of_revision) == -(-10_000 // 128)
        assert all(len(indexes) == 1 for indexes in batches_of_revision.values())
        assert watching.watcher.statistics().revision == last_revision

    async with recording(settings, keys) as listing:
        await listing.wait_for(lambda: bool(listing.batches), "the 10k list")
        resync = listing.batches[0]
        assert isinstance(resync, Resync)
        assert len(resync.pairs) == 10_000
        assert dict(resync.pairs) == affinities
        assert resync.revision == last_revision


async def contents_at(
    client: aetcd.Client, keys: tuple[str, ...], revision: int
) -> dict[str, bytes]:
    """What etcd held under the watched keys at ``revision`` (a raw pinned range read)."""
    contents: dict[str, bytes] = {}
    for start, end in KeySet(keys).ranges:
        request = aetcd.rpc.RangeRequest(key=start, range_end=end, revision=revision)
        response = await client.kvstub.Range(request)
        contents.update((kv.key.decode(), kv.value) for kv in response.kvs)
    return contents


async def test_paged_list_is_pinned_to_one_revision_under_concurrent_writes(
    etcd_client: aetcd.Client, etcd_server: EtcdServer
) -> None:
    keys = calico_watch_keys("node1")
    await put_all(etcd_client, {affinity_key("node1", f"10.9.{i}.0/26"): b"{}" for i in range(200)})
    settings = replace(settings_for(etcd_server), list_page_size=3)
    stop_writing = asyncio.Event()

    async def write_continuously() -> None:
        for i in range(100_000):
            if stop_writing.is_set():
                return
            key = affinity_key("node1", f"10.9.{i % 200}.0/26")
            await etcd_client.put(key.encode(), str(i).encode())
            await etcd_client.put((BGPPEERS + f"p{i}").encode(), b"{}")

    writer = asyncio.create_task(write_continuously())
    try:
        async with recording(settings, keys) as recorder:
            await recorder.wait_for(lambda: bool(recorder.batches), "the paged list")
    finally:
        stop_writing.set()
        await writer
    first = recorder.batches[0]
    assert isinstance(first, Resync)
    assert dict(first.pairs) == await contents_at(etcd_client, keys, first.revision)
    assert len(first.pairs) >= 200


async def _write_while_watcher_is_away(
    server: EtcdServer, recorder: Recorder, *, compact: bool
) -> tuple[str, str]:
    """Kill etcd, bring it up on a port the watcher does not know, write (and maybe compact)
    there, kill it again and restart it where the watcher looks. Returns a deleted and an
    updated key."""
    batches_before = len(recorder.batches)
    server.kill()
    await recorder.wait_for(lambda: not recorder.watcher.statistics().connected, "the loss")
    hidden_port = free_port()
    server.start(client_port=hidden_port)
    async with aetcd.Client("127.0.0.1", hidden_port, timeout=30) as hidden:
        await hidden.put((NODES + "node2").encode(), node_value("node2", "10.0.0.22/24"))
        await hidden.delete((IPPOOLS + "pool-b").encode())
        await put_all(hidden, {affinity_key("node1", f"10.7.{i}.0/26"): b"{}" for i in range(300)})
        if compact:
            status = await hidden.put(b"/calico/felix/v2/marker", b"x")
            await hidden.compact(status.header.revision, physical=True)
    assert len(recorder.batches) == batches_before, "a batch was emitted while disconnected"
    server.kill()
    server.start()
    return IPPOOLS + "pool-b", NODES + "node2"


async def test_etcd_restart_mid_watch_resumes_without_loss_or_duplicates(
    etcd_client: aetcd.Client, etcd_server: EtcdServer
) -> None:
    keys = calico_watch_keys("node1")
    await put_all(etcd_client, {IPPOOLS + "pool-a": b"{}", IPPOOLS + "pool-b": b'{"b":1}'})

    async with recording(settings_for(etcd_server), keys) as recorder:
        await recorder.wait_for(lambda: bool(recorder.batches), "the initial list")
        await etcd_client.put((NODES + "node2").encode(), node_value("node2", "10.0.0.2/24"))
        await recorder.wait_for(lambda: bool(recorder.events), "the first event")

        deleted, updated = await _write_while_watcher_is_away(etcd_server, recorder, compact=False)

        async with aetcd.Client("127.0.0.1", etcd_server.client_port, timeout=30) as client:
            await client.put((BGPPEERS + "after").encode(), b"{}")
            truth = await etcd_contents(client, keys)
        await recorder.wait_for(lambda: recorder.state == truth, "the final state")

        statistics = recorder.watcher.statistics()
        assert statistics.resyncs == 1  # resumed from the last revision, not listed again
        assert statistics.reconnects == 1
        assert statistics.connected
        missed = {event.key: event for event in recorder.events}
        assert missed[deleted].kind is EventKind.DELETE
        assert missed[deleted].prev_value == b'{"b":1}'
        assert missed[updated].prev_value == node_value("node2", "10.0.0.2/24")
        assert len(recorder.seen) == len(recorder.events)


async def test_compaction_while_disconnected_gives_a_new_resync(
    etcd_client: aetcd.Client, etcd_server: EtcdServer
) -> None:
    keys = calico_watch_keys("node1")
    await put_all(etcd_client, {IPPOOLS + "pool-a": b"{}", IPPOOLS + "pool-b": b'{"b":1}'})

    async with recording(settings_for(etcd_server), keys) as recorder:
        await recorder.wait_for(lambda: bool(recorder.batches), "the initial list")
        first_revision = recorder.batches[0].revision

        deleted, updated = await _write_while_watcher_is_away(etcd_server, recorder, compact=True)

        async with aetcd.Client("127.0.0.1", etcd_server.client_port, timeout=30) as client:
            truth = await etcd_contents(client, keys)
        await recorder.wait_for(
            lambda: recorder.watcher.statistics().resyncs == 2, "the second resync"
        )
        await recorder.wait_for(lambda: recorder.state == truth, "the final state")

        resyncs = [batch for batch in recorder.batches if isinstance(batch, Resync)]
        assert len(resyncs) == 2
        assert resyncs[1].revision > first_revision
        assert dict(resyncs[1].pairs) == truth
        assert deleted not in truth and updated in truth
        assert recorder.watcher.statistics().reconnects == 1


async def test_hung_etcd_is_detected_by_keepalive_and_the_watch_resumes(
    etcd_client: aetcd.Client, etcd_server: EtcdServer
) -> None:
    keys = calico_watch_keys("node1")
    # 5 s is the shortest ping interval etcd accepts (--grpc-keepalive-min-time).
    settings = settings_for(etcd_server, keepalive_time=5.0, keepalive_timeout=1.0)

    async with recording(settings, keys) as recorder:
        await recorder.wait_for(lambda: bool(recorder.batches), "the initial list")
        await etcd_client.put((NODES + "node1").encode(), b'{"v":1}')
        await recorder.wait_for(lambda: bool(recorder.events), "the watch to be live")

        etcd_server.pause()
        try:
            await recorder.wait_for(
                lambda: not recorder.watcher.statistics().connected, "keepalive to notice"
            )
        finally:
            etcd_server.resume()
        await etcd_client.put((NODES + "node1").encode(), b'{"v":2}')
        await recorder.wait_for(lambda: recorder.state[NODES + "node1"] == b'{"v":2}', "resume")

        statistics = recorder.watcher.statistics()
        assert (statistics.resyncs, statistics.reconnects) == (1, 1)
        assert [event.prev_value for event in recorder.events] == [None, b'{"v":1}']


async def test_endpoints_are_tried_in_order(
    etcd_client: aetcd.Client, etcd_server: EtcdServer
) -> None:
    keys = calico_watch_keys("node1")
    await etcd_client.put(IPAM_CONFIG.encode(), b'{"strict_affinity":true}')
    dead = free_port()  # nothing listens there
    settings = replace(
        EtcdSettings.from_env(
            {"ETCD_ENDPOINTS": f"http://127.0.0.1:{dead},127.0.0.1:{etcd_server.client_port}"}
        ),
        reconnect_initial=0.1,
    )

    async with recording(settings, keys) as recorder:
        await recorder.wait_for(lambda: bool(recorder.batches), "the list via the second endpoint")
        assert recorder.state == {IPAM_CONFIG: b'{"strict_affinity":true}'}
        assert recorder.watcher.statistics().endpoint == f"127.0.0.1:{etcd_server.client_port}"


def tls_environ(server: EtcdServer, password: str) -> dict[str, str]:
    assert server.tls is not None
    return {
        "ETCD_ENDPOINTS": server.url,
        "ETCD_CA_CERT_FILE": str(server.tls.ca),
        "ETCD_CERT_FILE": str(server.tls.client_cert),
        "ETCD_KEY_FILE": str(server.tls.client_key),
        "ETCD_USERNAME": "root",
        "ETCD_PASSWORD": password,
    }


async def test_tls_and_auth_from_calico_variables(etcd_tls_server: EtcdServer) -> None:
    keys = calico_watch_keys("node1")
    root = ("--user", f"root:{TLS_ROOT_PASSWORD}")
    etcd_tls_server.etcdctl(*root, "put", NODES + "node1", '{"kind":"Node"}')
    settings = replace(
        EtcdSettings.from_env(tls_environ(etcd_tls_server, TLS_ROOT_PASSWORD)),
        reconnect_initial=0.1,
    )
    assert settings.endpoints[0].tls

    async with recording(settings, keys) as recorder:
        await recorder.wait_for(lambda: bool(recorder.batches), "the list over TLS")
        assert recorder.state == {NODES + "node1": b'{"kind":"Node"}'}
        etcd_tls_server.etcdctl(*root, "put", IPPOOLS + "pool", "{}")
        await recorder.wait_for(lambda: bool(recorder.events), "a change over TLS")
        assert recorder.events[0].key == IPPOOLS + "pool"


async def test_wrong_password_keeps_the_watcher_disconnected(etcd_tls_server: EtcdServer) -> None:
    settings = replace(
        EtcdSettings.from_env(tls_environ(etcd_tls_server, "not-the-password")),
        reconnect_initial=0.05,
        reconnect_max=0.1,
    )
    async with recording(settings, calico_watch_keys("node1")) as recorder:
        await recorder.wait_for(
            lambda: recorder.watcher.statistics().failures >= 3, "failed attempts"
        )
        statistics = recorder.watcher.statistics()
        assert not statistics.connected
        assert statistics.resyncs == 0
        assert recorder.batches == []


def test_settings_from_env_reads_calico_variables(tmp_path: Path) -> None:
    files = {name: tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem")}
    for path in files.values():
        path.write_text("x")
    settings = EtcdSettings.from_env(
        {
            "ETCD_ENDPOINTS": "https://10.0.0.1:2379, http://[fd00::1]:2379,etcd.local:4001",
            "ETCD_CA_CERT_FILE": str(files["ca.pem"]),
            "ETCD_CERT_FILE": str(files["cert.pem"]),
            "ETCD_KEY_FILE": str(files["key.pem"]),
            "ETCD_USERNAME": "calico",
            "ETCD_PASSWORD": "s3cret",
        }
    )
    assert settings.endpoints == (
        Endpoint("10.0.0.1", 2379, tls=True),
        Endpoint("fd00::1", 2379, tls=False),
        Endpoint("etcd.local", 4001, tls=True),
    )
    assert settings.endpoints[1].target == "[fd00::1]:2379"
    assert (settings.username, settings.password) == ("calico", "s3cret")
    assert settings.ca_cert_file == str(files["ca.pem"])
    assert "s3cret" not in repr(settings)
    for unset in ({}, {"ETCD_ENDPOINTS": " "}):  # Calico: "no etcd endpoints specified"
        with pytest.raises(ConfigError, match="ETCD_ENDPOINTS.*no etcd endpoints specified"):
            EtcdSettings.from_env(unset)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ETCD_ENDPOINTS": "http://127.0.0.1:notaport"}, "ETCD_ENDPOINTS"),
        ({"ETCD_ENDPOINTS": "ftp://127.0.0.1:2379"}, "ETCD_ENDPOINTS"),
        ({"ETCD_ENDPOINTS": "127.0.0.1"}, "ETCD_ENDPOINTS"),
        ({"ETCD_ENDPOINTS": "127.0.0.1:70000"}, "ETCD_ENDPOINTS"),
        ({"ETCD_ENDPOINTS": "127.0.0.1:2379,,127.0.0.2:2379"}, "ETCD_ENDPOINTS"),
        ({"ETCD_CA_CERT_FILE": "/nonexistent/hB-ca.pem"}, "ETCD_CA_CERT_FILE"),
        ({"ETCD_KEY_FILE": "/nonexistent/hB-key.pem"}, "ETCD_KEY_FILE"),
        ({"ETCD_USERNAME": "calico"}, "ETCD_PASSWORD"),
        ({"ETCD_DISCOVERY_SRV": "example.com"}, "ETCD_DISCOVERY_SRV"),
    ],
)
def test_settings_from_env_reject_bad_values_naming_the_variable(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        EtcdSettings.from_env(environ)
    message = str(raised.value)
    assert named in message
    assert any(value in message for value in environ.values())


def test_settings_from_url() -> None:
    settings = EtcdSettings.from_url("etcd://127.0.0.1:23790,10.0.0.2:2379")
    assert settings.endpoints == (
        Endpoint("127.0.0.1", 23790, tls=False),
        Endpoint("10.0.0.2", 2379, tls=False),
    )
    assert EtcdSettings.from_url("etcds://[::1]:2379").endpoints == (Endpoint("::1", 2379, True),)
    for bad in ("http://x:1", "etcd://", "etcd://h:1,", "etcd://h"):
        with pytest.raises(ConfigError, match="datastore URL") as raised:
            EtcdSettings.from_url(bad)
        assert repr(bad) in str(raised.value)


def test_watched_keys_follow_calico_list_semantics() -> None:
    key_set = KeySet(calico_watch_keys("node1"))
    assert key_set.matches(affinity_key("node1", "10.0.0.0/26").encode())
    assert not key_set.matches(affinity_key("node10", "10.0.0.0/26").encode())
    assert key_set.matches(IPAM_CONFIG.encode())
    assert not key_set.matches(b"/calico/ipam/v2/configuration")
    assert not key_set.matches((FELIXCONFIGS + "default").encode())
    assert key_set.cover == (
        b"/calico/ipam/v2/assignment/",
        b"/calico/resources/v3/projectcalico.org/nodes0",
    )
    with pytest.raises(ValueError, match="node1/x"):
        calico_watch_keys("node1/x")


PEER_GOOD = (
    b'{"kind":"BGPPeer","apiVersion":"projectcalico.org/v3","metadata":{"name":"p1"},'
    b'"spec":{"peerIP":"10.99.0.3","asNumber":65001}}'
)


async def test_a_malformed_overwrite_keeps_the_peers_last_good_value(
    etcd_client: aetcd.Client, etcd_server: EtcdServer
) -> None:
    """Issue 20 point 10 (cache rule 2, source rule 5): a live BGPPeer overwritten with bad JSON
    stays as it was, named in ``rejected_keys`` and the log, until a good value comes."""
    key = BGPPEERS + "p1"
    await put_all(
        etcd_client, {NODES + "node1": node_value("node1", "10.0.0.1/24"), key: PEER_GOOD}
    )
    config = DaemonConfig(node="node1", datastore=EtcdSource(settings_for(etcd_server)))
    source = DatastoreSource(config, Metrics())
    snapshots = source.snapshots()
    with capture_logs() as logs:
        async with asyncio.timeout(WAIT_LIMIT):
            first = await anext(snapshots)
            assert set(first.peers) == {"p1"}
            await etcd_client.put(key.encode(), b'{"kind":"BGPPeer", broken')
            second = await anext(snapshots)
            assert second.peers == first.peers
            assert source.rejected_keys() == (f"{key}: {logs[-1]['reason']}",)
            assert logs[-1]["key"] == key and logs[-1]["kept"] == "last good value"
            await etcd_client.put(key.encode(), PEER_GOOD.replace(b"65001", b"65002"))
            third = await anext(snapshots)
            assert third.peers["p1"].as_number == 65002 and source.rejected_keys() == ()
    await snapshots.aclose()  # type: ignore[attr-defined]
