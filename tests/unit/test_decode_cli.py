"""``bgpd decode``: raw BGP in, one JSON object per message out, fields as the README documents
("Looking at raw BGP"), exit status 1 exactly when some message failed to decode.

The messages are built with the codec's own encoders; one run goes through ``python -m bgpd`` in
a subprocess, the rest call ``bgpd.cli.main`` directly.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bgpd.cli import main
from bgpd.wire.capabilities import AddPath, FourOctetAs, Multiprotocol
from bgpd.wire.codec import encode_message
from bgpd.wire.messages import (
    Announcement,
    Keepalive,
    Notification,
    Open,
    RouteRefresh,
    Update,
    Withdrawal,
    frame,
)
from bgpd.wire.negotiated import Negotiated
from bgpd.wire.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPathSegment,
    PathAttributes,
    prefix_from_str,
)

REPO = Path(__file__).resolve().parents[2]
ASN4 = Negotiated(families=frozenset({IPV4_UNICAST, IPV6_UNICAST}))

ATTRS = PathAttributes(
    origin=0,
    as_path=(AsPathSegment(2, (64512, 4200000001)),),
    next_hop=bytes([10, 0, 0, 1]),
    med=5,
    local_pref=200,
    communities=(64512 << 16 | 10,),
    large_communities=((4200000001, 1, 2),),
    originator_id=bytes([10, 0, 0, 9]),
    cluster_list=(bytes([10, 0, 0, 8]),),
)
OPEN = encode_message(
    Open(
        my_as=64512,
        hold_time=90,
        bgp_id=0x0A000001,
        capabilities=(
            Multiprotocol(IPV4_UNICAST),
            FourOctetAs(4200000001),
            AddPath(((IPV4_UNICAST, 3),)),
        ),
    )
)
UPDATE = encode_message(
    Update(
        withdrawn=(Withdrawal(IPV4_UNICAST, [prefix_from_str("10.9.0.0/16")]),),
        announced=(Announcement(IPV4_UNICAST, ATTRS, [prefix_from_str("10.1.0.0/24")]),),
        attributes=ATTRS,
    ),
    ASN4,
)
V6_UPDATE = encode_message(
    Update(
        announced=(
            Announcement(
                IPV6_UNICAST,
                PathAttributes(
                    origin=2,
                    as_path=(AsPathSegment(2, (64512,)),),
                    next_hop=bytes.fromhex("20010db8000000000000000000000001"),
                ),
                [prefix_from_str("2001:db8:1::/48")],
            ),
        ),
        attributes=PathAttributes(origin=2, as_path=(AsPathSegment(2, (64512,)),)),
    ),
    ASN4,
)
# MP_REACH_NLRI whose IPv6 prefix length is 129: UPDATE/Optional Attribute Error (RFC 4760 §7)
# with the whole attribute as data (RFC 4271 §6.3).
BAD_MP_REACH = bytes.fromhex("900e0016000201") + b"\x10" + bytes(16) + b"\x00\x81"
BAD_ATTRS = bytes.fromhex("4001010040020602010000fc00") + BAD_MP_REACH  # ORIGIN, AS_PATH
BAD_UPDATE = frame(2, b"\x00\x00" + struct.pack("!H", len(BAD_ATTRS)) + BAD_ATTRS)
KEEPALIVE = encode_message(Keepalive())
NOTIFICATION = encode_message(Notification.shutdown(2, "maintenance"))
ROUTE_REFRESH = encode_message(RouteRefresh(IPV4_UNICAST, 1))


def run(tmp_path: Path, data: bytes, *args: str, capsys: pytest.CaptureFixture[str]) -> Any:
    source = tmp_path / "input"
    source.write_bytes(data)
    status = main(["decode", *args, str(source)])
    lines = capsys.readouterr().out.splitlines()
    return status, [json.loads(line) for line in lines]


def hex_lines(*messages: bytes) -> bytes:
    return b"".join(m.hex().encode() + b"\n" for m in messages)


def check_good_messages(out: list[dict[str, Any]]) -> None:
    """The README's fields for the OPEN, UPDATE, KEEPALIVE, NOTIFICATION and ROUTE-REFRESH."""
    opened, update, v6, keepalive, notification, refresh = out
    assert opened["type"] == "open"
    assert opened["my_as"] == 64512 and opened["bgp_id"] == "10.0.0.1"
    assert {"name": "four-octet-as", "asn": 4200000001} in opened["capabilities"]
    assert {"name": "multiprotocol", "family": "ipv4-unicast"} in opened["capabilities"]

    assert update["type"] == "update"
    assert update["announce"] == [
        {"prefix": "10.1.0.0/24", "next_hop": "10.0.0.1", "path_id": None}
    ]
    assert update["withdraw"] == ["10.9.0.0/16"]
    attrs = update["attributes"]
    assert attrs["origin"] == "igp"
    assert attrs["as_path"] == [{"type": "as-sequence", "asns": [64512, 4200000001]}]
    assert (attrs["med"], attrs["local_pref"]) == (5, 200)
    assert attrs["communities"] == ["64512:10"]
    assert attrs["large_communities"] == ["4200000001:1:2"]
    assert attrs["originator_id"] == "10.0.0.9"
    assert attrs["cluster_list"] == ["10.0.0.8"]
    assert "issues" not in update and "treat_as_withdraw" not in update

    assert v6["announce"] == [
        {"prefix": "2001:db8:1::/48", "next_hop": "2001:db8::1", "path_id": None}
    ]
    assert v6["attributes"]["origin"] == "incomplete"
    assert keepalive == {"type": "keepalive"}
    assert notification["type"] == "notification"
    assert (notification["code"], notification["subcode"]) == (6, 2)
    assert notification["shutdown_message"] == "maintenance"
    assert refresh == {"type": "route-refresh", "family": "ipv4-unicast", "subtype": "begin"}


GOOD = (OPEN, UPDATE, V6_UPDATE, KEEPALIVE, NOTIFICATION, ROUTE_REFRESH)


def test_hex_lines_through_python_m_bgpd(tmp_path: Path) -> None:
    source = tmp_path / "messages.txt"
    lines = [m.hex() for m in GOOD[:3]] + [BAD_UPDATE.hex()] + [m.hex() for m in GOOD[3:]]
    source.write_text("# a capture\n\n" + "\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "bgpd", "decode", "--hex", str(source)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == 7
    bad = out.pop(3)
    assert bad["type"] == "update"
    assert (bad["error"]["code"], bad["error"]["subcode"]) == (3, 9)
    assert bad["error"]["reason"]
    assert bad["error"]["data"] == BAD_MP_REACH.hex()
    check_good_messages(out)  # the stream goes on after the bad message


def test_hex_lines_all_good_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(tmp_path, hex_lines(*GOOD), "--hex", capsys=capsys)
    assert status == 0
    check_good_messages(out)


def test_hex_line_that_is_not_hex(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(tmp_path, hex_lines(KEEPALIVE) + b"zz not hex\n", "--hex", capsys=capsys)
    assert status == 1
    assert out[0] == {"type": "keepalive"}
    assert out[1]["type"] == "invalid" and {"code", "subcode", "reason"} <= set(out[1]["error"])


def test_binary_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(tmp_path, b"".join(GOOD), capsys=capsys)
    assert status == 0
    check_good_messages(out)


def test_binary_stream_resynchronises_after_a_bad_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = b"\x00" * 16 + KEEPALIVE[16:]  # RFC 4271 §6.1: Connection Not Synchronized
    stream = b"".join(GOOD[:2]) + broken + BAD_UPDATE + b"".join(GOOD[2:])
    status, out = run(tmp_path, stream, capsys=capsys)
    assert status == 1
    assert len(out) == 8
    assert out[2]["type"] == "invalid"
    assert (out[2]["error"]["code"], out[2]["error"]["subcode"]) == (1, 1)
    assert out[3]["type"] == "update"
    assert (out[3]["error"]["code"], out[3]["error"]["subcode"]) == (3, 9)
    check_good_messages(out[:2] + out[4:])


def test_truncated_binary_stream_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = run(tmp_path, KEEPALIVE + UPDATE[:30], capsys=capsys)
    assert status == 1
    assert out[0] == {"type": "keepalive"}
    assert out[1]["type"] == "invalid" and out[1]["error"]["code"] == 1


def _two_octet_update() -> bytes:
    # ORIGIN IGP, AS_PATH AS_SEQUENCE 64512 64513 in 2-octet form, NEXT_HOP 10.0.0.1, 10.2.0.0/24.
    attrs = bytes.fromhex("400101004002060202fc00fc014003040a000001")
    return frame(2, b"\x00\x00" + struct.pack("!H", len(attrs)) + attrs + b"\x18\x0a\x02\x00")


def test_no_asn4_reads_two_octet_as_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = hex_lines(_two_octet_update())
    status, (update,) = run(tmp_path, data, "--hex", "--no-asn4", capsys=capsys)
    assert status == 0
    assert update["attributes"]["as_path"] == [{"type": "as-sequence", "asns": [64512, 64513]}]
    assert update["announce"][0]["prefix"] == "10.2.0.0/24"
    # Read with 4-octet ASNs the segment overruns: treat-as-withdraw (RFC 7606 §7.2).
    status, (update,) = run(tmp_path, data, "--hex", "--asn4", capsys=capsys)
    assert status == 0
    assert update["treat_as_withdraw"] and update["announce"] == []
    assert update["withdraw"] == ["10.2.0.0/24"]
    assert update["issues"][0]["attribute"] == 2


def test_add_path_reads_path_identifiers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sender = Negotiated(add_path_tx=frozenset({IPV4_UNICAST}))
    wire = encode_message(
        Update(
            withdrawn=(Withdrawal(IPV4_UNICAST, [prefix_from_str("10.9.0.0/16")], [9]),),
            announced=(Announcement(IPV4_UNICAST, ATTRS, [prefix_from_str("10.1.0.0/24")], [7]),),
            attributes=ATTRS,
        ),
        sender,
    )
    status, (update,) = run(
        tmp_path, hex_lines(wire), "--hex", "--add-path", "ipv4-unicast", capsys=capsys
    )
    assert status == 0
    assert update["announce"] == [{"prefix": "10.1.0.0/24", "next_hop": "10.0.0.1", "path_id": 7}]
    assert update["withdraw"] == ["10.9.0.0/16"] and update["withdraw_path_ids"] == [9]
    # Without --add-path the path identifiers read as prefixes: this one does not decode.
    status, (update,) = run(tmp_path, hex_lines(wire), "--hex", capsys=capsys)
    assert status == 1
    assert (update["error"]["code"], update["error"]["subcode"]) == (3, 10)
