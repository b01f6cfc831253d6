"""What keeping the hourly history costs the coordinator, on its own code.

Fills a real :class:`coordinator.matching.book.ProviderBook` with N providers (GPU models, counts,
prices, half of them with a verified TFLOPS figure), then times, against a SQLite store in
a temporary directory: one book sample (:meth:`HistoryRecorder.sample`, in memory, every
``COORDINATOR_HISTORY_SAMPLE_S``), writing the samples to the store (:meth:`flush`, every
``COORDINATOR_HISTORY_FLUSH_S``), reading every provider's last 24 hours (what
``GET /history/providers`` does), and folding a day of week-old hours into day rows
(:meth:`Store.compact_history`).

    python -m bench.history [--providers 1000] [--samples 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import trio

from coordinator.history import HistoryConfig, HistoryRecorder
from coordinator.matching.book import ProviderBook
from coordinator.store import AsyncStore, Store
from coordinator.store.history import DAY, HOUR, ProviderHour, day_of, hour_of
from protocol.identity import Identity
from protocol.ids import Wei
from protocol.messages import Advert, Benchmark, Fingerprint, GpuInfo

MODELS = [("H100", 51.0), ("A100", 19.5), ("L40S", 91.6), ("RTX4090", 82.6)]


def fill_book(book: ProviderBook, n: int, rng: random.Random) -> None:
    for i in range(n):
        model, fp32 = rng.choice(MODELS)
        count = rng.choice([1, 2, 4, 8])
        who = Identity.from_private_key((i + 1).to_bytes(32, "big"))
        address = who.address
        advert = Advert(
            provider=address,
            peer_id=who.peer_id,
            multiaddrs=("/ip4/127.0.0.1/tcp/4001",),
            gpus=tuple(GpuInfo(name=model, memory_bytes=80 << 30) for _ in range(count)),
            benchmark=Benchmark(tflops={"fp32": fp32}, memory_bandwidth_gbps=2000.0),
            fingerprint=Fingerprint(backend="cuda", gpu_model=model, torch="2.13.0"),
            price_per_gpu_hour=Wei(int(rng.uniform(0.5, 4.0) * 1_000_000)),
            price_per_cpu_hour=Wei(int(rng.uniform(0.5, 4.0) * 1_000_000)),
            free_gpus=rng.randint(0, count),
            utilization=rng.random(),
            runtimes=("torch",),
            software={"gpumarket": "bench"},
            seq=1,
            expires_at=int(time.time()) + 3600,
        )
        book.accept(advert)
        book.set_chain_facts(address, registered=True, free_stake=10**9, group=i % 7)
        if i % 2 == 0:
            book.record_check(
                address,
                "fp32",
                passed=True,
                tflops=fp32 * rng.uniform(0.8, 1.0),
                devices=1,
                reason="",
            )


async def measure(providers: int, samples: int, root: Path) -> dict[str, float]:
    rng = random.Random(2026)
    now = [hour_of(time.time()) + 5.0]
    sync = Store(f"sqlite:///{root / 'history.sqlite'}", clock=lambda: now[0])
    store = AsyncStore(sync)
    book = ProviderBook(lambda: now[0], ttl_s=1e9)
    fill_book(book, providers, rng)
    recorder = HistoryRecorder(store, book, lambda: now[0], config=HistoryConfig(sample_s=10.0))
    await recorder.sample()
    sample_ms, flush_ms = [], []
    for _ in range(samples):
        now[0] += 10.0
        started = time.perf_counter()
        await recorder.sample()
        sample_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await recorder.flush()
        flush_ms.append((time.perf_counter() - started) * 1000)

    # A day of hours, eight days old, for every provider: what compaction folds.
    old_day = day_of(now[0]) - 8 * DAY
    rows = [
        ProviderHour(old_day + h * HOUR, HOUR, address=a, slot_offered_s=3600.0)
        for a in book.entries
        for h in range(24)
    ]
    for start in range(0, len(rows), 5000):
        sync.add_history(list(rows[start : start + 5000]))
    started = time.perf_counter()
    folded = sync.compact_history(7 * DAY, 90 * DAY)
    compact_s = time.perf_counter() - started

    started = time.perf_counter()
    read = sync.history(ProviderHour, hour_of(now[0]) - 23 * HOUR)
    read_ms = (time.perf_counter() - started) * 1000
    sync.close()
    return {
        "providers": providers,
        "sample_median_ms": statistics.median(sample_ms),
        "sample_max_ms": max(sample_ms),
        "flush_median_ms": statistics.median(flush_ms),
        "flush_max_ms": max(flush_ms),
        "read_24h_rows": len(read),
        "read_24h_ms": read_ms,
        "compacted_rows": folded,
        "compact_s": compact_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpumarket-history-") as tmp:
        figures = trio.run(measure, args.providers, args.samples, Path(tmp))
    print(f"{'figure':<18} {'value':>12}")
    for key, value in figures.items():
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{key:<18} {shown:>12}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
