"""Adverts through real GossipSub on loopback: delivery, and every kind of bad advert refused."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack

import pytest
import trio
from eth_keys import keys
from eth_utils import keccak

from protocol.clock import ManualClock
from protocol.identity import Identity
from protocol.messages import Advert
from protocol.p2p.adverts import AdvertPublisher, subscribe_adverts
from protocol.p2p.gossip import (
    PacedPublisher,
    ValidatedSubscription,
    wait_for_mesh,
    wait_for_topic_peers,
)
from protocol.p2p.host import Node
from protocol.p2p.testing import dev_private_key, start_hosts
from protocol.registry import ADVERT_TOPIC
from protocol.signing import SignedMessage, Verifier, encode_signed, sign_message
from tests.protocol.factories import NOW, PROVIDER, STRANGER, advert

pytestmark = [pytest.mark.integration]


def signed_advert(identity: Identity = PROVIDER, **fields: object) -> SignedMessage:
    body = advert(provider=identity.address, peer_id=identity.peer_id, **fields)
    return sign_message(body, identity.private_key)


async def receive_n(
    adverts: ValidatedSubscription[SignedMessage], n: int, timeout: float
) -> list[SignedMessage]:
    received: list[SignedMessage] = []
    with trio.fail_after(timeout):
        while len(received) < n:
            received.append((await adverts.receive()).value)
    return received


async def wait_for_rejections(
    adverts: ValidatedSubscription[SignedMessage], n: int, timeout: float
) -> None:
    with trio.fail_after(timeout):
        while sum(adverts.rejected.values()) < n:
            await trio.sleep(0.02)


@pytest.mark.timeout(60)
async def test_two_hosts_exchange_an_advert() -> None:
    async with start_hosts(2, "chain", keys=[PROVIDER.private_key, dev_private_key(1)]) as nodes:
        provider, coordinator = nodes
        verifier = Verifier(ManualClock(NOW))
        async with subscribe_adverts(coordinator, verifier) as adverts:
            await wait_for_topic_peers(provider, ADVERT_TOPIC, 1, timeout=10)
            publisher = AdvertPublisher(provider)
            first, second = signed_advert(seq=1), signed_advert(seq=2, free_gpus=0)
            await publisher.publish(first)
            await publisher.publish(second)
            received = await receive_n(adverts, 2, timeout=15)
        assert received == [first, second]
        assert isinstance(received[1].body, Advert) and received[1].body.free_gpus == 0
        assert adverts.accepted == 2 and not adverts.rejected
        assert verifier.sequences.last(PROVIDER.address) == 2


async def test_publisher_refuses_adverts_of_another_peer() -> None:
    async with start_hosts(1, "none", keys=[STRANGER.private_key]) as (node,):
        with pytest.raises(Exception, match="names peer"):
            await AdvertPublisher(node).publish(signed_advert(PROVIDER))


def forged(signed: SignedMessage) -> SignedMessage:
    """The same envelope signed by someone else's key (claims PROVIDER as signer)."""
    digest = keccak(signed.signing_payload())
    sig = keys.PrivateKey(STRANGER.private_key).sign_msg_hash(digest)
    return signed.model_copy(update={"signature": sig.to_bytes()[:64] + bytes([27 + sig.v])})


@pytest.mark.timeout(90)
async def test_bad_adverts_are_never_delivered() -> None:
    keys_ = [PROVIDER.private_key, STRANGER.private_key, dev_private_key(2)]
    async with start_hosts(3, "star", keys=keys_) as nodes:
        coordinator, provider, stranger = nodes[2], nodes[0], nodes[1]
        await coordinator.connect(provider.addrs[0])
        await coordinator.connect(stranger.addrs[0])
        verifier = Verifier(ManualClock(NOW))
        async with subscribe_adverts(coordinator, verifier) as adverts:
            for node in (provider, stranger):
                await wait_for_topic_peers(node, ADVERT_TOPIC, 1, timeout=10)
            raw = PacedPublisher(provider, ADVERT_TOPIC)
            raw_stranger = PacedPublisher(stranger, ADVERT_TOPIC)

            good = signed_advert(seq=5)
            tampered = good.model_copy(update={"body": advert(seq=5, price_per_gpu_hour=1)})
            expired = signed_advert(seq=6, expires_at=NOW - 3600)
            bad = [
                (raw, encode_signed(forged(signed_advert(seq=7)))),  # forged signature
                (raw, encode_signed(tampered)),  # body changed after signing
                (raw, encode_signed(expired)),  # expired
                (raw, b"not json at all"),  # garbage
                (raw_stranger, encode_signed(signed_advert(seq=8))),  # someone else's advert
            ]
            for publisher, data in bad:
                await publisher.publish(data)
            await wait_for_rejections(adverts, len(bad), timeout=15)

            await raw.publish(encode_signed(good))
            assert (await receive_n(adverts, 1, timeout=15))[0] == good
            await raw.publish(encode_signed(good))  # replayed verbatim
            await raw.publish(encode_signed(signed_advert(seq=4)))  # stale sequence
            await wait_for_rejections(adverts, len(bad) + 2, timeout=15)

            newer = signed_advert(seq=9)
            await raw.publish(encode_signed(newer))
            assert (await receive_n(adverts, 1, timeout=15))[0] == newer

        assert adverts.accepted == 2
        assert adverts.rejected == {
            "SignatureError": 3,
            "ExpiredError": 1,
            "MessageError": 1,
            "ReplayError": 2,
        }
        assert verifier.sequences.last(PROVIDER.address) == 9


@pytest.mark.timeout(120)
async def test_twenty_hosts_exchange_adverts() -> None:
    n = 20
    identities = [Identity.from_private_key(dev_private_key(i)) for i in range(n)]
    expires = int(time.time()) + 300
    async with start_hosts(n, "ring") as nodes, AsyncExitStack() as stack:
        subscriptions = [await stack.enter_async_context(subscribe_adverts(node)) for node in nodes]
        for node in nodes:
            await wait_for_mesh(node, ADVERT_TOPIC, 1, timeout=15)

        results: dict[int, set[str]] = {}

        async def collect(index: int, node: Node) -> None:
            seen: set[str] = set()
            with trio.fail_after(60):
                while len(seen) < n - 1:
                    delivery = await subscriptions[index].receive()
                    assert delivery.sender != node.peer_id
                    seen.add(delivery.sender)
            results[index] = seen

        async with trio.open_nursery() as nursery:
            for index, node in enumerate(nodes):
                nursery.start_soon(collect, index, node)
            for identity, node in zip(identities, nodes, strict=True):
                await AdvertPublisher(node).publish(
                    signed_advert(identity, seq=1, expires_at=expires)
                )
                await trio.sleep(0.05)

    everyone = {node.peer_id for node in nodes}
    for index, node in enumerate(nodes):
        assert results[index] == everyone - {node.peer_id}
    assert all(not s.rejected for s in subscriptions)


@pytest.mark.timeout(60)
async def test_adverts_of_unadmitted_providers_are_dropped_before_any_verification() -> None:
    keys_ = [PROVIDER.private_key, STRANGER.private_key, dev_private_key(2)]
    async with start_hosts(3, "star", keys=keys_) as nodes:
        provider, stranger, coordinator = nodes
        await coordinator.connect(provider.addrs[0])
        await coordinator.connect(stranger.addrs[0])
        verifier = Verifier(ManualClock(NOW))
        asked: list[str] = []

        def staked(address: str) -> bool:
            asked.append(address)
            return address == PROVIDER.address

        async with subscribe_adverts(coordinator, verifier, admit=staked) as adverts:
            for node in (provider, stranger):
                await wait_for_topic_peers(node, ADVERT_TOPIC, 1, timeout=10)
            # a well-formed, correctly signed advert of an address with no stake
            await AdvertPublisher(stranger).publish(signed_advert(STRANGER, seq=1))
            await wait_for_rejections(adverts, 1, timeout=15)
            await AdvertPublisher(provider).publish(signed_advert(seq=1))
            body = (await receive_n(adverts, 1, timeout=15))[0].body
            assert isinstance(body, Advert) and body.provider == PROVIDER.address
        assert adverts.rejected == {"NotAdmitted": 1}
        assert STRANGER.address in asked
        # the stranger never reached the verifier: no sequence entry was kept for it
        assert verifier.sequences.last(STRANGER.address) is None
        assert verifier.sequences.last(PROVIDER.address) == 1
