"""Fixtures for the IO tests: a real etcd per test module and a fresh aetcd client per test.

Rules:
1. The etcd process fixture is synchronous and module-scoped (pytest-asyncio runs each test in
   its own loop, so no async object outlives a test); clients are made per test.
2. Every test starts from an empty ``/calico/`` and a running etcd on its original ports, even
   if an earlier test killed or moved it.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator

import aetcd
import pytest
from etcd_server import TLS_ROOT_PASSWORD, EtcdServer, TlsFiles


@pytest.fixture(scope="module")
def etcd_server() -> Iterator[EtcdServer]:
    if shutil.which("etcd") is None:
        pytest.skip("etcd-server is not installed")
    server = EtcdServer()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
async def etcd_client(etcd_server: EtcdServer) -> AsyncIterator[aetcd.Client]:
    if etcd_server.serving_port != etcd_server.client_port:
        etcd_server.kill()
    if not etcd_server.running:
        etcd_server.start()
    async with aetcd.Client("127.0.0.1", etcd_server.client_port, timeout=30) as client:
        await client.delete_prefix(b"/calico/")
        yield client


@pytest.fixture(scope="module")
def etcd_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """etcd with TLS (client certificates required) and auth enabled for ``root``."""
    if shutil.which("etcd") is None or shutil.which("openssl") is None:
        pytest.skip("etcd-server or openssl is not installed")
    server = EtcdServer(tls=TlsFiles.generate(tmp_path_factory.mktemp("hB-tls")))
    server.start()
    try:
        server.etcdctl("user", "add", f"root:{TLS_ROOT_PASSWORD}")
        server.etcdctl("auth", "enable")
        yield server
    finally:
        server.destroy()
