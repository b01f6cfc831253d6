"""Provider start: from a sandbox being handed its job to the job's first line, warm and cold.

Runs the seeded matmul example (``examples/matmul/main.py``, with one first line added that
records the wall clock into its outputs) through the provider's own runtimes: cold with
:class:`BwrapRuntime` (bubblewrap, cgroup, Python, torch, the deterministic launcher, all
started for the job) and warm with :class:`WarmPool` (a sandbox started before the job,
handed it through its pipe). ``provider_start_ms`` is the first line's clock minus the clock
just before ``run(job)`` is called, so it includes everything the provider does for the
start: moving inputs, cgroup limits, the hand-off, seeding. Runs alternate cold and warm;
before each cold run the pool has finished warming, so a cold start never competes with it,
while a warm start competes with the pool warming its replacement, as in production.
Every run's outputs (except the timestamp) must be identical.

    python -m bench.sandbox_start [--runs 10] [--json]

Figures: ``provider_start_p50_ms`` (warm, the provider's default) and
``provider_start_p50_ms_cold``; run time (hand-off to exit) both ways; how long the pool
takes to warm a replacement; how many runs really started warm.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from provider_node.runtimes import BwrapRuntime, PreparedJob, RunLimits, RunResult, TorchEntrypoint
from provider_node.runtimes.warmpool import PoolConfig, WarmPool

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "matmul" / "main.py"
STAMP = "started_at"
FIRST_LINE = (
    '__import__("pathlib").Path(__import__("os").environ["GPUMARKET_OUTPUT_DIR"], '
    f'"{STAMP}").write_text(repr(__import__("time").time()))\n'
)
LIMITS = RunLimits(wall_time_s=300, memory_bytes=4 << 30, max_pids=512, max_output_bytes=64 << 20)
SEED = 2026
TARGET_WARM_MS = 300.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def make_job(root: Path, name: str) -> PreparedJob:
    work = root / name
    code = work / "inputs" / "code"
    code.mkdir(parents=True)
    (work / "outputs").mkdir()
    (code / "main.py").write_text(FIRST_LINE + EXAMPLE.read_text())
    return PreparedJob(
        job_id=f"bench-{name}",
        work_dir=work,
        entrypoint=TorchEntrypoint("inputs/code/main.py"),
        limits=LIMITS,
        seed=SEED,
    )


def outputs_digest(job: PreparedJob) -> str:
    digest = hashlib.sha256()
    for path in sorted(job.outputs_dir.iterdir()):
        if path.name != STAMP:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class Sample:
    def __init__(self, job: PreparedJob, handed_at: float, result: RunResult) -> None:
        if not result.ok:
            raise SystemExit(f"{job.job_id} failed: {result.outcome} {result.detail}")
        first_line = float((job.outputs_dir / STAMP).read_text())
        self.start_ms = (first_line - handed_at) * 1000
        self.run_ms = result.duration_s * 1000
        self.digest = outputs_digest(job)


async def measure(runs: int, root: Path) -> dict[str, Any]:
    bwrap = BwrapRuntime()
    reason = bwrap.unavailable_reason()
    if reason is not None:
        raise SystemExit(f"bwrap cannot run here: {reason}")
    cold: list[Sample] = []
    warm: list[Sample] = []
    refill_s: list[float] = []
    async with WarmPool(bwrap, root / "warm", PoolConfig(size=1)) as pool:
        await pool.wait_ready()
        for i in range(runs):
            job = make_job(root, f"cold-{i}")
            handed_at = time.time()
            cold.append(Sample(job, handed_at, await bwrap.run(job)))

            job = make_job(root, f"warm-{i}")
            handed_at = time.time()
            warm.append(Sample(job, handed_at, await pool.run(job)))
            taken = time.monotonic()
            await pool.wait_ready()
            refill_s.append(time.monotonic() - taken)
            print(
                f"run {i + 1}/{runs}: cold {cold[-1].start_ms:8.1f} ms, "
                f"warm {warm[-1].start_ms:6.1f} ms",
                file=sys.stderr,
            )
        figures = pool.figures
    digests = {s.digest for s in cold + warm}

    def p50(samples: list[Sample], attr: str) -> float:
        return round(statistics.median(getattr(s, attr) for s in samples), 1)

    warm_p50, cold_p50 = p50(warm, "start_ms"), p50(cold, "start_ms")
    return {
        "runs": runs,
        "provider_start_p50_ms": warm_p50,
        "provider_start_p95_ms": round(percentile([s.start_ms for s in warm], 95), 1),
        "provider_start_p50_ms_cold": cold_p50,
        "provider_start_p95_ms_cold": round(percentile([s.start_ms for s in cold], 95), 1),
        "provider_start_cold_over_warm": round(cold_p50 / warm_p50, 1),
        "run_p50_ms": p50(warm, "run_ms"),
        "run_p50_ms_cold": p50(cold, "run_ms"),
        "warm_refill_p50_s": round(statistics.median(refill_s), 2),
        "warm_starts": figures.warm_starts,
        "cold_fallbacks": figures.cold_starts,
        "outputs_identical": len(digests) == 1,
        "target_provider_start_p50_ms": TARGET_WARM_MS,
        "meets_target": warm_p50 <= TARGET_WARM_MS,
        "cpus": os.cpu_count(),
    }


def table(figures: dict[str, Any]) -> str:
    rows = [
        ("", "warm", "cold"),
        (
            "provider start p50 (ms)",
            figures["provider_start_p50_ms"],
            figures["provider_start_p50_ms_cold"],
        ),
        (
            "provider start p95 (ms)",
            figures["provider_start_p95_ms"],
            figures["provider_start_p95_ms_cold"],
        ),
        ("run, hand-off to exit, p50 (ms)", figures["run_p50_ms"], figures["run_p50_ms_cold"]),
    ]
    lines = [f"{a:<34}{b!s:>12}{c!s:>12}" for a, b, c in rows]
    lines += [
        f"cold / warm start: {figures['provider_start_cold_over_warm']}x over "
        f"{figures['runs']} runs each; {figures['warm_starts']} warm starts, "
        f"{figures['cold_fallbacks']} fell back cold",
        f"warming a replacement p50: {figures['warm_refill_p50_s']} s; "
        f"outputs identical: {figures['outputs_identical']}; "
        f"target <= {TARGET_WARM_MS:g} ms warm: {'met' if figures['meets_target'] else 'MISSED'}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="cold and warm runs each")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    if not 1 <= args.runs <= 1000:
        parser.error("--runs must be between 1 and 1000")
    with tempfile.TemporaryDirectory(prefix="gpumarket-sandbox-start-") as tmp:
        figures = trio.run(measure, args.runs, Path(tmp))
    print(table(figures))
    if args.json:
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
