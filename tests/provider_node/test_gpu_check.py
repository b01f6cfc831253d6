"""The prepared GPU check: its ``--smoke`` path through the shell wrapper on this CPU (so the
script cannot rot while no GPU is lent), and its CPU responder, cut off at its cap."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import pytest

from bench.gpu_check import CpuResponder, Deadline, challenge_dtype, coordinator_sizing, cpu_trial
from proofs.challenge import ExactChallenge, device_row_digests
from proofs.challenge_check import ExactChecker

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


def test_smoke_run_covers_every_step_and_writes_one_json(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "PYTHONPATH")}
    env["OUT"] = str(tmp_path)
    done = subprocess.run(
        [str(ROOT / "bench" / "gpu_check.sh"), "--smoke", "--budget-s", "120"],
        cwd=tmp_path,  # the wrapper finds the repository from its own path
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1]) == report
    assert report["smoke"] and report["device"] == "cpu"
    assert report["claims_from"] == "provider benchmark"

    bench = report["benchmark"]
    assert bench["ok"] and bench["via"] == "cli", bench
    assert set(bench["tflops"]) == {"fp32", "bf16"} and all(v > 0 for v in bench["tflops"].values())

    accuracy = report["accuracy"]
    assert accuracy["ok"], accuracy
    assert set(accuracy["result"]["benchmark_vs_loop"]) == {"fp32", "bf16"}

    trials = report["challenges"]
    assert trials["sizing"] == "challenger"  # the coordinator's own sizing and terms
    assert set(trials["dtypes"]) == {"fp32", "bf16"}
    for dtype, found in trials["dtypes"].items():
        assert found["claim_tflops"] == bench["tflops"][dtype]
        for name in ("honest", "doubled", "cpu"):
            part = found[name]
            assert 1 <= part["trials"] <= 2 and part["passed"] + part["failed"] == part["trials"]
            assert part["shape"]["m"] == 64 and part["shape"]["k"] == 4096
        # The doubled claim is sized for twice the speed: twice the products.
        assert found["doubled"]["shape"]["reps"] > found["honest"]["shape"]["reps"]


def test_the_cpu_responder_answers_true_rows_and_is_cut_off_at_its_cap() -> None:
    responder = CpuResponder()
    try:
        small = ExactChallenge(os.urandom(32), "bf16", m=64, k=256, reps=2)
        answer = responder.respond(small, 60.0, 4)
        assert answer is not None
        root, wall, picks, openings = answer
        assert root == device_row_digests(small, "cpu").root and wall > 0
        assert len(picks) == 4
        checker = ExactChecker(small)
        assert [checker.check(root, o) for o in openings] == [None] * 4
        assert [(o.rep, o.row) for o in openings] == picks
        first = responder.process

        big = ExactChallenge(os.urandom(32), "fp32", m=1024, k=4096, reps=64)
        assert responder.respond(big, 0.3, 4) is None
        assert responder.process is None and not first.is_alive()

        sizing = coordinator_sizing(64, 0.05)
        record = cpu_trial(big, 1e3, responder, sizing, cap=2.0)
        assert not record["passed"] and not record["answered"]
        assert record["reasons"] == [f"no root within {record['wall_s']:.1f}s"]
    finally:
        responder.stop()


def test_trials_stop_at_the_dtype_budget_after_one_each() -> None:
    sizing = coordinator_sizing(64, 0.02)
    args = argparse.Namespace(trials=3, cpu_trials=2, cpu_cap=2.0)
    responder = CpuResponder()
    try:
        spent = challenge_dtype("bf16", 0.05, "cpu", sizing, responder, args, Deadline(0.0))
        assert [spent[p]["trials"] for p in ("honest", "doubled", "cpu")] == [1, 1, 1]
        ample = challenge_dtype("bf16", 0.05, "cpu", sizing, responder, args, Deadline(600.0))
        assert [ample[p]["trials"] for p in ("honest", "doubled", "cpu")] == [3, 3, 2]
    finally:
        responder.stop()
