"""The honest path for every example: submit with --wait, settle, fetch the verified result,
check the outputs against an independent computation, and check every token moved."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.e2e.checks import assert_paid_exactly
from tests.e2e.market import REPO, Market

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"


def run_locally(script: Path, seed: int, out: Path, *args: str, inputs: Path | None = None) -> None:
    """Run an example's job code outside any sandbox: the independent reference."""
    out.mkdir(parents=True)
    env = dict(os.environ, GPUMARKET_SEED=str(seed), GPUMARKET_OUTPUT_DIR=str(out))
    if inputs is not None:
        env["GPUMARKET_INPUT_DIR"] = str(inputs)
    subprocess.run(
        [sys.executable, str(script), *args], env=env, check=True, timeout=120, capture_output=True
    )


def check_matmul(result: Path, seed: int, tmp: Path) -> None:
    summary = json.loads((result / "summary.json").read_text())
    assert summary["seed"] == seed and summary["n"] == 256
    # Recompute A @ B from the seed with the generator the job uses, in this process.
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(256, 256, generator=gen, dtype=torch.float64)
    b = torch.randn(256, 256, generator=gen, dtype=torch.float64)
    expected = (a @ b).numpy()
    product = np.load(result / "product.npy", allow_pickle=False)
    assert product.shape == (256, 256) and product.dtype == np.float64
    np.testing.assert_allclose(product, expected, rtol=1e-12, atol=1e-12)
    assert summary["trace"] == pytest.approx(float(np.trace(expected)), abs=1e-8)


def check_training(result: Path, seed: int, tmp: Path) -> None:
    ref = tmp / "reference"
    run_locally(EXAMPLES / "training" / "train.py", seed, ref, "--steps", "20")
    losses = json.loads((result / "losses.json").read_text())
    assert len(losses) == 20 and all(np.isfinite(losses))
    np.testing.assert_allclose(losses, json.loads((ref / "losses.json").read_text()), rtol=1e-6)
    names = sorted(p.name for p in (result / "checkpoint").iterdir())
    assert names == sorted(p.name for p in (ref / "checkpoint").iterdir()) and names
    for name in names:
        got = np.load(result / "checkpoint" / name, allow_pickle=False)
        want = np.load(ref / "checkpoint" / name, allow_pickle=False)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def check_inference(result: Path, seed: int, tmp: Path) -> None:
    ref = tmp / "reference"
    inputs = tmp / "inputs"
    (inputs / "data").mkdir(parents=True)
    csv = EXAMPLES / "inference" / "data" / "batch.csv"
    (inputs / "data" / "batch.csv").write_bytes(csv.read_bytes())
    run_locally(EXAMPLES / "inference" / "code" / "infer.py", seed, ref, inputs=inputs)
    scores = np.load(result / "scores.npy", allow_pickle=False)
    rows = np.loadtxt(csv, delimiter=",", ndmin=2)
    assert scores.shape == (len(rows), 2)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)  # softmax rows
    expected = np.load(ref / "scores.npy", allow_pickle=False)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)  # the spec's tolerance


CHECKS = {
    "matmul": ("matmul/job.yaml", check_matmul, "2.5", 2),
    "training": ("training/job.yaml", check_training, "1", 2),
    "inference": ("inference/job.yaml", check_inference, "0.75", 2),
}


@pytest.mark.parametrize("example", list(CHECKS))
def test_example_settles_with_a_verified_result(
    market: Market, example: str, tmp_path: Path
) -> None:
    spec, check, cap, redundancy = CHECKS[example]
    requester = market.new_requester()
    everyone = [requester.address, market.coordinator_address]
    everyone += [a.address for a in market.state.accounts if a.role == "provider"]
    before = market.ledger(everyone)

    submitted = market.submit(EXAMPLES / spec, requester)
    job = submitted["job"]
    assert job["state"] == "settled", job
    job_id = job["job_id"]
    escrow = (redundancy + 2) * float(cap) + 0.1
    assert float(submitted["escrow"]) == pytest.approx(escrow)

    fetched = market.cli_json("job", "result", job_id, "-o", str(tmp_path / "result"))
    assert fetched["result_cid"] == job["result_cid"]
    result = Path(fetched["path"])
    check(result, market.seed(job_id), tmp_path)

    paid = [p for p in job["providers"] if p["outcome"] == "paid"]
    assert len(paid) == redundancy
    assert len({p["address"] for p in paid}) == redundancy  # distinct operators
    if example != "inference":  # exact: every paid provider delivered the same bytes
        assert {p["result_cid"] for p in paid} == {job["result_cid"]}
    else:
        assert job["result_cid"] in {p["result_cid"] for p in paid}

    assert_paid_exactly(market, job, before, market.ledger(everyone), escrow=submitted["escrow"])

    # `job explain` shows each seat's billed runtime and pay, as settled on chain.
    explained = market.cli_json("job", "explain", job_id)
    settled = market.job_events(job_id, "JobSettled")[0].args["paidAndBilled"]
    by_seat = {s["seat"]: s for s in explained["seats"]}
    for seat, word in enumerate(settled):
        if word:
            assert by_seat[seat]["billed_ms"] == word & (2**64 - 1)
            assert int(by_seat[seat]["pay"]) == word >> 64
    # ... and when the job reached each phase, in the lifecycle's order, from its store.
    order = ["queued", "matched", "assign_tx_mined", "delivered", "all_committed",
             "all_revealed", "settle_tx_mined"]  # fmt: skip
    times = explained["phases"]
    assert list(times) == order and [times[p] for p in order] == sorted(times.values())
    assert times == market.api(f"/jobs/{job_id}")["phases"]
    shown = market.cli("job", "explain", job_id)
    assert shown.returncode == 0 and "billed" in shown.stdout, shown
    assert "settle_tx_mined" in shown.stdout and "phases (the coordinator's clock" in shown.stdout
