"""Verification policy: how much checking a job gets, so that cheating loses money.

A provider that skips the work of a job gains at most the job's price ``g`` when nobody
checks and loses its locked, slashable stake ``S`` when a checker catches it. A spot check
drawn with probability ``p`` (invisible in advance) makes cheating unprofitable when

    p * S > (1 - p) * g    <=>    p > g / (g + S)

so the policy draws ``p = max(p_floor, margin * g / (g + S))``. The floor keeps detection
likely however large the stake: a cheater is caught before its 25th cheat with probability
``1 - (1 - p)^25``, which is >= 0.99 once p >= 0.168. The margin keeps a cheat's expected
result clearly negative, not just below zero: at the default ``S = 5 g`` it draws
``p = 0.2``, so each cheat loses ``p S - (1 - p) g = 0.2 g`` in expectation. Newcomers are
always checked (``replicas >= 2``) until their verified record is long and clean. The
requester's redundancy is a floor; the policy only ever adds checks. A job whose verdict
cannot slash (``tolerance`` comparison) has nothing at stake, so ``p`` would
be 1: such jobs are replicated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ProviderStanding:
    """What the policy knows of a provider (token amounts in the same unit as prices)."""

    slashable_stake: int
    verified_jobs: int
    slashes: int
    reputation_lcb: float


@dataclass(frozen=True)
class PolicyTerms:
    """What the verification policy weighs of a job (not its on-chain terms)."""

    price: int
    requester_redundancy: int = 1
    cheat_gain: int | None = None  # what skipping the work saves; the price if unknown
    slashable: bool = True  # False for tolerance jobs: nobody is slashed on those verdicts

    @property
    def gain(self) -> int:
        return self.price if self.cheat_gain is None else self.cheat_gain


@dataclass(frozen=True)
class VerificationPlan:
    replicas: int  # providers assigned up front (the primary included)
    spot_check_p: float  # chance of a hidden checker after the primary commits
    needs_established_partner: bool
    reason: str

    @property
    def expected_overhead(self) -> float:
        """Expected executions of the job per execution the requester asked for."""
        return self.replicas + (self.spot_check_p if self.replicas == 1 else 0.0)


class VerificationPolicy(Protocol):
    def plan(self, provider: ProviderStanding, job: PolicyTerms) -> VerificationPlan:
        """Decide replication or spot-check probability for one assignment."""
        ...


def detection_probability(p: float, cheats: int) -> float:
    """Chance that at least one of ``cheats`` independently checked cheats is caught."""
    return 1.0 - (1.0 - p) ** cheats


def floor_for_detection(target: float = 0.99, cheats: int = 25) -> float:
    """Smallest p with ``detection_probability(p, cheats) >= target``."""
    return 1.0 - float((1.0 - target) ** (1.0 / cheats))


@dataclass(frozen=True)
class StakeAwarePolicy:
    p_floor: float = 0.18
    margin: float = 1.2  # stay this factor above break-even: a cheat loses >= 0.2 g at S = 5 g
    established_jobs: int = 20
    established_lcb: float = 0.85
    newcomer_replicas: int = 2

    def __post_init__(self) -> None:
        if not 0 < self.p_floor <= 1 or self.margin < 1 or self.newcomer_replicas < 2:
            raise ValueError("invalid policy parameters")

    def break_even(self, stake: int, gain: int) -> float:
        if gain <= 0:
            return 0.0
        return gain / (gain + max(stake, 0))

    def spot_check_probability(self, stake: int, gain: int) -> float:
        return min(1.0, max(self.p_floor, self.margin * self.break_even(stake, gain)))

    def is_established(self, provider: ProviderStanding) -> bool:
        return (
            provider.verified_jobs >= self.established_jobs
            and provider.reputation_lcb >= self.established_lcb
        )

    def plan(self, provider: ProviderStanding, job: PolicyTerms) -> VerificationPlan:
        floor = max(1, job.requester_redundancy)
        if not self.is_established(provider):
            return VerificationPlan(
                max(floor, self.newcomer_replicas),
                0.0,
                True,
                "not established: replicated with an established provider",
            )
        if floor >= 2:
            return VerificationPlan(floor, 0.0, False, "requester's redundancy")
        stake = provider.slashable_stake if job.slashable else 0
        p = self.spot_check_probability(stake, job.gain)
        if p >= 1.0 or math.isclose(p, 1.0):
            return VerificationPlan(2, 0.0, False, "stake too small to deter: replicated")
        return VerificationPlan(1, p, False, f"spot check p={p:.3f}")


POLICIES: dict[str, Callable[[], VerificationPolicy]] = {"stake-aware": StakeAwarePolicy}
"""Named policies the coordinator can be configured with."""
