"""The listeners on one address per family (Calico's ``bindMode: NodeIP``, listener rule 6):
each socket accepts on the same port, an IPv6 wildcard binds beside a specific IPv4 address, and
a change at run time reopens only what changed."""

from __future__ import annotations

import asyncio

from bgpd.net.listener import Listeners


async def _rejected_from(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    data = await asyncio.wait_for(reader.read(64), 10)
    writer.close()
    return data


async def test_one_socket_per_family_on_one_port_and_changes_at_run_time() -> None:
    seen: list[str] = []

    def handoff(address: object, reader: object, writer: object) -> bool:
        seen.append(str(address))
        return False

    listeners = Listeners(handoff, ("127.0.0.1", "::"), 0)
    await listeners.start()
    try:
        assert listeners.addresses == ("127.0.0.1", "::")
        port = listeners.port
        for host in ("127.0.0.1", "::1"):
            assert (await _rejected_from(host, port))[18] == 3  # a NOTIFICATION
        assert seen == ["127.0.0.1", "::1"]
        assert listeners.rejected == 2

        assert await listeners.listen((), port) == []  # bindMode None: one dual-stack socket
        assert listeners.addresses == ("::",)
        assert (await _rejected_from("127.0.0.1", port))[18] == 3
        assert listeners.rejected == 3  # closed listeners' counts are kept

        taken = listeners.port
        failed = await listeners.listen(("192.0.2.1",), taken)  # not an address of ours
        assert len(failed) == 1 and failed[0].startswith("192.0.2.1:"), failed
        assert listeners.addresses == ()
    finally:
        await listeners.close()
