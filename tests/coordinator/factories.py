"""Builders for coordinator test data: job records, offers, adverts."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from coordinator.matching.columns import AdvertRow
from coordinator.store import JobRecord
from protocol.identity import Identity
from protocol.ids import Wei
from protocol.lifecycle import JobState
from protocol.messages import Advert
from protocol.messages.advert import Benchmark, Fingerprint

UNIT = 1_000_000


def job_record(n: int = 1, **overrides: Any) -> JobRecord:
    now = time.time()
    fields: dict[str, Any] = {
        "job_id": "0x" + f"{n:064x}",
        "state": JobState.CREATED,
        "requester": "0x" + "11" * 20,
        "coordinator": "0x" + "22" * 20,
        "spec_cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
        "redundancy": 2,
        "mode": 0,
        "price_cap": 2**64 - 1,
        "fee": 10 * UNIT,
        "timeout_ms": 600_000,
        "assign_deadline": 2_000_000_000,
        "commit_window": 600,
        "reveal_window": 300,
        "spare_deadline": 2_000_000_100,
        "settle_deadline": 2_000_001_100,
        "created_block": 5,
        "seed": 42,
        "created_at": now,
        "updated_at": now,
    }
    fields.update(overrides)
    return JobRecord(**fields)


def offer(i: int, **overrides: Any) -> AdvertRow:
    fields: dict[str, Any] = {
        "address": "0x" + f"{i + 1:040x}",
        "peer_id": f"peer{i}",
        "multiaddrs": (f"/ip4/127.0.0.1/tcp/{4000 + i}",),
        "gpu_count": 1,
        "free_gpus": 1,
        "gpu_memory_bytes": 24 << 30,
        "tflops": {"fp32": 30.0, "bf16": 100.0},
        "rate_per_gpu_hour": 1 * UNIT,
        "rate_per_cpu_hour": UNIT // 10,
        "runtimes": ("torch",),
        "fingerprint": "A10/cuda12/torch2.13",
        "utilization": 0.0,
        "seen_at": time.time(),
    }
    fields.update(overrides)
    return AdvertRow(**fields)


def cpu_advert(
    who: Identity,
    tflops: Mapping[Any, float],
    multiaddrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/1",),
    ttl_s: int = 60,
) -> Advert:
    """A signed-advert body of a CPU provider claiming ``tflops``, valid for ``ttl_s``."""
    return Advert(
        provider=who.address,
        peer_id=who.peer_id,
        multiaddrs=multiaddrs,
        gpus=(),
        benchmark=Benchmark(tflops=dict(tflops), memory_bandwidth_gbps=10.0),
        fingerprint=Fingerprint(backend="cpu", gpu_model="cpu", torch="2.13.0"),
        price_per_gpu_hour=Wei(1),
        price_per_cpu_hour=Wei(1),
        free_gpus=0,
        utilization=0.0,
        runtimes=("torch",),
        software={"gpumarket": "test"},
        seq=1,
        expires_at=int(time.time()) + ttl_s,
    )
