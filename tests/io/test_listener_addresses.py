"""The listener on one address per family (Calico's ``bindMode: NodeIP``, listener rule 1):
each socket accepts, on the same port, and a wildcard beside a specific address binds."""

from __future__ import annotations

import asyncio

from bgpd.net.listener import Listener


async def _rejected_from(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    data = await asyncio.wait_for(reader.read(64), 10)
    writer.close()
    return data


async def test_one_socket_per_family_on_one_port() -> None:
    seen: list[str] = []

    def handoff(address: object, reader: object, writer: object) -> bool:
        seen.append(str(address))
        return False

    listener = Listener(handoff, ("127.0.0.1", "::"), 0)
    await listener.start()
    try:
        assert len(listener._sockets) == 2
        assert {s.getsockname()[1] for s in listener._sockets} == {listener.port}
        for host in ("127.0.0.1", "::1"):
            assert (await _rejected_from(host, listener.port))[18] == 3  # a NOTIFICATION
        assert seen == ["127.0.0.1", "::1"]
        assert listener.rejected == 2
    finally:
        await listener.close()
