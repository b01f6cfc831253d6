"""libp2p transport: hosts, GossipSub topics and request/response streams.

* :func:`open_host` — a running node from the participant's secp256k1 key (Noise, yamux,
  tuned GossipSub, strict signing).
* :func:`subscribe` / :class:`PacedPublisher` — validated topics over bytes;
  :func:`subscribe_adverts` / :class:`AdvertPublisher` — the advert topic.
* :class:`RequestHandlers`, :func:`request`, :class:`KeptStream` — length-prefixed
  request/response protocols with size limits and deadlines.
* :mod:`protocol.p2p.errors` — every failure as a ``TransportError`` subclass.
* :mod:`protocol.p2p.testing` — N connected nodes on loopback; :mod:`protocol.p2p.asgi` —
  an ASGI app served in the same trio run.
"""

from protocol.p2p.adverts import AdvertPublisher, advert_validator, subscribe_adverts
from protocol.p2p.config import GossipConfig, HostConfig, rate_limit_for
from protocol.p2p.gossip import Delivery, PacedPublisher, ValidatedSubscription, subscribe
from protocol.p2p.host import Node, open_host
from protocol.p2p.rpc_client import KeptStream, request
from protocol.p2p.rpc_server import RequestHandlers
from protocol.p2p.rpc_wire import Limits, Status

__all__ = [
    "AdvertPublisher",
    "Delivery",
    "GossipConfig",
    "HostConfig",
    "KeptStream",
    "Limits",
    "Node",
    "PacedPublisher",
    "RequestHandlers",
    "Status",
    "ValidatedSubscription",
    "advert_validator",
    "open_host",
    "rate_limit_for",
    "request",
    "subscribe",
    "subscribe_adverts",
]
