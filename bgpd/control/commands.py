"""CLI subcommands that talk to a running daemon over its control socket.

``bgpd show peers``, ``bgpd show routes [PREFIX]``, ``bgpd explain PREFIX``, ``bgpd status``,
``bgpd health --ready|--live``,
``bgpd stop [--withdraw] [--message TEXT]`` and ``bgpd reload``; each takes ``--control-socket``.

Rules:
1. The commands use the socket's JSON side channel (``json ...``, ``bgpd.control.server`` rule 5)
   and print aligned tables, or the daemon's JSON unchanged with ``--json``.
2. Exit status: 0 ok; 1 not ready, not live, refused or no daemon; 2 usage (argparse).
3. A daemon that is not running gives exactly one line on stderr naming the socket.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from bgpd.control.server import DEFAULT_CONTROL_SOCKET
from bgpd.health import DEFAULT_THRESHOLD

REPLY_TIMEOUT = 10.0  # seconds to wait for the daemon's answer


class ControlError(Exception):
    """The daemon could not be asked, or refused; the message is the one line to print."""


class ControlClient:
    """A blocking client of the BIRD-style control socket."""

    def __init__(self, path: str, timeout: float = REPLY_TIMEOUT) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.settimeout(timeout)
        self._buffer = b""
        try:
            self._socket.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            self._socket.close()
            raise ControlError(f"bgpd is not running (no control socket at {path})") from None
        except OSError as exc:
            self._socket.close()
            raise ControlError(f"cannot open control socket {path}: {exc.strerror}") from None
        self.greeting = self._reply()[0]

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _line(self) -> str:
        while b"\n" not in self._buffer:
            try:
                chunk = self._socket.recv(65536)
            except TimeoutError:
                raise ControlError(f"no answer from bgpd on {self.path}") from None
            if not chunk:
                raise ControlError(f"bgpd closed the control socket {self.path}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("utf-8", errors="replace")

    def _reply(self) -> tuple[str, list[str]]:
        """Read one reply: (final line, all lines). The final line has a space after its code."""
        lines: list[str] = []
        while True:
            line = self._line()
            lines.append(line)
            if len(line) >= 5 and line[:4].isdigit() and line[4] == " ":
                return line, lines

    def command(self, text: str) -> tuple[str, list[str]]:
        self._socket.sendall(text.encode() + b"\n")
        return self._reply()

    def json(self, text: str) -> Any:
        final, _ = self.command(f"json {text}")
        code, body = final[:4], final[5:]
        if code != "0000":
            raise ControlError(f"bgpd refused {text!r}: {body}")
        return json.loads(body)


def ask(path: str, text: str) -> Any:
    with ControlClient(path) as client:
        return client.json(text)


# -- rendering -----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def age(seconds: float) -> str:
    """A compact duration: ``45s``, ``12m03s``, ``5h02m``, ``3d04h``."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def peer_info(peer: dict[str, Any]) -> str:
    """The INFO column: the session's datastore problem, else why it is not Established."""
    problem = str(peer.get("problem", ""))
    if problem:
        return problem
    return "" if peer["state"] == "Established" else str(peer.get("last_error", ""))


def bfd_cell(bfd: dict[str, Any] | None, holds: bool) -> str:
    """``Up 100x3 1/0``: state, tx interval (ms) x detect multiplier, ups/downs; ``held`` when
    BFD holds the BGP session back; ``-`` without BFD."""
    if not bfd:
        return "-"
    text = (
        f"{bfd['state']} {bfd['tx_interval_ms']:.0f}x{bfd['detect_mult']} "
        f"{bfd['ups']}/{bfd['downs']}"
    )
    return text + (" held" if holds else "")


def peers_table(peers: Sequence[dict[str, Any]], now: float) -> str:
    headers = ("NAME", "PEER", "AS", "STATE", "SINCE", "RECEIVED", "ADVERTISED", "BFD", "INFO")
    rows = [
        (
            peer["name"],
            peer["peer_ip"],
            str(peer["peer_as"]),
            peer["state"],
            age(now - peer["since"]),
            str(peer["prefixes_received"]),
            str(peer["prefixes_advertised"]),
            bfd_cell(peer.get("bfd"), peer.get("bfd_holds", False)),
            peer_info(peer),
        )
        for peer in peers
    ]
    return table(headers, rows)


def routes_table(routes: Sequence[dict[str, Any]]) -> str:
    headers = ("PREFIX", "NEXT HOP", "AS PATH", "BEST", "PEER")
    rows = [
        (
            route["prefix"],
            route["next_hop"] or "-",
            " ".join(str(asn) for asn in route["as_path"]) or "-",
            "*" if route["best"] else "",
            route["peer"],
        )
        for route in routes
    ]
    return table(headers, rows)


def status_text(status: dict[str, Any]) -> str:
    rows = [
        ("version", status["version"]),
        ("node", status["node"]),
        ("router id", status["router_id"]),
        ("up for", age(time.time() - status["started"])),
        ("datastore in sync", "yes" if status["datastore_in_sync"] else "no"),
        ("graceful restart", "recovering" if status["graceful_restart_recovering"] else "no"),
        ("kernel routes", str(status["kernel_routes"])),
    ]
    if status.get("listen_backlog"):
        rows.append(("listen backlog", str(status["listen_backlog"])))
    rows += [("problem", problem) for problem in status.get("problems", ())]
    rows += [("rejected key", key) for key in status.get("rejected_keys", ())]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key + ':':<{width + 1}} {value}" for key, value in rows)


# -- subcommands ---------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def cmd_show_peers(args: argparse.Namespace) -> int:
    peers = ask(args.control_socket, "peers")
    if args.json:
        _print_json(peers)
    else:
        print(peers_table(peers, time.time()))
    return 0


def cmd_show_routes(args: argparse.Namespace) -> int:
    routes = ask(args.control_socket, f"routes {args.prefix}" if args.prefix else "routes")
    if args.json:
        _print_json(routes)
    else:
        print(routes_table(routes))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from bgpd.explain import explanation_text

    document = ask(args.control_socket, f"explain {args.prefix}")
    if args.json:
        _print_json(document)
    else:
        print(explanation_text(document))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = ask(args.control_socket, "status")
    if args.json:
        _print_json(status)
    else:
        print(status_text(status))
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    query = f"health ready {args.threshold_time:g}" if args.ready else "health live"
    result = ask(args.control_socket, query)
    if args.json:
        _print_json(result)
    else:
        verdict = ("" if result["ok"] else "not ") + ("ready" if args.ready else "live")
        print(f"{verdict}: {result['reason']}")
    return 0 if result["ok"] else 1


def cmd_stop(args: argparse.Namespace) -> int:
    mode = "withdraw" if args.withdraw else "graceful"
    ask(args.control_socket, f"stop {mode} {args.message}".rstrip())
    print("stop requested" + (" (withdrawing routes)" if args.withdraw else ""))
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    ask(args.control_socket, "reload")
    print("reload requested")
    return 0


def _handled(handler: Any) -> Any:
    """Turn a ControlError into its one line and exit status 1 (rules 2, 3)."""

    def run(args: argparse.Namespace) -> int:
        try:
            status: int = handler(args)
        except ControlError as exc:
            print(f"bgpd: {exc}", file=sys.stderr)
            return 1
        return status

    return run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the control subcommands (show, status, health, stop, reload) to the ``bgpd`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--control-socket",
        default=DEFAULT_CONTROL_SOCKET,
        metavar="PATH",
        help=f"the daemon's control socket (default: {DEFAULT_CONTROL_SOCKET})",
    )
    with_json = argparse.ArgumentParser(add_help=False)
    with_json.add_argument("--json", action="store_true", help="print JSON for machines")

    show = subparsers.add_parser("show", help="show BGP peers or routes of the running daemon")
    what = show.add_subparsers(dest="what", required=True)
    peers = what.add_parser("peers", parents=[common, with_json], help="BGP sessions")
    peers.set_defaults(handler=_handled(cmd_show_peers))
    routes = what.add_parser("routes", parents=[common, with_json], help="routes in the Loc-RIB")
    routes.add_argument("prefix", nargs="?", help="only this prefix (e.g. 10.0.0.0/26)")
    routes.set_defaults(handler=_handled(cmd_show_routes))

    explain = subparsers.add_parser(
        "explain",
        parents=[common, with_json],
        help="why a prefix is (not) routed: candidates, decision, filters, peers, kernel",
    )
    explain.add_argument("prefix", help="a network (10.244.1.0/26) or an address (a pod's IP)")
    explain.set_defaults(handler=_handled(cmd_explain))

    status = subparsers.add_parser(
        "status", parents=[common, with_json], help="identity and state of the running daemon"
    )
    status.set_defaults(handler=_handled(cmd_status))

    health = subparsers.add_parser(
        "health",
        parents=[common, with_json],
        help="readiness or liveness, with calico-node's semantics (exit 1 when not)",
    )
    kind = health.add_mutually_exclusive_group(required=True)
    kind.add_argument("--ready", action="store_true", help="BGP readiness (Calico --bird-ready)")
    kind.add_argument("--live", action="store_true", help="liveness (Calico --bird-live)")
    health.add_argument(
        "--threshold-time",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="SECONDS",
        help="after start, every peer must be up for this long; then one (default: 30)",
    )
    health.set_defaults(handler=_handled(cmd_health))

    stop = subparsers.add_parser(
        "stop",
        parents=[common],
        help="stop the daemon; keeps routes for graceful restart unless --withdraw",
    )
    stop.add_argument(
        "--withdraw",
        action="store_true",
        help="shut down for good: Cease/Administrative Shutdown to peers, routes withdrawn",
    )
    stop.add_argument("--message", default="", help="shutdown communication (RFC 9003) text")
    stop.set_defaults(handler=_handled(cmd_stop))

    reload = subparsers.add_parser("reload", parents=[common], help="re-read the configuration")
    reload.set_defaults(handler=_handled(cmd_reload))
