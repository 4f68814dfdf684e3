"""BIRD's control-socket protocol, spoken the way BIRD 1.6 speaks it (the line Calico ships).

Everything here is pure: command text and ``StatusProvider`` values in, reply text out. The
server (``bgpd.control.server``) only moves lines between a socket and these functions.

Rules:
1. Framing is BIRD's ``cli_printf`` (bird: ``nest/cli.c``, ``doc/reply_codes``): every reply line
   starts with a four-digit code; a line continuing the previous line's code starts with one space
   instead; a line starting a new code inside a reply is ``NNNN-``; the final line is ``NNNN `` and
   is the only line with a space after the code. ``0000 `` ends a table (note the trailing space).
2. Layouts are copied byte for byte from BIRD 1.6.8 (captured in ``tests/unit/test_birdproto.py``):
   ``show protocols`` rows are ``"%-8s %-8s %-8s %-5s  %-10s  %s"`` (``proto_cmd_show``), the BGP
   info column is ``"%-14s%s"`` (``bgp_get_status``), routes are ``"%-18s %s [%s %s%s]%s%s"``
   (``rt_show_rte``). The header words are exactly ``name proto table state since info``:
   Calico compares them (calico-bgp.md §4.3, ``node/pkg/health/bird/bird.go``).
3. Times: ``%T`` when less than 20 hours old, else ``%F`` (BIRD 1.6 ``tf_proto`` and ``tf_route``
   defaults); ``show status`` uses ``%F %T``. Wall-clock seconds and the local UTC offset come in
   as arguments; nothing here reads a clock.
4. Session names are Calico's (``Mesh_``, ``Node_``, ``Global_``); routes this node originates are
   shown as BIRD shows Calico's static blackholes (``blackhole [static1 ...] * (200)``), because
   Calico's route reader classifies the source by the protocol-name prefix (``static``).
5. Commands are BIRD's full keywords (its clients ``birdc``/``birdcl`` expand abbreviations before
   sending). As an extension, any unambiguous keyword prefix is accepted too (``sh p``), so
   ``socat`` users get what ``birdc`` users get. Unknown commands answer ``9001 syntax error``.
6. ``json ...`` is our own side channel for the ``bgpd`` CLI (BIRD has no such command): the
   reply is one final line ``0000 `` followed by compact JSON. See ``JSON_TOPICS``.
7. One view per socket: ``ipv4`` (``bird.ctl``), ``ipv6`` (``bird6.ctl``) or ``all``, matching
   BIRD 1.6's one daemon per family that Calico's readers assume (calicoctl derives the address
   separator from the socket it asked).
8. ``show bfd sessions`` is BIRD 2's (``proto/bfd/bfd.c`` ``bfd_show_sessions``): code 1020, the
   protocol name line, the header ``"%-25s %-10s %-10s %-12s  %8s %8s"`` and rows with the
   interval and timeout in seconds with milliseconds (``"%7u.%03u"``); BIRD 1.6 had no BFD.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from bgpd.session.events import State
from bgpd.status import DaemonStatus, PeerStatus, RouteStatus, StatusProvider

ESTABLISHED = State.ESTABLISHED.bird_name
WAITING_STATES = (State.IDLE.bird_name, State.ACTIVE.bird_name)  # a passive session's "Passive"

View = Literal["ipv4", "ipv6", "all"]

# Reply codes (bird: doc/reply_codes).
OK = 0
WELCOME = 1
READING_CONFIGURATION = 2
RECONFIGURED = 3
SHUTDOWN_REQUESTED = 7
STATUS_REPORT = 13
ROUTE_COUNT = 14
GRACEFUL_RESTART_STATUS = 24
BIRD_VERSION = 1000
PROTOCOL_LIST = 1002
PROTOCOL_DETAILS = 1006
ROUTE_LIST = 1007
ROUTE_DETAILS = 1008
UPTIME = 1011
ROUTE_ATTRIBUTES = 1012
BFD_SESSIONS = 1020
PROTOCOL_LIST_HEADER = 2002
NETWORK_NOT_IN_TABLE = 8001
NO_PROTOCOLS_MATCH = 8003
COMMAND_TOO_LONG = 9000
PARSE_ERROR = 9001
INVALID_SYMBOL = 9002

MAX_COMMAND_LENGTH = 4096  # BIRD's CLI line buffer; longer lines get 9000
RECENT_SECONDS = 20 * 3600  # BIRD 1.6 tf_proto/tf_route limit between %T and %F
DEFAULT_GR_WAIT = 240  # BIRD's DEFAULT_GR_WAIT (``show status`` wait timer), seconds
BGP_PREFERENCE = 100  # BIRD's default BGP route preference, shown as "(100)"
STATIC_PREFERENCE = 200  # BIRD's default static preference
LEARNED_PREFERENCE = {"kernel1": 10, "direct1": 240}  # BIRD's kernel and direct preferences
LOCAL_PROTOCOL = "static1"  # name under which locally originated routes appear
PROTOCOL_HEADER = "name     proto    table    state  since       info"
TABLE = "master"
JSON_TOPICS = ("status", "peers", "routes", "explain", "health", "reload", "stop")

_ORIGIN_CHAR = {"igp": "i", "egp": "e", "incomplete": "?"}
_ORIGIN_NAME = {"igp": "IGP", "egp": "EGP", "incomplete": "Incomplete"}


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete reply: body lines (code, text) then the final line (rule 1)."""

    body: tuple[tuple[int, str], ...]
    final_code: int
    final_text: str = ""

    def encode(self) -> str:
        return encode_reply(self.body, self.final_code, self.final_text)


def encode_reply(body: Iterable[tuple[int, str]], final_code: int, final_text: str = "") -> str:
    """BIRD's ``cli_printf`` framing (rule 1)."""
    out: list[str] = []
    last = -1
    for code, text in body:
        out.append((" " if code == last else f"{code:04d}-") + text)
        last = code
    out.append(f"{final_code:04d} {final_text}")
    return "\n".join(out) + "\n"


def error(code: int, text: str) -> Reply:
    return Reply((), code, text)


SYNTAX_ERROR = error(PARSE_ERROR, "syntax error")


def bird_version(version: str) -> str:
    """``v0.1.0+bgpd``: Calico's status reader takes the version from ``BIRD v...`` lines."""
    return f"{version if version.startswith('v') else 'v' + version}+bgpd"


def greeting(version: str) -> str:
    return encode_reply((), WELCOME, f"BIRD {bird_version(version)} ready.")


# -- time formatting (rule 3) -------------------------------------------------------------------


def _civil(seconds: int) -> tuple[int, int, int, int, int, int]:
    """Epoch seconds to (year, month, day, hour, minute, second), proleptic Gregorian.

    Howard Hinnant's ``civil_from_days``; pure arithmetic so no clock module is needed.
    """
    days, rem = divmod(seconds, 86400)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day, rem // 3600, rem % 3600 // 60, rem % 60


def format_datetime(when: float, utc_offset: int) -> str:
    """``%F %T`` in local time."""
    y, mo, d, h, mi, s = _civil(int(when) + utc_offset)
    return f"{y:04d}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}"


def format_since(when: float, now: float, utc_offset: int) -> str:
    """BIRD 1.6 ``tf_proto``/``tf_route``: ``%T`` if recent, else ``%F``."""
    stamp = format_datetime(when, utc_offset)
    return stamp[11:] if now - when < RECENT_SECONDS else stamp[:10]


# -- command parsing (rule 5) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShowStatus:
    pass


@dataclass(frozen=True, slots=True)
class ShowProtocols:
    detail: bool = False
    name: str | None = None  # an exact protocol name
    pattern: str | None = None  # a quoted shell pattern (``*``, ``?``)


@dataclass(frozen=True, slots=True)
class ShowRoute:
    network: str | None = None  # prefix text, or an address for ``for``
    longest_match: bool = False  # ``for``: the most specific route covering ``network``
    detail: bool = False  # ``all``
    primary: bool = False
    protocol: str | None = None
    count: bool = False


@dataclass(frozen=True, slots=True)
class ShowBfdSessions:
    pass


@dataclass(frozen=True, slots=True)
class Configure:
    pass


@dataclass(frozen=True, slots=True)
class Down:
    pass


@dataclass(frozen=True, slots=True)
class JsonCommand:
    topic: str
    args: tuple[str, ...] = ()


Command = ShowStatus | ShowProtocols | ShowRoute | ShowBfdSessions | Configure | Down | JsonCommand
Show = ShowStatus | ShowProtocols | ShowRoute | ShowBfdSessions


class CommandError(Exception):
    """A command BIRD would refuse; ``reply`` is what it answers."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.final_text)
        self.reply = reply


_TOKEN = re.compile(r'"([^"]*)"|(\S+)')


def _tokens(line: str) -> list[tuple[str, bool]]:
    """Words and quoted strings; the flag marks a quoted string (a pattern in BIRD)."""
    return [
        (match.group(1), True) if match.group(2) is None else (match.group(2), False)
        for match in _TOKEN.finditer(line)
    ]


def _keyword(word: str, choices: Sequence[str]) -> str:
    """The keyword ``word`` names: itself, or the one choice it is a prefix of (rule 5)."""
    lowered = word.lower()
    if lowered in choices:
        return lowered
    found = [choice for choice in choices if choice.startswith(lowered)]
    if len(found) != 1:
        raise CommandError(SYNTAX_ERROR)
    return found[0]


def parse_command(line: str) -> Command:
    """Parse one command line; raises ``CommandError`` with BIRD's reply when it is refused."""
    if len(line) > MAX_COMMAND_LENGTH:
        raise CommandError(error(COMMAND_TOO_LONG, "Command too long"))
    tokens = _tokens(line)
    if not tokens or tokens[0][1]:
        raise CommandError(SYNTAX_ERROR)
    verb = _keyword(tokens[0][0], ("show", "configure", "down", "json"))
    rest = tokens[1:]
    if verb == "show":
        return _parse_show(rest)
    if verb == "configure":
        return Configure()
    if verb == "down":
        if rest:
            raise CommandError(SYNTAX_ERROR)
        return Down()
    if not rest:
        raise CommandError(SYNTAX_ERROR)
    return JsonCommand(_keyword(rest[0][0], JSON_TOPICS), tuple(word for word, _ in rest[1:]))


def _parse_show(rest: list[tuple[str, bool]]) -> Command:
    if not rest or rest[0][1]:
        raise CommandError(SYNTAX_ERROR)
    what = _keyword(rest[0][0], ("status", "protocols", "route", "bfd"))
    args = rest[1:]
    if what == "bfd":
        if len(args) < 1 or args[0][1] or _keyword(args[0][0], ("sessions",)) != "sessions":
            raise CommandError(SYNTAX_ERROR)
        if len(args) > 2:
            raise CommandError(SYNTAX_ERROR)
        return ShowBfdSessions()
    if what == "status":
        if args:
            raise CommandError(SYNTAX_ERROR)
        return ShowStatus()
    if what == "protocols":
        return _parse_show_protocols(args)
    return _parse_show_route(args)


def _parse_show_protocols(args: list[tuple[str, bool]]) -> ShowProtocols:
    detail = False
    if args and not args[0][1] and args[0][0].lower() == "all":
        detail, args = True, args[1:]
    if len(args) > 1:
        raise CommandError(SYNTAX_ERROR)
    if not args:
        return ShowProtocols(detail)
    word, quoted = args[0]
    return ShowProtocols(detail, pattern=word) if quoted else ShowProtocols(detail, name=word)


def _parse_show_route(args: list[tuple[str, bool]]) -> ShowRoute:
    network: str | None = None
    longest = detail = primary = count = False
    protocol: str | None = None
    options = ("for", "all", "primary", "protocol", "count")
    index = 0
    while index < len(args):
        word, quoted = args[index]
        index += 1
        if quoted:
            raise CommandError(SYNTAX_ERROR)
        if network is None and (word[0].isdigit() or ":" in word):
            network = _check_network(word)
            continue
        option = _keyword(word, options)
        if option == "for":
            if index >= len(args) or network is not None:
                raise CommandError(SYNTAX_ERROR)
            longest, network = True, _check_network(args[index][0])
            index += 1
        elif option == "all":
            detail = True
        elif option == "primary":
            primary = True
        elif option == "count":
            count = True
        else:
            if index >= len(args):
                raise CommandError(SYNTAX_ERROR)
            protocol = args[index][0]
            index += 1
    return ShowRoute(network, longest, detail, primary, protocol, count)


def is_network(text: str) -> bool:
    """Whether ``text`` is an address or a prefix."""
    try:
        _check_network(text)
    except CommandError:
        return False
    return True


def _check_network(text: str) -> str:
    address, slash, length = text.partition("/")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise CommandError(SYNTAX_ERROR) from None
    if slash:
        if not length.isdigit():
            raise CommandError(SYNTAX_ERROR)
        if int(length) > parsed.max_prefixlen:
            raise CommandError(error(PARSE_ERROR, f"Invalid prefix length {length}"))
    return text


# -- views ---------------------------------------------------------------------------------------


def _in_view(family_text: str, view: View) -> bool:
    return view == "all" or family_text == view


def _route_family(prefix: str) -> str:
    return "ipv6" if ":" in prefix else "ipv4"


def peers_in_view(peers: Iterable[PeerStatus], view: View) -> list[PeerStatus]:
    return [peer for peer in peers if _in_view(peer.family, view)]


# -- show status ---------------------------------------------------------------------------------


def show_status(
    status: DaemonStatus, peers: Sequence[PeerStatus], now: float, utc_offset: int
) -> Reply:
    """BIRD 1.6 ``cmd_show_status``; the ``0024`` block is what Calico's GR check looks for."""
    body: list[tuple[int, str]] = [
        (BIRD_VERSION, f"BIRD {bird_version(status.version)}"),
        (UPTIME, f"Router ID is {status.router_id or '0.0.0.0'}"),
        (UPTIME, f"Current server time is {format_datetime(now, utc_offset)}"),
        (UPTIME, f"Last reboot on {format_datetime(status.started, utc_offset)}"),
        (
            UPTIME,
            f"Last reconfiguration on {format_datetime(status.last_reconfigured, utc_offset)}",
        ),
    ]
    if status.graceful_restart_recovering:
        waiting = sum(1 for peer in peers if peer.state != ESTABLISHED)
        left = max(0, DEFAULT_GR_WAIT - int(now - status.started))
        body += [
            (GRACEFUL_RESTART_STATUS, "Graceful restart recovery in progress"),
            (GRACEFUL_RESTART_STATUS, f"  Waiting for {waiting} protocols to recover"),
            (GRACEFUL_RESTART_STATUS, f"  Wait timer is {left}/{DEFAULT_GR_WAIT}"),
        ]
    return Reply(tuple(body), STATUS_REPORT, "Daemon is up and running")


# -- show protocols ------------------------------------------------------------------------------


def protocol_state(peer: PeerStatus) -> str:
    """BIRD's protocol state column (``proto_state_name``): ``up`` once Established."""
    return "up" if peer.state == ESTABLISHED else "start"


def bgp_state_description(peer: PeerStatus) -> str:
    """The first word of BIRD's info column (``bgp_state_dsc``): the RFC 4271 state name, or
    ``Passive`` for a passive session waiting for its peer. Calico's readiness reads it."""
    if peer.passive and peer.state in WAITING_STATES:
        return "Passive"
    return peer.state


def _protocol_row(name: str, proto: str, state: str, since: str, info: str) -> str:
    return f"{name:<8} {proto:<8} {TABLE:<8} {state:<5}  {since:<10}  {info}"


def _bgp_info(peer: PeerStatus) -> str:
    error_text = peer.last_error if peer.state != ESTABLISHED else ""
    return f"{bgp_state_description(peer):<14}{error_text}"


def _peer_row(peer: PeerStatus, now: float, utc_offset: int) -> str:
    since = format_since(peer.since, now, utc_offset)
    return _protocol_row(peer.name, "BGP", protocol_state(peer), since, _bgp_info(peer))


def _static_row(status: DaemonStatus, now: float, utc_offset: int) -> str:
    return _protocol_row(
        LOCAL_PROTOCOL, "Static", "up", format_since(status.started, now, utc_offset), ""
    )


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """BIRD's ``patmatch``: ``*`` any run, ``?`` one character."""
    return re.compile(
        "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
        + r"\Z"
    )


def show_protocols(
    command: ShowProtocols,
    status: DaemonStatus,
    peers: Sequence[PeerStatus],
    routes: Sequence[RouteStatus],
    now: float,
    utc_offset: int,
) -> Reply:
    """``show protocols [all] [name | "pattern"]`` (BIRD 1.6 ``proto_cmd_show``).

    ``peers`` are already restricted to the socket's view; ``routes`` are used only for the
    ``preferred`` count of ``all``.
    """
    names = {peer.name: peer for peer in peers}
    chosen: list[PeerStatus | None]  # None stands for the static protocol row
    if command.name is not None:
        if command.name == LOCAL_PROTOCOL:
            chosen = [None]
        elif command.name in names:
            chosen = [names[command.name]]
        else:
            return error(INVALID_SYMBOL, f"{command.name} is not a protocol")
    else:
        everything: list[PeerStatus | None] = [None, *peers]
        if command.pattern is not None:
            regex = _pattern_regex(command.pattern)
            everything = [
                entry
                for entry in everything
                if regex.match(LOCAL_PROTOCOL if entry is None else entry.name)
            ]
            if not everything:
                return error(NO_PROTOCOLS_MATCH, "No protocols match")
        chosen = everything
    body: list[tuple[int, str]] = [(PROTOCOL_LIST_HEADER, PROTOCOL_HEADER)]
    for entry in chosen:
        if entry is None:
            body.append((PROTOCOL_LIST, _static_row(status, now, utc_offset)))
            if command.detail:
                body += _static_details(routes)
        else:
            body.append((PROTOCOL_LIST, _peer_row(entry, now, utc_offset)))
            if command.detail:
                body += _peer_details(entry, routes, status)
    return Reply(tuple(body), OK)


def _route_stats(imported: int, exported: int, preferred: int, received: int) -> list[str]:
    """BIRD 1.6 ``proto_show_stats``. We keep current prefix counts, not BIRD's cumulative
    update counters, so the update rows show the current counts."""
    rejected = max(0, received - imported)
    return [
        f"  Routes:         {imported} imported, {exported} exported, {preferred} preferred",
        "  Route change stats:     received   rejected   filtered    ignored   accepted",
        f"    Import updates:     {received:>10} {rejected:>10} {0:>10} {0:>10} {imported:>10}",
        f"    Import withdraws:   {0:>10} {0:>10}        --- {0:>10} {0:>10}",
        f"    Export updates:     {exported:>10} {0:>10} {0:>10}        --- {exported:>10}",
        f"    Export withdraws:   {0:>10}        ---        ---        --- {0:>10}",
    ]


def _static_details(routes: Sequence[RouteStatus]) -> list[tuple[int, str]]:
    local = sum(1 for route in routes if route.peer == "local")
    preferred = sum(1 for route in routes if route.peer == "local" and route.best)
    lines = [
        f"  Preference:     {STATIC_PREFERENCE}",
        "  Input filter:   ACCEPT",
        "  Output filter:  REJECT",
        *_route_stats(local, 0, preferred, local),
        "",
    ]
    return [(PROTOCOL_DETAILS, line) for line in lines]


def _peer_details(
    peer: PeerStatus, routes: Sequence[RouteStatus], status: DaemonStatus
) -> list[tuple[int, str]]:
    """BIRD 1.6 ``proto_show_basic_info`` + ``bgp_show_proto_info``."""
    preferred = sum(1 for route in routes if route.peer == peer.name and route.best)
    internal = peer.peer_as == peer.local_as
    lines = [
        f"  Preference:     {BGP_PREFERENCE}",
        "  Input filter:   ACCEPT",
        "  Output filter:  ACCEPT",
    ]
    if status.graceful_restart_recovering:
        pending = peer.state != ESTABLISHED
        lines.append("  GR recovery:   " + (" pending" if pending else ""))
    lines += _route_stats(
        peer.prefixes_accepted or peer.prefixes_received,
        peer.prefixes_advertised,
        preferred,
        peer.prefixes_received,
    )
    lines += [
        f"  BGP state:          {bgp_state_description(peer)}",
        f"    Neighbor address: {peer.peer_ip}",
        f"    Neighbor AS:      {peer.peer_as}",
    ]
    if peer.graceful_restart == "restarting":
        lines.append("    Neighbor graceful restart active")
    if peer.state == ESTABLISHED:
        session = ("internal multihop" if internal else "external") + (
            " AS4" if "AS4" in peer.capabilities else ""
        )
        caps = " ".join(peer.capabilities)
        lines += [
            f"    Neighbor ID:      {peer.router_id}",
            f"    Neighbor caps:    {caps}".rstrip(),
            f"    Session:          {session}",
            f"    Source address:   {peer.source_address}",
        ]
        if peer.hold_time:
            lines.append(f"    Hold timer:       -/{peer.hold_time}")
        if peer.keepalive_time:
            lines.append(f"    Keepalive timer:  -/{peer.keepalive_time}")
    if peer.last_error:
        lines.append(f"    Last error:       {peer.last_error}")
    lines.append("")
    return [(PROTOCOL_DETAILS, line) for line in lines]


# -- show route ----------------------------------------------------------------------------------


def _network_key(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> tuple[int, int, int]:
    return network.version, int(network.network_address), network.prefixlen


def _route_via(route: RouteStatus) -> str:
    if route.peer == "local" or route.blackhole:
        return "blackhole"
    interface = route.interface
    if not route.next_hop:
        return f"dev {interface}" if interface else "unreachable"
    return f"via {route.next_hop} on {interface}" if interface else f"via {route.next_hop}"


def _route_info(route: RouteStatus, internal: bool) -> str:
    """BIRD 1.6 ``bgp_get_route_info``: preference, IGP metric for recursive (iBGP) next hops,
    then the origin AS (the last in the path) and the origin code; a learned route's protocol
    preference alone (kernel 10, direct 240)."""
    if route.peer == "local":
        return f" ({STATIC_PREFERENCE})"
    if route.peer in LEARNED_PREFERENCE:
        return f" ({LEARNED_PREFERENCE[route.peer]})"
    metric = "/0" if internal else ""
    origin_as = f"AS{route.as_path[-1]}" if route.as_path else ""
    return f" ({BGP_PREFERENCE}{metric}) [{origin_as}{_ORIGIN_CHAR.get(route.origin, '?')}]"


def _route_line(
    prefix_column: str, route: RouteStatus, internal: bool, when: float, now: float, utc: int
) -> str:
    protocol = LOCAL_PROTOCOL if route.peer == "local" else route.peer
    source = (
        f" from {route.peer_ip}"
        if route.peer != "local" and route.peer_ip and route.peer_ip != route.next_hop
        else ""
    )
    primary = " *" if route.best else ""
    return (
        f"{prefix_column:<18} {_route_via(route)} [{protocol} {format_since(when, now, utc)}"
        f"{source}]{primary}{_route_info(route, internal)}"
    )


def _community(text: str) -> str:
    return "(" + ",".join(text.split(":")) + ")"


def _large_community(text: str) -> str:
    return "(" + ", ".join(text.split(":")) + ")"


def _route_attributes(route: RouteStatus) -> list[tuple[int, str]]:
    """``show route all`` (BIRD 1.6 ``rte_show`` extended attributes, in attribute-code order)."""
    if route.peer == "local":
        return [(ROUTE_DETAILS, "\tType: static unicast univ")]
    if route.peer in LEARNED_PREFERENCE:
        kind = "inherit" if route.peer == "kernel1" else "device"
        return [(ROUTE_DETAILS, f"\tType: {kind} unicast univ")]
    lines = [
        f"\tBGP.origin: {_ORIGIN_NAME.get(route.origin, 'Incomplete')}",
        f"\tBGP.as_path: {' '.join(str(asn) for asn in route.as_path)}",
        f"\tBGP.next_hop: {route.next_hop}",
    ]
    if route.med is not None:
        lines.append(f"\tBGP.med: {route.med}")
    if route.local_pref is not None:
        lines.append(f"\tBGP.local_pref: {route.local_pref}")
    if route.communities:
        lines.append("\tBGP.community: " + " ".join(_community(c) for c in route.communities))
    if route.large_communities:
        text = " ".join(_large_community(c) for c in route.large_communities)
        lines.append(f"\tBGP.large_community: {text}")
    return [(ROUTE_DETAILS, "\tType: BGP unicast univ")] + [
        (ROUTE_ATTRIBUTES, line) for line in lines
    ]


def _select_networks(
    command: ShowRoute,
    by_network: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, list[RouteStatus]],
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
    """The networks to show, in order; None when the asked network is not in the table."""
    if command.network is None:
        return sorted(by_network, key=_network_key)
    wanted = ipaddress.ip_network(command.network, strict=False)
    if not command.longest_match:
        return [wanted] if wanted in by_network else None
    covering = [
        network
        for network in by_network
        if network.version == wanted.version
        and network.prefixlen <= wanted.prefixlen
        and wanted.network_address in network
    ]
    if not covering:
        return None
    return [max(covering, key=lambda network: network.prefixlen)]


def show_route(
    command: ShowRoute,
    status: DaemonStatus,
    peers: Sequence[PeerStatus],
    routes: Sequence[RouteStatus],
    view: View,
    now: float,
    utc_offset: int,
) -> Reply:
    """``show route [[for] prefix|address] [all] [primary] [protocol name] [count]``."""
    if command.network is not None and not _in_view(_route_family(command.network), view):
        return SYNTAX_ERROR
    internal = {peer.name: peer.peer_as == peer.local_as for peer in peers}
    by_network: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, list[RouteStatus]] = {}
    for route in routes:
        if _in_view(_route_family(route.prefix), view):
            network = ipaddress.ip_network(route.prefix, strict=False)
            by_network.setdefault(network, []).append(route)
    networks = _select_networks(command, by_network)
    if networks is None:
        return error(NETWORK_NOT_IN_TABLE, "Network not in table")
    body: list[tuple[int, str]] = []
    shown = total = shown_networks = 0
    for network in networks:
        candidates = sorted(by_network[network], key=lambda route: not route.best)
        total += len(candidates)
        selected = [
            route
            for route in candidates
            if (not command.primary or route.best)
            and (
                command.protocol is None
                or (LOCAL_PROTOCOL if route.peer == "local" else route.peer) == command.protocol
            )
        ]
        if selected:
            shown_networks += 1
        shown += len(selected)
        prefix_column = str(network)
        for route in selected:
            if not command.count:
                when = route.since or status.started
                line = _route_line(
                    prefix_column, route, internal.get(route.peer, False), when, now, utc_offset
                )
                body.append((ROUTE_LIST, line))
                if command.detail:
                    body += _route_attributes(route)
            prefix_column = ""
    if command.count:
        return error(ROUTE_COUNT, f"{shown} of {total} routes for {shown_networks} networks")
    return Reply(tuple(body), OK)


# -- the JSON side channel (rule 6) --------------------------------------------------------------


def json_reply(value: object) -> Reply:
    return Reply((), OK, json.dumps(value, separators=(",", ":"), sort_keys=True))


def peers_json(peers: Iterable[PeerStatus]) -> list[dict[str, object]]:
    return [asdict(peer) for peer in peers]


def routes_json(routes: Iterable[RouteStatus]) -> list[dict[str, object]]:
    return [asdict(route) for route in routes]


def status_json(status: DaemonStatus) -> dict[str, object]:
    return asdict(status)


BFD_PROTOCOL = "bfd1"  # the name BIRD gives its first unnamed ``protocol bfd``


def _seconds_ms(milliseconds: float) -> str:
    """BIRD's ``"%7u.%03u"`` of a millisecond count."""
    whole = round(milliseconds)
    return f"{whole // 1000:7d}.{whole % 1000:03d}"


def show_bfd_sessions(peers: Iterable[PeerStatus], now: float, utc_offset: int) -> Reply:
    """Rule 8: one row per BFD session the peers ask for."""
    sessions = {peer.bfd.peer_ip: peer.bfd for peer in peers if peer.bfd is not None}
    lines = [
        (BFD_SESSIONS, f"{BFD_PROTOCOL}:"),
        (
            BFD_SESSIONS,
            f"{'IP address':<25} {'Interface':<10} {'State':<10} {'Since':<12}  "
            f"{'Interval':>8} {'Timeout':>8}",
        ),
    ]
    for address in sorted(sessions, key=ipaddress.ip_address):
        bfd = sessions[address]
        interval, timeout = _seconds_ms(bfd.tx_interval_ms), _seconds_ms(bfd.detection_time_ms)
        lines.append(
            (
                BFD_SESSIONS,
                f"{address:<25} {bfd.interface or '---':<10} {bfd.state:<10} "
                f"{format_since(bfd.since, now, utc_offset):<12}  "
                f"{interval} {timeout}",
            )
        )
    return Reply(tuple(lines), OK, "")


def render_show(
    command: Show,
    provider: StatusProvider,
    view: View,
    now: float,
    utc_offset: int,
) -> Reply:
    """Answer a ``show`` command from a provider's values, restricted to ``view``."""
    status = provider.daemon_status()
    peers = peers_in_view(provider.peer_statuses(), view)
    if isinstance(command, ShowStatus):
        return show_status(status, peers, now, utc_offset)
    if isinstance(command, ShowProtocols):
        routes = provider.route_statuses() if command.detail else []
        return show_protocols(command, status, peers, routes, now, utc_offset)
    if isinstance(command, ShowBfdSessions):
        return show_bfd_sessions(peers, now, utc_offset)
    return show_route(command, status, peers, provider.route_statuses(), view, now, utc_offset)
