"""``bench/line_rate.py`` over loopback against a client built from bgpd's codec: the session
opens as the sender's rules say, the table arrives whole and in order with End-of-RIB, and the
withdrawal removes every prefix (issue 18, Deliver 1). No timing is asserted here; the rates
are measured by ``line_rate.py check`` and ``bench/e2e_ingest.py``."""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import line_rate  # noqa: E402
import tables  # noqa: E402

from bgpd.wire.attributes import AttributeCache  # noqa: E402
from bgpd.wire.capabilities import FourOctetAs, Multiprotocol  # noqa: E402
from bgpd.wire.codec import decode_message  # noqa: E402
from bgpd.wire.constants import HEADER_LEN, MessageType  # noqa: E402
from bgpd.wire.messages import Open, Update  # noqa: E402
from bgpd.wire.types import IPV4_UNICAST, IPV6_UNICAST, Prefix  # noqa: E402


def read_message(sock: socket.socket) -> tuple[int, bytes]:
    """(type, body) of the next message."""
    header = line_rate.read_exactly(sock, HEADER_LEN)
    length, kind = struct.unpack_from("!HB", header, 16)
    return kind, line_rate.read_exactly(sock, length - HEADER_LEN)


def read_updates_until_end_of_rib(sock: socket.socket) -> tuple[set[Prefix], int]:
    cache = AttributeCache()
    announced: set[Prefix] = set()
    messages = 0
    while True:
        kind, message = read_message(sock)
        if kind == MessageType.KEEPALIVE:
            continue
        update = decode_message(kind, message, tables.NEGOTIATED, cache)
        assert isinstance(update, Update)
        if update.end_of_rib is not None:
            assert update.end_of_rib == IPV4_UNICAST
            return announced, messages
        messages += 1
        for announcement in update.announced:
            announced.update(announcement.prefixes)


def test_sender_session_table_end_of_rib_and_withdrawal(tmp_path: Path) -> None:
    spec = tables.TableSpec("full", "ipv4", 5_000, next_hop="127.0.0.1")
    table = tables.load(spec, tmp_path)
    sender = line_rate.SenderProcess.start(spec, "127.0.0.1", 0, tmp_path)
    try:
        port = int(sender.event("listening")["port"])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            kind, message = read_message(sock)
            assert kind == MessageType.OPEN
            opened = decode_message(kind, message, tables.NEGOTIATED, AttributeCache())
            assert isinstance(opened, Open)
            assert opened.hold_time == line_rate.HOLD_TIME
            families = {c.family for c in opened.capabilities if isinstance(c, Multiprotocol)}
            assert families == {IPV4_UNICAST, IPV6_UNICAST}
            four_octet = opened.capability(FourOctetAs)
            assert four_octet is not None and four_octet.asn == tables.SENDER_AS
            sock.sendall(line_rate.open_message(64512, "127.0.0.2"))
            assert read_message(sock)[0] == MessageType.KEEPALIVE  # answers our OPEN
            sock.sendall(line_rate.KEEPALIVE)  # Established: the table follows
            assert sender.event("established")["event"] == "established"
            announced, messages = read_updates_until_end_of_rib(sock)
            assert announced == set(tables.prefixes(spec))
            assert messages == table.announce_messages
            sent = sender.event("sent")
            assert sent["octets"] == len(table.announce) + len(line_rate.KEEPALIVE) + 4
            sender.command("withdraw")
            withdrawn: set[Prefix] = set()
            cache = AttributeCache()
            while withdrawn != announced:
                kind, message = read_message(sock)
                if kind == MessageType.UPDATE:
                    update = decode_message(kind, message, tables.NEGOTIATED, cache)
                    assert isinstance(update, Update) and not update.announced
                    for withdrawal in update.withdrawn:
                        withdrawn.update(withdrawal.prefixes)
            assert sender.event("withdrawn")["octets"] == len(table.withdraw)
            sender.command("quit")
            assert sender.event("closed")["event"] == "closed"
    finally:
        sender.stop()


def test_check_drains_the_whole_table(tmp_path: Path) -> None:
    spec = tables.TableSpec("single", "ipv4", 2_000, next_hop="127.0.0.1")
    result = line_rate.check(spec, tmp_path)
    assert result["routes_per_s"] > 0 and result["withdraw_routes_per_s"] > 0
