"""A running libp2p node: host, GossipSub and a nursery, from one secp256k1 key.

``open_host`` is the only way the project starts libp2p. It fixes the choices that keep
peers compatible and safe: Noise is the only security transport (py-libp2p would also
offer plaintext), yamux the only muxer, one connection per peer (py-libp2p otherwise waits
250 ms in ``connect`` for a second one), strictly signed pubsub, and the tuned GossipSub
of :mod:`protocol.p2p.config`::

    async with open_host(private_key) as node:
        print(node.peer_id, node.addrs)
        await node.connect(other_addr)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from protocol.ids import PeerId
from protocol.p2p.config import DEFAULT_LISTEN, GOSSIPSUB_PROTOCOL, HostConfig
from protocol.p2p.errors import DialError, translate_errors
from protocol.p2p.keys import key_pair_from_private_key, parse_peer_id

log = logging.getLogger(__name__)


@dataclass
class Node:
    """A started libp2p host with its pubsub; valid only inside ``open_host``."""

    host: IHost
    pubsub: Pubsub
    gossipsub: GossipSub
    config: HostConfig
    nursery: trio.Nursery

    @property
    def peer_id(self) -> PeerId:
        return PeerId(self.host.get_id().to_base58())

    @property
    def addrs(self) -> list[str]:
        """Listen multiaddrs with the real ports, each ending in ``/p2p/<peer id>``."""
        return [str(addr) for addr in self.host.get_addrs()]

    def connected_peers(self) -> list[PeerId]:
        return [PeerId(peer.to_base58()) for peer in self.host.get_connected_peers()]

    def is_connected(self, peer: PeerId) -> bool:
        """True while an open connection to ``peer`` exists.

        A connection the remote side closed can stay registered for a moment; it does
        not count, so callers dial again instead of opening a stream on it.
        """
        peer_id = parse_peer_id(peer)
        if peer_id not in self.host.get_connected_peers():
            return False
        connections = self.host.get_network().get_connections(peer_id)
        return any(not getattr(c, "is_closed", False) for c in connections)

    async def connect(self, addr: str) -> PeerId:
        """Dial a ``.../p2p/<peer id>`` multiaddr; returns the peer id once connected.

        An explicit address is worth trying even when an earlier dial of the peer failed:
        py-libp2p would refuse it for a while from its negative dial cache (a restarted
        peer comes back on the same address), so this peer's entry is cleared first.
        """
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:
            raise DialError(addr, f"not a dialable multiaddr with /p2p/: {exc}") from exc
        if info.peer_id == self.host.get_id():
            raise DialError(addr, "refusing to dial this node itself")
        self.forget_failed_dials(PeerId(info.peer_id.to_base58()))
        timeout = self.config.dial_timeout_s
        with translate_errors(f"dial {addr}", timeout=timeout), trio.fail_after(timeout):
            await self.host.connect(info)
        return PeerId(info.peer_id.to_base58())

    def forget_failed_dials(self, peer: PeerId) -> None:
        """Let the next dial of ``peer`` go out: clear its negative-cache entry and drop
        connections to it that are already closed (py-libp2p's ``connect`` would return
        such a connection instead of dialling)."""
        peer_id = parse_peer_id(peer)
        network = self.host.get_network()
        unblock = getattr(network, "unblock_peer", None)
        if unblock is not None:
            unblock(peer_id)
        remove = getattr(network, "remove_conn", None)
        for conn in list(network.get_connections(peer_id)):
            if getattr(conn, "is_closed", False) and remove is not None:
                remove(conn)

    async def disconnect(self, peer: PeerId) -> None:
        with translate_errors(f"disconnect {peer}"):
            await self.host.disconnect(parse_peer_id(peer))

    async def open_stream(
        self, peer: PeerId, protocol_ids: Sequence[str], *, timeout: float
    ) -> INetStream:
        """Open a stream to a connected (or dialable) peer, negotiating one protocol id."""
        peer_id: ID = parse_peer_id(peer)
        operation = f"open {'|'.join(protocol_ids)} to {peer}"
        with translate_errors(operation, timeout=timeout), trio.fail_after(timeout):
            return await self.host.new_stream(peer_id, [TProtocol(p) for p in protocol_ids])

    def set_stream_handler(
        self, protocol_id: str, handler: Callable[[INetStream], Awaitable[None]]
    ) -> None:
        self.host.set_stream_handler(TProtocol(protocol_id), handler)

    def remove_stream_handler(self, protocol_id: str) -> None:
        self.host.remove_stream_handler(TProtocol(protocol_id))


def _build_host(private_key: bytes, config: HostConfig) -> tuple[IHost, GossipSub, Pubsub]:
    key_pair = key_pair_from_private_key(private_key)
    # The Noise static key is per process on purpose: it is authenticated by a
    # signature of the identity key during the handshake, never by itself.
    noise = NoiseTransport(key_pair, noise_privkey=new_x25519_key_pair().private_key)
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        negotiate_timeout=config.negotiate_timeout_s,
        connection_config=ConnectionConfig(
            max_connections_per_peer=1, dial_timeout=config.dial_timeout_s
        ),
    )
    gossip = config.gossip
    gossipsub = GossipSub(
        protocols=[TProtocol(GOSSIPSUB_PROTOCOL)],
        degree=gossip.degree,
        degree_low=gossip.degree_low,
        degree_high=gossip.degree_high,
        time_to_live=gossip.fanout_ttl_s,
        gossip_window=gossip.gossip_window,
        gossip_history=gossip.gossip_history,
        heartbeat_interval=gossip.heartbeat_interval_s,
        max_messages_per_topic_per_second=gossip.max_messages_per_topic_per_second,
        eclipse_protection_enabled=gossip.eclipse_protection,
    )
    pubsub = Pubsub(host, gossipsub, strict_signing=True, max_inbound_rpc_size=gossip.max_rpc_bytes)
    _shorten_dial_backoff(host, config.dial_backoff_s)
    return host, gossipsub, pubsub


def _shorten_dial_backoff(host: IHost, seconds: float) -> None:
    """py-libp2p refuses every dial of a peer for 60 s after all its addresses failed.

    Peers here restart on the same address within seconds (a daemon restart, a devnet),
    so the refusal is cut to ``seconds``. The cache is private to the swarm; where a
    py-libp2p version lacks it, its own default stays.
    """
    cache = getattr(host.get_network(), "_negative_peer_cache", None)
    if cache is not None and hasattr(cache, "_ttl"):
        cache._ttl = seconds


@asynccontextmanager
async def open_host(
    private_key: bytes,
    *,
    listen: Sequence[str] = (DEFAULT_LISTEN,),
    config: HostConfig | None = None,
) -> AsyncIterator[Node]:
    """Start a host for ``private_key`` (32 bytes, the participant's account key).

    Listens on ``listen`` (loopback TCP on a free port by default), runs pubsub and
    GossipSub, and yields a :class:`Node`. Leaving the block cancels the node's
    background tasks, stops pubsub and closes every connection.
    """
    config = config or HostConfig()
    host, gossipsub, pubsub = _build_host(private_key, config)
    listen_addrs = [multiaddr.Multiaddr(addr) for addr in listen]
    async with AsyncExitStack() as stack:
        with translate_errors("start host", timeout=config.dial_timeout_s):
            await stack.enter_async_context(host.run(listen_addrs))
            await stack.enter_async_context(background_trio_service(pubsub))
            await stack.enter_async_context(background_trio_service(gossipsub))
            with trio.fail_after(config.dial_timeout_s):
                await pubsub.wait_until_ready()
        nursery = await stack.enter_async_context(trio.open_nursery())
        node = Node(host, pubsub, gossipsub, config, nursery)
        log.debug("libp2p node %s listening on %s", node.peer_id, node.addrs)
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()
