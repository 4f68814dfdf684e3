"""BIRD control-protocol goldens: our replies against replies captured from real BIRD 1.6.8.

The captures in ``data/bird16/`` are raw socket bytes from ``bird`` 1.6.8 (Debian) run in a
namespace with the sessions rebuilt below by ``FixedStatus`` (same names, addresses, times).
Where our reply cannot be identical the test says which line differs and why; everything else is
compared byte for byte.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bgpd.control import birdproto
from bgpd.control.birdproto import (
    CommandError,
    JsonCommand,
    ShowBfdSessions,
    ShowProtocols,
    ShowRoute,
    ShowStatus,
    View,
    encode_reply,
    parse_command,
)
from bgpd.status import BfdStatus, DaemonStatus, FixedStatus, PeerStatus, RouteStatus

DATA = Path(__file__).parent / "data" / "bird16"
OUR_VERSION = "BIRD v0.1.0+bgpd"


def capture(name: str) -> str:
    """A captured reply, without its ``# command`` header line."""
    text = (DATA / f"{name}.txt").read_text()
    return text.split("\n", 1)[1] if text.startswith("# ") else text


def at(clock: str) -> float:
    """Epoch seconds of ``clock`` (HH:MM:SS) on the capture day, 2026-11-25 UTC."""
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return float(calendar.timegm((2026, 11, 25, hours, minutes, seconds)))


def server_time(reply: str) -> float:
    match = re.search(r"Current server time is \d{4}-\d\d-\d\d (\d\d:\d\d:\d\d)", reply)
    assert match is not None
    return at(match.group(1))


@dataclass(frozen=True, slots=True)
class RouteWithInterface(RouteStatus):
    """RouteStatus plus the outgoing interface BIRD prints after ``on``."""

    interface: str = ""


def bird1_state() -> FixedStatus:
    """The BIRD 1.6 speaker the captures were taken from (10.99.0.1, AS 64512)."""
    status = DaemonStatus(
        version="0.1.0",
        router_id="10.99.0.1",
        node="node-a",
        started=at("06:20:32"),
        last_reconfigured=at("06:21:09"),
    )
    mesh = PeerStatus(
        name="Mesh_10_99_0_2",
        peer_ip="10.99.0.2",
        peer_as=64512,
        local_as=64512,
        state="Established",
        since=at("06:20:36"),
        router_id="10.99.0.2",
        capabilities=("refresh", "enhanced-refresh", "restart-able", "llgr-aware", "AS4"),
        source_address="10.99.0.1",
        hold_time=240,
        keepalive_time=80,
        prefixes_received=2,
        prefixes_accepted=2,
        prefixes_advertised=3,
    )
    unreachable = PeerStatus(
        name="Node_10_99_0_9",
        peer_ip="10.99.0.9",
        peer_as=64513,
        local_as=64512,
        state="Connect",
        since=at("06:20:32"),
        last_error="Socket: No route to host",
    )
    external = PeerStatus(
        name="Node_10_99_0_12",
        peer_ip="10.99.0.12",
        peer_as=64513,
        local_as=64512,
        state="Established",
        since=at("06:21:12"),
        router_id="10.99.0.2",
        source_address="10.99.0.11",
    )
    routes: list[RouteStatus] = [
        RouteStatus("192.168.10.0/26", "", (), True, "local", since=at("06:20:32")),
    ]
    for prefix in ("192.168.20.0/26", "192.168.20.64/26"):
        routes += [
            RouteWithInterface(
                prefix,
                "10.99.0.2",
                (),
                True,
                "Mesh_10_99_0_2",
                peer_ip="10.99.0.2",
                local_pref=100,
                since=at("06:20:36"),
                interface="hG-va",
            ),
            RouteWithInterface(
                prefix,
                "10.99.0.12",
                (64513,),
                False,
                "Node_10_99_0_12",
                peer_ip="10.99.0.12",
                local_pref=100,
                med=7,
                communities=("65000:1",),
                large_communities=("65000:1:2",),
                since=at("06:21:12"),
                interface="hG-va",
            ),
        ]
    return FixedStatus(status, [mesh, unreachable, external], routes)


def answer(provider: FixedStatus, line: str, now: float, view: View = "ipv4") -> str:
    command = parse_command(line)
    assert isinstance(command, ShowStatus | ShowProtocols | ShowRoute)
    return birdproto.render_show(command, provider, view, now, 0).encode()


def refused(line: str) -> str:
    with pytest.raises(CommandError) as caught:
        parse_command(line)
    return caught.value.reply.encode()


def without_lines(text: str, *starts: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(starts))


NOW = at("06:26:06")


# -- framing and greeting ------------------------------------------------------------------------


def test_greeting_matches_bird_with_our_version() -> None:
    assert birdproto.greeting("0.1.0") == capture("greeting").replace("BIRD 1.6.8", OUR_VERSION)


def test_framing_continues_same_code_with_a_space_and_restarts_on_a_new_code() -> None:
    text = encode_reply([(1007, "a"), (1007, "b"), (1008, "c"), (1007, "d")], 0)
    assert text == "1007-a\n b\n1008-c\n1007-d\n0000 \n"


# -- show status ---------------------------------------------------------------------------------


def test_show_status_is_birds_byte_for_byte() -> None:
    expected = capture("show_status").replace("BIRD 1.6.8", OUR_VERSION)
    assert answer(bird1_state(), "show status", server_time(expected)) == expected


def test_show_status_during_graceful_restart_recovery_has_the_0024_block() -> None:
    expected = capture("gr_show_status").replace("BIRD 1.6.8", OUR_VERSION)
    status = DaemonStatus("0.1.0", "10.99.0.21", "node-a", at("06:26:06"), at("06:26:06"), True)
    waiting = PeerStatus("Mesh_10_99_0_22", "10.99.0.22", 64512, 64512, "Idle", at("06:26:06"))
    provider = FixedStatus(status, [replace(waiting, passive=True)])
    assert answer(provider, "show status", server_time(expected)) == expected


# -- show protocols ------------------------------------------------------------------------------


def test_show_protocols_matches_bird_for_the_rows_we_have() -> None:
    # BIRD's kernel1/device1/direct1 pseudo-protocols have no counterpart here; static1 (the
    # locally originated routes) becomes the first row and so takes the 1002- code.
    expected = without_lines(capture("show_protocols"), " device1", " direct1")
    expected = re.sub(r"1002-kernel1 .*\n static1", "1002-static1", expected)
    assert answer(bird1_state(), "show protocols", NOW) == expected


def test_show_protocols_with_a_quoted_pattern() -> None:
    assert answer(bird1_state(), 'show protocols "Mesh*"', NOW) == capture("show_protocols_pattern")


def test_show_protocols_of_an_unknown_name_is_9002() -> None:
    assert answer(bird1_state(), "show protocols nope", NOW) == capture("show_protocols_unknown")


def test_show_protocols_all_of_a_session_that_is_not_up_is_birds_byte_for_byte() -> None:
    got = answer(bird1_state(), "show protocols all Node_10_99_0_9", NOW)
    assert got == capture("show_protocols_all_down")


def test_show_protocols_all_of_an_established_session() -> None:
    # Differences, on purpose: we keep current prefix counts rather than BIRD's cumulative
    # update counters (the Import/Export withdraw and update rows), and we do not expose the
    # remaining hold/keepalive time ("-/240"). Every other line is BIRD's.
    got = answer(bird1_state(), "show protocols all Mesh_10_99_0_2", NOW).splitlines()
    expected = capture("show_protocols_all_mesh").splitlines()
    differing = ("     Import withdraws:", "     Export updates:", "     Hold timer:")
    differing += ("     Keepalive timer:",)
    assert len(got) == len(expected)
    for ours, birds in zip(got, expected, strict=True):
        if birds.startswith(differing):
            assert ours.split(":")[0] == birds.split(":")[0]
        else:
            assert ours == birds
    assert "     Hold timer:       -/240" in got
    assert "     Export updates:              3          0          0        ---          3" in got


def test_show_protocols_during_recovery_shows_passive_and_gr_pending() -> None:
    status = DaemonStatus("0.1.0", "10.99.0.21", "node-a", at("06:26:06"), at("06:26:06"), True)
    waiting = PeerStatus(
        "Mesh_10_99_0_22", "10.99.0.22", 64512, 64512, "Active", at("06:26:06"), passive=True
    )
    provider = FixedStatus(status, [waiting])
    # BIRD's device1 row is our static1 row (same widths).
    expected = capture("gr_show_protocols").replace("device1  Device", "static1  Static")
    assert answer(provider, "show protocols", at("06:26:07")) == expected
    # That BIRD exported nothing ("export none"); ours always has an export policy.
    expected_all = capture("gr_show_protocols_all").replace(
        "Output filter:  REJECT", "Output filter:  ACCEPT"
    )
    assert answer(provider, "show protocols all Mesh_10_99_0_22", at("06:26:07")) == expected_all


def test_since_older_than_twenty_hours_is_a_date() -> None:
    provider = bird1_state()
    reply = answer(provider, "show protocols Mesh_10_99_0_2", at("06:20:36") + 20 * 3600)
    assert "1002-Mesh_10_99_0_2 BGP      master   up     2026-11-25  Established   \n" in reply
    reply = answer(provider, "show protocols Mesh_10_99_0_2", at("06:20:36") + 20 * 3600 - 1)
    assert "   06:20:36    Established" in reply


def test_idle_session_with_a_reason_token_keeps_calicos_six_columns() -> None:
    provider = bird1_state()
    provider.peers = [replace(provider.peers[0], state="Idle", last_error="hold-timer-expired")]
    row = answer(provider, "show protocols Mesh_10_99_0_2", NOW).splitlines()[1]
    columns = row[5:].split()
    assert columns[:6] == ["Mesh_10_99_0_2", "BGP", "master", "start", "06:20:36", "Idle"]
    assert columns[6:] == ["hold-timer-expired"]


# -- show route ----------------------------------------------------------------------------------

# Our table has no static "via" route and no direct (connected) routes.
_NOT_OURS = (" 192.168.10.64/26", " 10.99.0.0/24")


def test_show_route_matches_bird_for_the_routes_we_have() -> None:
    expected = without_lines(capture("show_route"), *_NOT_OURS)
    assert answer(bird1_state(), "show route", NOW) == expected


def test_show_route_primary() -> None:
    expected = without_lines(capture("show_route_primary"), *_NOT_OURS)
    assert answer(bird1_state(), "show route primary", NOW) == expected


def test_show_route_for_prefix_all_is_birds_byte_for_byte() -> None:
    reply = answer(bird1_state(), "show route for 192.168.20.0/26 all", NOW)
    assert reply == capture("show_route_for_all")


def test_show_route_for_an_address_is_the_longest_match() -> None:
    reply = answer(bird1_state(), "show route for 192.168.20.5", NOW)
    assert reply == capture("show_route_for_address")


def test_show_route_exact_prefix() -> None:
    reply = answer(bird1_state(), "show route 192.168.20.64/26", NOW)
    assert reply.startswith("1007-192.168.20.64/26   via 10.99.0.2 on hG-va [Mesh_10_99_0_2 ")
    assert answer(bird1_state(), "show route 192.168.20.0/25", NOW) == capture(
        "show_route_not_found"
    )


def test_show_route_errors_are_birds() -> None:
    provider = bird1_state()
    assert answer(provider, "show route for 1.2.3.4", NOW) == capture("show_route_not_found")
    assert refused("show route for 10.0.0.0/99") == capture("show_route_bad_length")
    assert answer(provider, "show route protocol Node_10_99_0_9", NOW) == capture(
        "show_route_protocol_empty"
    )


def test_show_route_count_uses_birds_sentence() -> None:
    assert re.fullmatch(r"0014 \d+ of \d+ routes for \d+ networks\n", capture("show_route_count"))
    assert answer(bird1_state(), "show route count", NOW) == "0014 5 of 5 routes for 3 networks\n"
    assert answer(bird1_state(), "show route primary count", NOW) == (
        "0014 3 of 5 routes for 3 networks\n"
    )


def test_show_route_without_an_interface_omits_on() -> None:
    provider = bird1_state()
    provider.routes = [
        RouteStatus(
            "10.1.0.0/24",
            "10.99.0.2",
            (65001, 65002),
            True,
            "Node_10_99_0_12",
            peer_ip="10.99.0.12",
            origin="incomplete",
            since=at("06:21:12"),
        )
    ]
    line = answer(provider, "show route", NOW).splitlines()[0]
    assert line == (
        "1007-10.1.0.0/24        via 10.99.0.2 [Node_10_99_0_12 06:21:12 from 10.99.0.12] * "
        "(100) [AS65002?]"
    )


# -- views (one socket per family) ---------------------------------------------------------------


def test_ipv4_and_ipv6_views_split_sessions_and_routes() -> None:
    provider = bird1_state()
    provider.peers.append(
        PeerStatus("Mesh_fd00__2", "fd00::2", 64512, 64512, "Established", NOW, family="ipv6")
    )
    provider.routes.append(RouteStatus("fd00:10::/122", "fd00::2", (), True, "Mesh_fd00__2"))
    v4 = answer(provider, "show protocols", NOW, "ipv4")
    v6 = answer(provider, "show protocols", NOW, "ipv6")
    assert "Mesh_fd00__2" not in v4 and "Mesh_10_99_0_2" in v4
    assert "Mesh_fd00__2" in v6 and "Mesh_10_99_0_2" not in v6
    assert "fd00:10::/122" in answer(provider, "show route", NOW, "ipv6")
    assert "fd00:10::/122" not in answer(provider, "show route", NOW, "ipv4")
    assert answer(provider, "show route for fd00:10::1", NOW, "ipv4") == "9001 syntax error\n"


# -- parsing -------------------------------------------------------------------------------------


def test_unknown_commands_are_syntax_errors_like_bird() -> None:
    assert refused("show foo") == capture("syntax_error")
    assert refused("") == "9001 syntax error\n"
    assert refused("show route bogus") == "9001 syntax error\n"
    assert refused("x" * 5000) == "9000 Command too long\n"


def test_unambiguous_abbreviations_are_accepted_as_an_extension() -> None:
    # Real BIRD refuses abbreviations on the socket (its clients expand them first):
    assert capture("abbreviation_refused") == "9001 syntax error\n"
    # we accept any unambiguous keyword prefix, so raw-socket users get what birdc users get.
    assert parse_command("sh p") == ShowProtocols()
    assert parse_command("show proto all Mesh_1") == ShowProtocols(True, name="Mesh_1")
    assert parse_command("s st") == ShowStatus()
    assert parse_command("sh ro for 10.0.0.1 a") == ShowRoute("10.0.0.1", True, detail=True)
    assert parse_command("show route protocol Mesh_1 all") == ShowRoute(
        None, detail=True, protocol="Mesh_1"
    )
    assert refused("show pr x y") == "9001 syntax error\n"


def test_json_side_channel_commands() -> None:
    assert parse_command("json peers") == JsonCommand("peers")
    assert parse_command("json routes 10.0.0.0/24") == JsonCommand("routes", ("10.0.0.0/24",))
    assert parse_command("json stop withdraw going away") == JsonCommand(
        "stop", ("withdraw", "going", "away")
    )
    assert refused("json") == "9001 syntax error\n"
    assert refused("json nonsense") == "9001 syntax error\n"


def test_configure_and_down_are_birds_commands() -> None:
    assert parse_command("configure") == birdproto.Configure()
    assert parse_command("down") == birdproto.Down()
    # BIRD's own reply to ``down`` (what the server sends after requesting the stop):
    assert birdproto.error(birdproto.SHUTDOWN_REQUESTED, "Shutdown requested").encode() == (
        capture("down")
    )


def test_json_reply_is_one_final_line() -> None:
    reply = birdproto.json_reply(birdproto.peers_json(bird1_state().peers)).encode()
    assert reply.startswith("0000 [") and reply.count("\n") == 1


def test_local_time_offset_shifts_clock_columns() -> None:
    provider = bird1_state()
    command = parse_command("show protocols Mesh_10_99_0_2")
    assert isinstance(command, ShowProtocols)
    reply = birdproto.render_show(command, provider, "ipv4", NOW, 3600).encode()
    assert " 07:20:36 " in reply


def test_civil_conversion_across_leap_days_and_centuries() -> None:
    for year, month, day in ((2000, 2, 29), (2100, 3, 1), (1970, 1, 1), (2024, 12, 31)):
        seconds = calendar.timegm((year, month, day, 23, 59, 58))
        assert birdproto.format_datetime(seconds, 0) == f"{year:04d}-{month:02d}-{day:02d} 23:59:58"


# -- show bfd sessions (BIRD 2) ------------------------------------------------------------------


def test_show_bfd_sessions_is_bird2s_layout() -> None:
    bfd = BfdStatus(
        peer_ip="10.99.0.12",
        local_ip="10.99.0.11",
        interface="eth0",
        state="Up",
        since=at("06:21:10"),
        tx_interval_ms=100.0,
        detection_time_ms=300.0,
        desired_min_tx_ms=100.0,
        required_min_rx_ms=100.0,
        detect_mult=3,
        ups=1,
    )
    peer = PeerStatus("Node_10_99_0_12", "10.99.0.12", 64513, 64512, "Established", at("06:21:12"))
    status = DaemonStatus("2.0", "10.99.0.11", "n", NOW, NOW)
    provider = FixedStatus(status, [replace(peer, bfd=bfd), peer])
    command = parse_command("show bfd sessions")
    assert isinstance(command, ShowBfdSessions)
    assert birdproto.render_show(command, provider, "ipv4", NOW, 0).encode() == (
        "1020-bfd1:\n"
        " IP address                Interface  State      Since         Interval  Timeout\n"
        " 10.99.0.12                eth0       Up         06:21:10            0.100       0.300\n"
        "0000 \n"
    )
    assert refused("show bfd") == refused("show bfd peers") == "9001 syntax error\n"
