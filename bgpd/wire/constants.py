"""Numbers of the BGP wire protocol, as IntEnums: message types, attribute codes and flags,
address families, capability codes, and NOTIFICATION codes and subcodes.

Rules:
1. Every value cites the RFC that assigns it; names follow the RFC's wording.
2. Pure data: no behaviour lives here.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

MARKER = b"\xff" * 16
HEADER_LEN = 19  # RFC 4271 §4.1
MAX_MESSAGE_LEN = 4096  # RFC 4271 §4.1
MAX_EXTENDED_MESSAGE_LEN = 65535  # RFC 8654 §3
AS_TRANS = 23456  # RFC 6793 §9
BGP_VERSION = 4


class MessageType(IntEnum):
    """RFC 4271 §4.1, RFC 2918 §3."""

    OPEN = 1
    UPDATE = 2
    NOTIFICATION = 3
    KEEPALIVE = 4
    ROUTE_REFRESH = 5


class Afi(IntEnum):
    IPV4 = 1
    IPV6 = 2


class Safi(IntEnum):
    UNICAST = 1
    MULTICAST = 2


class AttrFlag(IntFlag):
    """RFC 4271 §4.3 attribute flags."""

    OPTIONAL = 0x80
    TRANSITIVE = 0x40
    PARTIAL = 0x20
    EXTENDED_LENGTH = 0x10


class AttrType(IntEnum):
    ORIGIN = 1  # RFC 4271
    AS_PATH = 2  # RFC 4271
    NEXT_HOP = 3  # RFC 4271
    MULTI_EXIT_DISC = 4  # RFC 4271
    LOCAL_PREF = 5  # RFC 4271
    ATOMIC_AGGREGATE = 6  # RFC 4271
    AGGREGATOR = 7  # RFC 4271
    COMMUNITIES = 8  # RFC 1997
    ORIGINATOR_ID = 9  # RFC 4456
    CLUSTER_LIST = 10  # RFC 4456
    MP_REACH_NLRI = 14  # RFC 4760
    MP_UNREACH_NLRI = 15  # RFC 4760
    EXTENDED_COMMUNITIES = 16  # RFC 4360
    AS4_PATH = 17  # RFC 6793
    AS4_AGGREGATOR = 18  # RFC 6793
    LARGE_COMMUNITY = 32  # RFC 8092


class Origin(IntEnum):
    """RFC 4271 §5.1.1."""

    IGP = 0
    EGP = 1
    INCOMPLETE = 2


class SegmentType(IntEnum):
    """AS_PATH segment types: RFC 4271 §4.3, RFC 5065 §3 (confederations)."""

    AS_SET = 1
    AS_SEQUENCE = 2
    AS_CONFED_SEQUENCE = 3
    AS_CONFED_SET = 4


class CapabilityCode(IntEnum):
    MULTIPROTOCOL = 1  # RFC 4760
    ROUTE_REFRESH = 2  # RFC 2918
    EXTENDED_NEXT_HOP = 5  # RFC 8950
    EXTENDED_MESSAGE = 6  # RFC 8654
    GRACEFUL_RESTART = 64  # RFC 4724
    FOUR_OCTET_AS = 65  # RFC 6793
    ADD_PATH = 69  # RFC 7911
    ENHANCED_ROUTE_REFRESH = 70  # RFC 7313
    LONG_LIVED_GRACEFUL_RESTART = 71  # RFC 9494
    FQDN = 73  # draft-walton-bgp-hostname-capability


class AddPathMode(IntEnum):
    """RFC 7911 §4 Send/Receive field."""

    RECEIVE = 1
    SEND = 2
    BOTH = 3


class RouteRefreshSubtype(IntEnum):
    """RFC 7313 §3.2 (the RFC 2918 'Reserved' octet)."""

    NORMAL = 0
    BORR = 1
    EORR = 2


class ErrorCode(IntEnum):
    """RFC 4271 §4.5, RFC 7313 §5."""

    MESSAGE_HEADER = 1
    OPEN_MESSAGE = 2
    UPDATE_MESSAGE = 3
    HOLD_TIMER_EXPIRED = 4
    FSM = 5
    CEASE = 6
    ROUTE_REFRESH = 7


class HeaderSubcode(IntEnum):
    """RFC 4271 §6.1."""

    CONNECTION_NOT_SYNCHRONIZED = 1
    BAD_MESSAGE_LENGTH = 2
    BAD_MESSAGE_TYPE = 3


class OpenSubcode(IntEnum):
    """RFC 4271 §6.2, RFC 5492 §5 (unsupported capability)."""

    UNSUPPORTED_VERSION_NUMBER = 1
    BAD_PEER_AS = 2
    BAD_BGP_IDENTIFIER = 3
    UNSUPPORTED_OPTIONAL_PARAMETER = 4
    UNACCEPTABLE_HOLD_TIME = 6
    UNSUPPORTED_CAPABILITY = 7
    ROLE_MISMATCH = 11


class UpdateSubcode(IntEnum):
    """RFC 4271 §6.3."""

    MALFORMED_ATTRIBUTE_LIST = 1
    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE = 2
    MISSING_WELL_KNOWN_ATTRIBUTE = 3
    ATTRIBUTE_FLAGS_ERROR = 4
    ATTRIBUTE_LENGTH_ERROR = 5
    INVALID_ORIGIN_ATTRIBUTE = 6
    INVALID_NEXT_HOP_ATTRIBUTE = 8
    OPTIONAL_ATTRIBUTE_ERROR = 9
    INVALID_NETWORK_FIELD = 10
    MALFORMED_AS_PATH = 11


class FsmSubcode(IntEnum):
    """RFC 6608 §4."""

    UNSPECIFIED = 0
    UNEXPECTED_MESSAGE_IN_OPENSENT = 1
    UNEXPECTED_MESSAGE_IN_OPENCONFIRM = 2
    UNEXPECTED_MESSAGE_IN_ESTABLISHED = 3


class CeaseSubcode(IntEnum):
    """RFC 4486 §4, RFC 8203/9003 (shutdown communication on 2 and 4), RFC 8538 §5."""

    MAXIMUM_PREFIXES_REACHED = 1
    ADMINISTRATIVE_SHUTDOWN = 2
    PEER_DECONFIGURED = 3
    ADMINISTRATIVE_RESET = 4
    CONNECTION_REJECTED = 5
    OTHER_CONFIGURATION_CHANGE = 6
    CONNECTION_COLLISION_RESOLUTION = 7
    OUT_OF_RESOURCES = 8
    HARD_RESET = 9
    BFD_DOWN = 10


class RouteRefreshErrorSubcode(IntEnum):
    """RFC 7313 §5."""

    INVALID_MESSAGE_LENGTH = 1


SUBCODES: dict[int, type[IntEnum]] = {
    ErrorCode.MESSAGE_HEADER: HeaderSubcode,
    ErrorCode.OPEN_MESSAGE: OpenSubcode,
    ErrorCode.UPDATE_MESSAGE: UpdateSubcode,
    ErrorCode.FSM: FsmSubcode,
    ErrorCode.CEASE: CeaseSubcode,
    ErrorCode.ROUTE_REFRESH: RouteRefreshErrorSubcode,
}


def error_name(code: int, subcode: int) -> str:
    """A stable kebab-case token for a NOTIFICATION, e.g. ``cease/administrative-shutdown``."""
    try:
        major = ErrorCode(code).name.lower().replace("_", "-")
    except ValueError:
        return f"error-{code}/{subcode}"
    table = SUBCODES.get(code)
    if table is None or subcode == 0 and code != ErrorCode.FSM:
        return major if subcode == 0 else f"{major}/{subcode}"
    try:
        minor = table(subcode).name.lower().replace("_", "-")
    except ValueError:
        minor = str(subcode)
    return f"{major}/{minor}"
