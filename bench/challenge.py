"""The exact per-dtype benchmark challenge, honest and spoofed, on this machine's CPU.

In process, through the functions the provider and coordinator use for it
(``proofs.challenge.device_row_digests`` on torch's ``cpu`` device; ``pick_exact_rows``,
``ExactChecker`` and ``judge_exact`` on the verifier's side); libp2p is not in the loop.
The verifier's clock is the wall clock around the whole provider call (input generation,
device work, digests to the host, Merkle tree), as a coordinator's would be minus the
network.

Per dtype: a calibration of ``--calibrate`` honest runs gives the provider's measured
speed S (the median of the timed part) and the timing terms from measured noise
(``slack`` = 1.25 x the 90th percentile of the calibration runs over their median;
``allowance_s`` = 1.5 x the largest untimed overhead). Then ``--trials`` challenges each
of: an honest provider claiming S; a provider claiming 2 S and one claiming 1.1 S. A
spoofer computes as many products as fit in the bound at its true speed (with a 5%
margin) and commits random digests for the rest: it fails when it misses the bound or
when an opened row (16 a challenge) is one it skipped.

    python -m bench.challenge [--json] [--trials 50]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from proofs.challenge import (
    CHALLENGE_DTYPES,
    ExactChallenge,
    ExactWork,
    device_row_digests,
)
from proofs.challenge_check import (
    ExactChecker,
    ExactTiming,
    judge_exact,
    pick_exact_rows,
)

OPENED_ROWS = 16
SLACK_MARGIN = 1.25
"""The bound's slack is this times the calibration runs' 90th percentile over their median
(a percentile, not the slowest: one stall of a shared machine would open the bound to 2x)."""
TARGET_S = 0.4
"""Compute per challenge at the claimed speed (CPU-sized; a GPU's is 1-2 s)."""
SHAPES = {"bf16": (256, 4096), "fp16": (64, 1024), "tf32": (256, 4096), "fp32": (256, 4096)}
"""(m, k) per dtype: torch's CPU fp16 matmul runs at a few GFLOPS, so its shape is small."""


@dataclass
class Calibration:
    tflops: float
    terms: ExactTiming
    overhead_s: float


def _challenge(dtype: str, reps: int) -> ExactChallenge:
    m, k = SHAPES[dtype]
    return ExactChallenge(os.urandom(32), dtype, m=m, k=k, reps=reps)


def _timed(respond: Callable[[], ExactWork]) -> tuple[ExactWork, float]:
    start = time.perf_counter()
    work = respond()
    return work, time.perf_counter() - start


def calibrate(dtype: str, runs: int) -> Calibration:
    m, k = SHAPES[dtype]
    probe = _challenge(dtype, 2)
    device_row_digests(probe, "cpu")  # warm-up
    per_rep = min(device_row_digests(probe, "cpu").elapsed_s for _ in range(3)) / 2
    reps = max(1, math.ceil(TARGET_S / per_rep))
    elapsed, overhead = [], []
    for _ in range(runs):
        ch = _challenge(dtype, reps)
        work, wall = _timed(lambda ch=ch: device_row_digests(ch, "cpu"))  # type: ignore[misc]
        elapsed.append(work.elapsed_s)
        overhead.append(wall - work.elapsed_s)
    median = statistics.median(elapsed)
    tflops = 2 * m * m * k * reps / median / 1e12
    terms = ExactTiming(
        slack=SLACK_MARGIN * statistics.quantiles(elapsed, n=10)[-1] / median,
        allowance_s=1.5 * max(overhead),
    )
    return Calibration(tflops, terms, statistics.median(overhead))


def spoofer(ch: ExactChallenge, cal: Calibration, factor: float) -> ExactWork:
    """A provider whose true speed is ``cal.tflops`` and that claimed ``factor`` times it."""
    claimed = cal.tflops * factor
    bound = ch.flops / (claimed * 1e12) * cal.terms.slack + cal.terms.allowance_s
    per_rep = ch.flops / ch.reps / (cal.tflops * 1e12)
    fit = min(ch.reps, max(0, math.floor(0.95 * (bound - cal.overhead_s) / per_rep)))
    digests = np.frombuffer(os.urandom(8 * ch.row_count), dtype=np.uint64).copy()
    reopen_done: Callable[[int], np.ndarray] | None = None
    elapsed = 0.0
    if fit:
        done = device_row_digests(
            ExactChallenge(ch.seed, ch.dtype, m=ch.m, k=ch.k, reps=fit), "cpu"
        )
        digests[: fit * ch.m] = done.digests
        reopen_done = done._reopen
        elapsed = done.elapsed_s
    m, dtype = ch.m, ch.dtype

    def reopen(rep: int) -> np.ndarray:
        if reopen_done is not None and rep < fit:
            return reopen_done(rep)
        width = 2 if dtype in ("bf16", "fp16") else 4
        return np.zeros((m, m), dtype=f"<u{width}")

    return ExactWork(ch, digests, elapsed, reopen)


def trial(dtype: str, cal: Calibration, factor: float, reps: int, row_times: list[float]) -> bool:
    ch = _challenge(dtype, reps)
    claimed = cal.tflops * factor
    if factor == 1.0:
        work, wall = _timed(lambda: device_row_digests(ch, "cpu"))
    else:
        work, wall = _timed(lambda: spoofer(ch, cal, factor))
    picks = pick_exact_rows(ch, work.root, os.urandom(32), OPENED_ROWS)
    openings = work.open(picks)
    checker = ExactChecker(ch)
    start = time.process_time()
    for o in openings:
        checker.check(work.root, o)
    row_times.append((time.process_time() - start) / len(openings))
    verdict = judge_exact(ch, claimed, work.root, wall, picks, openings, cal.terms, checker)
    return verdict.passed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--calibrate", type=int, default=24)
    ap.add_argument("--dtypes", default=",".join(CHALLENGE_DTYPES))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    figures: dict[str, dict[str, float]] = {}
    for dtype in args.dtypes.split(","):
        cal = calibrate(dtype, args.calibrate)
        m, k = SHAPES[dtype]
        reps_at = {
            f: max(1, math.ceil(TARGET_S * cal.tflops * f * 1e12 / (2 * m * m * k)))
            for f in (1.0, 1.1, 2.0)
        }
        row_times: list[float] = []
        rates = {}
        for name, factor in (
            ("honest_pass_rate", 1.0),
            ("spoof2x_detect", 2.0),
            ("spoof1p1_detect", 1.1),
        ):
            passed = [
                trial(dtype, cal, factor, reps_at[factor], row_times) for _ in range(args.trials)
            ]
            rate = sum(passed) / len(passed)
            rates[name] = round(rate if factor == 1.0 else 1.0 - rate, 4)
        figures[dtype] = {
            **rates,
            "trials": args.trials,
            "claimed_gflops": round(cal.tflops * 1e3, 2),
            "m": m,
            "k": k,
            "slack": round(cal.terms.slack, 3),
            "allowance_s": round(cal.terms.allowance_s, 4),
            "verify_cpu_ms_per_row": round(1e3 * statistics.median(row_times), 3),
        }
        f = figures[dtype]
        print(
            f"{dtype:<5} m={m:<4} k={k:<5} claim {f['claimed_gflops']:>8.1f} GFLOPS  "
            f"slack {f['slack']:.2f} allowance {f['allowance_s']:.3f}s  "
            f"honest pass {f['honest_pass_rate']:.2f}  2x detect {f['spoof2x_detect']:.2f}  "
            f"1.1x detect {f['spoof1p1_detect']:.2f}  "
            f"verify {f['verify_cpu_ms_per_row']:.2f} ms/row",
            flush=True,
        )
    wall = time.perf_counter() - started
    print(f"run time {wall:.1f}s")
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "challenge",
                    "in_process": True,
                    "dtypes": figures,
                    "wall_s": round(wall, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
