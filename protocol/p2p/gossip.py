"""GossipSub topics over bytes: validated subscriptions and a paced publisher.

A subscription is given a *validator*, ``validator(data, sender) -> T``, that decodes and
checks one message and raises :class:`protocol.errors.GpuMarketError` (usually
``MessageError``) to reject it. It runs as GossipSub's topic validator, so a rejected
message is neither delivered nor relayed to other peers, and the rejection is counted by
reason. ``sender`` is the peer that signed the message (pubsub's ``from`` field, checked by
strict signing), never the neighbour that relayed it.

Publishing goes through :class:`PacedPublisher`, which spaces one node's messages on a
topic so that neither the receivers' per-peer rate limit nor py-libp2p's 32-deep outbound
queues (which drop silently when full) are ever hit.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio
from libp2p.abc import ISubscriptionAPI
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from protocol.errors import GpuMarketError, TransportError
from protocol.ids import PeerId
from protocol.p2p.errors import OversizedMessage, RequestTimeout, translate_errors
from protocol.p2p.host import Node

log = logging.getLogger(__name__)

T = TypeVar("T")

Validator = Callable[[bytes, PeerId], T]
"""Decode and check one message; raise ``GpuMarketError`` to reject it."""

MAX_PENDING = 1024
"""Validated messages waiting for the reader; beyond this the oldest are forgotten."""


@dataclass(frozen=True)
class Delivery(Generic[T]):
    """A message that passed validation: the validator's value and who signed it."""

    value: T
    sender: PeerId
    topic: str


class ValidatedSubscription(Generic[T]):
    """Messages of one topic that passed ``validator``; iterate or call ``receive``."""

    def __init__(self, node: Node, topic: str, validator: Validator[T], include_own: bool) -> None:
        self.topic = topic
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        """Rejections by reason (the exception's class name)."""
        self._node = node
        self._validator = validator
        self._include_own = include_own
        self._pending: OrderedDict[bytes, Delivery[T]] = OrderedDict()
        self._subscription: ISubscriptionAPI | None = None

    def _validate(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """GossipSub's topic validator: must not raise, so every failure is a rejection."""
        sender = PeerId(ID(msg.from_id).to_base58())
        try:
            value = self._validator(msg.data, sender)
        except GpuMarketError as exc:
            self.rejected[type(exc).__name__] += 1
            log.debug("rejected a %s message from %s: %s", self.topic, sender, exc)
            return False
        except Exception:
            self.rejected["InternalError"] += 1
            log.exception("validator of %s failed on a message from %s", self.topic, sender)
            return False
        self.accepted += 1
        self._pending[_message_key(msg)] = Delivery(value, sender, self.topic)
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
        return True

    async def receive(self) -> Delivery[T]:
        """The next validated message (waits until one arrives)."""
        if self._subscription is None:
            raise TransportError(f"not subscribed to {self.topic}")
        own = self._node.peer_id
        while True:
            with translate_errors(f"receive on {self.topic}"):
                msg = await self._subscription.get()
            delivery = self._pending.pop(_message_key(msg), None)
            if delivery is None:
                continue  # validated before this subscription existed, or forgotten
            if delivery.sender == own and not self._include_own:
                continue
            return delivery

    def __aiter__(self) -> AsyncIterator[Delivery[T]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Delivery[T]]:
        while True:
            yield await self.receive()


def _message_key(msg: rpc_pb2.Message) -> bytes:
    return bytes(msg.from_id) + bytes(msg.seqno)


@asynccontextmanager
async def subscribe(
    node: Node, topic: str, validator: Validator[T], *, include_own: bool = False
) -> AsyncIterator[ValidatedSubscription[T]]:
    """Subscribe ``node`` to ``topic``, delivering only messages ``validator`` accepts.

    Messages this node publishes itself are validated too but not delivered unless
    ``include_own``. Leaving the block unsubscribes and removes the validator.
    """
    if topic in node.pubsub.topic_ids:
        # One validator per topic: a second subscription would replace the first's.
        raise TransportError(f"already subscribed to {topic}")
    subscription = ValidatedSubscription(node, topic, validator, include_own)
    node.pubsub.set_topic_validator(topic, subscription._validate, False)
    try:
        with translate_errors(f"subscribe to {topic}"):
            subscription._subscription = await node.pubsub.subscribe(topic)
        yield subscription
    finally:
        node.pubsub.remove_topic_validator(topic)
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                await node.pubsub.unsubscribe(topic)
            except Exception as exc:
                log.debug("unsubscribing from %s failed: %s", topic, exc)


class PacedPublisher:
    """Publishes one node's messages on one topic no faster than the network accepts.

    ``publish`` waits for the next free slot (``min_interval_s`` after the previous
    publish), which is the back-pressure that keeps bursts out of the outbound queues.
    """

    def __init__(self, node: Node, topic: str, min_interval_s: float | None = None) -> None:
        self.node = node
        self.topic = topic
        self.min_interval_s = (
            min_interval_s
            if min_interval_s is not None
            else node.config.gossip.publish_interval_s()
        )
        self.published = 0
        self._lock = trio.Lock()
        self._next_slot = 0.0

    async def publish(self, data: bytes) -> None:
        """Sign and publish ``data`` (strict signing uses the node's key)."""
        max_bytes = self.node.config.gossip.max_rpc_bytes // 2
        if len(data) > max_bytes:
            raise OversizedMessage(len(data), max_bytes)
        async with self._lock:
            await trio.sleep_until(self._next_slot)
            with translate_errors(f"publish on {self.topic}"):
                await self.node.pubsub.publish(self.topic, data)
            self.published += 1
            self._next_slot = trio.current_time() + self.min_interval_s


def topic_peers(node: Node, topic: str) -> set[PeerId]:
    """Peers this node knows to be subscribed to ``topic``."""
    peers = node.pubsub.peer_topics.get(topic, set())
    return {PeerId(peer.to_base58()) for peer in peers}


async def wait_for_topic_peers(node: Node, topic: str, count: int, timeout: float) -> None:
    """Wait until ``node`` knows ``count`` subscribers of ``topic`` among its neighbours."""
    try:
        with trio.fail_after(timeout):
            while len(topic_peers(node, topic)) < count:
                await trio.sleep(0.02)
    except trio.TooSlowError as exc:
        raise RequestTimeout(f"waiting for {count} peers on {topic}", timeout) from exc


async def wait_for_mesh(node: Node, topic: str, count: int, timeout: float) -> None:
    """Wait until ``node``'s GossipSub mesh for ``topic`` holds ``count`` peers."""
    try:
        with trio.fail_after(timeout):
            while len(node.gossipsub.mesh.get(topic, ())) < count:
                await trio.sleep(0.02)
    except trio.TooSlowError as exc:
        raise RequestTimeout(f"waiting for a mesh of {count} on {topic}", timeout) from exc
