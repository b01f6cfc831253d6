from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofs.reputation import (
    DAY_S,
    Reputation,
    ReputationParams,
    Verified,
    rank,
    wilson_lower_bound,
)

counts = st.floats(0, 1e4, allow_nan=False)
times = st.floats(0, 1e9, allow_nan=False)

histories = st.lists(st.tuples(st.booleans(), st.floats(0, 30 * DAY_S)), max_size=40)


def replay(events: list[tuple[bool, float]]) -> tuple[Reputation, float]:
    rep, now = Reputation.fresh(0.0), 0.0
    for ok, dt in events:
        now += dt
        rep = rep.record_success(now) if ok else rep.record_slash(now)
    return rep, now


@given(histories, st.floats(0, 30 * DAY_S))
def test_a_slash_never_raises_and_a_success_never_lowers(events, dt) -> None:
    rep, now = replay(events)
    later = now + dt
    base = rep.lower_bound(later)
    assert rep.record_slash(later).lower_bound(later) <= base + 1e-12
    assert rep.record_success(later).lower_bound(later) >= base - 1e-12
    assert rep.record_slash(later).mean(later) <= rep.mean(later) + 1e-12


@given(counts, counts, st.floats(0.5, 3))
def test_wilson_bound_is_monotone_and_below_the_mean(a, b, z) -> None:
    lb = wilson_lower_bound(a + 1, b + 1, z)
    assert 0 <= lb <= (a + 1) / (a + b + 2) + 1e-12
    assert wilson_lower_bound(a + 2, b + 1, z) >= lb - 1e-12
    assert wilson_lower_bound(a + 1, b + 2, z) <= lb + 1e-12


def test_more_evidence_ranks_higher_at_equal_rate() -> None:
    few = Reputation.from_counters(3, 0, 0.0)
    many = Reputation.from_counters(300, 0, 0.0)
    assert rank({"few": few, "many": many}, 0.0) == ["many", "few"]
    assert many.mean(0.0) > few.mean(0.0) > 0.5


def test_decay_halves_evidence_per_half_life() -> None:
    params = ReputationParams(half_life_s=10.0)
    rep = Reputation.from_counters(100, 2, 0.0, params)
    assert math.isclose(rep.evidence(10.0), rep.evidence(0.0) / 2)
    assert math.isclose(rep.evidence(20.0), rep.evidence(0.0) / 4)
    # a slash's weight fades too: an old fault heals
    assert rep.lower_bound(1000.0) != rep.lower_bound(0.0)
    # time running backwards changes nothing
    assert rep.at(-5.0) == rep


def test_slash_weighs_more_than_a_success() -> None:
    rep = Reputation.from_counters(50, 0, 0.0)
    after = rep.record_slash(0.0).record_success(0.0)
    assert after.lower_bound(0.0) < rep.lower_bound(0.0)


def test_counters_are_capped_and_validated() -> None:
    params = ReputationParams(seed_cap=100)
    rep = Reputation.from_counters(10_000, 0, 0.0, params)
    assert math.isclose(rep.evidence(0.0), 100)
    with pytest.raises(ValueError):
        Reputation.from_counters(-1, 0, 0.0)
    with pytest.raises(ValueError):
        rep.record(0.0, successes=-1)
    with pytest.raises(ValueError):
        ReputationParams(half_life_s=0)


@given(st.integers(0, 500), st.integers(0, 20), st.integers(0, 20))
def test_seeding_is_monotone_in_the_counters(completed, slashed, extra) -> None:
    base = Reputation.from_counters(completed, slashed, 0.0).lower_bound(0.0)
    assert (
        Reputation.from_counters(completed, slashed + extra, 0.0).lower_bound(0.0) <= base + 1e-12
    )


def test_each_verified_outcome_weighs_as_documented() -> None:
    params = ReputationParams(slash_weight=5.0, withheld_weight=2.0)
    fresh = Reputation.fresh(0.0, params)
    weights = {
        Verified.SUCCESS: (1.0, 0.0),
        Verified.FAULT: (0.0, 1.0),
        Verified.TIMEOUT: (0.0, 1.0),
        Verified.WITHHELD: (0.0, 2.0),
        Verified.SLASHED: (0.0, 5.0),
    }
    for outcome, (good, bad) in weights.items():
        after = fresh.record_outcome(0.0, outcome)
        assert (after.alpha - fresh.alpha, after.beta - fresh.beta) == (good, bad), outcome


@given(histories, st.sampled_from(list(Verified)))
def test_only_a_success_raises_the_bound(events, outcome) -> None:
    rep, now = replay(events)
    after = rep.record_outcome(now, outcome).lower_bound(now)
    if outcome is Verified.SUCCESS:
        assert after >= rep.lower_bound(now) - 1e-12
    else:
        assert after <= rep.lower_bound(now) + 1e-12


def test_a_failure_cannot_weigh_less_than_nothing() -> None:
    with pytest.raises(ValueError):
        Reputation.fresh(0.0).record_failure(0.0, -1.0)
    with pytest.raises(ValueError):
        ReputationParams(withheld_weight=0.0)
