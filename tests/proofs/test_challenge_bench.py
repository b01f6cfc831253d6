"""bench/challenge.py's responders on tiny shapes: the spoofer commits junk for the
products it skips, which opening them exposes; the honest one verifies."""

from __future__ import annotations

import logging
import os

import pytest

from bench import challenge as bench
from proofs.challenge import ExactChallenge
from proofs.challenge_check import ExactTiming, judge_exact


@pytest.fixture(autouse=True)
def tiny_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "SHAPES", {d: (16, 64) for d in bench.SHAPES})


def test_a_spoofer_skipping_products_fails_when_they_are_opened() -> None:
    # True speed such that only 2 of 8 products fit the bound: it skips 6.
    ch = ExactChallenge(os.urandom(32), "bf16", m=16, k=64, reps=8)
    per_rep = ch.flops / ch.reps
    cal = bench.Calibration(
        tflops=per_rep / 1e12, terms=ExactTiming(slack=1.0, allowance_s=0.0), overhead_s=0.0
    )
    work = bench.spoofer(ch, cal, factor=8 / 2.2)
    everything = [(i, r) for i in range(ch.reps) for r in range(ch.m)]
    verdict = judge_exact(
        ch, 1.0, work.root, 0.0, everything, work.open(everything), ExactTiming(allowance_s=1)
    )
    assert verdict.wrong_rows
    failed = {int(r.split(",")[0].removeprefix("row (")) for r in verdict.reasons}
    assert failed == set(range(2, 8))


def test_an_honest_trial_verifies_with_a_generous_bound() -> None:
    cal = bench.Calibration(
        tflops=1e-3, terms=ExactTiming(slack=1.0, allowance_s=600.0), overhead_s=0.0
    )
    row_times: list[float] = []
    assert bench.trial("fp32", cal, 1.0, 2, row_times)
    assert len(row_times) == 1


@pytest.mark.timeout(120)
async def test_over_libp2p_a_spoofer_that_computes_nothing_in_time_is_always_caught() -> None:
    # A true speed of 1 MFLOPS fits no product of 16 x 4096 x 16 in the bound: every
    # digest the spoofer commits is junk, and every challenge fails on its opened rows.
    cal = bench.Calibration(
        tflops=1e-6, terms=ExactTiming(slack=1.0, allowance_s=0.0), overhead_s=0.0
    )
    rates = await bench._libp2p_rates("bf16", cal, trials=2)
    assert rates["libp2p_spoof2x_detect"] == 1.0
    assert 0.0 <= rates["libp2p_honest_pass_rate"] <= 1.0


def test_the_bench_leaves_the_challengers_log_level_alone() -> None:
    """Run inside a test session, the bench must not quiet the challenger for later tests
    (they read its warnings)."""
    assert logging.getLogger("coordinator.verification.challenger").level == logging.NOTSET


def test_devices_trial_one_device_posing_as_two_commits_true_rows_but_misses_the_bound() -> None:
    """The one-device answer commits exactly the rows two devices would (so every opened
    row verifies): with a generous bound both pass, with the bound at zero both fail on
    time alone, never on a row."""
    generous = bench.Calibration(
        tflops=1e-3, terms=ExactTiming(slack=1.0, allowance_s=600.0), overhead_s=0.0
    )
    assert bench.devices_trial("bf16", generous, 2, 2, one=False)
    assert bench.devices_trial("bf16", generous, 2, 2, one=True)
    none = bench.Calibration(
        tflops=1e9, terms=ExactTiming(slack=1.0, allowance_s=0.0), overhead_s=0
    )
    assert not bench.devices_trial("bf16", none, 2, 2, one=True)
