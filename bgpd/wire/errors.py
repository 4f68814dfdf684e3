"""The codec's errors, as data.

Rules:
1. ``MessageError`` is the only exception the codec raises on peer input. It carries the exact
   RFC 4271 §6 NOTIFICATION (code, subcode, data) that the session must send before closing.
2. Errors that RFC 7606 lets a session survive are not raised: they come back inside the decoded
   UPDATE as ``AttributeIssue`` values with their ``ErrorAction``.
3. ``UsageError`` means our own bug (encoding something unencodable); it is never caught.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from bgpd.wire.constants import error_name


class MessageError(Exception):
    """A peer's message violates the protocol: send NOTIFICATION(code, subcode, data), close."""

    def __init__(self, code: int, subcode: int, data: bytes = b"", reason: str = "") -> None:
        super().__init__(code, subcode, data, reason)
        self.code = code
        self.subcode = subcode
        self.data = data
        self.reason = reason or error_name(code, subcode)

    def __str__(self) -> str:
        return f"{error_name(self.code, self.subcode)}: {self.reason}"

    @property
    def token(self) -> str:
        return error_name(self.code, self.subcode)


class UsageError(ValueError):
    """Our own misuse of the codec (a bug), never the peer's fault."""


class ErrorAction(IntEnum):
    """RFC 7606 §2 approaches, ordered weakest to strongest (§3 (f): the strongest wins)."""

    ATTRIBUTE_DISCARD = 1
    TREAT_AS_WITHDRAW = 2
    SESSION_RESET = 3


@dataclass(frozen=True, slots=True)
class AttributeIssue:
    """One malformed attribute in an UPDATE and what RFC 7606 says to do about it."""

    attr_code: int
    action: ErrorAction
    subcode: int
    reason: str
