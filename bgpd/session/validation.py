"""Our OPEN, and the checks a received OPEN must pass (RFC 4271 §6.2, RFC 5492, RFC 6793).

Rules:
1. ``local_open`` derives every capability from the ``SessionConfig``; nothing else adds any.
2. ``check_open`` returns the exact NOTIFICATION as a ``MessageError`` (or None). The codec has
   already rejected a bad version, hold time 1-2 and BGP Identifier 0 while decoding.
3. The order of checks follows RFC 4271 §6.2: peer AS, BGP Identifier, hold time, then the
   capability rules (RFC 5492 §5).
"""

from __future__ import annotations

from bgpd.session.config import PeerAsKind, SessionConfig
from bgpd.wire.capabilities import (
    AddPath,
    Capability,
    EnhancedRouteRefresh,
    ExtendedMessage,
    FourOctetAs,
    GracefulRestart,
    Multiprotocol,
    RouteRefresh,
    encode_capability,
)
from bgpd.wire.constants import AS_TRANS, ErrorCode, OpenSubcode
from bgpd.wire.errors import MessageError
from bgpd.wire.messages import Open
from bgpd.wire.negotiated import open_asn, two_octet_as

GR_RESTART_STATE = 0x8  # RFC 4724 §3 restart flags: R
GR_FORWARDING_STATE = 0x80  # RFC 4724 §3 per-family flags: F


def local_capabilities(config: SessionConfig) -> tuple[Capability, ...]:
    caps: list[Capability] = [Multiprotocol(f) for f in config.families]
    if config.route_refresh:
        caps += [RouteRefresh(), EnhancedRouteRefresh()]
    if config.extended_message:
        caps.append(ExtendedMessage())
    if config.graceful_restart_time is not None:
        flags = GR_FORWARDING_STATE if config.graceful_restart_forwarding else 0
        caps.append(
            GracefulRestart(
                GR_RESTART_STATE if config.graceful_restart_restarting else 0,
                config.graceful_restart_time,
                tuple((f, flags) for f in config.families),
            )
        )
    caps.append(FourOctetAs(config.local_as))  # RFC 6793 §3: always advertised
    if config.add_path:
        caps.append(AddPath(tuple((f, config.add_path) for f in config.families)))
    caps.extend(config.extra_capabilities)
    return tuple(caps)


def local_open(config: SessionConfig) -> Open:
    """RFC 4271 §4.2; My AS is AS_TRANS when our AS needs 4 octets (RFC 6793 §4.1)."""
    return Open(
        my_as=two_octet_as(config.local_as),
        hold_time=config.hold_time,
        bgp_id=config.bgp_id,
        capabilities=local_capabilities(config),
    )


def _error(subcode: int, why: str, data: bytes = b"") -> MessageError:
    return MessageError(ErrorCode.OPEN_MESSAGE, subcode, data, why)


def _peer_as_error(config: SessionConfig, remote: Open) -> MessageError | None:
    asn = open_asn(remote)
    four = remote.capability(FourOctetAs)
    # RFC 6793 §4.1: a 4-octet AS speaker puts AS_TRANS in My AS when its AS needs 4 octets.
    if four is not None and remote.my_as not in (four.asn, AS_TRANS):
        return _error(OpenSubcode.BAD_PEER_AS, f"My AS {remote.my_as} but 4-octet AS {four.asn}")
    if four is not None and four.asn > 0xFFFF and remote.my_as != AS_TRANS:
        return _error(OpenSubcode.BAD_PEER_AS, f"4-octet AS {four.asn} without AS_TRANS")
    expected = config.peer_as
    if expected is PeerAsKind.INTERNAL:
        ok = asn == config.local_as
    elif expected is PeerAsKind.EXTERNAL:
        ok = asn != config.local_as
    else:
        ok = asn == expected
    if not ok:
        # RFC 4271 §6.2: Bad Peer AS; the data carries the 2-octet AS field as received.
        return _error(
            OpenSubcode.BAD_PEER_AS,
            f"peer AS {asn}, expected {getattr(expected, 'value', expected)}",
            remote.my_as.to_bytes(2, "big"),
        )
    return None


def check_open(config: SessionConfig, remote: Open) -> MessageError | None:
    """The NOTIFICATION a received OPEN earns, or None when it is acceptable."""
    error = _peer_as_error(config, remote)
    if error is not None:
        return error
    asn = open_asn(remote)
    # RFC 6286 §2.2: identifiers must differ within an AS; RFC 4271 §6.2 Bad BGP Identifier.
    if remote.bgp_id == 0 or (remote.bgp_id == config.bgp_id and config.is_internal(asn)):
        return _error(OpenSubcode.BAD_BGP_IDENTIFIER, f"BGP identifier {remote.bgp_id:#x}")
    # RFC 4271 §4.2, §6.2: a hold time of one or two seconds is unacceptable.
    negotiated_hold = min(remote.hold_time, config.hold_time)
    if remote.hold_time in (1, 2) or 0 < negotiated_hold < 3:
        return _error(
            OpenSubcode.UNACCEPTABLE_HOLD_TIME,
            f"hold time {remote.hold_time}",
        )
    present = {cap.code for cap in remote.capabilities}
    missing = sorted(config.required_capabilities - present)
    if missing:
        # RFC 5492 §5: Unsupported Capability, the data lists the capabilities that are missing.
        ours = {cap.code: cap for cap in local_capabilities(config)}
        data = b"".join(
            encode_capability(ours[code]) if code in ours else bytes((code, 0)) for code in missing
        )
        return _error(OpenSubcode.UNSUPPORTED_CAPABILITY, f"capabilities {missing} required", data)
    return None
