"""The market simulator (bench/verification.py) on a few jobs: the real coordinator over
the in-memory chain decides, and the figures come from the chain's balances (no timing)."""

from __future__ import annotations

import logging

from bench import verification as bench


def test_an_honest_provider_earns_its_price_and_the_market_pays_for_few_checks() -> None:
    before = logging.root.manager.disable
    row = bench.profit_run("honest", 8, seed=3)
    assert logging.root.manager.disable == before  # the run's quiet ends with it
    assert row["seated"] == 8 and row["cheats"] == 0 and row["slashed"] == 0
    assert row["profit_per_job"] > 0
    assert row["paid_jobs"] == 8 and 1.0 <= row["overhead"] <= 3.0


def test_an_established_lazy_provider_is_slashed_and_loses_money() -> None:
    row = bench.profit_run("lazy (always)", 25, seed=7)
    assert row["slashed"] >= 1
    assert row["detected"] >= row["slashed"]
    assert row["burned"] > 0
    assert row["profit_per_job"] < 1.0  # it never earns more than an honest seat


def test_detection_trials_count_cheats_until_the_first_slash() -> None:
    out = bench.detection_run("lazy (always)", 2, seed=11)
    assert len(out["cheats_before_slash"]) == 2
    assert all(c is None or c >= 1 for c in out["cheats_before_slash"])
    assert 0.0 <= out["detect_before_25"] <= 1.0


def test_the_report_says_the_coordinator_decided() -> None:
    honest = bench.profit_run("honest", 3, seed=5)
    lazy = bench.profit_run("lazy (always)", 3, seed=5)
    detect = bench.detection_run("lazy (always)", 1, seed=5)
    collusion = bench.collusion_run(2, seed=5)
    assert collusion["slash_never_credited"]  # a slash is burned: gain == loss - burned
    assert collusion["coordinator_gain"] <= collusion["fees"]
    out = {
        "rows": [honest, lazy],
        "detect_lazy": detect,
        "detect_q": detect,
        "collusion": collusion,
        "jobs_simulated": 10,
        "jobs_per_s_per_process": 1.0,
        "wall_s": 1.0,
    }
    figures = bench.figures(out)
    assert figures["driver"] == "coordinator"
    assert set(figures["cheater_profit_per_job"]) == {"lazy (always)"}  # honest: no cheats
    assert lazy["cheats"] >= 1 and lazy["profit_per_cheat"] is not None
    assert figures["max_cheater_profit_per_job"] == lazy["profit_per_cheat"]
    assert figures["honest_profit_per_job"] == honest["profit_per_job"] > 0
    lazy["driver"] = "a formula"
    assert bench.figures(out)["driver"] == "not the coordinator"
    for key in (
        "detect_before_25_cheats",
        "median_cheats_before_slash_q0.1",
        "overhead_established",
        "jobs_simulated",
        "wall_s",
        "collusion",
    ):
        assert key in figures
