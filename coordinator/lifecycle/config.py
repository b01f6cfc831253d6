"""What tunes a job's driving: timeouts, margins and the verification policy."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from proofs.policy import StakeAwarePolicy, VerificationPolicy


@dataclass
class DriverConfig:
    request_timeout_s: float = 10.0
    reveal_timeout_s: float = 60.0
    max_output_bytes: int = 1 << 30
    input_size_timeout_s: float = 10.0
    """How long reading a job's input sizes (to match it only to providers that take them)
    may take; past it the sizes count as unknown."""
    stake_factor: int = 5
    tx_margin_s: float = 2.0
    """A transaction bound by a deadline is sent only this long before it (mining takes time)."""
    reveal_attempts: int = 3
    """Unanswered reveal requests before a committed seat counts as not revealing."""
    settle_attempts: int = 5
    """Refused or skipped settlements before the job fails with the chain's reason."""
    policy: VerificationPolicy = field(default_factory=StakeAwarePolicy)
    rng: random.Random = field(default_factory=random.SystemRandom)
