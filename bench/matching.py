"""Matching throughput and latency with a large, varied provider book.

Fills the coordinator's own book columns with N providers (GPU models, counts, memory,
measured TFLOPS, prices, runtimes, fingerprints, operator groups, stakes, reputations and
load all varied), then runs the real :class:`coordinator.matching.matcher.Matcher` over a mix of
job requirements, twice:

* frozen: the book does not change while matching;
* live: between matches, adverts arrive at ``--adverts-per-s`` of wall time (each one
  rewrites a provider's slot: load, free GPUs, prices, as :meth:`ProviderColumns.upsert`
  does for every verified advert), every successful match reserves a job slot at each
  chosen provider and the oldest reservations are released, as the coordinator's planning
  does. Applying the adverts counts in the wall time.

A share of the jobs (``--requires-share``) carries a ``resources.requires`` (vendor, GPU
model globs, compute capability, driver, CUDA), drawn from its own random stream so the rest
of the mix is the same whatever the share; the book's providers advertise GPU platforms of
their model (driver and CUDA versions varied with their fingerprint).

Only successful matches count in ``matches_per_s``; latency percentiles are per match call.

    python -m bench.matching [--providers 10000] [--matches 20000] [--requires-share 0.25]
                             [--json]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import random
import statistics
import sys
import time

import numpy as np

from coordinator.errors import NoCandidates
from coordinator.matching.columns import DTYPE_INDEX, RUNTIME_BITS, AdvertRow, ProviderColumns
from coordinator.matching.matcher import Matcher
from coordinator.matching.requirements import Requirements
from protocol.compat import Platform, Requires

GPU_MODELS = [
    ("H100", 80, {"fp32": 51.0, "tf32": 400.0, "fp16": 700.0, "bf16": 700.0}),
    ("A100", 80, {"fp32": 19.0, "tf32": 140.0, "fp16": 280.0, "bf16": 280.0}),
    ("L40S", 48, {"fp32": 80.0, "tf32": 160.0, "fp16": 330.0, "bf16": 330.0}),
    ("RTX4090", 24, {"fp32": 75.0, "tf32": 75.0, "fp16": 150.0, "bf16": 150.0}),
    ("A10", 24, {"fp32": 30.0, "tf32": 60.0, "fp16": 120.0, "bf16": 120.0}),
    ("CPU", 0, {"fp32": 1.0, "tf32": 0.0, "fp16": 0.0, "bf16": 0.5}),
]
CAPABILITY = {"H100": "9.0", "A100": "8.0", "L40S": "8.9", "RTX4090": "8.9", "A10": "8.6"}
DRIVERS = ["535.104.05", "550.54.15", "560.35.03", "570.86.10"]
REQUIRES = [
    Requires(vendor="nvidia"),
    Requires(vendor="nvidia", min_compute_capability="8.9"),
    Requires(vendor="nvidia", gpu_model=("*H100*", "*A100*")),
    Requires(vendor="nvidia", min_driver="550.54"),
    Requires(vendor="nvidia", min_cuda="12.4", min_driver="560"),
]
UNIT = 1_000_000  # token units per token


def platform_of(model: str, cuda_minor: int) -> Platform:
    """The GPU platform a bench provider advertises (none for a CPU one)."""
    if model == "CPU":
        return Platform(vendor=None, models=())
    return Platform(
        vendor="nvidia",
        models=(f"NVIDIA {model}",),
        compute_capability=CAPABILITY[model],
        driver=DRIVERS[cuda_minor - 1],
        torch_cuda=f"12.{cuda_minor}",
        driver_cuda=f"12.{cuda_minor + 2}",
    )


def build_book(n: int, rng: random.Random) -> ProviderColumns:
    cols = ProviderColumns()
    now = time.time()
    for i in range(n):
        model, mem_gb, peak = rng.choice(GPU_MODELS)
        count = 0 if model == "CPU" else rng.choice([1, 1, 2, 4, 8])
        speed = rng.uniform(0.6, 1.0)
        address = "0x" + f"{i:040x}"
        offer = AdvertRow(
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
            # The draw stays where it always was, so the book is the same as without platforms.
            fingerprint=f"{model}/cuda12.{(cuda_minor := rng.randint(1, 4))}/torch2.13",
            utilization=rng.random(),
            seen_at=now,
            platform=platform_of(model, cuda_minor),
        )
        cols.upsert(offer)
        group = rng.randint(1, n // 4) if rng.random() < 0.3 else 0
        cols.set_stake(address, int(rng.uniform(0, 500) * UNIT), group)
        newcomer = rng.random() < 0.2
        cols.set_reputation(
            address, rng.uniform(0.05, 0.3) if newcomer else rng.uniform(0.6, 0.98), newcomer
        )
    return cols


def job_mix(
    rng: random.Random, count: int, requires_share: float = 0.0, seed: int = 0
) -> list[Requirements]:
    """``count`` jobs; ``requires_share`` of the GPU jobs also carry a ``requires`` (drawn
    from their own stream: the rest of the mix does not depend on the share)."""
    own = random.Random(seed + 2)
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
        if gpus and own.random() < requires_share:
            jobs[-1] = dataclasses.replace(jobs[-1], requires=own.choice(REQUIRES))
    return jobs


def advert_updates(cols: ProviderColumns, rng: random.Random, count: int) -> list[AdvertRow]:
    """Fresh adverts for random providers of ``cols``: new load, free GPUs and prices."""
    updates = []
    for _ in range(count):
        slot = rng.randrange(cols.size)
        gpus = int(cols.gpu_count[slot])
        name = cols.fingerprint_names[int(cols.fingerprint[slot])]
        tflops = {d: float(cols.tflops[slot, i]) for d, i in DTYPE_INDEX.items()}
        drift = rng.uniform(0.9, 1.1)
        updates.append(
            AdvertRow(
                address=cols.addresses[slot],
                peer_id=cols.peer_ids[slot],
                multiaddrs=cols.multiaddrs[slot],
                gpu_count=gpus,
                free_gpus=rng.randint(0, gpus),
                gpu_memory_bytes=int(cols.gpu_memory[slot]),
                tflops={d: v for d, v in tflops.items() if v > 0},
                rate_per_gpu_hour=max(1, int(cols.rates[slot] * drift)),
                rate_per_cpu_hour=max(1, int(cols.cpu_rates[slot] * drift)),
                runtimes=[r for r, bit in RUNTIME_BITS.items() if cols.runtime_bits[slot] & bit],
                fingerprint=name,
                utilization=rng.random(),
                seen_at=time.time(),
                platform=cols.platforms[int(cols.platform[slot])],
            )
        )
    return updates


def run(
    providers: int,
    matches: int,
    seed: int,
    *,
    adverts_per_s: float = 0.0,
    held: int = 500,
    requires_share: float = 0.0,
) -> dict[str, float]:
    """Match ``matches`` jobs; with ``adverts_per_s`` > 0 the book is live (module doc)."""
    rng = random.Random(seed)
    cols = build_book(providers, rng)
    matcher = Matcher(cols, exploration_share=0.1, rng=random.Random(seed + 1))
    jobs = job_mix(rng, 512, requires_share, seed)
    updates = advert_updates(cols, rng, 4096) if adverts_per_s > 0 else []
    for job in jobs[:64]:  # warm caches and numpy's dispatch
        try:
            matcher.match(job)
        except NoCandidates:
            pass
    latencies = []
    found = applied = 0
    reserved: collections.deque[str] = collections.deque()
    counts: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    for i in range(matches):
        if updates:
            due = int((time.perf_counter() - start) * adverts_per_s)
            while applied < due:
                cols.upsert(updates[applied % len(updates)])
                applied += 1
        job = jobs[i % len(jobs)]
        t0 = time.perf_counter()
        try:
            match = matcher.match(job)
        except NoCandidates:
            latencies.append(time.perf_counter() - t0)
            continue
        latencies.append(time.perf_counter() - t0)
        found += 1
        if updates:  # hold a job slot at each chosen provider; release the oldest
            now = time.time()
            for choice in match.chosen:
                counts[choice.address] += 1
                cols.set_reserved(choice.address, counts[choice.address], now)
                reserved.append(choice.address)
            while len(reserved) > held:
                address = reserved.popleft()
                counts[address] -= 1
                cols.set_reserved(address, counts[address], now)
    total = time.perf_counter() - start
    lat_ms = np.array(latencies) * 1000
    figures = {
        "providers": providers,
        "matches": matches,
        "matched_share": found / matches,
        "matches_per_s": found / total,
        "match_p50_ms": float(np.percentile(lat_ms, 50)),
        "match_p99_ms": float(np.percentile(lat_ms, 99)),
        "match_max_ms": float(lat_ms.max()),
        "match_mean_ms": statistics.fmean(latencies) * 1000,
    }
    if updates:
        figures["adverts_per_s"] = applied / total
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=10_000)
    parser.add_argument("--matches", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--adverts-per-s", type=float, default=1000.0, help="advert rate of the live run"
    )
    parser.add_argument(
        "--requires-share",
        type=float,
        default=0.25,
        help="share of GPU jobs with a resources.requires",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = parser.parse_args(argv)
    share = args.requires_share
    frozen = run(args.providers, args.matches, args.seed, requires_share=share)
    live = run(
        args.providers,
        args.matches,
        args.seed,
        adverts_per_s=args.adverts_per_s,
        requires_share=share,
    )
    print(f"{'figure':<16} {'frozen book':>14} {'live book':>14}")
    for key, value in frozen.items():
        print(f"{key:<16} {_shown(value):>14} {_shown(live[key]):>14}")
    print(f"{'adverts_per_s':<16} {'0':>14} {_shown(live['adverts_per_s']):>14}")
    figures: dict[str, float] = {
        "providers": args.providers,
        "matches": args.matches,
        "requires_share": share,
    }
    for key in ("matched_share", "matches_per_s", "match_p50_ms", "match_p99_ms", "match_max_ms"):
        figures[key] = frozen[key]
        figures[f"{key}_live"] = live[key]
    figures["adverts_per_s_live"] = live["adverts_per_s"]
    figures["live_vs_frozen_matches_per_s"] = live["matches_per_s"] / frozen["matches_per_s"]
    if args.json:
        print(json.dumps(figures))
    return 0


def _shown(value: float) -> str:
    return f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"


if __name__ == "__main__":
    sys.exit(main())
