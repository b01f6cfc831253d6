"""Shared vocabulary of the request/response protocols: reply statuses and limits.

A request is one frame holding the request bytes. A reply is one frame holding a status
byte followed by either the response bytes (``OK``) or a short UTF-8 reason. A stream may
carry any number of request/reply pairs in turn (a *kept* stream), and ends when the
client closes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from protocol.p2p.errors import FrameError, RemoteError

MAX_REASON_BYTES = 512


class Status(IntEnum):
    OK = 0
    BAD_REQUEST = 1
    """The request was malformed, unsigned, expired or otherwise unacceptable."""
    REFUSED = 2
    """The request was understood and declined."""
    INTERNAL = 3
    """The handler failed; details stay in the server's log."""
    TIMEOUT = 4
    """The handler ran past its deadline."""
    TOO_LARGE = 5
    """The request exceeded the protocol's size limit; the stream is then reset."""


@dataclass(frozen=True)
class Limits:
    """Size and time limits of one protocol, on both sides of a stream."""

    max_request_bytes: int = 1 << 20
    max_response_bytes: int = 1 << 20
    timeout_s: float = 10.0
    """Deadline of one request: the client's write + read, the server's handler."""
    idle_timeout_s: float = 60.0
    """How long a server keeps a stream open waiting for the next request."""


def encode_reply(status: Status, body: bytes) -> bytes:
    return bytes([status]) + body


def error_body(reason: str) -> bytes:
    return reason.encode("utf-8", "replace")[:MAX_REASON_BYTES]


def decode_reply(frame: bytes) -> bytes:
    """Return the response bytes of an ``OK`` reply; raise ``RemoteError`` otherwise."""
    if not frame:
        raise FrameError("empty reply frame")
    try:
        status = Status(frame[0])
    except ValueError as exc:
        raise FrameError(f"unknown reply status {frame[0]}") from exc
    if status is Status.OK:
        return frame[1:]
    reason = frame[1 : 1 + MAX_REASON_BYTES].decode("utf-8", "replace")
    raise RemoteError(int(status), reason)
