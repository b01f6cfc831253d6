"""A provider restarted on the same key and port can be reached again within seconds,
although the coordinator's dial failed while it was down (py-libp2p's negative dial
cache would refuse the peer for a minute)."""

from __future__ import annotations

import socket

import pytest
import trio
from eth_account import Account

from coordinator.wire.transport import Libp2pTransport
from protocol.errors import TransportError
from protocol.ids import PeerId
from protocol.p2p.host import open_host
from protocol.p2p.rpc_server import RequestHandlers

pytestmark = pytest.mark.integration

ECHO = "/gpumarket-test/echo/1.0.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def echo(data: bytes, peer: PeerId) -> bytes:
    return data


@pytest.mark.timeout(60)
async def test_a_restarted_provider_is_dialled_again_within_seconds() -> None:
    provider_key = bytes(Account.create().key)
    listen = [f"/ip4/127.0.0.1/tcp/{free_port()}"]
    async with open_host(bytes(Account.create().key)) as coordinator:
        transport = Libp2pTransport(coordinator)
        async with open_host(provider_key, listen=listen) as provider:
            RequestHandlers(provider).register(ECHO, echo)
            peer, addrs = provider.peer_id, provider.addrs
            assert await transport.request(peer, addrs, ECHO, b"one", 5.0) == b"one"
        # py-libp2p 0.8.1 leaves the TCP listener accepting after the host stops; a process
        # that exits closes it, so close it here the way a real restart would.
        for listener in list(provider.host.get_network().listeners.values()):
            await listener.close()
        with pytest.raises(TransportError):  # down: the dial fails (and is remembered)
            await transport.request(peer, addrs, ECHO, b"down", 5.0)
        async with open_host(provider_key, listen=listen) as provider:
            RequestHandlers(provider).register(ECHO, echo)
            with trio.fail_after(5):
                assert await transport.request(peer, addrs, ECHO, b"two", 5.0) == b"two"
