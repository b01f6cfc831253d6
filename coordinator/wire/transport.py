"""Request/response to providers: a small Protocol, its libp2p implementation and a fake.

The dispatcher only ever calls :meth:`PeerTransport.request`; the libp2p version dials the
provider's advertised multiaddrs when it is not connected yet, and once more when no
stream opens on an existing connection (a provider that restarted leaves a dead one).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Protocol

import trio

from protocol.errors import TransportError
from protocol.ids import PeerId
from protocol.p2p.errors import DialError, ProtocolNotSupported
from protocol.p2p.host import Node
from protocol.p2p.rpc_client import request
from protocol.p2p.rpc_wire import Limits
from protocol.registry import MAX_MESSAGE_BYTES


class PeerTransport(Protocol):
    async def request(
        self,
        peer: PeerId,
        multiaddrs: Sequence[str],
        protocol_id: str,
        payload: bytes,
        timeout_s: float,
    ) -> bytes:
        """Send one request; return the reply bytes or raise ``TransportError``."""
        ...


FRESH_DIALS = 3
"""Stream attempts per request when no stream opens (each after a fresh dial)."""
FRESH_DIAL_PAUSE_S = 0.2


class Libp2pTransport:
    def __init__(self, node: Node) -> None:
        self.node = node

    async def request(
        self,
        peer: PeerId,
        multiaddrs: Sequence[str],
        protocol_id: str,
        payload: bytes,
        timeout_s: float,
    ) -> bytes:
        if not self.node.is_connected(peer):
            await self._dial(peer, multiaddrs)
        limits = Limits(
            max_request_bytes=MAX_MESSAGE_BYTES,
            max_response_bytes=MAX_MESSAGE_BYTES,
            timeout_s=timeout_s,
        )
        for attempt in range(1, FRESH_DIALS + 1):
            try:
                return await request(self.node, peer, protocol_id, payload, limits)
            except (DialError, ProtocolNotSupported) as exc:
                if attempt == FRESH_DIALS:
                    raise
                log.debug("no stream to %s (%s); dialling afresh", peer, exc)
            # No stream opened on the connection: it may be one the provider dropped when it
            # restarted, not yet noticed here (its teardown can also take the first fresh
            # connection with it). Nothing was sent, so dropping it and dialling is safe.
            with suppress(TransportError):
                await self.node.disconnect(peer)
            await trio.sleep(FRESH_DIAL_PAUSE_S * attempt)
            await self._dial(peer, multiaddrs)
        raise AssertionError("unreachable")

    async def _dial(self, peer: PeerId, multiaddrs: Sequence[str]) -> None:
        last: TransportError | None = None
        for addr in multiaddrs:
            full = addr if "/p2p/" in addr else f"{addr}/p2p/{peer}"
            if not full.endswith(peer):
                continue  # an address naming another peer is not this provider's
            try:
                await self.node.connect(full)
                return
            except TransportError as exc:
                last = exc
        if last is not None:
            raise TransportError(
                f"provider {peer} is unreachable at every address it advertises "
                f"({', '.join(multiaddrs)}): {last}; behind a NAT it must forward its port "
                "and announce the public address (PROVIDER_ANNOUNCE)"
            ) from last
        raise TransportError(f"no dialable address for {peer}")


log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[bytes]]


class FakeTransport:
    """Routes requests to in-process handlers keyed by peer id (for unit tests)."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.sent: list[tuple[str, str, bytes]] = []

    async def request(
        self,
        peer: PeerId,
        multiaddrs: Sequence[str],
        protocol_id: str,
        payload: bytes,
        timeout_s: float,
    ) -> bytes:
        self.sent.append((peer, protocol_id, payload))
        handler = self.handlers.get(peer)
        if handler is None:
            raise TransportError(f"cannot reach {peer}")
        return await handler(protocol_id, payload)
