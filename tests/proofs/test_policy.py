from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofs.policy import (
    POLICIES,
    PolicyTerms,
    ProviderStanding,
    StakeAwarePolicy,
    detection_probability,
    floor_for_detection,
)
from proofs.reputation import Reputation

POLICY = StakeAwarePolicy()
money = st.integers(0, 10**12)
price = st.integers(1, 10**9)


def established(stake: int) -> ProviderStanding:
    return ProviderStanding(stake, verified_jobs=100, slashes=0, reputation_lcb=0.97)


@given(money, money, price)
def test_more_stake_never_raises_checking(s1, s2, p) -> None:
    lo, hi = sorted((s1, s2))
    job = PolicyTerms(price=p)
    a, b = POLICY.plan(established(lo), job), POLICY.plan(established(hi), job)
    assert b.expected_overhead <= a.expected_overhead + 1e-12
    assert POLICY.spot_check_probability(hi, p) <= POLICY.spot_check_probability(lo, p)


@given(money, price)
def test_cheating_loses_money_in_expectation(stake, p) -> None:
    plan = POLICY.plan(established(stake), PolicyTerms(price=p))
    if plan.replicas == 1:
        q = plan.spot_check_p
        assert q * stake > (1 - q) * p
        assert q >= POLICY.p_floor
        assert detection_probability(q, 25) >= 0.99
    else:
        assert plan.replicas >= 2 and plan.spot_check_p == 0


def test_default_stake_gives_the_floor_and_bounded_overhead() -> None:
    plan = POLICY.plan(established(5_000_000), PolicyTerms(price=1_000_000))
    assert plan.replicas == 1 and abs(plan.spot_check_p - 0.2) < 1e-9
    assert plan.expected_overhead <= 1.25
    assert floor_for_detection(0.99, 25) == pytest.approx(0.1682, abs=1e-4)
    assert POLICY.p_floor >= floor_for_detection(0.99, 25)


def test_newcomers_are_replicated_with_an_established_partner() -> None:
    fresh = ProviderStanding(10**12, verified_jobs=0, slashes=0, reputation_lcb=0.2)
    plan = POLICY.plan(fresh, PolicyTerms(price=1))
    assert plan.replicas == 2 and plan.needs_established_partner
    assert POLICY.plan(fresh, PolicyTerms(price=1, requester_redundancy=3)).replicas == 3


@given(st.integers(1, 6), money, price)
def test_requester_redundancy_is_a_floor(r, stake, p) -> None:
    plan = POLICY.plan(established(stake), PolicyTerms(price=p, requester_redundancy=r))
    assert plan.replicas >= r
    assert plan.expected_overhead >= r


@given(st.integers(0, 300), st.integers(0, 5), st.integers(1, 5))
def test_a_slash_never_reduces_checking(completed, slashed, more) -> None:
    def standing(s: int) -> ProviderStanding:
        lcb = Reputation.from_counters(completed, s, 0.0).lower_bound(0.0)
        return ProviderStanding(5, verified_jobs=completed, slashes=s, reputation_lcb=lcb)

    job = PolicyTerms(price=1)
    before = POLICY.plan(standing(slashed), job).expected_overhead
    assert POLICY.plan(standing(slashed + more), job).expected_overhead >= before


def test_tiny_stake_means_replication_and_registry() -> None:
    plan = POLICY.plan(established(0), PolicyTerms(price=10))
    assert plan.replicas == 2
    assert isinstance(POLICIES["stake-aware"](), StakeAwarePolicy)
    with pytest.raises(ValueError):
        StakeAwarePolicy(p_floor=0)


def test_jobs_that_cannot_slash_are_replicated() -> None:
    plan = POLICY.plan(established(10**12), PolicyTerms(price=1, slashable=False))
    assert plan.replicas == 2 and plan.spot_check_p == 0
