"""A provider behind a port forward: adverts carry the announced address, a coordinator
reaches the provider through it, and an unreachable advertised address (the provider's, or
the coordinator's a provider is given) is named with what to configure.

Real libp2p hosts on loopback; the "NAT" is a TCP forwarder from one loopback port to the
provider's listen port, so the listen address itself is never dialled.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from coordinator.api.views import provider_row
from coordinator.matching.book import ProviderBook
from coordinator.wire.reachability import Reachability
from coordinator.wire.transport import Libp2pTransport
from protocol.errors import TransportError
from protocol.identity import Identity
from protocol.ids import PeerId
from protocol.p2p.addresses import announced, check_listen, parse_announce
from protocol.p2p.errors import DialError
from protocol.p2p.host import open_host
from protocol.p2p.testing import dev_private_key
from protocol.registry import CHALLENGE_PROTOCOL
from provider_node.advertiser import Advertiser
from provider_node.coordinator_link import CoordinatorLink
from tests.provider_node.factories import cpu_advertiser

PROVIDER_KEY = dev_private_key(1, "announce")
COORDINATOR_KEY = dev_private_key(2, "announce")
PEER = Identity.from_private_key(PROVIDER_KEY).peer_id


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def port_forward(target: int) -> AsyncIterator[tuple[int, list[int]]]:
    """Forward a fresh loopback port to ``target``; yields it and a count of connections."""
    accepted: list[int] = []

    async def pipe(src: trio.SocketStream, dst: trio.SocketStream) -> None:
        try:
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await dst.aclose()

    async def handle(inbound: trio.SocketStream) -> None:
        accepted.append(1)
        outbound = await trio.open_tcp_stream("127.0.0.1", target)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipe, inbound, outbound)
            nursery.start_soon(pipe, outbound, inbound)

    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        yield listeners[0].socket.getsockname()[1], accepted
        nursery.cancel_scope.cancel()


def _advertiser(node: object, identity: Identity, announce: list[str], tmp: object) -> Advertiser:
    from pathlib import Path

    return cpu_advertiser(
        node,  # type: ignore[arg-type]
        identity,
        Path(str(tmp)),
        announce=announced(announce, identity.peer_id),
    )


@pytest.mark.timeout(60)
async def test_coordinator_reaches_a_provider_through_its_announced_address(
    tmp_path: object,
) -> None:
    identity = Identity.from_private_key(PROVIDER_KEY)
    port = _free_port()
    async with (
        open_host(PROVIDER_KEY, listen=[f"/ip4/127.0.0.1/tcp/{port}"]) as provider,
        open_host(COORDINATOR_KEY) as coordinator,
        port_forward(port) as (public_port, accepted),
    ):
        announce = parse_announce(f"/ip4/127.0.0.1/tcp/{public_port}")
        assert isinstance(announce, tuple)
        advert = _advertiser(provider, identity, list(announce), tmp_path).build()
        # The advert names only the announced address, never the listen one.
        assert advert.multiaddrs == (f"/ip4/127.0.0.1/tcp/{public_port}/p2p/{identity.peer_id}",)
        transport = Libp2pTransport(coordinator)
        await transport._dial(PeerId(identity.peer_id), advert.multiaddrs)
        assert coordinator.is_connected(PeerId(identity.peer_id))
        assert accepted, "the connection did not go through the forwarded port"


@pytest.mark.timeout(60)
async def test_unreachable_advertised_address_is_named(tmp_path: object) -> None:
    identity = Identity.from_private_key(PROVIDER_KEY)
    closed = _free_port()
    async with open_host(COORDINATOR_KEY) as coordinator:
        transport = Libp2pTransport(coordinator)
        addrs = announced([f"/ip4/127.0.0.1/tcp/{closed}"], identity.peer_id)
        with pytest.raises(TransportError) as caught:
            await transport.request(PeerId(identity.peer_id), addrs, CHALLENGE_PROTOCOL, b"x", 5)
    message = str(caught.value)
    assert f"/ip4/127.0.0.1/tcp/{closed}" in message
    assert "unreachable at every address it advertises" in message
    assert "PROVIDER_ANNOUNCE" in message


def test_announce_and_listen_settings_are_checked() -> None:
    assert parse_announce("/ip4/203.0.113.7/tcp/4001, /dns4/p.example.org/tcp/4001") == (
        "/ip4/203.0.113.7/tcp/4001",
        "/dns4/p.example.org/tcp/4001",
    )
    for bad, why in (
        ("/ip4/0.0.0.0/tcp/4001", "unspecified"),
        ("/ip4/203.0.113.7/tcp/0", "real port"),
        ("/ip4/203.0.113.7/udp/4001", "TCP port"),
        (
            f"/ip4/203.0.113.7/tcp/4001/p2p/{Identity.from_private_key(PROVIDER_KEY).peer_id}",
            "leave out /p2p/",
        ),
        ("provider.example.org:4001", "not a multiaddr"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_announce(bad)
    assert check_listen("/ip4/0.0.0.0/tcp/4001") == "/ip4/0.0.0.0/tcp/4001"
    with pytest.raises(ValueError, match="must name an IP"):
        check_listen("/dns4/p.example.org/tcp/4001")


@pytest.mark.timeout(60)
async def test_a_provider_announcing_an_address_where_nothing_listens_is_named(
    tmp_path: object,
) -> None:
    """The provider dials the coordinator itself (as for gossip), so the coordinator is
    connected while the announced address leads nowhere: the probe still finds it out,
    names the peer, the address and the fix, and clears once a reachable one is announced."""
    identity = Identity.from_private_key(PROVIDER_KEY)
    port, closed = _free_port(), _free_port()
    async with (
        open_host(PROVIDER_KEY, listen=[f"/ip4/127.0.0.1/tcp/{port}"]) as provider,
        open_host(COORDINATOR_KEY) as coordinator,
        port_forward(port) as (public_port, _accepted),
    ):
        coordinator_id = Identity.from_private_key(COORDINATOR_KEY).peer_id
        await provider.connect(f"{coordinator.addrs[0]}/p2p/{coordinator_id}")
        assert coordinator.is_connected(PeerId(identity.peer_id))

        book = ProviderBook(time.time)
        wrong = _advertiser(provider, identity, [f"/ip4/127.0.0.1/tcp/{closed}"], tmp_path)
        assert book.accept(wrong.build())
        reachability = Reachability(book)
        await reachability.check_once()
        entry = book.entries[identity.address]
        assert entry.unreachable is not None
        assert identity.peer_id in entry.unreachable
        assert f"/ip4/127.0.0.1/tcp/{closed}/p2p/{identity.peer_id}" in entry.unreachable
        assert "connection refused" in entry.unreachable
        assert "PROVIDER_ANNOUNCE" in entry.unreachable
        row = provider_row(entry, book.columns, book.columns.free_jobs().tolist())
        assert row.unreachable == entry.unreachable  # what GET /providers shows

        await reachability.check_once()  # nothing changed, not due again: kept as it was
        assert entry.unreachable is not None

        right = _advertiser(provider, identity, [f"/ip4/127.0.0.1/tcp/{public_port}"], tmp_path)
        assert book.accept(right.build())
        await reachability.check_once()  # the addresses changed: probed again at once
        assert entry.unreachable is None


@pytest.mark.timeout(60)
async def test_a_coordinator_address_where_nothing_listens_fails_the_start_clearly() -> None:
    coordinator_id = Identity.from_private_key(COORDINATOR_KEY).peer_id
    closed = _free_port()
    addr = f"/ip4/127.0.0.1/tcp/{closed}/p2p/{coordinator_id}"
    async with open_host(PROVIDER_KEY) as provider:
        link = CoordinatorLink(provider, addr, first_delay_s=0.05, max_delay_s=0.1)
        with pytest.raises(DialError) as caught:
            await link.connect(attempts=2)
    message = str(caught.value)
    assert f"the coordinator does not answer at {addr} after 2 tries" in message
    assert coordinator_id in message
    assert "PROVIDER_COORDINATOR_MULTIADDR" in message and "COORDINATOR_ANNOUNCE" in message
