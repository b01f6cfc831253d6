"""The verification bench's building blocks, on a handful of trials (no timing)."""

from __future__ import annotations

import numpy as np

from bench import verification as bench
from proofs.policy import StakeAwarePolicy


def test_checked_jobs_are_settled_by_the_real_comparison() -> None:
    assert not bench.primary_loses(bench.HONEST)
    assert bench.primary_loses(bench.LAZY)
    assert bench.primary_loses(bench.APPROX)


def test_cheaters_are_caught_and_lose_money() -> None:
    rows = bench.cheaters(StakeAwarePolicy(), 60, np.random.default_rng(7))
    for row in rows:
        assert row["detect_before_25"] >= 0.9
        assert row["lcb_after_slash"] < row["lcb_before_slash"]
    honest = bench.honest_established(StakeAwarePolicy(), 2, 200, np.random.default_rng(7))
    assert 1.0 < honest["overhead"] < 1.4


def test_newcomers_earn_spot_checks_and_a_slash_takes_them_away() -> None:
    fresh = bench.newcomer(StakeAwarePolicy())
    assert 20 <= fresh["jobs_to_established"] <= 60
    assert bench.recovery_after_slash(StakeAwarePolicy()) > 0
