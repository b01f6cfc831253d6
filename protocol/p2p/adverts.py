"""Provider adverts on GossipSub: the thin layer between the advert model and the topic.

Receivers validate every advert inside GossipSub's topic validator, so a bad advert is
neither delivered nor relayed. The checks, in order: size, envelope decoding, the
message is an ``Advert``, the libp2p peer that signed the pubsub message is the advert's
``peer_id`` (so nobody can republish another provider's advert as their own or inject it
under their key), then :class:`protocol.signing.Verifier` — expiry, signature by the
provider, ``peer_id`` derived from the provider's key, and a sequence number above the
last one accepted from that provider (replays and stale adverts fail here). Only a
fully valid advert advances the sequence.

An optional *admission* check runs before any signature is verified or any state is kept:
``admit(address)`` for the address the sending peer's key belongs to (derived from its peer
id, no signature needed). A node passes one backed by the chain (registered and staked
providers), so adverts of strangers are dropped without work, never relayed, and never
reach the verifier's sequence table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from protocol.errors import MessageError, SignatureError
from protocol.identity import address_from_peer_id
from protocol.ids import Address, PeerId
from protocol.messages import Advert
from protocol.p2p.gossip import PacedPublisher, ValidatedSubscription, Validator, subscribe
from protocol.p2p.host import Node
from protocol.registry import ADVERT_TOPIC, MAX_ADVERT_BYTES
from protocol.signing import SignedMessage, Verifier, decode_signed, encode_signed

Admission = Callable[[Address], bool]
"""Whether adverts of this provider address are worth any work (e.g. staked on chain)."""


class NotAdmitted(MessageError):
    """The advertising peer's address is not one this node accepts adverts from."""


def advert_validator(
    verifier: Verifier, admit: Admission | None = None
) -> Validator[SignedMessage]:
    """A GossipSub validator returning the verified advert envelope."""

    def validate(data: bytes, sender: PeerId) -> SignedMessage:
        if admit is not None:
            address = address_from_peer_id(sender)
            if not admit(address):
                raise NotAdmitted(f"{address} is not a registered, staked provider")
        if len(data) > MAX_ADVERT_BYTES:
            raise MessageError(f"advert of {len(data)} bytes exceeds {MAX_ADVERT_BYTES}")
        signed = decode_signed(data, MAX_ADVERT_BYTES)
        body = signed.body
        if not isinstance(body, Advert):
            raise MessageError(f"expected an advert on {ADVERT_TOPIC}, got {body.message_type}")
        if body.peer_id != sender:
            raise SignatureError(f"advert for peer {body.peer_id} was published by {sender}")
        verifier.open(signed, Advert)
        return signed

    return validate


@asynccontextmanager
async def subscribe_adverts(
    node: Node,
    verifier: Verifier | None = None,
    *,
    topic: str = ADVERT_TOPIC,
    admit: Admission | None = None,
) -> AsyncIterator[ValidatedSubscription[SignedMessage]]:
    """Receive verified adverts (each a ``SignedMessage`` whose body is an ``Advert``) of
    admitted providers only."""
    validator = advert_validator(verifier or Verifier(), admit)
    async with subscribe(node, topic, validator) as adverts:
        yield adverts


class AdvertPublisher:
    """Publishes a provider's signed adverts, paced below the network's rate limit."""

    def __init__(self, node: Node, *, topic: str = ADVERT_TOPIC) -> None:
        self.node = node
        self._publisher = PacedPublisher(node, topic)

    @property
    def published(self) -> int:
        return self._publisher.published

    async def publish(self, signed: SignedMessage) -> None:
        """Publish ``signed``; refuses adverts that every receiver would reject."""
        body = signed.body
        if not isinstance(body, Advert):
            raise MessageError(f"only adverts go on the advert topic, not {body.message_type}")
        if body.peer_id != self.node.peer_id:
            raise SignatureError(
                f"advert names peer {body.peer_id} but this node is {self.node.peer_id}"
            )
        data = encode_signed(signed)
        if len(data) > MAX_ADVERT_BYTES:
            raise MessageError(f"advert of {len(data)} bytes exceeds {MAX_ADVERT_BYTES}")
        await self._publisher.publish(data)
