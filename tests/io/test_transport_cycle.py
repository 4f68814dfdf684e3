"""bgpd/net/transport_cycle.py: a closed connection leaves no cycle for the garbage collector."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys

import pytest

from bgpd.net import transport_cycle
from bgpd.net.listener import Listener

CONNECTIONS = 50


def _dead_transports_after_rejected_connections() -> int:
    """Rejected connections to a real listener on loopback; the socket transports that only the
    cyclic collector could free afterwards."""

    async def run() -> int:
        listener = Listener(lambda address, reader, writer: False, "127.0.0.1", 0)
        await listener.start()

        async def connect() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            await reader.read()
            writer.close()

        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            await asyncio.gather(*(connect() for _ in range(CONNECTIONS)))
            await asyncio.sleep(0.1)
            gc.collect()
            return sum(type(o).__name__ == "_SelectorSocketTransport" for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
            await listener.close()

    return asyncio.run(run())


def test_closed_transports_are_freed_without_the_collector() -> None:
    transport_cycle.install()
    transport_cycle.install()  # rule 3: idempotent
    assert _dead_transports_after_rejected_connections() == 0


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="the interpreter has the fix (rule 2)")
def test_the_cycle_it_breaks_exists_in_this_interpreter() -> None:
    """Run in a fresh interpreter, without ``install``: the cycle is real on 3.11."""
    code = (
        "import tests.io.test_transport_cycle as t;"
        "print(t._dead_transports_after_rejected_connections())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert int(out.split()[-1]) == 2 * CONNECTIONS  # both ends of every connection
