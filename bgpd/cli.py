"""The ``bgpd`` command line: subcommands and their arguments.

Rules:
1. Each subcommand is a function taking parsed arguments and returning an exit status.
2. Bad arguments exit with status 2 and one line naming the argument (argparse's behaviour).
3. ``bgpd run``'s flags win over calico-node's environment; ``run_config`` is that one mapping.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from bgpd.control.commands import register as register_control_commands
from bgpd.wire.attributes import AttributeCache
from bgpd.wire.codec import decode_message
from bgpd.wire.errors import MessageError
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.render import message_to_json
from bgpd.wire.stream import StreamItem, split_stream
from bgpd.wire.types import IPV4_UNICAST, IPV6_UNICAST, Family

if TYPE_CHECKING:
    from bgpd.config import DaemonConfig


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


def run_config(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    nodename_file: str | None,
    hostname: str,
) -> DaemonConfig:
    """``bgpd run``'s configuration: its flags over calico-node's environment (rule 3)."""
    from bgpd.config import build_config

    return build_config(
        node=args.node,
        datastore=args.datastore,
        control_socket=args.control_socket,
        metrics_listen=args.metrics_listen,
        log_level=args.log_level,
        log_format=args.log_format,
        environ=environ,
        nodename_file=nodename_file,
        hostname=hostname,
        program_kernel=not args.no_kernel,
        program_vxlan=args.program_vxlan,
        bird_process_names=args.bird_process_names,
        bfd_hold=not getattr(args, "no_bfd_hold", False),  # only ``run`` has the flag
    )


def check_metrics_listen(listen: tuple[str, int] | None) -> None:
    """Bind ``--metrics-listen``'s address once before anything is logged, so an address that is
    not ours or a port in use is the one line of rule 2, not the last line after the start-up
    log. The daemon's own bind still reports a port taken in between the same way."""
    import socket

    from bgpd.errors import ConfigError

    if listen is None:
        return
    host, port = listen
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ConfigError("--metrics-listen", f"{host}:{port}", reason) from None


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio
    import gc
    import os
    import socket

    from bgpd.config import NODENAME_FILE
    from bgpd.daemon import Daemon
    from bgpd.errors import ConfigError
    from bgpd.log import configure_logging
    from bgpd.net import transport_cycle

    try:
        nodename_file = open(NODENAME_FILE).read()
    except OSError:
        nodename_file = None
    try:
        config = run_config(args, os.environ, nodename_file, socket.gethostname())
        check_metrics_listen(config.metrics_listen)
    except ConfigError as exc:
        print(f"bgpd: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    # The RIB is millions of small long-lived objects: collect the young generation every 200k
    # allocations instead of every 700, and never rescan what start-up made (bench/e2e_ingest.py);
    # the heap task collects the young generations every 10 s besides (bgpd/net/heap.py rule 2).
    gc.freeze()
    gc.set_threshold(200_000, 50, 100)
    transport_cycle.install()  # so a closed connection never waits for that collector
    try:
        return asyncio.run(Daemon(config).run())
    except ConfigError as exc:  # found at start: an unreadable datastore, an address in use
        print(f"bgpd: {exc}", file=sys.stderr)
        return 2


def cmd_datastore_load(args: argparse.Namespace) -> int:
    import asyncio

    import yaml

    from bgpd.datastore.etcd import put_pairs
    from bgpd.datastore.etcd_settings import EtcdSettings
    from bgpd.datastore.file import parse_documents
    from bgpd.datastore.schema import RecordError, etcd_pair
    from bgpd.errors import ConfigError

    try:
        settings = EtcdSettings.from_url(args.etcd)
    except ConfigError as exc:
        print(f"bgpd: --etcd: {exc}", file=sys.stderr)
        return 2
    with open(args.file) as handle:
        text = handle.read()
    pairs: list[tuple[str, bytes]] = []
    failures = 0
    try:
        documents = parse_documents(text, args.file)
    except yaml.YAMLError as exc:
        print(f"bgpd: {args.file}: not YAML: {exc}", file=sys.stderr)
        return 1
    for where, document in documents:
        try:
            pairs.append(etcd_pair(document, where))
        except RecordError as exc:
            failures += 1
            print(f"bgpd: skipped {exc}", file=sys.stderr)
    try:
        written = asyncio.run(put_pairs(settings, pairs))
    except ConnectionError as exc:
        print(f"bgpd: cannot write to etcd: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {written} keys to {args.etcd}")
    return 1 if failures else 0


def _load_snapshot(config: Any) -> Any:
    """The datastore's current snapshot, read once (a file, etcd or the Kubernetes API)."""
    import asyncio

    from bgpd.config import FileSource
    from bgpd.datastore.file import FileDatastore
    from bgpd.datastore.source import DatastoreSource
    from bgpd.errors import ConfigError
    from bgpd.metrics import Metrics

    if isinstance(config.datastore, FileSource):
        datastore = FileDatastore(config.datastore.path)
        snapshot = datastore.reload()
        if snapshot is None:
            errors = datastore.last_errors
            reason = errors[-1].reason if errors else "unreadable"
            raise ConfigError("--datastore", f"file:{config.datastore.path}", reason)
        return snapshot

    async def first() -> Any:
        async for snapshot in DatastoreSource(config, Metrics()).snapshots():
            return snapshot
        return None

    return asyncio.run(asyncio.wait_for(first(), timeout=30.0))


def _changed_snapshot(snapshot: Any, path: str) -> Any:
    """``snapshot`` with ``path``'s documents applied (``bgpd.plan.apply_change``)."""
    from bgpd.datastore.file import parse_documents
    from bgpd.plan import apply_change

    with open(path) as handle:
        return apply_change(snapshot, parse_documents(handle.read(), path))


def _current_routes(control_socket: str) -> list[Any] | None:
    """The running daemon's Loc-RIB candidates learned from peers (not its own, not the kernel's
    and interfaces' routes); None when no daemon answers."""
    from bgpd.control.commands import ControlClient, ControlError
    from bgpd.plan import known_route
    from bgpd.status import LEARNED_PROTOCOLS

    not_from_peers = {"local", *LEARNED_PROTOCOLS.values()}
    try:  # a full table is a long answer: minutes, not the CLI's usual seconds
        with ControlClient(control_socket, timeout=300.0) as client:
            routes = client.json("routes")
    except ControlError:
        return None
    return [known_route(r) for r in routes if r["peer"] not in not_from_peers]


def cmd_plan(args: argparse.Namespace) -> int:
    import json
    import os
    import socket

    from bgpd.datastore.schema import RecordError
    from bgpd.errors import ConfigError
    from bgpd.log import configure_logging
    from bgpd.plan import (
        desired_state,
        desired_state_text,
        node_state,
        planned_change,
        planned_change_text,
    )

    configure_logging("warning", "console")  # the document alone on standard output
    try:
        config = run_config(args, os.environ, None, socket.gethostname())
        snapshot = _load_snapshot(config)
        after = _changed_snapshot(snapshot, args.change) if args.change else None
    except (ConfigError, RecordError, OSError, TimeoutError) as exc:
        print(f"bgpd: {exc}", file=sys.stderr)
        return 2
    learned = _current_routes(args.control_socket) if args.change else None
    before = node_state(config, snapshot, learned or ())
    if after is None:
        document = desired_state(before)
        text = desired_state_text(document)
    else:
        document = planned_change(before, node_state(config, after, learned or ()))
        document["learned_routes"] = (
            "none: no daemon on " + args.control_socket if learned is None else len(learned)
        )
        text = planned_change_text(document)
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    else:
        print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bgpd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run the daemon",
        description="Run bgpd: read the datastore, keep the BGP sessions, advertise this node's "
        "routes and program learned routes into the kernel. Flags win over calico-node's "
        "environment (NODENAME, DATASTORE_TYPE, ETCD_*, CALICO_ROUTER_ID, BGP_LOGSEVERITYSCREEN).",
    )
    run.add_argument("--node", help="this node's name (default: NODENAME, nodename file, host)")
    run.add_argument(
        "--datastore",
        help="file:PATH or etcd://HOST:PORT[,HOST:PORT...] (default: DATASTORE_TYPE/ETCD_* "
        "or the embedded default file)",
    )
    run.add_argument("--control-socket", help="BIRD-compatible control socket path")
    run.add_argument("--metrics-listen", help="HOST:PORT for /metrics, /readyz, /livez, or none")
    run.add_argument("--log-level", help="debug, info, warning, error or none")
    run.add_argument(
        "--log-format", help="json, console, or auto (default: console on a terminal, else json)"
    )
    run.add_argument("--no-kernel", action="store_true", help="do not program kernel routes")
    run.add_argument(
        "--program-vxlan",
        action="store_true",
        help="also program VXLAN pools' routes (standalone use without Felix)",
    )
    run.add_argument(
        "--bird-process-names",
        action="store_true",
        help="keep placeholder processes named bird and bird6, so calicoctl node status reads us",
    )
    run.add_argument(
        "--no-bfd-hold",
        action="store_true",
        help="let a BGP session that asks for BFD come up while its BFD session is not Up",
    )
    run.set_defaults(handler=cmd_run)
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
    datastore = sub.add_parser("datastore", help="datastore tools")
    datastore_sub = datastore.add_subparsers(dest="datastore_command", required=True)
    load = datastore_sub.add_parser(
        "load",
        help="write a YAML file of Calico resources into etcd with Calico's keys",
        description="Validate each document of FILE and write it to etcd under Calico's keys "
        "(v3 resources as JSON objects, BlockAffinity as IPAM affinity keys).",
    )
    load.add_argument("file", help="multi-document YAML of Calico v3 resources")
    load.add_argument("--etcd", required=True, help="etcd://HOST:PORT[,HOST:PORT...]")
    load.set_defaults(handler=cmd_datastore_load)
    plan = sub.add_parser(
        "plan",
        help="a node's desired state from a datastore, offline; with --change, what it changes",
        description="Plan NODE from the datastore as the daemon would: sessions with every "
        "setting, what is originated and exported to whom, kernel rules per pool. With --change "
        "FILE (Calico resources to apply; a document annotated "
        "bgpd.projectcalico.org/change: delete is deleted), the difference: sessions added, "
        "removed or reset, prefixes gained or lost per peer, kernel routes; learned routes "
        "come from the running daemon when its control socket answers.",
    )
    plan.add_argument("--node", required=True, help="the node to plan")
    plan.add_argument("--datastore", help="file:PATH, etcd://HOST:PORT (default: as bgpd run)")
    plan.add_argument("--change", metavar="FILE", help="resources to apply or delete")
    plan.add_argument("--json", action="store_true", help="print JSON for machines")
    plan.add_argument(
        "--control-socket",
        default="/var/run/calico/bird.ctl",
        metavar="PATH",
        help="the running daemon's control socket, for its current routes (with --change)",
    )
    plan.set_defaults(
        handler=cmd_plan,
        metrics_listen="none",
        log_level=None,
        log_format=None,
        no_kernel=False,
        program_vxlan=False,
        bird_process_names=False,
    )
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
