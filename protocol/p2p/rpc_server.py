"""Serving request/response protocols: a registry of handlers per protocol id.

A handler is ``async def handler(request: bytes, peer: PeerId) -> bytes``. It rejects a
request by raising :class:`protocol.errors.MessageError` (answered ``BAD_REQUEST``) or any
other :class:`protocol.errors.GpuMarketError` (``REFUSED``); anything else is a bug and is
answered ``INTERNAL`` without details. Each handler call runs under the protocol's
deadline, and each stream is served until the client closes it or stays idle too long.

Every peer is bounded, across all protocols of the node: at most
:attr:`PeerQuota.max_streams` streams open at once (so at most that many requests of up to
``max_request_bytes`` in memory) and new streams at most at a token-bucket rate. A stream
over either bound is answered ``REFUSED`` and closed before its request is read, so one
peer can never crowd out another.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

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
class PeerQuota:
    """What one peer may hold of a node's request/response service."""

    max_streams: int = 16
    """Streams open at once, all protocols together."""
    streams_per_s: float = 4.0
    """Sustained rate of new streams."""
    burst: int = 64
    """New streams allowed in a burst on top of the rate."""


@dataclass
class _PeerUse:
    open: int = 0
    tokens: float = 0.0
    refilled_at: float = field(default=0.0)


@dataclass(frozen=True)
class _Route:
    protocol_id: str
    handler: Handler
    limits: Limits


class RequestHandlers:
    """The request/response protocols one node serves, keyed by protocol id."""

    def __init__(self, node: Node, quota: PeerQuota | None = None) -> None:
        self._node = node
        self._routes: dict[str, _Route] = {}
        self.quota = quota or PeerQuota()
        self._peers: dict[PeerId, _PeerUse] = {}

    def open_streams(self, peer: PeerId) -> int:
        use = self._peers.get(peer)
        return use.open if use is not None else 0

    def _admit(self, peer: PeerId) -> str | None:
        """Count a new stream of ``peer``; the reason it is refused, or None."""
        now = trio.current_time()
        use = self._peers.get(peer)
        if use is None:
            use = self._peers[peer] = _PeerUse(tokens=float(self.quota.burst), refilled_at=now)
        use.tokens = min(
            float(self.quota.burst),
            use.tokens + (now - use.refilled_at) * self.quota.streams_per_s,
        )
        use.refilled_at = now
        if use.open >= self.quota.max_streams:
            return f"too many open streams from this peer (limit {self.quota.max_streams})"
        if use.tokens < 1.0:
            return f"too many new streams from this peer (limit {self.quota.streams_per_s:g}/s)"
        use.tokens -= 1.0
        use.open += 1
        return None

    def _release(self, peer: PeerId) -> None:
        use = self._peers.get(peer)
        if use is None:
            return
        use.open -= 1
        full = use.tokens + (trio.current_time() - use.refilled_at) * self.quota.streams_per_s
        if use.open <= 0 and full >= self.quota.burst:
            del self._peers[peer]  # nothing to remember: the table stays as small as the load

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
        refusal = self._admit(peer)
        if refusal is not None:
            log.debug("%s stream from %s refused: %s", route.protocol_id, peer, refusal)
            try:
                await self._reply(stream, route, Status.REFUSED, error_body(refusal))
            except TransportError:
                pass
            await close_stream(stream, reset=False)
            return
        try:
            await self._serve_admitted(route, stream, peer)
        finally:
            self._release(peer)

    async def _serve_admitted(self, route: _Route, stream: INetStream, peer: PeerId) -> None:
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
