"""The prepared check for a CUDA machine: benchmark, plain loop and challenges in one run.

Run it through ``bench/gpu_check.sh`` (it brings the project's packages where the machine
lacks them). Three steps under one deadline (``--budget-s``, default 330 s; with the
wrapper's package install, about 6 minutes in all):

1. ``gpumarket provider benchmark --device cuda:0 --json --no-cache`` (``python -m
   gpumarket_cli`` in a subprocess, a throwaway cache directory). Where the CLI's packages
   do not import, the library call the command makes (``run_benchmark``) instead, marked
   ``"via": "library"``.
2. ``python -m bench.benchmark_accuracy --device cuda:0 --json``: each benchmark figure
   against a plain torch loop of the same dtype and size.
3. Challenge trials per dtype that has a benchmark figure, through the functions the
   provider and the coordinator use (``proofs.challenge.device_row_digests`` on the device;
   the coordinator's ``Challenger.size`` and timing terms, ``pick_exact_rows``,
   ``judge_exact``), the verifier's clock around the whole provider call as in
   ``bench/challenge.py``: the honest claim (the benchmark's figure) ``--trials`` times,
   the doubled claim ``--trials`` times, and the responder forced to the CPU at the GPU's
   claim ``--cpu-trials`` times (a separate process, killed at ``--cpu-cap`` times the
   bound: no answer by then is a failure). Each dtype gets an equal share of the time left
   (honest 40%, doubled 40%, CPU the rest); a phase's first trial always runs, a later one
   only if the last one's time still fits in the share (the counts say how many ran).

Everything ends up in one JSON object: printed as the last line and written to
``$OUT/gpu_check.json`` (or ``--out``). ``--smoke`` runs the same steps on the CPU with
tiny sizes, so a machine without a GPU (and the test suite) exercises every path.

    bench/gpu_check.sh [--smoke] [--budget-s 330] [--trials 16] [--dtypes bf16,fp16,tf32,fp32]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from proofs.challenge import CHALLENGE_DTYPES, ExactChallenge, device_row_digests
from proofs.challenge_check import (
    ExactTiming,
    exact_time_bound,
    judge_exact,
    pick_exact_rows,
    size_exact_challenge,
)

ROOT = Path(__file__).resolve().parents[1]
OPENED_ROWS = 16
"""Rows opened a challenge when the coordinator's own count does not import."""
FALLBACK_TERMS = ExactTiming(slack=1.4, allowance_s=0.5)
"""Timing terms when the coordinator's challenger does not import (its values when written)."""
MAX_REASONS = 3


class Deadline:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.end = clock() + seconds

    def left(self) -> float:
        return max(0.0, self.end - self.clock())


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                found: dict[str, Any] = json.loads(line)
                return found
            except json.JSONDecodeError:
                return None
    return None


def _run(argv: list[str], timeout_s: float) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Run ``argv`` in the repository; its last JSON line and how the run went."""
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=max(1.0, timeout_s),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, {"ok": False, "error": f"timed out after {timeout_s:.0f}s", "argv": argv}
    status: dict[str, Any] = {
        "ok": done.returncode == 0,
        "rc": done.returncode,
        "wall_s": round(time.perf_counter() - started, 1),
        "argv": argv,
    }
    if done.returncode != 0:
        status["stderr_tail"] = done.stderr[-1500:]
    found = _last_json(done.stdout) if done.returncode == 0 else None
    if done.returncode == 0 and found is None:
        status.update(ok=False, error="no JSON line in its output")
    return found, status


_LIBRARY_BENCHMARK = """
import json, sys
from pathlib import Path
from provider_node.benchmark import run_benchmark
out = run_benchmark(selection=[sys.argv[1]], cache_dir=Path(sys.argv[2]), use_cache=False)
payload = out.result.model_dump(mode="json")
payload["cached"] = out.cached
print(json.dumps(payload, sort_keys=True))
"""


def provider_benchmark(device: str, timeout_s: float) -> dict[str, Any]:
    """Step 1: ``provider benchmark`` through the CLI, else the library call it makes."""
    with tempfile.TemporaryDirectory() as cache:
        cli = [sys.executable, "-m", "gpumarket_cli", "provider", "benchmark"]
        found, status = _run(
            [*cli, "--device", device, "--json", "--no-cache", "--cache-dir", cache], timeout_s
        )
        status["via"] = "cli"
        if found is None and "timed out" not in status.get("error", ""):
            cli_status = status
            found, status = _run(
                [sys.executable, "-c", _LIBRARY_BENCHMARK, device, cache], timeout_s
            )
            status.update(via="library", cli=cli_status)
    status["result"] = found
    if found:
        status["tflops"] = {
            m["dtype"]: m["tflops"] for m in found["devices"][0]["matmul"] if m.get("tflops")
        }
    return status


def benchmark_accuracy(device: str, timeout_s: float, smoke: bool) -> dict[str, Any]:
    """Step 2: the benchmark against a plain loop."""
    argv = [sys.executable, "-m", "bench.benchmark_accuracy", "--device", device, "--json"]
    if smoke:
        argv += ["--tiny", "--rounds", "1", "--windows", "2"]
    found, status = _run(argv, timeout_s)
    status["result"] = found
    return status


@dataclass
class Sizing:
    """How challenges are sized and judged: the coordinator's own where it imports."""

    size: Callable[[str, float], ExactChallenge]
    terms: ExactTiming
    opened_rows: int
    source: str


def coordinator_sizing(side: int | None, target_s: float | None) -> Sizing:
    """The coordinator's ``Challenger.size`` and terms (``side``/``target_s`` override its
    defaults); where it does not import, ``size_exact_challenge`` and
    :data:`FALLBACK_TERMS`, marked as such."""
    try:
        from coordinator.matching.book import ProviderBook
        from coordinator.verification import challenger as module
        from protocol.identity import Identity
        from protocol.messages.challenge import MAX_OPENED_ROWS
    except ImportError as exc:
        m, t = side or 4096, target_s or 1.5

        def fallback(dtype: str, claim: float) -> ExactChallenge:
            return size_exact_challenge(os.urandom(32), dtype, claim, t, m=m, k=4096)

        return Sizing(fallback, FALLBACK_TERMS, OPENED_ROWS, f"fallback ({exc})")
    challenger = module.Challenger(
        Identity.generate(),
        transport=None,  # type: ignore[arg-type]  # sizing and terms only: nothing is sent
        book=ProviderBook(time.time),
        n=side or module.DEFAULT_SIDE,
        target_s=target_s or module.TARGET_S,
    )

    def size(dtype: str, claim: float) -> ExactChallenge:
        return challenger.size(dtype, claim)  # type: ignore[arg-type]

    return Sizing(size, challenger.terms, MAX_OPENED_ROWS, "challenger")


def _cpu_worker(conn: Connection) -> None:
    """The CPU responder's process: one challenge at a time, then the rows asked for."""
    conn.send("ready")
    while True:
        message = conn.recv()
        if message is None:
            return
        seed, dtype, m, k, reps = message
        work = device_row_digests(ExactChallenge(seed, dtype, m=m, k=k, reps=reps), "cpu")
        conn.send((work.root, work.elapsed_s))
        conn.send(work.open(conn.recv()))


class CpuResponder:
    """A responder on the CPU in its own process, so a trial can be cut off at its cap."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")
        self.process: Any = None
        self.conn: Connection | None = None

    def _started(self) -> Connection:
        if self.conn is None:
            ours, theirs = self.context.Pipe()
            self.process = self.context.Process(target=_cpu_worker, args=(theirs,), daemon=True)
            self.process.start()
            if not ours.poll(120) or ours.recv() != "ready":
                raise RuntimeError("the CPU responder did not start")
            self.conn = ours
        return self.conn

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join(10)
        self.process = None
        self.conn = None

    def respond(
        self, ch: ExactChallenge, cap_s: float, opened_rows: int
    ) -> tuple[bytes, float, list[tuple[int, int]], list[Any]] | None:
        """(root, wall seconds, picks, openings), or None when no root came within cap_s."""
        conn = self._started()
        start = time.perf_counter()
        conn.send((ch.seed, ch.dtype, ch.m, ch.k, ch.reps))
        if not conn.poll(cap_s):
            self.stop()
            return None
        root, _elapsed = conn.recv()
        wall = time.perf_counter() - start
        picks = pick_exact_rows(ch, root, os.urandom(32), opened_rows)
        conn.send(picks)
        return root, wall, picks, conn.recv()


def _trial_record(passed: bool, wall: float, bound: float) -> dict[str, Any]:
    return {"passed": passed, "wall_s": round(wall, 3), "bound_s": round(bound, 3)}


def device_trial(ch: ExactChallenge, claim: float, device: str, sizing: Sizing) -> dict[str, Any]:
    """One challenge answered on ``device`` in this process, judged against ``claim``."""
    start = time.perf_counter()
    work = device_row_digests(ch, device)
    wall = time.perf_counter() - start
    picks = pick_exact_rows(ch, work.root, os.urandom(32), sizing.opened_rows)
    verdict = judge_exact(ch, claim, work.root, wall, picks, work.open(picks), sizing.terms)
    record = _trial_record(verdict.passed, wall, verdict.bound_s)
    record.update(device_s=round(work.elapsed_s, 3), reasons=list(verdict.reasons))
    return record


def cpu_trial(
    ch: ExactChallenge, claim: float, responder: CpuResponder, sizing: Sizing, cap: float
) -> dict[str, Any]:
    bound = exact_time_bound(ch, claim, sizing.terms)
    cap_s = max(cap * bound, 1.0)
    answer = responder.respond(ch, cap_s, sizing.opened_rows)
    if answer is None:
        record = _trial_record(False, cap_s, bound)
        record.update(answered=False, reasons=[f"no root within {cap_s:.1f}s"])
        return record
    root, wall, picks, openings = answer
    verdict = judge_exact(ch, claim, root, wall, picks, openings, sizing.terms)
    record = _trial_record(verdict.passed, wall, verdict.bound_s)
    record.update(answered=True, reasons=list(verdict.reasons))
    return record


def _summary(records: list[dict[str, Any]], ch: ExactChallenge | None) -> dict[str, Any]:
    walls = [r["wall_s"] for r in records]
    return {
        "trials": len(records),
        "passed": sum(r["passed"] for r in records),
        "failed": sum(not r["passed"] for r in records),
        "median_wall_s": round(statistics.median(walls), 3) if walls else None,
        "max_wall_s": max(walls) if walls else None,
        "median_bound_s": (
            round(statistics.median(r["bound_s"] for r in records), 3) if records else None
        ),
        "shape": {"m": ch.m, "k": ch.k, "reps": ch.reps} if ch else None,
        "reasons": [why for r in records for why in r["reasons"]][:MAX_REASONS],
    }


def challenge_dtype(
    dtype: str,
    claim: float,
    device: str,
    sizing: Sizing,
    responder: CpuResponder,
    args: argparse.Namespace,
    budget: Deadline,
) -> dict[str, Any]:
    """Honest, doubled and CPU-forced trials of one dtype within ``budget``."""
    warm = sizing.size(dtype, claim)
    device_row_digests(ExactChallenge(warm.seed, dtype, m=warm.m, k=warm.k, reps=1), device)
    out: dict[str, Any] = {"claim_tflops": claim}
    share = budget.left()
    phases = (("honest", 0.4, args.trials), ("doubled", 0.4, args.trials))
    spent_by = budget.end - share
    for name, part, count in phases:
        spent_by += part * share
        records: list[dict[str, Any]] = []
        factor = 2.0 if name == "doubled" else 1.0
        last: ExactChallenge | None = None
        for _ in range(count):
            if records and budget.clock() + records[-1]["wall_s"] > spent_by:
                break
            last = sizing.size(dtype, claim * factor)
            records.append(device_trial(last, claim * factor, device, sizing))
        out[name] = _summary(records, last)
    records = []
    last = None
    for _ in range(args.cpu_trials):
        if records and budget.left() < records[-1]["wall_s"]:
            break
        last = sizing.size(dtype, claim)
        records.append(cpu_trial(last, claim, responder, sizing, args.cpu_cap))
    out["cpu"] = _summary(records, last)
    out["cpu"]["answered"] = sum(r.get("answered", False) for r in records)
    return out


def challenges(
    device: str, claims: dict[str, float], args: argparse.Namespace, deadline: Deadline
) -> dict[str, Any]:
    """Step 3 for each dtype with a claim, each given an equal share of the time left."""
    import torch

    sizing = coordinator_sizing(args.side, args.target_s)
    dtypes = [d for d in args.dtypes.split(",") if d in CHALLENGE_DTYPES and claims.get(d)]
    out: dict[str, Any] = {"sizing": sizing.source, "terms": vars(sizing.terms), "dtypes": {}}
    if device == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    responder = CpuResponder()
    try:
        for i, dtype in enumerate(dtypes):
            share = deadline.left() / (len(dtypes) - i)
            started = time.perf_counter()
            try:
                out["dtypes"][dtype] = challenge_dtype(
                    dtype, claims[dtype], device, sizing, responder, args, Deadline(share)
                )
            except Exception as exc:  # one dtype's failure must not lose the others' results
                out["dtypes"][dtype] = {"error": f"{type(exc).__name__}: {exc}"}
            out["dtypes"][dtype]["wall_s"] = round(time.perf_counter() - started, 1)
            print(f"challenge {dtype}: {json.dumps(out['dtypes'][dtype])}", flush=True)
    finally:
        responder.stop()
    return out


def _table(report: dict[str, Any]) -> None:
    bench = report["benchmark"]
    print(f"provider benchmark via {bench.get('via')}: {bench.get('tflops')} TFLOPS")
    accuracy = (report["accuracy"].get("result") or {}).get("benchmark_vs_loop")
    print(f"benchmark / plain loop: {accuracy}")
    print(f"{'dtype':<6}{'claim':>10}  {'honest':>10}{'doubled':>10}{'cpu':>10}  s/challenge")
    for dtype, f in report["challenges"].get("dtypes", {}).items():
        if "error" in f:
            print(f"{dtype:<6} error: {f['error']}")
            continue
        cells = [
            f"{f['honest']['passed']}/{f['honest']['trials']}",
            f"{f['doubled']['failed']}/{f['doubled']['trials']}",
            f"{f['cpu']['failed']}/{f['cpu']['trials']}",
        ]
        print(
            f"{dtype:<6}{f['claim_tflops']:>10.2f}  {cells[0]:>10}{cells[1]:>10}{cells[2]:>10}"
            f"  {f['honest']['median_wall_s']}"
        )
    print("honest: passes; doubled and cpu: failures (detections) out of trials")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="the CPU, tiny sizes, a few trials")
    ap.add_argument("--device", default=None, help="default: cuda:0 (cpu with --smoke)")
    ap.add_argument("--budget-s", type=float, default=None, help="default 330 (60 with --smoke)")
    ap.add_argument("--trials", type=int, default=None, help="honest and doubled (16; 2)")
    ap.add_argument("--cpu-trials", type=int, default=None, help="CPU-forced (3; 1)")
    ap.add_argument("--cpu-cap", type=float, default=2.0, help="CPU trial cap, times its bound")
    ap.add_argument("--dtypes", default="bf16,fp16,tf32,fp32")
    ap.add_argument("--side", type=int, default=None, help="m (default: the challenger's)")
    ap.add_argument("--target-s", type=float, default=None, help="default: the challenger's")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads with --smoke")
    ap.add_argument("--out", type=Path, default=None, help="default: $OUT/gpu_check.json")
    args = ap.parse_args(argv)
    smoke = args.smoke
    device = args.device or ("cpu" if smoke else "cuda:0")
    args.trials = args.trials if args.trials is not None else (2 if smoke else 16)
    args.cpu_trials = args.cpu_trials if args.cpu_trials is not None else (1 if smoke else 3)
    if smoke:
        args.side = args.side or 64
        args.target_s = args.target_s or 0.05
    deadline = Deadline(args.budget_s or (60.0 if smoke else 330.0))
    started = time.perf_counter()
    report: dict[str, Any] = {"bench": "gpu_check", "smoke": smoke, "device": device}
    print(f"gpu_check on {device}: provider benchmark", flush=True)
    report["benchmark"] = provider_benchmark(device, min(150.0, deadline.left()))
    print("gpu_check: benchmark against a plain loop", flush=True)
    report["accuracy"] = benchmark_accuracy(device, min(150.0, deadline.left()), smoke)
    print("gpu_check: challenges", flush=True)
    claims, report["claims_from"] = report["benchmark"].get("tflops"), "provider benchmark"
    if not claims:  # step 1 failed: the production figures step 2 measured
        found = (report["accuracy"].get("result") or {}).get("dtypes", {})
        claims = {d: max(f["benchmark_tflops"]) for d, f in found.items()}
        report["claims_from"] = "benchmark_accuracy"
    report["challenges"] = challenges(device, claims, args, deadline)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    _table(report)
    out = args.out or (Path(os.environ["OUT"]) / "gpu_check.json" if "OUT" in os.environ else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
        print(f"written to {out}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
