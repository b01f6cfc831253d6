"""Tuning of the libp2p host and its GossipSub router.

py-libp2p's defaults suit neither a marketplace nor its tests: the GossipSub heartbeat is
120 s (meshes would take minutes to form), and a 10 messages per second limit per peer and
topic drops adverts that one peer relays for many providers. The values here are sized for
networks of a few to a few hundred peers publishing an advert every few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GOSSIPSUB_PROTOCOL = "/meshsub/1.1.0"
DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/0"


def rate_limit_for(providers: int, advert_period_s: float, headroom: float = 4.0) -> float:
    """Per-peer, per-topic message rate a relay must be allowed for ``providers`` adverts.

    A relay may forward every provider's advert within one period, so it needs
    ``providers / period`` messages per second; ``headroom`` covers bursts after a
    reconnect and the drift between providers' schedules.
    """
    if providers < 1 or advert_period_s <= 0:
        raise ValueError("need at least one provider and a positive advert period")
    return max(10.0, headroom * providers / advert_period_s)


@dataclass(frozen=True)
class GossipConfig:
    """GossipSub parameters (see the libp2p GossipSub v1.1 specification for each)."""

    heartbeat_interval_s: int = 1
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    gossip_window: int = 3
    gossip_history: int = 5
    fanout_ttl_s: int = 60
    max_messages_per_topic_per_second: float = field(
        default_factory=lambda: rate_limit_for(providers=100, advert_period_s=5.0)
    )
    # Loopback and single-host deployments put every peer behind one IP, which the
    # eclipse protection reads as an attack and answers by churning the mesh.
    eclipse_protection: bool = False
    max_rpc_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        if not 0 < self.degree_low <= self.degree <= self.degree_high:
            raise ValueError("need 0 < degree_low <= degree <= degree_high")
        if self.heartbeat_interval_s < 1:
            raise ValueError("heartbeat interval must be at least 1 s")

    def publish_interval_s(self) -> float:
        """Smallest gap between two publishes of one node on one topic.

        Half the receivers' rate limit, because a node's own publishes and its relaying
        of others share that budget at every neighbour.
        """
        return 2.0 / self.max_messages_per_topic_per_second


@dataclass(frozen=True)
class HostConfig:
    """Connection-level settings of a host."""

    dial_timeout_s: float = 5.0
    negotiate_timeout_s: int = 10
    dial_backoff_s: float = 2.0
    """How long a peer whose every address just failed is not dialled again implicitly."""
    gossip: GossipConfig = field(default_factory=GossipConfig)
