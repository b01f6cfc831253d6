"""Builders for coordinator test data: job records, offers, adverts."""

from __future__ import annotations

import time
from typing import Any

from coordinator.matching.columns import AdvertRow
from coordinator.store import JobRecord
from protocol.lifecycle import JobState

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
