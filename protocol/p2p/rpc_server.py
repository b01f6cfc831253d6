"""Serving request/response protocols: a registry of handlers per protocol id.

A handler is ``async def handler(request: bytes, peer: PeerId) -> bytes``. It rejects a
request by raising :class:`protocol.errors.MessageError` (answered ``BAD_REQUEST``) or any
other :class:`protocol.errors.GpuMarketError` (``REFUSED``); anything else is a bug and is
answered ``INTERNAL`` without details. Each handler call runs under the protocol's
deadline, and each stream is served until the client closes it or stays idle too long.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from libp2p.abc import INetStream

from protocol.errors import GpuMarketError, MessageError, TransportError
from protocol.ids import PeerId
from protocol.p2p.errors import OversizedMessage
from protocol.p2p.framing import close_stream, read_frame, write_frame
from protocol.p2p.host import Node
from protocol.p2p.rpc_wire import Limits, Status, encode_reply, error_body

log = logging.getLogger(__name__)

Handler = Callable[[bytes, PeerId], Awaitable[bytes]]

REPLY_WRITE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class _Route:
    protocol_id: str
    handler: Handler
    limits: Limits


class RequestHandlers:
    """The request/response protocols one node serves, keyed by protocol id."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._routes: dict[str, _Route] = {}

    @property
    def protocol_ids(self) -> list[str]:
        return sorted(self._routes)

    def register(self, protocol_id: str, handler: Handler, limits: Limits | None = None) -> None:
        """Serve ``protocol_id`` with ``handler``; a second registration replaces the first."""
        route = _Route(protocol_id, handler, limits or Limits())
        self._routes[protocol_id] = route

        async def serve(stream: INetStream) -> None:
            await self._serve_stream(route, stream)

        self._node.set_stream_handler(protocol_id, serve)

    def unregister(self, protocol_id: str) -> None:
        if self._routes.pop(protocol_id, None) is not None:
            self._node.remove_stream_handler(protocol_id)

    async def _serve_stream(self, route: _Route, stream: INetStream) -> None:
        peer = PeerId(stream.muxed_conn.peer_id.to_base58())
        limits = route.limits
        clean = False
        try:
            while True:
                try:
                    request = await read_frame(
                        stream,
                        max_size=limits.max_request_bytes,
                        timeout=limits.idle_timeout_s,
                        eof_ok=True,
                    )
                except OversizedMessage as exc:
                    # The body was never read, so the stream cannot carry another request;
                    # closing (not resetting) lets the reply reach the client first.
                    await self._reply(stream, route, Status.TOO_LARGE, error_body(str(exc)))
                    clean = True
                    return
                if request is None:
                    clean = True
                    return
                status, body = await self._call(route, request, peer)
                await self._reply(stream, route, status, body)
        except TransportError as exc:
            log.debug("%s stream from %s ended: %s", route.protocol_id, peer, exc)
        finally:
            await close_stream(stream, reset=not clean)

    async def _call(self, route: _Route, request: bytes, peer: PeerId) -> tuple[Status, bytes]:
        limits = route.limits
        try:
            with trio.fail_after(limits.timeout_s):
                response = await route.handler(request, peer)
        except trio.TooSlowError:
            return Status.TIMEOUT, error_body(f"handler exceeded {limits.timeout_s:g} s")
        except MessageError as exc:
            return Status.BAD_REQUEST, error_body(str(exc))
        except GpuMarketError as exc:
            return Status.REFUSED, error_body(str(exc))
        except Exception:
            log.exception("%s handler failed on a request from %s", route.protocol_id, peer)
            return Status.INTERNAL, error_body("internal error")
        if len(response) > limits.max_response_bytes:
            log.error(
                "%s handler produced %d bytes, over the limit of %d",
                route.protocol_id,
                len(response),
                limits.max_response_bytes,
            )
            return Status.INTERNAL, error_body("response too large")
        return Status.OK, response

    async def _reply(self, stream: INetStream, route: _Route, status: Status, body: bytes) -> None:
        await write_frame(
            stream,
            encode_reply(status, body),
            max_size=route.limits.max_response_bytes + 1,
            timeout=REPLY_WRITE_TIMEOUT_S,
        )
