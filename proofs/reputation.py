"""Provider reputation: a Beta posterior over verified outcomes, decaying with time.

``alpha`` counts verified successes and ``beta`` failures, both on top of a Beta(prior)
prior. Each :class:`Verified` outcome has its weight: a success adds one to ``alpha``; a
fault or a timeout adds one failure, a withheld reveal ``withheld_weight`` failures and a
slash ``slash_weight``. Evidence fades toward the prior with a
half-life, so old good behaviour cannot shelter new cheating and old faults heal. Providers
are ranked by a lower confidence bound (Wilson's interval on the pseudo-counts), which
keeps a newcomer with two lucky successes below a provider with a long clean record.
Times are plain seconds handed in by the caller: the model never reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

DAY_S = 86_400.0


class Verified(StrEnum):
    """A verified outcome of one provider's seat in one job."""

    SUCCESS = "success"  # paid by the market
    SLASHED = "slashed"  # signed a wrong result, or a commitment the verdict counted unopened
    FAULT = "fault"  # its own side failed (sandbox error, refused its assignment, handed back)
    TIMEOUT = "timeout"  # no commitment by its commit deadline, or went silent
    WITHHELD = "withheld"  # committed but never revealed


@dataclass(frozen=True)
class ReputationParams:
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    half_life_s: float = 90 * DAY_S
    slash_weight: float = 5.0
    withheld_weight: float = 2.0
    """A commitment left unopened is what a selective revealer does, though not proven wrong."""
    z: float = 1.645  # one-sided 95%
    seed_cap: float = 500.0  # on-chain counters seed at most this much evidence

    def __post_init__(self) -> None:
        if (
            min(
                self.prior_alpha,
                self.prior_beta,
                self.half_life_s,
                self.slash_weight,
                self.withheld_weight,
            )
            <= 0
        ):
            raise ValueError("reputation parameters must be positive")


def wilson_lower_bound(alpha: float, beta: float, z: float) -> float:
    """Lower end of Wilson's score interval for ``alpha`` successes in ``alpha + beta``."""
    n = alpha + beta
    if n <= 0:
        return 0.0
    p = alpha / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z2 / n))


@dataclass(frozen=True)
class Reputation:
    alpha: float
    beta: float
    updated_at: float
    params: ReputationParams = ReputationParams()

    @classmethod
    def fresh(cls, now: float, params: ReputationParams | None = None) -> Reputation:
        p = params or ReputationParams()
        return cls(p.prior_alpha, p.prior_beta, now, p)

    @classmethod
    def from_counters(
        cls, completed: int, slashed: int, now: float, params: ReputationParams | None = None
    ) -> Reputation:
        """Seed from the contract's counters after a restart (their dates are unknown, so
        the evidence is capped rather than dated)."""
        if completed < 0 or slashed < 0:
            raise ValueError("counters cannot be negative")
        p = params or ReputationParams()
        good = float(completed)
        bad = slashed * p.slash_weight
        total = good + bad
        if total > p.seed_cap:
            good, bad = good * p.seed_cap / total, bad * p.seed_cap / total
        return cls(p.prior_alpha + good, p.prior_beta + bad, now, p)

    def at(self, now: float) -> Reputation:
        """This posterior with its evidence decayed to time ``now``."""
        dt = now - self.updated_at
        if dt <= 0:
            return self
        f = 0.5 ** (dt / self.params.half_life_s)
        pa, pb = self.params.prior_alpha, self.params.prior_beta
        return replace(
            self, alpha=pa + (self.alpha - pa) * f, beta=pb + (self.beta - pb) * f, updated_at=now
        )

    def record(self, now: float, successes: int = 0, slashes: int = 0) -> Reputation:
        """Add verified outcomes observed at ``now``."""
        if successes < 0 or slashes < 0:
            raise ValueError("outcome counts cannot be negative")
        r = self.at(now)
        return replace(
            r, alpha=r.alpha + successes, beta=r.beta + slashes * self.params.slash_weight
        )

    def record_success(self, now: float) -> Reputation:
        return self.record(now, successes=1)

    def record_slash(self, now: float) -> Reputation:
        return self.record(now, slashes=1)

    def record_failure(self, now: float, weight: float = 1.0) -> Reputation:
        """Add a failure weighing ``weight`` plain failures (a fault or a timeout weighs 1)."""
        if weight < 0:
            raise ValueError("a failure cannot weigh less than nothing")
        r = self.at(now)
        return replace(r, beta=r.beta + weight)

    def record_outcome(self, now: float, outcome: Verified) -> Reputation:
        """Add one verified outcome, weighed as the module docstring says."""
        if outcome is Verified.SUCCESS:
            return self.record_success(now)
        if outcome is Verified.SLASHED:
            return self.record_slash(now)
        if outcome is Verified.WITHHELD:
            return self.record_failure(now, self.params.withheld_weight)
        return self.record_failure(now)

    def mean(self, now: float) -> float:
        r = self.at(now)
        return r.alpha / (r.alpha + r.beta)

    def lower_bound(self, now: float) -> float:
        r = self.at(now)
        return wilson_lower_bound(r.alpha, r.beta, self.params.z)

    def evidence(self, now: float) -> float:
        """Pseudo-observations beyond the prior still in force at ``now``."""
        r = self.at(now)
        return r.alpha + r.beta - self.params.prior_alpha - self.params.prior_beta


def rank(reputations: Mapping[K, Reputation], now: float) -> list[K]:
    """Keys best first by lower confidence bound (ties keep the mapping's order)."""
    keys = list(reputations)
    return sorted(keys, key=lambda k: -reputations[k].lower_bound(now))
