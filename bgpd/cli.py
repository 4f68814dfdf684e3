"""The ``bgpd`` command line: subcommands and their arguments.

Rules:
1. Each subcommand is a function taking parsed arguments and returning an exit status.
2. Bad arguments exit with status 2 and one line naming the argument (argparse's behaviour).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import BinaryIO

from bgpd.control.commands import register as register_control_commands
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.codec import decode_message
from bgpd.wire.errors import MessageError
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.render import message_to_json
from bgpd.wire.stream import StreamItem, split_stream
from bgpd.wire.types import IPV4_UNICAST, IPV6_UNICAST, Family


def _error_json(exc: MessageError) -> dict[str, object]:
    return {
        "error": {
            "code": exc.code,
            "subcode": exc.subcode,
            "reason": exc.token,
            "detail": exc.reason,
            "data": exc.data.hex(),
        }
    }


def _hex_items(source: BinaryIO) -> list[StreamItem]:
    items: list[StreamItem] = []
    for number, raw_line in enumerate(source, start=1):
        line = raw_line.decode("ascii", errors="replace").split("#", 1)[0].strip()
        if not line:
            continue
        try:
            data = bytes.fromhex(line.replace(":", "").replace(" ", ""))
        except ValueError:
            items.append(MessageError(0, 0, b"", f"line {number}: not hexadecimal"))
            continue
        items.extend(split_stream(data))
    return items


def _negotiated(args: argparse.Namespace) -> Negotiated:
    add_path = frozenset(Family.parse(text) for text in args.add_path)
    return Negotiated(
        asn4=args.asn4,
        families=frozenset({IPV4_UNICAST, IPV6_UNICAST}),
        add_path_rx=add_path,
        add_path_tx=add_path,
        extended_message=True,
        external=args.external,
        enhanced_route_refresh=True,
    )


def cmd_decode(args: argparse.Namespace) -> int:
    negotiated = _negotiated(args)
    cache = AttributeCache()
    with open(args.file, "rb") if args.file != "-" else sys.stdin.buffer as source:
        items = _hex_items(source) if args.hex else list(split_stream(source.read()))
    failures = 0
    out = sys.stdout
    for item in items:
        if isinstance(item, MessageError):
            failures += 1
            out.write(json.dumps({"type": "invalid", **_error_json(item)}) + "\n")
            continue
        msg_type, body = item
        try:
            rendered = message_to_json(decode_message(msg_type, body, negotiated, cache))
        except MessageError as exc:
            failures += 1
            names = {1: "open", 2: "update", 3: "notification", 4: "keepalive", 5: "route-refresh"}
            rendered = {"type": names.get(msg_type, str(msg_type)), **_error_json(exc)}
        out.write(json.dumps(rendered) + "\n")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bgpd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    decode = sub.add_parser(
        "decode",
        help="decode raw BGP messages to one JSON object per line",
        description="Read BGP messages (a binary stream, or one hex message per line with --hex) "
        "and print one JSON object per message. Exit status 1 if any message failed to decode.",
    )
    decode.add_argument("file", nargs="?", default="-", help="input file (default: stdin)")
    decode.add_argument("--hex", action="store_true", help="one hex-encoded message per line")
    decode.add_argument(
        "--asn4",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="4-octet AS numbers negotiated (default: yes)",
    )
    decode.add_argument(
        "--add-path",
        action="append",
        default=[],
        metavar="FAMILY",
        help="ADD-PATH negotiated for FAMILY (ipv4-unicast, ipv6-unicast); repeatable",
    )
    decode.add_argument(
        "--external", action="store_true", help="the peer is external (eBGP: LOCAL_PREF discarded)"
    )
    decode.set_defaults(handler=cmd_decode)
    register_control_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except ValueError as exc:
        parser.error(str(exc))
    return status
