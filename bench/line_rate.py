"""A line-rate BGP sender: one session writing a pre-encoded table as fast as the socket takes it.

A receiver benchmarked against a slow sender measures the sender (GoBGP takes about 20 s for 1M
routes whoever receives them). This sender does no work per route while the clock runs: the table
is encoded beforehand (``tables.py``) and written with one ``sendall``.

Rules:
1. ``serve`` listens on ADDRESS:PORT and accepts one connection. It sends OPEN at once (4-octet
   AS, RFC 6793 §3; Multiprotocol IPv4 and IPv6 unicast, RFC 4760 §8; hold time 90 s; BGP
   Identifier ``--router-id``, else the IPv4 listen address, RFC 4271 §4.2; no extended
   messages, so every UPDATE fits 4096 octets), answers the peer's OPEN with a KEEPALIVE, and
   when the peer's KEEPALIVE arrives (Established, RFC 4271 §8.2.2) writes the whole table, then
   End-of-RIB for its family (RFC 4724 §2), in one ``sendall``; then a KEEPALIVE every 30 s
   (RFC 4271 §4.4). Writes hold one lock, so a KEEPALIVE never splits a message.
2. A reader thread drains the peer's messages as they come (a receiver that advertises is never
   blocked by us), reading each only as far as its type; a NOTIFICATION or a closed connection
   ends the session.
3. Control is line-based: one JSON object per event on standard output (``listening`` with the
   port, ``established``, ``sent`` with octets and seconds, ``withdrawn``, ``closed`` with the
   reason); on standard input ``withdraw`` writes the pre-encoded withdrawal of every prefix in
   one ``sendall``, and ``quit`` or end of input closes the session.
4. ``check`` proves the sender is not what a receiver waits on: it runs ``serve`` against a
   receiver that only reads (a plain socket draining into one buffer, no parsing beyond counting
   octets) over loopback, and reports octets/s, UPDATEs/s and routes/s from TCP connect to the
   last octet of End-of-RIB, and the same for the withdrawal.

Usage:
  python3 bench/line_rate.py check [--shape full] [--size 1000000] [--family ipv4]
  python3 bench/line_rate.py serve --listen 10.97.0.1 [--port 179] [table options]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import tables

from bgpd.wire.capabilities import Capability, FourOctetAs, Multiprotocol
from bgpd.wire.codec import encode_message
from bgpd.wire.constants import AS_TRANS, HEADER_LEN, MessageType
from bgpd.wire.messages import Keepalive, Open
from bgpd.wire.update import encode_end_of_rib

HOLD_TIME = 90
KEEPALIVE_EVERY = 30.0
_LENGTH_TYPE = struct.Struct("!HB")


def open_message(asn: int, router_id: str) -> bytes:
    """Rule 1's OPEN."""
    capabilities: tuple[Capability, ...] = (
        Multiprotocol(tables.FAMILIES["ipv4"]),
        Multiprotocol(tables.FAMILIES["ipv6"]),
        FourOctetAs(asn),
    )
    my_as = asn if asn <= 0xFFFF else AS_TRANS  # RFC 6793 §4.2.1
    bgp_id = int(ipaddress.IPv4Address(router_id))
    return encode_message(Open(my_as, HOLD_TIME, bgp_id, capabilities))


KEEPALIVE = encode_message(Keepalive())


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionError("peer closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class Session:
    """One accepted connection (rules 1-3)."""

    def __init__(self, sock: socket.socket, table: tables.Table) -> None:
        self.sock = sock
        self.table = table
        self.lock = threading.Lock()
        self.established = threading.Event()
        self.closed = threading.Event()
        self.reason = ""

    def write(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def read_loop(self) -> None:
        """Rule 2."""
        try:
            while True:
                header = read_exactly(self.sock, HEADER_LEN)
                length, kind = _LENGTH_TYPE.unpack_from(header, 16)
                body = read_exactly(self.sock, length - HEADER_LEN)
                if kind == MessageType.OPEN:
                    self.write(KEEPALIVE)
                elif kind == MessageType.KEEPALIVE and not self.established.is_set():
                    self.established.set()
                elif kind == MessageType.NOTIFICATION:
                    self.reason = f"NOTIFICATION {body[:2].hex()}"
                    break
        except OSError as error:
            self.reason = f"connection: {error}"
        finally:
            self.reason = self.reason or "closed"
            self.closed.set()
            self.established.set()  # wakes a sender still waiting

    def keepalives(self) -> None:
        while not self.closed.wait(KEEPALIVE_EVERY):
            try:
                self.write(KEEPALIVE)
            except OSError:
                return

    def send_table(self) -> None:
        family = tables.FAMILIES[self.table.spec.family]
        data = self.table.announce + encode_end_of_rib(family)
        started = time.monotonic()
        self.write(data)
        say("sent", octets=len(data), seconds=round(time.monotonic() - started, 4))

    def send_withdrawal(self) -> None:
        started = time.monotonic()
        self.write(self.table.withdraw)
        seconds = round(time.monotonic() - started, 4)
        say("withdrawn", octets=len(self.table.withdraw), seconds=seconds)


def serve(args: argparse.Namespace) -> None:
    """Rules 1-3."""
    table = tables.load(table_spec(args), args.cache)
    family = socket.AF_INET6 if ":" in args.listen else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.listen, args.port))
    listener.listen(1)
    say("listening", port=listener.getsockname()[1])
    sock, peer = listener.accept()
    listener.close()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    session = Session(sock, table)
    session.write(open_message(args.asn, args.router_id or args.listen))
    threading.Thread(target=session.read_loop, daemon=True).start()
    session.established.wait()
    if not session.closed.is_set():
        say("established", peer=peer[0])
        session.send_table()
        threading.Thread(target=session.keepalives, daemon=True).start()
        threading.Thread(target=_commands, args=(session,), daemon=True).start()
    session.closed.wait()
    say("closed", reason=session.reason)
    sock.close()


def _commands(session: Session) -> None:
    for line in sys.stdin:
        command = line.strip()
        if command == "withdraw":
            session.send_withdrawal()
        elif command == "quit":
            break
    session.reason = session.reason or "quit"
    session.closed.set()
    try:
        session.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def table_spec(args: argparse.Namespace) -> tables.TableSpec:
    next_hop = args.next_hop or ("10.97.0.1" if args.family == "ipv4" else "fd00:97::1")
    return tables.TableSpec(
        args.shape, args.family, args.size, args.sets, args.seed, next_hop, args.asn, args.prepend
    )


def table_argv(spec: tables.TableSpec, cache: Path | None) -> list[str]:
    """The command-line options that make ``serve`` load ``spec`` (from ``cache``)."""
    argv = [
        f"--shape={spec.shape}",
        f"--family={spec.family}",
        f"--size={spec.size}",
        f"--sets={spec.sets}",
        f"--seed={spec.seed}",
        f"--next-hop={spec.next_hop}",
        f"--asn={spec.sender_as}",
        f"--prepend={spec.prepend}",
    ]
    return argv + ([f"--cache={cache}"] if cache else [])


class SenderProcess:
    """``serve`` in a child process (optionally through ``ip netns exec``), read event by event."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
        )

    @classmethod
    def start(
        cls,
        spec: tables.TableSpec,
        listen: str,
        port: int = 179,
        cache: Path | None = None,
        prefix: tuple[str, ...] = (),
        router_id: str = "",
    ) -> SenderProcess:
        script = str(Path(__file__).resolve())
        argv = [*prefix, sys.executable, script, "serve", f"--listen={listen}", f"--port={port}"]
        if router_id:
            argv.append(f"--router-id={router_id}")
        return cls(argv + table_argv(spec, cache))

    def event(self, name: str) -> dict[str, Any]:
        """The next event named ``name`` (or ``closed``, which ends the session)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event: dict[str, Any] = json.loads(line)
            if event["event"] in (name, "closed"):
                return event
        return {"event": "closed", "reason": f"sender exited ({self.proc.wait()})"}

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("quit")
                self.proc.wait(5)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


def drain(sock: socket.socket, octets: int) -> float:
    """Read ``octets`` octets into one reused buffer; the time the last one arrived (rule 4)."""
    buffer = bytearray(4 << 20)
    view = memoryview(buffer)
    while octets > 0:
        got = sock.recv_into(view)
        if not got:
            raise ConnectionError(f"sender closed with {octets} octets to come")
        octets -= got
    return time.monotonic()


def check(spec: tables.TableSpec, cache: Path | None = None) -> dict[str, float]:
    """Rule 4: the sender against a draining socket; rates from connect to the last octet."""
    table = tables.load(spec, cache)
    sender = SenderProcess.start(spec, "127.0.0.1", 0, cache)
    try:
        port = int(sender.event("listening")["port"])
        sock = socket.create_connection(("127.0.0.1", port))
        connected = time.monotonic()
        router_id = "127.0.0.2"
        sock.sendall(open_message(tables.SENDER_AS + 1, router_id) + KEEPALIVE)
        family = tables.FAMILIES[spec.family]
        sender_open = len(open_message(spec.sender_as, "127.0.0.1"))
        expected = sender_open + len(KEEPALIVE) + len(table.announce)
        expected += len(encode_end_of_rib(family))
        done = drain(sock, expected)
        seconds = done - connected
        started = time.monotonic()
        sender.command("withdraw")
        withdrawn = drain(sock, len(table.withdraw)) - started
        sock.close()
    finally:
        sender.stop()
    messages = table.announce_messages
    return {
        "seconds": seconds,
        "mb_per_s": expected / seconds / 1e6,
        "updates_per_s": messages / seconds,
        "routes_per_s": spec.size / seconds,
        "withdraw_seconds": withdrawn,
        "withdraw_routes_per_s": spec.size / withdrawn,
    }


def describe_check(spec: tables.TableSpec, result: dict[str, float]) -> str:
    return (
        f"line-rate sender into a draining socket, {spec.size:,} {spec.family} {spec.shape}: "
        f"{result['seconds']:.3f} s, {result['mb_per_s']:.0f} MB/s, "
        f"{result['updates_per_s'] / 1e3:.0f}k UPDATEs/s, "
        f"{result['routes_per_s'] / 1e6:.1f} M routes/s; withdrawal "
        f"{result['withdraw_seconds']:.3f} s, "
        f"{result['withdraw_routes_per_s'] / 1e6:.1f} M routes/s"
    )


def _table_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", choices=tables.SHAPES, default="full")
    parser.add_argument("--family", choices=sorted(tables.FAMILIES), default="ipv4")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--sets", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--next-hop", default="")
    parser.add_argument("--asn", type=int, default=tables.SENDER_AS)
    parser.add_argument("--prepend", type=int, default=0, help="the AS this many more times")
    parser.add_argument("--cache", type=Path, default=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve")
    serve_parser.add_argument("--listen", required=True)
    serve_parser.add_argument("--port", type=int, default=179)
    serve_parser.add_argument("--router-id", default="")
    _table_options(serve_parser)
    check_parser = commands.add_parser("check")
    _table_options(check_parser)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
        return
    spec = table_spec(args)
    print(describe_check(spec, check(spec, args.cache)), flush=True)


if __name__ == "__main__":
    main()
