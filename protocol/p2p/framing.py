"""Length-prefixed frames on a libp2p stream.

A frame is an unsigned LEB128 varint length followed by that many bytes, as libp2p's own
protocols frame their messages. The reader refuses a frame whose declared length exceeds
the caller's limit before reading any of its body, and every read and write runs under a
deadline, so a slow or hostile peer can neither exhaust memory nor hold a task forever.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio
from libp2p.network.stream.exceptions import StreamEOF

from protocol.p2p.errors import FrameError, OversizedMessage, StreamResetError, translate_errors

log = logging.getLogger(__name__)

MAX_VARINT_BYTES = 5
"""Enough for any length below 2**35; longer headers are refused as malformed."""


class ByteStream(Protocol):
    """The part of libp2p's ``INetStream`` that framing uses (fakes implement it too)."""

    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    async def reset(self) -> None: ...


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128 encoding of ``value``."""
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def encode_frame(payload: bytes) -> bytes:
    return encode_varint(len(payload)) + payload


async def read_exactly(stream: ByteStream, size: int) -> bytes:
    """Read exactly ``size`` bytes; a stream that ends early raises ``StreamResetError``."""
    parts: list[bytes] = []
    remaining = size
    while remaining:
        try:
            chunk = await stream.read(remaining)
        except StreamEOF:
            chunk = b""
        if not chunk:
            raise StreamResetError(f"stream ended with {remaining} of {size} bytes unread")
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


async def _read_length(stream: ByteStream) -> int | None:
    """Read a varint length; ``None`` on a clean end of stream before its first byte."""
    value = 0
    for index in range(MAX_VARINT_BYTES):
        try:
            byte = await stream.read(1)
        except StreamEOF:
            # libp2p signals a half-closed stream by raising rather than returning b"".
            byte = b""
        if not byte:
            if index == 0:
                return None
            raise StreamResetError("stream ended inside a frame header")
        value |= (byte[0] & 0x7F) << (7 * index)
        if not byte[0] & 0x80:
            return value
    raise FrameError(f"frame header longer than {MAX_VARINT_BYTES} bytes")


async def read_frame(
    stream: ByteStream, *, max_size: int, timeout: float, eof_ok: bool = False
) -> bytes | None:
    """Read one frame of at most ``max_size`` bytes within ``timeout`` seconds.

    Returns ``None`` only when ``eof_ok`` and the stream ended cleanly between frames
    (how a kept stream is closed by its client). Raises ``OversizedMessage`` before the
    body is read, ``RequestTimeout`` past the deadline, ``StreamResetError`` on a cut.
    """
    with translate_errors("read frame", timeout=timeout), trio.fail_after(timeout):
        size = await _read_length(stream)
        if size is None:
            if eof_ok:
                return None
            raise StreamResetError("stream ended before a frame")
        if size > max_size:
            raise OversizedMessage(size, max_size)
        return await read_exactly(stream, size)


async def write_frame(stream: ByteStream, payload: bytes, *, max_size: int, timeout: float) -> None:
    """Write ``payload`` as one frame within ``timeout`` seconds, refusing oversized ones."""
    if len(payload) > max_size:
        raise OversizedMessage(len(payload), max_size)
    with translate_errors("write frame", timeout=timeout), trio.fail_after(timeout):
        await stream.write(encode_frame(payload))


async def close_stream(stream: ByteStream, *, reset: bool) -> None:
    """End a stream (``reset`` when its state is unknown) without raising.

    Shielded and bounded, so it works in cleanup after a cancellation and never masks
    the reason the stream is being ended.
    """
    with trio.move_on_after(1.0) as scope:
        scope.shield = True
        try:
            if reset:
                await stream.reset()
            else:
                await stream.close()
        except Exception as exc:
            log.debug("ending a stream failed: %s", exc)
