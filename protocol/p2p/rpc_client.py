"""Calling request/response protocols: one-shot requests and kept streams.

:func:`request` opens a stream, sends one request, reads the reply and closes it.
:class:`KeptStream` keeps one stream open for repeated requests to the same peer, which
saves the protocol negotiation on every call (about 1 ms round trips on loopback instead of
several). Requests on a kept stream run one at a time; a request that fails for any
transport reason discards the stream (its state is unknown) and the next request opens a
fresh one.
"""

from __future__ import annotations

from types import TracebackType

import trio
from libp2p.abc import INetStream

from protocol.errors import TransportError
from protocol.ids import PeerId
from protocol.p2p.errors import RemoteError, StreamResetError
from protocol.p2p.framing import close_stream, read_frame, write_frame
from protocol.p2p.host import Node
from protocol.p2p.rpc_wire import Limits, Status, decode_reply


async def _exchange(stream: INetStream, payload: bytes, limits: Limits, deadline: float) -> bytes:
    """Write one request and read its reply, both before ``deadline`` (trio time)."""
    remaining = max(0.0, deadline - trio.current_time())
    await write_frame(stream, payload, max_size=limits.max_request_bytes, timeout=remaining)
    remaining = max(0.0, deadline - trio.current_time())
    frame = await read_frame(stream, max_size=limits.max_response_bytes + 1, timeout=remaining)
    if frame is None:  # only possible with eof_ok, kept for the type checker
        raise StreamResetError("stream ended before the reply")
    return decode_reply(frame)


async def request(
    node: Node,
    peer: PeerId,
    protocol_id: str,
    payload: bytes,
    limits: Limits | None = None,
) -> bytes:
    """Send ``payload`` to ``peer`` on a fresh stream and return the response bytes.

    Raises :class:`RemoteError` for an error reply and another
    :class:`protocol.errors.TransportError` for every transport failure, including
    ``RequestTimeout`` when the whole exchange exceeds ``limits.timeout_s``.
    """
    limits = limits or Limits()
    deadline = trio.current_time() + limits.timeout_s
    stream = await node.open_stream(peer, [protocol_id], timeout=limits.timeout_s)
    ok = False
    try:
        response = await _exchange(stream, payload, limits, deadline)
        ok = True
        return response
    except RemoteError:
        ok = True  # the stream worked; the peer said no
        raise
    finally:
        await close_stream(stream, reset=not ok)


class KeptStream:
    """A reusable stream to one peer for one protocol (``async with`` closes it)."""

    def __init__(
        self, node: Node, peer: PeerId, protocol_id: str, limits: Limits | None = None
    ) -> None:
        self.node = node
        self.peer = peer
        self.protocol_id = protocol_id
        self.limits = limits or Limits()
        self._stream: INetStream | None = None
        self._lock = trio.Lock()

    async def request(self, payload: bytes) -> bytes:
        """Send one request on the kept stream (opening it if needed) and return the reply."""
        async with self._lock:
            deadline = trio.current_time() + self.limits.timeout_s
            if self._stream is None:
                self._stream = await self.node.open_stream(
                    self.peer, [self.protocol_id], timeout=self.limits.timeout_s
                )
            stream = self._stream
            try:
                return await _exchange(stream, payload, self.limits, deadline)
            except RemoteError as exc:
                # A size refusal ends the stream server-side; other refusals keep it usable.
                if exc.code == Status.TOO_LARGE:
                    await self._discard(reset=False)
                raise
            except TransportError:
                await self._discard(reset=True)
                raise
            except BaseException:
                # Cancelled mid-exchange: a late reply would be read as the next one's.
                await self._discard(reset=True)
                raise

    async def _discard(self, *, reset: bool) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await close_stream(stream, reset=reset)

    async def aclose(self) -> None:
        async with self._lock:
            await self._discard(reset=False)

    async def __aenter__(self) -> KeptStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
