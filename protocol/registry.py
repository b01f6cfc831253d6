"""Registry of versioned protocol ids, gossip topics and wire size limits.

Every stream protocol and topic the market speaks is named here once. A breaking change
to a message family bumps its version here (and the ``v`` field of its messages), so
peers running different versions fail to negotiate instead of misreading each other.
"""

from __future__ import annotations

from typing import Final

# libp2p stream protocols (multistream-select ids).
JOB_PROTOCOL: Final = "/gpumarket/job/1.0.0"
"""Coordinator -> provider: assignment, reveal request, cancel; provider replies."""

CHALLENGE_PROTOCOL: Final = "/gpumarket/challenge/1.0.0"
"""Coordinator -> provider: benchmark challenge, row openings."""

REPORT_PROTOCOL: Final = "/gpumarket/report/1.0.0"
"""Provider -> coordinator: commitments, reveals, logs, hand-backs, failure reports."""

STREAM_PROTOCOLS: Final = (JOB_PROTOCOL, CHALLENGE_PROTOCOL, REPORT_PROTOCOL)

# Gossipsub topics.
ADVERT_TOPIC: Final = "gpumarket/adverts/1"
"""Providers publish signed adverts here; silence for longer than an advert's expiry means gone."""

TOPICS: Final = (ADVERT_TOPIC,)

# Size limits, in bytes, checked before anything is parsed.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
"""Any single encoded wire message (challenge row openings are the largest)."""

MAX_ADVERT_BYTES: Final = 16 * 1024
"""A signed advert as published on the advert topic."""

MAX_LOG_CHUNK_BYTES: Final = 64 * 1024
"""Payload of one log chunk."""

MAX_SPEC_BYTES: Final = 64 * 1024
"""A job spec file (YAML or canonical JSON)."""

MAX_TEXT_CHARS: Final = 4096
"""Free-text fields such as error details and cancel reasons."""

MAX_ROW_BYTES: Final = 64 * 1024
"""One opened challenge row (n <= 16384 values of at most 4 bytes)."""

MAX_MULTIADDRS: Final = 16
MAX_GPUS_PER_NODE: Final = 16

# Signed wire messages: how far ahead an expiry may lie and how much clock skew is forgiven.
MAX_MESSAGE_LIFETIME_S: Final = 3600
MAX_CLOCK_SKEW_S: Final = 30


def signing_domain(message_type: str, version: int) -> bytes:
    """Prefix that separates signatures of one message type from every other."""
    return f"gpumarket:{message_type}:{version}\n".encode()
