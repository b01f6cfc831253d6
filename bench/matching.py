"""Matching throughput and latency with a large, varied provider book.

Fills the coordinator's own book columns with N providers (GPU models, counts, memory,
measured TFLOPS, prices, runtimes, fingerprints, operator groups, stakes, reputations and
load all varied), then runs the real :class:`coordinator.matcher.Matcher` over a mix of
job requirements and reports matches per second and latency percentiles.

    python -m bench.matching [--providers 10000] [--matches 20000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time

import numpy as np

from coordinator.columns import Offer, ProviderColumns
from coordinator.errors import NoCandidates
from coordinator.matcher import Matcher
from coordinator.requirements import Requirements

GPU_MODELS = [
    ("H100", 80, {"fp32": 51.0, "tf32": 400.0, "fp16": 700.0, "bf16": 700.0}),
    ("A100", 80, {"fp32": 19.0, "tf32": 140.0, "fp16": 280.0, "bf16": 280.0}),
    ("L40S", 48, {"fp32": 80.0, "tf32": 160.0, "fp16": 330.0, "bf16": 330.0}),
    ("RTX4090", 24, {"fp32": 75.0, "tf32": 75.0, "fp16": 150.0, "bf16": 150.0}),
    ("A10", 24, {"fp32": 30.0, "tf32": 60.0, "fp16": 120.0, "bf16": 120.0}),
    ("CPU", 0, {"fp32": 1.0, "tf32": 0.0, "fp16": 0.0, "bf16": 0.5}),
]
UNIT = 1_000_000  # token units per token


def build_book(n: int, rng: random.Random) -> ProviderColumns:
    cols = ProviderColumns()
    now = time.time()
    for i in range(n):
        model, mem_gb, peak = rng.choice(GPU_MODELS)
        count = 0 if model == "CPU" else rng.choice([1, 1, 2, 4, 8])
        speed = rng.uniform(0.6, 1.0)
        address = "0x" + f"{i:040x}"
        offer = Offer(
            address=address,
            peer_id=f"16Uiu2bench{i}",
            multiaddrs=(f"/ip4/127.0.0.1/tcp/{10000 + i % 50000}",),
            gpu_count=count,
            free_gpus=rng.randint(0, count) if count else 0,
            gpu_memory_bytes=mem_gb << 30,
            tflops={k: v * speed for k, v in peak.items()},
            rate_per_gpu_hour=int(rng.uniform(0.2, 4.0) * UNIT),
            rate_per_cpu_hour=int(rng.uniform(0.02, 0.4) * UNIT),
            runtimes=("torch", "container") if rng.random() < 0.7 else ("torch",),
            fingerprint=f"{model}/cuda12.{rng.randint(1, 4)}/torch2.13",
            utilization=rng.random(),
            seen_at=now,
        )
        cols.upsert(offer)
        group = rng.randint(1, n // 4) if rng.random() < 0.3 else 0
        cols.set_stake(address, int(rng.uniform(0, 500) * UNIT), group)
        newcomer = rng.random() < 0.2
        cols.set_reputation(
            address, rng.uniform(0.05, 0.3) if newcomer else rng.uniform(0.6, 0.98), newcomer
        )
    return cols


def job_mix(rng: random.Random, count: int) -> list[Requirements]:
    jobs = []
    for _ in range(count):
        gpus = rng.choice([0, 1, 1, 1, 2, 4])
        tflops: dict[str, float] = {}
        if gpus and rng.random() < 0.6:
            tflops[rng.choice(["bf16", "fp16", "tf32"])] = rng.choice([50.0, 100.0, 200.0])
        jobs.append(
            Requirements(
                count=rng.choice([1, 2, 2, 3]),
                price_cap=int(rng.uniform(1, 20) * UNIT),
                gpus=gpus,
                gpu_memory_bytes=rng.choice([0, 16 << 30, 40 << 30]) if gpus else 0,
                min_tflops=tflops,
                runtime=rng.choice(["torch", "torch", "container"]),
                duration_s=rng.choice([600, 1800, 3600]),
                exact=rng.random() < 0.7,
            )
        )
    return jobs


def run(providers: int, matches: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    cols = build_book(providers, rng)
    matcher = Matcher(cols, exploration_share=0.1, rng=random.Random(seed + 1))
    jobs = job_mix(rng, 512)
    for job in jobs[:64]:  # warm caches and numpy's dispatch
        try:
            matcher.match(job)
        except NoCandidates:
            pass
    latencies = []
    found = 0
    start = time.perf_counter()
    for i in range(matches):
        job = jobs[i % len(jobs)]
        t0 = time.perf_counter()
        try:
            matcher.match(job)
            found += 1
        except NoCandidates:
            pass
        latencies.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    lat_ms = np.array(latencies) * 1000
    return {
        "providers": providers,
        "matches": matches,
        "matched_share": found / matches,
        "matches_per_s": matches / total,
        "match_p50_ms": float(np.percentile(lat_ms, 50)),
        "match_p99_ms": float(np.percentile(lat_ms, 99)),
        "match_max_ms": float(lat_ms.max()),
        "match_mean_ms": statistics.fmean(latencies) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=10_000)
    parser.add_argument("--matches", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = parser.parse_args(argv)
    figures = run(args.providers, args.matches, args.seed)
    print(f"{'figure':<16} {'value':>14}")
    for key, value in figures.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
        print(f"{key:<16} {shown:>14}")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
