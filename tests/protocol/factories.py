"""Builders of valid messages for protocol tests; each test changes one thing."""

from __future__ import annotations

import hashlib
from typing import Any

from protocol.eip712 import digest_to_cid
from protocol.identity import Identity
from protocol.ids import Cid, JobId
from protocol.messages import Advert, Benchmark, Fingerprint, GpuInfo

# Fixed keys keep failures reproducible; these are not funded anywhere.
PROVIDER = Identity.from_private_key("0x" + "11" * 32)
COORDINATOR = Identity.from_private_key("0x" + "22" * 32)
STRANGER = Identity.from_private_key("0x" + "33" * 32)

NOW = 1_700_000_000
JOB_ID = JobId(hashlib.sha256(b"job-1").digest())


def cid_of(label: bytes) -> Cid:
    return digest_to_cid(hashlib.sha256(label).digest())


def advert(**overrides: Any) -> Advert:
    fields: dict[str, Any] = {
        "provider": PROVIDER.address,
        "peer_id": PROVIDER.peer_id,
        "multiaddrs": ("/ip4/127.0.0.1/tcp/4001",),
        "gpus": (GpuInfo(name="NVIDIA H100 80GB HBM3", memory_bytes=80 * 2**30),),
        "benchmark": Benchmark(tflops={"fp32": 51.2, "bf16": 612.5}, memory_bandwidth_gbps=2900.0),
        "fingerprint": Fingerprint(
            backend="cuda", gpu_model="H100", driver="550.54", cuda="12.4", torch="2.13.0"
        ),
        "price_per_gpu_hour": 2_500_000,
        "price_per_cpu_hour": 100_000,
        "free_gpus": 1,
        "utilization": 0.0,
        "runtimes": ("torch",),
        "software": {"gpumarket": "0.1.0"},
        "seq": 1,
        "expires_at": NOW + 30,
    }
    fields.update(overrides)
    return Advert(**fields)
