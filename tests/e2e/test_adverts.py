"""Forged, stale and replayed adverts published on the devnet's gossip topic by a test
host never reach the coordinator's book; a valid advert from the same host does."""

from __future__ import annotations

import os
import time

import pytest
import trio
from eth_keys import keys
from eth_utils import keccak

from protocol.identity import Identity
from protocol.ids import to_wei
from protocol.messages import Advert
from protocol.p2p.gossip import subscribe, wait_for_topic_peers
from protocol.p2p.host import Node, open_host
from protocol.registry import ADVERT_TOPIC
from protocol.signing import (
    SignedMessage,
    decode_signed,
    encode_signed,
    sign_message,
    signing_payload,
)
from tests.e2e.market import Market

pytestmark = pytest.mark.integration

SETTLE_S = 4.0
"""Long enough for a gossiped advert to reach the coordinator (tens of ms on loopback)."""


def listed(market: Market, address: str) -> bool:
    return any(p["address"] == address for p in market.providers())


async def wait_listed(market: Market, address: str, want: bool, timeout: float) -> bool:
    with trio.move_on_after(timeout):
        while listed(market, address) != want:
            await trio.sleep(0.25)
        return True
    return False


def forge(body: Advert, liar: Identity) -> SignedMessage:
    """An envelope naming ``body.provider`` as its signer, signed with ``liar``'s key."""
    nonce = os.urandom(16)
    payload = signing_payload(body, body.provider, nonce, body.expires_at)
    sig = keys.PrivateKey(liar.private_key).sign_msg_hash(keccak(payload))
    return SignedMessage(
        body=body,
        signer=body.provider,
        nonce=nonce,
        expires_at=body.expires_at,
        signature=sig.to_bytes()[:64] + bytes([27 + sig.v]),
    )


async def publish(node: Node, signed: SignedMessage) -> None:
    await node.pubsub.publish(ADVERT_TOPIC, encode_signed(signed))


async def capture_advert(node: Node) -> Advert:
    """Any real provider's advert from the topic, to copy its shape."""
    with trio.fail_after(30):
        async with subscribe(node, ADVERT_TOPIC, lambda data, sender: data) as adverts:
            async for delivery in adverts:
                body = decode_signed(delivery.value).body
                if isinstance(body, Advert):
                    return body
    raise AssertionError("no advert seen")


async def test_only_valid_adverts_reach_the_book(market: Market) -> None:
    account = market.funded_account()
    chain = market.chain(account.private_key)
    # A registered, staked provider key, so a valid advert from it would be listed.
    host = Identity.from_private_key(account.private_key)
    chain.register()
    chain.stake(to_wei("100"))
    coordinator = market.state.coordinator_multiaddr
    assert coordinator is not None

    async with open_host(host.private_key) as node:
        await node.connect(coordinator)
        template = await capture_advert(node)
        await wait_for_topic_peers(node, ADVERT_TOPIC, 1, timeout=10)
        now = int(time.time())

        def advert(seq: int, expires_at: int) -> Advert:
            return template.model_copy(
                update={
                    "provider": host.address,
                    "peer_id": node.peer_id,
                    "multiaddrs": tuple(node.addrs),
                    "seq": seq,
                    "expires_at": expires_at,
                }
            )

        # Forged: claims the staked address but is signed by another key.
        await publish(node, forge(advert(100, now + 60), Identity.generate()))
        # Stale: correctly signed but already expired.
        await publish(node, sign_message(advert(101, now - 5), host, expires_at=now - 5))
        # Tampered: a valid signature over another price.
        good = sign_message(advert(102, now + 60), host)
        cheaper = good.body.model_copy(update={"price_per_gpu_hour": 1})
        await publish(node, good.model_copy(update={"body": cheaper}))
        await trio.sleep(SETTLE_S)
        assert not listed(market, host.address), "a forged, stale or tampered advert was listed"

        # The same host with a valid, short-lived advert is listed: the refusals above
        # were about the adverts, not the host.
        first = sign_message(advert(200, int(time.time()) + 3), host)
        await publish(node, first)
        assert await wait_listed(market, host.address, True, 10), "a valid advert was refused"
        assert await wait_listed(market, host.address, False, 30), "an expired advert stayed"

        # Replayed: the same signed advert again (a new gossip message), after it expired,
        # and a fresh advert reusing an older sequence number.
        await publish(node, first)
        await publish(node, sign_message(advert(150, int(time.time()) + 60), host))
        await trio.sleep(SETTLE_S)
        assert not listed(market, host.address), "a replayed advert was listed"

    # A well-signed advert from an unregistered key is dropped before any work (admission
    # runs before signature checks): it never reaches the book, nor anyone it would be
    # relayed to.
    stranger = Identity.generate()
    async with open_host(stranger.private_key) as node:
        await node.connect(coordinator)
        await wait_for_topic_peers(node, ADVERT_TOPIC, 1, timeout=10)
        body = template.model_copy(
            update={
                "provider": stranger.address,
                "peer_id": node.peer_id,
                "multiaddrs": tuple(node.addrs),
                "seq": 1,
                "expires_at": int(time.time()) + 60,
            }
        )
        for i in range(3):
            await publish(
                node, sign_message(body.model_copy(update={"seq": body.seq + i}), stranger)
            )
        await trio.sleep(SETTLE_S)
        assert not listed(market, stranger.address), "a stranger's advert reached the book"
